//! When something is in the way: a failed CXone call (backoff, and Ready once it persists),
//! results CXone no longer has, unusable credentials or endpoint, an object the job does not
//! own; each Warning published once.

use std::time::Duration;

use super::schedule;
use super::schedule::PollSchedule;
use super::status_fields;
use super::step::{Conds, Next, Policy, Step, View};
use crate::controller::conditions::{ConditionStatus as Status, ConditionType as Cond, Reason};
use crate::controller::memory::JobMemory;
use crate::crd::{Phase, SkillTrainingJobStatus};
use crate::cxone::CxoneError;

/// Publishes the Warning only if it is news (not the job's last warning).
pub(super) fn warn_once(
    mut step: Step,
    reason: Reason,
    action: &'static str,
    message: String,
) -> Step {
    let key = reason.as_str().to_string();
    if step.memory.last_warning.as_deref() == Some(&key) {
        return step;
    }
    step.memory.last_warning = Some(key);
    step.event(true, reason, action, message)
}

/// Counts one more consecutive error in memory; returns the attempt it was and its backoff.
fn count_error(m: &mut JobMemory, jitter: f64, base: Duration, max: Duration) -> (u32, Duration) {
    let attempt = m.error_attempt;
    m.error_attempt = attempt.saturating_add(1);
    (attempt, schedule::error_backoff(attempt, base, max, jitter))
}

/// A CXone call failed: how long to wait, and whether status says so.
pub(super) fn trouble(v: &View, mut m: JobMemory, p: &Policy, error: &CxoneError) -> Step {
    let (attempt, backoff) =
        count_error(&mut m, v.jitter, p.error_backoff_base, p.error_backoff_max);
    let (reason, wait) = match error {
        CxoneError::RateLimited { retry_after, .. } => {
            // Spread the retries so jobs told the same Retry-After do not come back together.
            let spread = Duration::from_secs_f64(v.jitter * retry_after.as_secs_f64().max(1.0));
            (
                Reason::RateLimited,
                (*retry_after).max(PollSchedule::FLOOR) + spread,
            )
        }
        CxoneError::Auth { .. } => (
            Reason::CredentialsError,
            backoff.max(Duration::from_secs(10)),
        ),
        _ => (Reason::CxoneUnavailable, backoff),
    };
    let message = error.to_string();
    let mut next = v.status.clone();
    // Auth problems need a human: show them in Ready. Transient ones only after a few attempts,
    // and once an episode: while Ready already says so, a new answer's text (another
    // Retry-After) is no news worth a write.
    let auth = matches!(error, CxoneError::Auth { .. });
    let shown = status_fields::condition(v.status, Cond::Ready)
        .is_some_and(|c| c.status == Status::False.as_str() && c.reason == reason.as_str());
    if auth || (attempt >= 3 && !shown) {
        Conds(v).set(&mut next, Cond::Ready, Status::False, reason, &message);
    }
    let step = Step::new(next, m, Next::Requeue(wait));
    // Rate limits are CXone pacing the tenant's calls, the operator's ordinary weather (counted by
    // `cxone_rate_limited_total`): a Warning only when one persists, with the condition.
    if reason == Reason::RateLimited && attempt < 3 {
        return step;
    }
    warn_once(step, reason, "CallCxone", message)
}

/// The credentials Secret (or the endpoint) cannot be used: say so; the Secret watch brings the
/// job back as soon as it changes.
pub(super) fn credentials_problem(v: &View, m: JobMemory, problem: &str) -> Step {
    credentials_problem_on(v, v.status.clone(), m, problem)
}

pub(super) fn credentials_problem_on(
    v: &View,
    mut next: SkillTrainingJobStatus,
    mut m: JobMemory,
    problem: &str,
) -> Step {
    if next.phase.is_none() || next.phase == Some(Phase::Invalid) {
        next.phase = Some(Phase::Pending);
    }
    next.message = Some(problem.to_string());
    Conds(v).set(
        &mut next,
        Cond::Ready,
        Status::False,
        Reason::CredentialsError,
        problem,
    );
    let (_, wait) = count_error(
        &mut m,
        v.jitter,
        Duration::from_secs(10),
        Duration::from_secs(300),
    );
    let mut step = Step::new(next, m, Next::Requeue(wait));
    // Deduplicated by the problem's text: a different problem is news.
    if step.memory.last_warning.as_deref() != Some(problem) {
        step.memory.last_warning = Some(problem.to_string());
        step = step.event(
            true,
            Reason::CredentialsError,
            "ReadSecret",
            problem.to_string(),
        );
    }
    step
}

/// An object the job would write is not the job's.
pub(super) fn not_owned(v: &View, mut m: JobMemory, p: &Policy, problem: &str) -> Step {
    let mut next = v.status.clone();
    Conds(v).set(
        &mut next,
        Cond::Ready,
        Status::False,
        Reason::ObjectNotOwned,
        problem,
    );
    let (_, wait) = count_error(
        &mut m,
        v.jitter,
        Duration::from_secs(10),
        p.error_backoff_max,
    );
    warn_once(
        Step::new(next, m, Next::Requeue(wait)),
        Reason::ObjectNotOwned,
        "WriteObject",
        problem.to_string(),
    )
}

/// CXone answered that a completed job's results do not exist (404, 410): asking again cannot
/// help.
pub(super) fn is_gone(e: &CxoneError) -> bool {
    matches!(
        e,
        CxoneError::Rejected {
            status: 404 | 410,
            ..
        }
    )
}
