//! A job being deleted: cancel its CXone job (or look up what a lost submission created) unless
//! the deletion policy orphans it; give up after the policy's attempts.

use std::time::Duration;

use super::schedule;
use super::schedule::PollSchedule;
use super::step::{Next, Policy, Step, View, found, in_flight, run_target, unknown_submission};
use crate::controller::conditions::Reason;
use crate::controller::effect::{CancelPurpose, Effect, Observation};
use crate::controller::memory::JobMemory;
use crate::crd::DeletionPolicy;
use crate::cxone::{AuthProblem, CancelOutcome, CxoneError};

/// The next step of a job being deleted: cancel its CXone job unless the policy says to orphan
/// it. [`Next::AwaitChange`] means done (the finalizer goes).
pub fn decide_cleanup(v: &View, m: &JobMemory, obs: Observation, p: &Policy) -> Step {
    let m = m.clone();
    let status = v.status.clone();
    let unknown = unknown_submission(v.status).map(str::to_string);
    let Some(job_id) = in_flight(v.status).map(str::to_string).or(unknown.clone()) else {
        return Step::new(status, m, Next::AwaitChange); // never submitted, or already finished
    };
    match obs {
        Observation::Start => {
            if v.spec.deletion_policy.unwrap_or_default() == DeletionPolicy::Orphan {
                return Step::new(status, m, Next::AwaitChange);
            }
            let purpose = CancelPurpose::Delete;
            let known = unknown.as_deref().and_then(|key| found(&m, key));
            let (job_id, unknown) = match known {
                Some(found) => (found, None),
                None => (job_id, unknown),
            };
            match (run_target(v), unknown) {
                // The answer to the submission was lost: ask CXone what the key names first.
                (Ok(target), Some(key)) => {
                    Step::new(status, m, Next::AwaitChange).effect(Effect::Lookup {
                        key,
                        target,
                        purpose,
                    })
                }
                (Ok(target), None) => {
                    Step::new(status, m, Next::AwaitChange).effect(Effect::Cancel {
                        job_id,
                        target,
                        purpose,
                    })
                }
                (Err(problem), _) => give_up(v, m, &job_id, &problem),
            }
        }
        Observation::LookedUp { result, .. } => match result {
            Ok(Some(found)) => {
                // Remembered, so a pass without a rate-limit slot does not look again.
                let mut m = m;
                m.found = unknown.map(|key| (key, found.clone()));
                match run_target(v) {
                    Ok(target) => Step::new(status, m, Next::AwaitChange).effect(Effect::Cancel {
                        job_id: found,
                        target,
                        purpose: CancelPurpose::Delete,
                    }),
                    Err(problem) => give_up(v, m, &found, &problem),
                }
            }
            Ok(None) => Step::new(status, m, Next::AwaitChange),
            Err(e) => cleanup_cancelled(v, m, p, &job_id, Err(e)),
        },
        Observation::Cancelled { job_id, result, .. } => {
            cleanup_cancelled(v, m, p, &job_id, result)
        }
        Observation::CannotCall(problem) => give_up(v, m, &job_id, &problem),
        Observation::NoSlot(wait) => Step::new(status, m, Next::Requeue(wait)),
        _ => Step::new(status, m, Next::Requeue(PollSchedule::FLOOR)),
    }
}

pub(super) fn cleanup_cancelled(
    v: &View,
    mut m: JobMemory,
    p: &Policy,
    job_id: &str,
    result: Result<CancelOutcome, CxoneError>,
) -> Step {
    let status = v.status.clone();
    match result {
        Ok(CancelOutcome::Cancelled(_)) => Step::new(status, m, Next::AwaitChange).event(
            false,
            Reason::Cancelled,
            "Cancel",
            format!("cancelled CXone job {job_id} because the resource was deleted"),
        ),
        Ok(CancelOutcome::AlreadyTerminal | CancelOutcome::NotFound) => {
            Step::new(status, m, Next::AwaitChange)
        }
        // A 429 is CXone asking us to wait, not a failure to cancel.
        Err(CxoneError::RateLimited { retry_after, .. }) => {
            let spread = Duration::from_secs_f64(v.jitter * retry_after.as_secs_f64().max(1.0));
            Step::new(
                status,
                m,
                Next::Requeue(retry_after.max(PollSchedule::FLOOR) + spread),
            )
        }
        Err(e) if m.cleanup_attempt + 1 >= p.cleanup_attempts => {
            give_up(v, m, job_id, &e.to_string())
        }
        Err(CxoneError::Auth {
            problem: AuthProblem::InvalidClient,
            ..
        }) => give_up(v, m, job_id, "CXone rejected the credentials"),
        Err(_) => {
            let attempt = m.cleanup_attempt;
            m.cleanup_attempt += 1;
            let wait = schedule::error_backoff(
                attempt,
                p.error_backoff_base,
                p.error_backoff_max,
                v.jitter,
            );
            Step::new(status, m, Next::Requeue(wait))
        }
    }
}

fn give_up(v: &View, m: JobMemory, job_id: &str, why: &str) -> Step {
    Step::new(v.status.clone(), m, Next::AwaitChange).event(
        true,
        Reason::CancelFailed,
        "Cancel",
        format!("gave up cancelling CXone job {job_id} on deletion: {why}"),
    )
}
