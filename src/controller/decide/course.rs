//! The course of a run from what status says: validate and record a submission (or say why
//! not: an invalid spec, a suspended job), cancel a run that is no longer wanted (superseded,
//! invalidated, past its deadline; a lost submission looked up first), track one in flight, go
//! on with its registration, refresh a finished run's URLs. The stages call each other here, so
//! the recursion of the state machine stays inside this file.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::cleanup::cleanup_cancelled;
use super::end_of_run::{EndOfRun, audit_record, end_run, refresh_before};
use super::identity;
use super::registry_plan::{done, fail_registration, provenance, success_ending};
use super::registry_targets::{alias, configured, recorded, request_target, secret};
use super::schedule;
use super::schedule::PollSchedule;
use super::status_fields;
use super::step::{
    Conds, Event, Next, Policy, Step, View, found, in_flight, run_target, unknown_submission,
};
use super::trouble::{credentials_problem, credentials_problem_on, trouble};
use crate::controller::conditions::{ConditionStatus as Status, ConditionType as Cond, Reason};
use crate::controller::effect::RegisterRequest;
use crate::controller::effect::{CancelPurpose, Effect, RunTarget};
use crate::controller::memory::{DataOutcome, JobMemory};
use crate::crd::{Phase, RunHistory, SkillTrainingJobStatus, Submission};
use crate::cxone::{CancelOutcome, CxoneError};
use crate::registry::ModelSource;
use crate::training::DatasetDigest;

/// From what status says (at the start of a reconciliation, or once a superseded run is gone).
pub(super) fn start(
    v: &View,
    status: &SkillTrainingJobStatus,
    mut m: JobMemory,
    p: &Policy,
) -> Step {
    let mut next = status.clone();
    next.observed_generation = Some(v.generation);
    let problems = identity::reference_problems(v.spec, p.artifact_secrets);
    if !problems.is_empty() {
        return invalid(v, p, next, m, Reason::InvalidReference, problems);
    }
    let digest = match v.data {
        DataOutcome::Valid { digest, .. } => {
            next.data_source_key = v.data_source_key.clone();
            m.read_data = false;
            digest.as_str()
        }
        DataOutcome::Unchanged { digest } => digest.as_str(),
        DataOutcome::Invalid { problems } => {
            return invalid(v, p, next, m, Reason::ValidationFailed, problems.clone());
        }
        DataOutcome::NotRead => {
            let problems = vec!["the job's data was not read".to_string()];
            return invalid(v, p, next, m, Reason::ValidationFailed, problems);
        }
    };
    let endpoint = match &v.endpoint {
        Ok(e) => e.clone(),
        Err(problem) => {
            return invalid(
                v,
                p,
                next,
                m,
                Reason::EndpointNotAllowed,
                vec![problem.clone()],
            );
        }
    };
    let fingerprint = identity::run_fingerprint(v.spec, &endpoint.base_url, digest);
    let current = status
        .submission
        .as_ref()
        .is_some_and(|s| s.fingerprint == fingerprint);
    if !current {
        return supersede(v, p, status, next, m, (&endpoint, &fingerprint));
    }
    match (status.phase, status.job_id.clone()) {
        (Some(Phase::Succeeded), Some(job_id)) => refresh(v, next, m, &job_id),
        // The run is over; only a change of what is trained starts another.
        (Some(Phase::Failed | Phase::Cancelled | Phase::Invalid), _) => {
            Step::new(next, m, Next::AwaitChange)
        }
        (_, None) => {
            // Recorded, not yet accepted (or the answer was lost): send it again with the same
            // key, unless suspended in between.
            let key = status
                .submission
                .as_ref()
                .map(|s| s.idempotency_key.clone());
            match (key, v.spec.suspend == Some(true)) {
                (Some(key), false) => match run_target(v) {
                    Ok(target) => {
                        Step::new(next, m, Next::AwaitChange).effect(Effect::Submit { key, target })
                    }
                    Err(problem) => credentials_problem(v, m, &problem),
                },
                _ => Step::new(next, m, Next::AwaitChange),
            }
        }
        (_, Some(job_id)) => track(v, p, next, m, &job_id),
    }
}

/// What is trained changed (data, skill, endpoint or hyperparameters): a run still training is
/// cancelled first, then the new run starts.
fn supersede(
    v: &View,
    p: &Policy,
    status: &SkillTrainingJobStatus,
    next: SkillTrainingJobStatus,
    mut m: JobMemory,
    (endpoint, fingerprint): (&RunTarget, &str),
) -> Step {
    if let Some(old) = in_flight(status) {
        return cancel(v, p, next, m, old, CancelPurpose::Supersede);
    }
    if let Some(key) = unknown_submission(status) {
        return lookup(v, p, next, m, key, CancelPurpose::Supersede);
    }
    if let Some(Err(problem)) = &v.registry {
        let problems = vec![problem.clone()];
        return invalid(v, p, next, m, Reason::RegistryNotAllowed, problems);
    }
    let DataOutcome::Valid {
        digest, summary, ..
    } = v.data
    else {
        // Only a finished run's recorded digest was at hand: read the data, then decide.
        m.read_data = true;
        return Step::new(next, m, Next::Requeue(Duration::from_secs(1)));
    };
    start_run(v, next, m, endpoint, digest, summary, fingerprint)
}

/// Nothing is submitted and nothing is retried until the spec or its data change.
fn invalid(
    v: &View,
    p: &Policy,
    mut next: SkillTrainingJobStatus,
    m: JobMemory,
    reason: Reason,
    problems: Vec<String>,
) -> Step {
    if let Some(old) = in_flight(&next) {
        return cancel(v, p, next.clone(), m, old, CancelPurpose::Invalidate);
    }
    if let Some(key) = unknown_submission(&next) {
        return lookup(v, p, next.clone(), m, key, CancelPurpose::Invalidate);
    }
    let c = Conds(v);
    let message = format!("{} problems: {}", problems.len(), problems.join("; "));
    let was = (v.status.phase, v.status.message.clone());
    next.submission = None;
    next.phase = Some(Phase::Invalid);
    next.message = Some(crate::text::truncate_chars(&message, 1000));
    c.set(&mut next, Cond::Validated, Status::False, reason, &message);
    c.set(
        &mut next,
        Cond::Ready,
        Status::False,
        Reason::InvalidSpec,
        "fix the problems in the Validated condition; nothing was submitted",
    );
    let news = was.0 != Some(Phase::Invalid) || was.1 != next.message;
    let step = Step::new(next, m, Next::AwaitChange);
    if news {
        step.event(true, Reason::InvalidSpec, "Validate", message)
    } else {
        step
    }
}

fn start_run(
    v: &View,
    mut next: SkillTrainingJobStatus,
    mut m: JobMemory,
    endpoint: &RunTarget,
    digest: &DatasetDigest,
    summary: &str,
    fingerprint: &str,
) -> Step {
    let c = Conds(v);
    c.set(
        &mut next,
        Cond::Validated,
        Status::True,
        Reason::ValidationPassed,
        summary,
    );
    if v.spec.suspend == Some(true) {
        next.phase = Some(Phase::Pending);
        next.message = Some("suspended: set spec.suspend to false to train".into());
        for t in [Cond::Submitted, Cond::Ready] {
            c.set(
                &mut next,
                t,
                Status::False,
                Reason::Suspended,
                "spec.suspend is true",
            );
        }
        return Step::new(next, m, Next::AwaitChange);
    }
    // Credentials first: without them there is no point recording a submission.
    if let Err(problem) = &v.credentials {
        return credentials_problem_on(v, next, m, problem);
    }
    m.poll_attempt = 0;
    m.error_attempt = 0;
    m.completion = None;
    let key = record_submission(v, &mut next, endpoint, digest, summary, fingerprint);
    let was_invalid = v.status.phase == Some(Phase::Invalid);
    let mut step = Step::new(next, m, Next::AwaitChange).effect(Effect::Submit {
        key,
        target: endpoint.clone(),
    });
    step.conditional = true;
    // A spec that was Invalid and is now valid gets its own Event; otherwise the validation
    // summary rides on the Submitted Event (one API server write fewer per run).
    if was_invalid {
        step = step.event(false, Reason::Validated, "Validate", summary.to_string());
    }
    step
}

/// The submission marker of a new run, and the status of a run about to be sent; returns the
/// run's idempotency key.
fn record_submission(
    v: &View,
    next: &mut SkillTrainingJobStatus,
    endpoint: &RunTarget,
    digest: &DatasetDigest,
    summary: &str,
    fingerprint: &str,
) -> String {
    let c = Conds(v);
    // The marker goes to the API server before the POST: a crash after the POST then finds the
    // same idempotency key and CXone returns the same job instead of training twice.
    let run = v.status.runs_started.unwrap_or(0).saturating_add(1);
    let key = identity::idempotency_key(v.uid, run, fingerprint);
    next.runs_started = Some(run);
    next.submission = Some(Submission {
        idempotency_key: key.clone(),
        run,
        base_url: Some(endpoint.base_url.clone()),
        token_url: Some(endpoint.token_url.clone()),
        credentials_secret: Some(endpoint.secret.clone()),
        generation: v.generation,
        dataset_digest: digest.to_string(),
        fingerprint: fingerprint.to_string(),
        requested_at: Time(v.now),
    });
    next.job_id = None;
    next.dataset_digest = Some(digest.to_string());
    next.progress = None;
    next.stage = None;
    next.compute_units_allocated = None;
    next.compute_units_used = None;
    next.submitted_at = None;
    next.started_at = None;
    next.completed_at = None;
    next.training_duration_seconds = None;
    next.evaluation = None;
    next.artifacts = None;
    next.phase = Some(Phase::Submitting);
    next.message = Some(format!("validated ({summary}); submitting to CXone"));
    c.set(
        next,
        Cond::Submitted,
        Status::False,
        Reason::Submitting,
        "sending the training job to CXone",
    );
    c.set(
        next,
        Cond::Succeeded,
        Status::Unknown,
        Reason::InProgress,
        "training has not finished",
    );
    c.set(
        next,
        Cond::Ready,
        Status::False,
        Reason::Submitting,
        "the training job is being submitted",
    );
    key
}

pub(super) fn cancel(
    v: &View,
    p: &Policy,
    next: SkillTrainingJobStatus,
    m: JobMemory,
    job_id: &str,
    purpose: CancelPurpose,
) -> Step {
    match run_target(v) {
        Ok(target) => Step::new(next, m, Next::AwaitChange).effect(Effect::Cancel {
            job_id: job_id.to_string(),
            target,
            purpose,
        }),
        Err(problem) => cannot_call(v, p, m, job_id, purpose, problem),
    }
}

/// Nothing to cancel (or look up) with: carry on as if CXone had refused the cancel.
fn cannot_call(
    v: &View,
    p: &Policy,
    m: JobMemory,
    job_id: &str,
    purpose: CancelPurpose,
    problem: String,
) -> Step {
    let refused = CxoneError::InvalidRequest {
        call: crate::cxone::Call::Cancel,
        message: problem,
    };
    cancelled(v, m, p, job_id, purpose, Err(refused))
}

pub(super) fn lookup(
    v: &View,
    p: &Policy,
    next: SkillTrainingJobStatus,
    m: JobMemory,
    key: &str,
    purpose: CancelPurpose,
) -> Step {
    if let Some(job_id) = found(&m, key) {
        return cancel(v, p, next, m, &job_id, purpose);
    }
    match run_target(v) {
        Ok(target) => Step::new(next, m, Next::AwaitChange).effect(Effect::Lookup {
            key: key.to_string(),
            target,
            purpose,
        }),
        Err(problem) => cannot_call(v, p, m, "", purpose, problem),
    }
}

pub(super) fn cancelled(
    v: &View,
    m: JobMemory,
    p: &Policy,
    job_id: &str,
    purpose: CancelPurpose,
    result: Result<CancelOutcome, CxoneError>,
) -> Step {
    match (&result, purpose) {
        (_, CancelPurpose::Delete) => return cleanup_cancelled(v, m, p, job_id, result),
        (Err(CxoneError::RateLimited { retry_after, .. }), _) => {
            let wait = (*retry_after).max(PollSchedule::FLOOR);
            return Step::new(v.status.clone(), m, Next::Requeue(wait));
        }
        (Err(e), _) if e.is_transient() => return trouble(v, m, p, e),
        _ => {}
    }
    let refused = result.err().map(|e| e.to_string());
    if purpose == CancelPurpose::Deadline {
        return deadline_passed(v, m, refused);
    }
    superseded(v, m, p, job_id, refused)
}

/// The run outlived `polling.activeDeadlineSeconds`: it fails (its CXone job cancelled, or the
/// cancel refused for a reason retrying cannot change).
fn deadline_passed(v: &View, m: JobMemory, refused: Option<String>) -> Step {
    let deadline = v
        .spec
        .polling
        .as_ref()
        .and_then(|p| p.active_deadline_seconds)
        .unwrap_or_default();
    let message = match refused {
        None => format!(
            "not finished within activeDeadlineSeconds ({deadline} s); the CXone job was cancelled"
        ),
        Some(e) => format!(
            "not finished within activeDeadlineSeconds ({deadline} s); cancelling the CXone job failed: {e}"
        ),
    };
    end_run(
        v,
        m,
        EndOfRun::without_results(Phase::Failed, Reason::DeadlineExceeded, message),
    )
}

/// Superseded or invalidated: the old run is over; continue from a status without it.
fn superseded(
    v: &View,
    mut m: JobMemory,
    p: &Policy,
    job_id: &str,
    refused: Option<String>,
) -> Step {
    let mut next = v.status.clone();
    let generation = next.submission.as_ref().map(|s| s.generation).unwrap_or(0);
    let known = (!job_id.is_empty()).then(|| job_id.to_string());
    status_fields::push_history(
        &mut next.history,
        RunHistory {
            generation,
            job_id: known.clone(),
            dataset_digest: next.dataset_digest.clone(),
            phase: Phase::Cancelled,
            macro_f1: None,
            completed_at: Some(Time(v.now)),
            message: Some(format!(
                "superseded by generation {} or new data",
                v.generation
            )),
        },
    );
    next.job_id = None;
    next.submission = None;
    next.phase = None;
    m.completion = None;
    m.found = None;
    let message = match (known, refused) {
        (None, _) => {
            "the spec or its data changed before CXone created a job for the last submission"
                .to_string()
        }
        (Some(id), None) => format!("cancelled CXone job {id}: the spec or its data changed"),
        (Some(id), Some(e)) => {
            format!("left CXone job {id} (the spec or its data changed); cancelling it failed: {e}")
        }
    };
    let mut step = start(v, &next, m, p);
    step.events.insert(
        0,
        Event {
            warning: false,
            reason: Reason::Superseded,
            action: "Cancel",
            message,
        },
    );
    step
}

/// A run at CXone: cancel it past its deadline, resume its completion, or poll it.
pub(super) fn track(
    v: &View,
    p: &Policy,
    next: SkillTrainingJobStatus,
    m: JobMemory,
    job_id: &str,
) -> Step {
    let deadline = v
        .spec
        .polling
        .as_ref()
        .and_then(|p| p.active_deadline_seconds);
    if let (Some(deadline), Some(submitted)) = (deadline, next.submitted_at.as_ref())
        && v.now.as_second() - submitted.0.as_second() >= deadline as i64
        && next.phase != Some(Phase::Registering)
    {
        return cancel(v, p, next, m, job_id, CancelPurpose::Deadline);
    }
    let target = match run_target(v) {
        Ok(t) => t,
        Err(problem) => return credentials_problem(v, m, &problem),
    };
    let known = m.completion.as_ref().filter(|c| c.job_id == job_id);
    if known.is_some_and(|c| c.analysis.is_some() && c.export.is_some())
        && next.phase == Some(Phase::Registering)
    {
        return next_target(v, p, next, m);
    }
    let effect = match known.map(|c| c.analysis.is_some()) {
        Some(true) => Effect::Export {
            job_id: job_id.to_string(),
            target,
        },
        Some(false) => Effect::FetchEvaluation {
            job_id: job_id.to_string(),
            target,
        },
        None => Effect::Poll {
            job_id: job_id.to_string(),
            target,
        },
    };
    Step::new(next, m, Next::AwaitChange).effect(effect)
}

/// The next registry to work on, or the end of the run once every one is done.
pub(super) fn next_target(
    v: &View,
    p: &Policy,
    next: SkillTrainingJobStatus,
    m: JobMemory,
) -> Step {
    match &v.registry {
        None => return done(v, next, m),
        Some(Err(problem)) => {
            return fail_registration(v, next, m, Reason::RegistryNotAllowed, problem.clone());
        }
        Some(Ok(_)) => {}
    }
    let Some(completion) = m.completion.clone() else {
        return start(v, &next, m, p);
    };
    let (Some(analysis), Some(export)) = (completion.analysis.clone(), completion.export.clone())
    else {
        return start(v, &next, m, p);
    };
    let registry = next.registry.clone().unwrap_or_default();
    let pending = configured(v)
        .into_iter()
        .find(|k| recorded(&registry, *k).is_none_or(|r| r.promoted.is_none()));
    let Some(kind) = pending else {
        return done(v, next, m);
    };
    let promotion = v.spec.registry.as_ref().and_then(|s| s.promotion.as_ref());
    let Some(target) = request_target(v, kind) else {
        return done(v, next, m);
    };
    // The champion matters only to a gate that compares with it.
    let champion_at = promotion
        .filter(|p| p.compare_metric.is_some())
        .map(|_| alias(v, kind));
    let ending = success_ending(&completion, &analysis, &export, Some(registry));
    let request = RegisterRequest {
        target,
        secret: secret(v, kind),
        source: ModelSource {
            weights_url: export.artifacts.model_weights_url.clone(),
            config_url: export.artifacts.config_url.clone(),
        },
        provenance: provenance(v, &completion),
        audit: audit_record(v, &ending, Some(completion.job_id.as_str())),
        analysis,
        champion_at,
        promotion: promotion.cloned(),
        signing: v
            .spec
            .registry
            .as_ref()
            .and_then(|r| r.signing.as_ref())
            .map(|s| s.key_secret_ref.clone()),
    };
    Step::new(next, m, Next::AwaitChange).effect(Effect::Register(Box::new(request)))
}

/// A finished run keeps fresh artifact URLs: export again shortly before they expire.
pub(super) fn refresh(v: &View, next: SkillTrainingJobStatus, m: JobMemory, job_id: &str) -> Step {
    let Some(artifacts) = &v.status.artifacts else {
        return Step::new(next, m, Next::AwaitChange);
    };
    let remaining = artifacts.expires_at.0.as_second() - v.now.as_second();
    if remaining > refresh_before(v.spec).as_secs() as i64 {
        let wait = schedule::refresh_wait(refresh_before(v.spec), artifacts.expires_at.0, v.now);
        return Step::new(next, m, Next::Requeue(wait));
    }
    match run_target(v) {
        Ok(target) => Step::new(next, m, Next::AwaitChange).effect(Effect::Export {
            job_id: job_id.to_string(),
            target,
        }),
        Err(problem) => credentials_problem_on(v, next, m, &problem),
    }
}
