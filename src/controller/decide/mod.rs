//! The decisions of reconciliation, without I/O.
//!
//! [`decide`] (a job that exists) and [`decide_cleanup`] (a job being deleted) take the job as
//! the API server has it ([`View`]), the operator's memory of it, one [`Observation`] (the start of
//! a reconciliation, or the outcome of the last effect) and the [`Policy`], and return a [`Step`]:
//! the next status, the next memory, at most one [`Effect`], the Events and when to come back.
//! The driver (`reconcile.rs`) writes the status, publishes the Events, performs the effect and
//! feeds its outcome back as the next observation. Everything a job does is decided here, so every
//! branch is a plain test (`tests.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::core::{self, PollSchedule};
use super::memory::{Completion, DataOutcome, Finish, FinishStage, JobMemory};
use super::vocab::{ConditionStatus as Status, ConditionType as Cond, Reason};
use crate::audit::{AuditInput, AuditRecord, ComputeRecord, JobIdentity, RunResult, Timeline};
use crate::crd::{
    ArtifactsStatus, AuditStatus, DeletionPolicy, Phase, RunHistory, SkillTrainingJobSpec,
    SkillTrainingJobStatus, Submission,
};
use crate::cxone::model::{
    EvaluationResponse, ExportResponse, JobState, JobStatus, SubmitResponse,
};
use crate::cxone::{AuthProblem, CancelOutcome, CxoneError};
use crate::evaluation::analyze;
use crate::training::{DatasetDigest, ValidationReport};

mod register;
#[cfg(test)]
mod tests;

use super::effect::{CancelPurpose, Effect, Observation, RunTarget};

/// The job as the API server has it, with what was read for this reconciliation.
pub struct View<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub generation: i64,
    pub spec: &'a SkillTrainingJobSpec,
    /// Status as last written (the object's, then each step's).
    pub status: &'a SkillTrainingJobStatus,
    /// The job's training data (read unless the spec's names are unusable).
    pub data: &'a DataOutcome,
    /// What the data was read from now (see `status.dataSourceKey`).
    pub data_source_key: Option<String>,
    /// The spec's CXone endpoint, or why it cannot be used (allowlist, URL).
    pub endpoint: Result<RunTarget, String>,
    /// Whether the spec's credentials Secret can be read, or what is wrong with it.
    pub credentials: Result<(), String>,
    /// The registries of `spec.registry` (allowed), or why they cannot be used; `None` without
    /// `spec.registry`.
    pub registry: Option<Result<crate::registry::allow::Targets, String>>,
    pub now: Timestamp,
    /// A number in [0, 1) for jitter.
    pub jitter: f64,
}

/// Operator settings that shape decisions (the one place they and their defaults are written;
/// `OperatorConfig` carries it).
#[derive(Clone, Debug)]
pub struct Policy {
    /// Jobs may ask for their artifact URLs in a Secret (`spec.artifacts.secretName`): the
    /// operator was given create/patch on Secrets for it.
    pub artifact_secrets: bool,
    /// 0: progress is written to status only with phase changes, so every job costs a bounded
    /// number of API server writes whatever its length; N: also whenever it advanced N points.
    pub progress_step: i32,
    /// First and longest wait of the capped exponential backoff after errors.
    pub error_backoff_base: Duration,
    pub error_backoff_max: Duration,
    /// Give up cancelling a CXone job on deletion after this many failed attempts.
    pub cleanup_attempts: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            artifact_secrets: false,
            progress_step: 0,
            error_backoff_base: Duration::from_secs(2),
            error_backoff_max: Duration::from_secs(300),
            cleanup_attempts: 10,
        }
    }
}

/// An Event to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    pub warning: bool,
    pub reason: Reason,
    pub action: &'static str,
    pub message: String,
}

/// When to look at the job again once the step has no effect.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Next {
    /// Only a change of the job (or of a Secret or ConfigMap it reads) brings it back. For a
    /// deletion: done, the finalizer may go.
    AwaitChange,
    /// After this long. For a deletion: the finalizer stays until then.
    Requeue(Duration),
}

/// The outcome of a decision.
#[derive(Clone, Debug)]
pub struct Step {
    pub status: SkillTrainingJobStatus,
    pub memory: JobMemory,
    pub effect: Option<Effect>,
    pub events: Vec<Note>,
    pub next: Next,
    /// Write the status only if the object is still the version this reconciliation read (the
    /// submission marker: a stale copy or a second replica must not record a run of its own).
    pub conditional: bool,
    /// Drop the job's dataset from the cache (the run is submitted).
    pub drop_dataset: bool,
}

impl Step {
    fn new(status: SkillTrainingJobStatus, memory: JobMemory, next: Next) -> Self {
        Self {
            status,
            memory,
            effect: None,
            events: Vec::new(),
            next,
            conditional: false,
            drop_dataset: false,
        }
    }

    fn effect(mut self, effect: Effect) -> Self {
        self.effect = Some(effect);
        self
    }

    fn event(
        mut self,
        warning: bool,
        reason: Reason,
        action: &'static str,
        message: String,
    ) -> Self {
        self.events.push(Note {
            warning,
            reason,
            action,
            message,
        });
        self
    }
}

/// A condition setter bound to the view's generation and time.
struct Conds<'v, 'a>(&'v View<'a>);

impl Conds<'_, '_> {
    fn set(&self, next: &mut SkillTrainingJobStatus, t: Cond, s: Status, r: Reason, m: &str) {
        core::set_condition(
            &mut next.conditions,
            t,
            s,
            r,
            m,
            Some(self.0.generation),
            self.0.now,
        );
    }
}

/// The run in `status` is in flight at CXone (submitted and not finished).
pub fn in_flight(status: &SkillTrainingJobStatus) -> Option<&str> {
    match status.phase {
        Some(Phase::Queued | Phase::Training | Phase::Evaluating | Phase::Exporting) => {
            status.job_id.as_deref()
        }
        _ => None,
    }
}

/// The idempotency key of a submission whose outcome is unknown: recorded, sent perhaps, with no
/// CXone job id in status (the answer was lost, or the operator stopped in between). CXone may be
/// training it; only a lookup by the key can tell.
pub fn unknown_submission(status: &SkillTrainingJobStatus) -> Option<&str> {
    match (status.phase, &status.job_id) {
        (Some(Phase::Submitting), None) => status
            .submission
            .as_ref()
            .map(|s| s.idempotency_key.as_str()),
        _ => None,
    }
}

/// The CXone job an earlier lookup found under `key`.
fn found(m: &JobMemory, key: &str) -> Option<String> {
    m.found
        .as_ref()
        .filter(|(k, _)| k == key)
        .map(|(_, job)| job.clone())
}

/// Where the current run was submitted: the endpoint and Secret recorded with it, else the
/// spec's (runs recorded before the operator kept them).
pub fn run_target(v: &View) -> Result<RunTarget, String> {
    let recorded = v.status.submission.as_ref();
    let secret = recorded
        .and_then(|s| s.credentials_secret.clone())
        .unwrap_or_else(|| v.spec.connection.credentials_secret_ref.name.clone());
    match recorded.and_then(|s| s.base_url.clone()) {
        Some(base_url) => Ok(RunTarget {
            token_url: recorded
                .and_then(|s| s.token_url.clone())
                .unwrap_or_else(|| format!("{}/oauth/token", base_url.trim_end_matches('/'))),
            base_url,
            secret,
        }),
        None => v.endpoint.clone().map(|t| RunTarget { secret, ..t }),
    }
}

/// The next step of a job that exists.
pub fn decide(v: &View, m: &JobMemory, obs: Observation, p: &Policy) -> Step {
    let m = m.clone();
    match obs {
        Observation::Start => start(v, v.status, m, p),
        Observation::NoSlot(wait) => Step::new(v.status.clone(), m, Next::Requeue(wait)),
        Observation::CannotCall(problem) => credentials_problem(v, m, &problem),
        Observation::Cancelled {
            job_id,
            purpose,
            result,
        } => cancelled(v, m, p, &job_id, purpose, result),
        Observation::LookedUp { purpose, result } => looked_up(v, m, p, purpose, result),
        Observation::Submitted(result) => submitted(v, m, p, result),
        Observation::Polled(result) => polled(v, m, p, result),
        Observation::Evaluated(result) => evaluated(v, m, p, result),
        Observation::Exported(result) => exported(v, m, p, result),
        Observation::Written(result) => written(v, m, p, result),
        Observation::Registered { kind, result } => register::registered(v, m, p, kind, result),
        Observation::Promoted { kind, result } => register::promoted(v, m, p, kind, result),
    }
}

/// From what status says (at the start of a reconciliation, or once a superseded run is gone).
fn start(v: &View, status: &SkillTrainingJobStatus, mut m: JobMemory, p: &Policy) -> Step {
    let mut next = status.clone();
    next.observed_generation = Some(v.generation);
    let problems = core::reference_problems(v.spec, p.artifact_secrets);
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
    let fingerprint = core::run_fingerprint(v.spec, &endpoint.base_url, digest);
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

fn cancel(
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

fn lookup(
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

/// The outcome of a lookup by idempotency key: cancel the job it names, or, if it names none,
/// nothing was created and there is nothing to cancel.
fn looked_up(
    v: &View,
    mut m: JobMemory,
    p: &Policy,
    purpose: CancelPurpose,
    result: Result<Option<String>, CxoneError>,
) -> Step {
    match result {
        Ok(Some(job_id)) => {
            m.found = unknown_submission(v.status).map(|key| (key.to_string(), job_id.clone()));
            cancel(v, p, v.status.clone(), m, &job_id, purpose)
        }
        Ok(None) => cancelled(v, m, p, "", purpose, Ok(CancelOutcome::NotFound)),
        Err(e) => cancelled(v, m, p, "", purpose, Err(e)),
    }
}

fn cancelled(
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
    finish(
        v,
        m,
        Ending::without_results(Phase::Failed, Reason::DeadlineExceeded, message),
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
    core::push_history(
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
        Note {
            warning: false,
            reason: Reason::Superseded,
            action: "Cancel",
            message,
        },
    );
    step
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
    let key = core::idempotency_key(v.uid, run, fingerprint);
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

fn submitted(
    v: &View,
    mut m: JobMemory,
    p: &Policy,
    result: Result<SubmitResponse, CxoneError>,
) -> Step {
    let resp = match result {
        Ok(resp) => resp,
        // The key is ours (derived from this job's uid): the job it names is this run's.
        Err(CxoneError::KeyInUse { job_id, .. }) => SubmitResponse {
            job_id,
            status: JobState::Queued,
        },
        Err(CxoneError::Rejected {
            status,
            message,
            details,
            ..
        }) if status != 404 && status != 409 => {
            // CXone refused the payload: retrying the same data cannot help.
            let mut text = message;
            if !details.is_empty() {
                text = format!("{text}: {}", details.join("; "));
            }
            let text = format!("CXone rejected the submission ({status}): {text}");
            return finish(
                v,
                m,
                Ending::without_results(Phase::Failed, Reason::SubmissionRejected, text),
            );
        }
        Err(e) => return trouble(v, m, p, &e),
    };
    let c = Conds(v);
    let mut next = v.status.clone();
    next.job_id = Some(resp.job_id.clone());
    next.phase = Some(core::phase_for(resp.status));
    next.submitted_at = Some(Time(v.now));
    next.progress = Some(0);
    next.message = Some(format!("CXone job {} {}", resp.job_id, resp.status));
    c.set(
        &mut next,
        Cond::Submitted,
        Status::True,
        Reason::JobSubmitted,
        &format!("CXone job {}", resp.job_id),
    );
    c.set(
        &mut next,
        Cond::Ready,
        Status::False,
        Reason::Training,
        "the skill is being trained",
    );
    m.poll_attempt = 0;
    m.error_attempt = 0;
    m.last_warning = None;
    let validated = core::condition(&next, Cond::Validated)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    let wait = PollSchedule::from_spec(v.spec).interval(0);
    let mut step = Step::new(next, m, Next::Requeue(wait)).event(
        false,
        Reason::Submitted,
        "Submit",
        format!("CXone job {}; validated {validated}", resp.job_id),
    );
    step.drop_dataset = true;
    step
}

/// A run at CXone: cancel it past its deadline, resume its completion, or poll it.
fn track(v: &View, p: &Policy, next: SkillTrainingJobStatus, m: JobMemory, job_id: &str) -> Step {
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
        return register::next_target(v, p, next, m);
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

fn polled(v: &View, mut m: JobMemory, p: &Policy, result: Result<JobStatus, CxoneError>) -> Step {
    let job_id = v.status.job_id.clone().unwrap_or_default();
    let remote = match result {
        Ok(r) => r,
        Err(CxoneError::Rejected { status: 404, .. }) => {
            let message = format!("CXone no longer knows job {job_id}");
            return finish(
                v,
                m,
                Ending::without_results(Phase::Failed, Reason::JobNotFound, message),
            );
        }
        Err(e) => return trouble(v, m, p, &e),
    };
    m.error_attempt = 0;
    match remote.status {
        JobState::Completed => {
            m.completion = Some(Completion {
                job_id: job_id.clone(),
                remote,
                analysis: None,
                training_duration_seconds: None,
                export: None,
            });
            let target = match run_target(v) {
                Ok(t) => t,
                Err(problem) => return credentials_problem(v, m, &problem),
            };
            Step::new(v.status.clone(), m, Next::AwaitChange)
                .effect(Effect::FetchEvaluation { job_id, target })
        }
        JobState::Failed => {
            let reason = remote
                .failure_reason
                .as_deref()
                .map(|r| core::clip_remote_text(r, core::MAX_FAILURE_REASON_CHARS))
                .unwrap_or_else(|| "no reason given".into());
            let message = format!("CXone job {job_id} failed: {reason}");
            let mut ending =
                Ending::without_results(Phase::Failed, Reason::TrainingFailed, message);
            ending.remote = Some(remote);
            finish(v, m, ending)
        }
        JobState::Cancelled => {
            let message = format!("CXone job {job_id} was cancelled outside the operator");
            let mut ending = Ending::without_results(Phase::Cancelled, Reason::Cancelled, message);
            ending.remote = Some(remote);
            finish(v, m, ending)
        }
        state => running(v, m, p, &job_id, state, &remote),
    }
}

/// CXone reports progress: write it when the phase changed (or, with `progress_step`, when it
/// moved enough), and poll again on the schedule.
fn running(
    v: &View,
    mut m: JobMemory,
    p: &Policy,
    job_id: &str,
    state: JobState,
    remote: &JobStatus,
) -> Step {
    let phase = core::phase_for(state);
    let progress = i32::from(remote.progress);
    let mut next = v.status.clone();
    next.observed_generation = Some(v.generation);
    if v.status.phase != Some(phase)
        || core::progress_worth_writing(v.status.progress, progress, p.progress_step)
    {
        apply_remote(&mut next, remote);
        next.phase = Some(phase);
        next.progress = Some(progress);
        let stage = core::clip_remote_text(&remote.stage, core::MAX_STAGE_CHARS);
        next.message = Some(format!("CXone job {job_id} {state}: {stage}"));
        let reason = match phase {
            Phase::Evaluating => Reason::Evaluating,
            Phase::Queued => Reason::Queued,
            _ => Reason::Training,
        };
        Conds(v).set(
            &mut next,
            Cond::Ready,
            Status::False,
            reason,
            &format!("CXone job {job_id} is {state}"),
        );
    }
    let attempt = m.poll_attempt;
    m.poll_attempt = m.poll_attempt.saturating_add(1);
    m.last_warning = None;
    let wait = PollSchedule::from_spec(v.spec).interval(attempt.saturating_add(1));
    Step::new(next, m, Next::Requeue(wait))
}

/// Copies what CXone reported into status fields.
fn apply_remote(next: &mut SkillTrainingJobStatus, remote: &JobStatus) {
    next.stage = (!remote.stage.is_empty())
        .then(|| core::clip_remote_text(&remote.stage, core::MAX_STAGE_CHARS));
    next.compute_units_allocated = Some(core::decimal(remote.compute_units_allocated));
    next.compute_units_used = Some(core::decimal(remote.compute_units_used));
    if let Some(t) = remote.started_at {
        next.started_at = Some(Time(t));
    }
    if let Some(t) = remote.completed_at {
        next.completed_at = Some(Time(t));
    }
}

/// CXone answered that a completed job's results do not exist (404, 410): asking again cannot
/// help.
fn is_gone(e: &CxoneError) -> bool {
    matches!(
        e,
        CxoneError::Rejected {
            status: 404 | 410,
            ..
        }
    )
}

fn evaluated(
    v: &View,
    mut m: JobMemory,
    p: &Policy,
    result: Result<Arc<EvaluationResponse>, CxoneError>,
) -> Step {
    let Some(completion) = m.completion.clone() else {
        // Memory was lost in between: poll again.
        return start(v, v.status, m, p);
    };
    let job_id = completion.job_id.clone();
    let evaluation = match result {
        Ok(e) => e,
        Err(e) if is_gone(&e) => return results_gone(v, m, &completion, "evaluation", &e),
        Err(e) => return trouble(v, m, p, &e),
    };
    match analyze(&evaluation, &v.spec.evaluation_options()) {
        Err(e) => {
            m.completion = None;
            let message = format!("the evaluation of CXone job {job_id} cannot be analysed: {e}");
            let mut ending =
                Ending::without_results(Phase::Failed, Reason::EvaluationInvalid, message);
            ending.remote = Some(completion.remote);
            finish(v, m, ending)
        }
        Ok(report) => {
            let target = match run_target(v) {
                Ok(t) => t,
                Err(problem) => return credentials_problem(v, m, &problem),
            };
            m.error_attempt = 0;
            m.completion = Some(Completion {
                analysis: Some(Arc::new(report)),
                training_duration_seconds: Some(evaluation.training_duration_seconds),
                ..completion
            });
            Step::new(v.status.clone(), m, Next::AwaitChange)
                .effect(Effect::Export { job_id, target })
        }
    }
}

fn results_gone(
    v: &View,
    mut m: JobMemory,
    completion: &Completion,
    what: &str,
    e: &CxoneError,
) -> Step {
    m.completion = None;
    let message = format!(
        "the {what} of CXone job {} is not available: {e}",
        completion.job_id
    );
    let mut ending = Ending::without_results(Phase::Failed, Reason::ResultsUnavailable, message);
    ending.remote = Some(completion.remote.clone());
    finish(v, m, ending)
}

fn exported(
    v: &View,
    mut m: JobMemory,
    p: &Policy,
    result: Result<ExportResponse, CxoneError>,
) -> Step {
    if v.status.phase == Some(Phase::Succeeded) {
        return refreshed(v, m, p, result);
    }
    let Some(completion) = m.completion.clone().filter(|c| c.analysis.is_some()) else {
        return start(v, v.status, m, p);
    };
    let export = match result {
        Ok(x) => x,
        Err(e) if is_gone(&e) => return results_gone(v, m, &completion, "artifact export", &e),
        Err(e) => return trouble(v, m, p, &e),
    };
    if v.spec.registry.is_some() {
        return register::begin(v, m, p, completion, export);
    }
    m.completion = None;
    let Some(analysis) = completion.analysis.clone() else {
        return start(v, v.status, m, p);
    };
    let message = completed_message(&completion.job_id, &analysis);
    finish(
        v,
        m,
        Ending {
            phase: Phase::Succeeded,
            reason: Reason::TrainingSucceeded,
            message,
            remote: Some(completion.remote),
            analysis: Some(analysis),
            training_duration_seconds: completion.training_duration_seconds,
            export: Some(export),
            registry: None,
        },
    )
}

/// "CXone job … completed: macro precision …, recall …, F1 …; recommended threshold …"
fn completed_message(job_id: &str, analysis: &crate::evaluation::EvaluationReport) -> String {
    format!(
        "CXone job {} completed: macro precision {}, recall {}, F1 {}{}",
        job_id,
        core::decimal(analysis.macro_average.precision),
        core::decimal(analysis.macro_average.recall),
        core::decimal(analysis.macro_average.f1),
        match &analysis.recommendation {
            Some(r) => format!("; recommended threshold {:.2}", r.threshold),
            None => "; no threshold reaches the requested precision".to_string(),
        }
    )
}

/// How a run ended, before its report is written.
struct Ending {
    phase: Phase,
    reason: Reason,
    message: String,
    remote: Option<JobStatus>,
    analysis: Option<Arc<crate::evaluation::EvaluationReport>>,
    training_duration_seconds: Option<f64>,
    export: Option<ExportResponse>,
    /// Where the model was registered, and the gate's outcome per registry.
    registry: Option<crate::crd::RegistryStatus>,
}

impl Ending {
    fn without_results(phase: Phase, reason: Reason, message: String) -> Self {
        Self {
            phase,
            reason,
            message,
            remote: None,
            analysis: None,
            training_duration_seconds: None,
            export: None,
            registry: None,
        }
    }
}

/// Ends a run: the audit record goes into its ConfigMap first; the final status follows once it
/// is written (see [`written`]).
fn finish(v: &View, m: JobMemory, ending: Ending) -> Step {
    finish_on(v, v.status.clone(), m, ending)
}

/// [`finish`] from a status this step changed (it is written before the report).
fn finish_on(v: &View, status: SkillTrainingJobStatus, mut m: JobMemory, ending: Ending) -> Step {
    let job_id = v.status.job_id.clone();
    let name = core::report_config_map_name(
        v.name,
        v.uid,
        v.generation,
        job_id.as_deref().unwrap_or("none"),
    );
    let data = report_data(v, &ending, job_id.as_deref());
    let finish = Finish {
        stage: FinishStage::Report,
        phase: ending.phase,
        reason: ending.reason,
        message: ending.message,
        job_id,
        remote: ending.remote,
        analysis: ending.analysis,
        training_duration_seconds: ending.training_duration_seconds,
        export: ending.export,
        digest: v.status.dataset_digest.clone(),
        report_name: name.clone(),
        report_data: data.clone(),
    };
    m.finishing = Some(Arc::new(finish));
    Step::new(status, m, Next::AwaitChange).effect(Effect::WriteReport { name, data })
}

/// The audit record and the evaluation report of a run.
fn report_data(v: &View, ending: &Ending, job_id: Option<&str>) -> BTreeMap<String, String> {
    let record = audit_record(v, ending, job_id);
    let mut data = BTreeMap::from([("audit.json".to_string(), record.to_json())]);
    if let Some(e) = &ending.analysis {
        data.insert(
            "evaluation.json".to_string(),
            serde_json::to_string(&**e).unwrap_or_default(),
        );
    }
    data
}

/// The governance record of a run: every flag in it is the outcome of a check that ran.
fn audit_record(v: &View, ending: &Ending, job_id: Option<&str>) -> AuditRecord {
    let empty = ValidationReport {
        checks: Vec::new(),
        violations: Vec::new(),
        label_counts: BTreeMap::new(),
        language: None,
        utterance_count: 0,
    };
    let (validation, digest, label_count) = match v.data {
        DataOutcome::Valid {
            report,
            digest,
            label_count,
            ..
        } => (report, Some(digest), *label_count),
        _ => (&empty, None, v.spec.labels.len()),
    };
    let signed: Vec<&str> = ending
        .export
        .as_ref()
        .map(|e| {
            vec![
                e.artifacts.model_weights_url.as_str(),
                e.artifacts.config_url.as_str(),
            ]
        })
        .unwrap_or_default();
    let hyperparameters = v.spec.hyperparameters();
    let remote = ending.remote.as_ref();
    let timeline_time = |t: Option<Timestamp>, s: &Option<Time>| t.or(s.as_ref().map(|t| t.0));
    AuditRecord::build(AuditInput {
        job: JobIdentity {
            namespace: v.namespace.to_string(),
            name: v.name.to_string(),
            uid: v.uid.to_string(),
            generation: v.generation,
            skill_id: v.spec.skill_id.clone(),
            endpoint: run_target(v).map(|t| t.base_url).unwrap_or_default(),
            cxone_job_id: job_id.map(str::to_string),
        },
        result: match ending.phase {
            Phase::Succeeded => RunResult::Succeeded,
            Phase::Cancelled => RunResult::Cancelled,
            _ => RunResult::Failed,
        },
        reason: (ending.phase != Phase::Succeeded).then(|| ending.message.clone()),
        validation,
        digest,
        label_count,
        hyperparameters: &hyperparameters,
        validation_split: v.spec.validation_split(),
        evaluation: ending.analysis.as_deref(),
        artifacts_expire_at: ending.export.as_ref().map(|e| e.expires_at),
        signed_urls: &signed,
        training_duration_seconds: ending
            .analysis
            .as_ref()
            .and(ending.training_duration_seconds),
        compute_units: remote.map(|r| ComputeRecord {
            allocated: r.compute_units_allocated,
            used: r.compute_units_used,
        }),
        timeline: Timeline {
            submitted_at: v.status.submitted_at.as_ref().map(|t| t.0),
            started_at: timeline_time(remote.and_then(|r| r.started_at), &v.status.started_at),
            completed_at: Some(
                timeline_time(remote.and_then(|r| r.completed_at), &v.status.completed_at)
                    .unwrap_or(v.now),
            ),
        },
        registry: ending
            .registry
            .as_ref()
            .map(|r| register::registry_record(v, r, ending.analysis.as_deref())),
        now: v.now,
    })
}

fn written(v: &View, mut m: JobMemory, p: &Policy, result: Result<(), String>) -> Step {
    if let Err(problem) = result {
        m.finishing = None;
        m.refreshing = None;
        return not_owned(v, m, p, &problem);
    }
    if let Some(export) = m.refreshing.take() {
        return artifacts_refreshed(v, m, &export);
    }
    let Some(finish) = m.finishing.take() else {
        return start(v, v.status, m, p);
    };
    let secret = v
        .spec
        .artifacts
        .as_ref()
        .and_then(|a| a.secret_name.clone());
    if let (FinishStage::Report, Some(name), Some(export)) = (finish.stage, secret, &finish.export)
    {
        let export = export.clone();
        m.finishing = Some(Arc::new(Finish {
            stage: FinishStage::ArtifactSecret,
            ..(*finish).clone()
        }));
        return Step::new(v.status.clone(), m, Next::AwaitChange)
            .effect(Effect::WriteArtifactSecret { name, export });
    }
    finished(v, m, &finish)
}

/// The final status of a run whose record is written.
fn finished(v: &View, mut m: JobMemory, run: &Finish) -> Step {
    let mut next = v.status.clone();
    next.observed_generation = Some(v.generation);
    record_results(v, &mut next, run);
    record_end(v, &mut next, run);
    let (warning, reason) = match run.phase {
        Phase::Succeeded => (false, Reason::Succeeded),
        Phase::Cancelled => (true, Reason::Cancelled),
        _ => (true, Reason::TrainingFailed),
    };
    m.poll_attempt = 0;
    m.error_attempt = 0;
    m.completion = None;
    let then = match (run.phase, &next.artifacts) {
        (Phase::Succeeded, Some(a)) => Next::Requeue(core::refresh_wait(
            refresh_before(v.spec),
            a.expires_at.0,
            v.now,
        )),
        _ => Next::AwaitChange,
    };
    let message = format!(
        "{}; audit record in ConfigMap {}",
        run.message, run.report_name
    );
    Step::new(next, m, then).event(warning, reason, "Train", message)
}

/// What CXone reported and what the analysis found, into status.
fn record_results(v: &View, next: &mut SkillTrainingJobStatus, run: &Finish) {
    if let Some(remote) = &run.remote {
        apply_remote(next, remote);
    }
    if let Some(seconds) = run
        .training_duration_seconds
        .filter(|_| run.analysis.is_some())
    {
        next.training_duration_seconds = Some(format!("{seconds:.1}"));
    }
    if let Some(export) = &run.export {
        next.artifacts = Some(artifacts_status(v.spec, export));
    }
    if let Some(e) = &run.analysis {
        next.evaluation = Some(core::evaluation_status(e, &run.report_name));
    }
}

/// The run's end: phase, message, audit record, history and conditions.
fn record_end(v: &View, next: &mut SkillTrainingJobStatus, run: &Finish) {
    next.phase = Some(run.phase);
    if run.phase == Phase::Succeeded {
        next.progress = Some(100);
    }
    next.completed_at = Some(next.completed_at.clone().unwrap_or(Time(v.now)));
    next.message = Some(crate::text::truncate_chars(
        &run.message,
        core::MAX_MESSAGE_CHARS,
    ));
    next.audit = Some(AuditStatus {
        config_map: run.report_name.clone(),
        recorded_at: Time(v.now),
    });
    core::push_history(
        &mut next.history,
        RunHistory {
            generation: v.generation,
            job_id: run.job_id.clone(),
            dataset_digest: run.digest.clone(),
            phase: run.phase,
            macro_f1: run
                .analysis
                .as_ref()
                .map(|e| core::decimal(e.macro_average.f1)),
            completed_at: next.completed_at.clone(),
            message: Some(crate::text::truncate_chars(&run.message, 300)),
        },
    );
    let c = Conds(v);
    let (succeeded, ready, ready_reason) = match run.phase {
        Phase::Succeeded => (Status::True, Status::True, Reason::ArtifactsAvailable),
        _ => (Status::False, Status::False, run.reason),
    };
    c.set(next, Cond::Succeeded, succeeded, run.reason, &run.message);
    if run.reason == Reason::SubmissionRejected {
        c.set(
            next,
            Cond::Submitted,
            Status::False,
            run.reason,
            &run.message,
        );
    }
    c.set(next, Cond::Ready, ready, ready_reason, &run.message);
}

/// Artifact URLs as status carries them: in status, or only the Secret's name.
fn artifacts_status(spec: &SkillTrainingJobSpec, export: &ExportResponse) -> ArtifactsStatus {
    let secret_name = spec.artifacts.as_ref().and_then(|a| a.secret_name.clone());
    ArtifactsStatus {
        model_weights_url: secret_name
            .is_none()
            .then(|| export.artifacts.model_weights_url.clone()),
        config_url: secret_name
            .is_none()
            .then(|| export.artifacts.config_url.clone()),
        expires_at: Time(export.expires_at),
        secret_name,
    }
}

fn refresh_before(spec: &SkillTrainingJobSpec) -> Duration {
    spec.artifacts
        .as_ref()
        .and_then(|a| a.refresh_before_seconds)
        .map(|s| Duration::from_secs(s.into()))
        .unwrap_or(core::DEFAULT_REFRESH_BEFORE)
}

/// A finished run keeps fresh artifact URLs: export again shortly before they expire.
fn refresh(v: &View, next: SkillTrainingJobStatus, m: JobMemory, job_id: &str) -> Step {
    let Some(artifacts) = &v.status.artifacts else {
        return Step::new(next, m, Next::AwaitChange);
    };
    let remaining = artifacts.expires_at.0.as_second() - v.now.as_second();
    if remaining > refresh_before(v.spec).as_secs() as i64 {
        let wait = core::refresh_wait(refresh_before(v.spec), artifacts.expires_at.0, v.now);
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

fn refreshed(
    v: &View,
    mut m: JobMemory,
    p: &Policy,
    result: Result<ExportResponse, CxoneError>,
) -> Step {
    let export = match result {
        Ok(x) => x,
        Err(e) if is_gone(&e) => {
            // The model was trained and evaluated; only its files are gone. Say so, stop asking.
            let message = format!("artifact URLs cannot be refreshed: {e}");
            let mut next = v.status.clone();
            Conds(v).set(
                &mut next,
                Cond::Ready,
                Status::False,
                Reason::ArtifactsUnavailable,
                &message,
            );
            return warn_once(
                Step::new(next, m, Next::AwaitChange),
                Reason::ArtifactsUnavailable,
                "Export",
                message,
            );
        }
        Err(e) => return trouble(v, m, p, &e),
    };
    m.error_attempt = 0;
    match v
        .spec
        .artifacts
        .as_ref()
        .and_then(|a| a.secret_name.clone())
    {
        Some(name) => {
            m.refreshing = Some(export.clone());
            Step::new(v.status.clone(), m, Next::AwaitChange)
                .effect(Effect::WriteArtifactSecret { name, export })
        }
        None => artifacts_refreshed(v, m, &export),
    }
}

fn artifacts_refreshed(v: &View, m: JobMemory, export: &ExportResponse) -> Step {
    let mut next = v.status.clone();
    next.artifacts = Some(artifacts_status(v.spec, export));
    let wait = core::refresh_wait(refresh_before(v.spec), export.expires_at, v.now);
    Step::new(next, m, Next::Requeue(wait)).event(
        false,
        Reason::ArtifactsRefreshed,
        "Export",
        format!(
            "artifact URLs refreshed; they expire at {}",
            export.expires_at
        ),
    )
}

/// Publishes the Warning only if it is news (not the job's last warning).
fn warn_once(mut step: Step, reason: Reason, action: &'static str, message: String) -> Step {
    let key = reason.as_str().to_string();
    if step.memory.last_warning.as_deref() == Some(&key) {
        return step;
    }
    step.memory.last_warning = Some(key);
    step.event(true, reason, action, message)
}

/// A CXone call failed: how long to wait, and whether status says so.
fn trouble(v: &View, mut m: JobMemory, p: &Policy, error: &CxoneError) -> Step {
    let attempt = m.error_attempt;
    m.error_attempt = m.error_attempt.saturating_add(1);
    let backoff = core::error_backoff(attempt, p.error_backoff_base, p.error_backoff_max, v.jitter);
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
    // Auth problems need a human: show them in Ready. Transient ones only after a few attempts.
    if matches!(error, CxoneError::Auth { .. }) || attempt >= 3 {
        Conds(v).set(&mut next, Cond::Ready, Status::False, reason, &message);
    }
    warn_once(
        Step::new(next, m, Next::Requeue(wait)),
        reason,
        "CallCxone",
        message,
    )
}

/// The credentials Secret (or the endpoint) cannot be used: say so; the Secret watch brings the
/// job back as soon as it changes.
fn credentials_problem(v: &View, m: JobMemory, problem: &str) -> Step {
    credentials_problem_on(v, v.status.clone(), m, problem)
}

fn credentials_problem_on(
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
    let attempt = m.error_attempt;
    m.error_attempt = m.error_attempt.saturating_add(1);
    let wait = core::error_backoff(
        attempt,
        Duration::from_secs(10),
        Duration::from_secs(300),
        v.jitter,
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
fn not_owned(v: &View, mut m: JobMemory, p: &Policy, problem: &str) -> Step {
    let mut next = v.status.clone();
    Conds(v).set(
        &mut next,
        Cond::Ready,
        Status::False,
        Reason::ObjectNotOwned,
        problem,
    );
    let attempt = m.error_attempt;
    m.error_attempt = m.error_attempt.saturating_add(1);
    let wait = core::error_backoff(
        attempt,
        Duration::from_secs(10),
        p.error_backoff_max,
        v.jitter,
    );
    warn_once(
        Step::new(next, m, Next::Requeue(wait)),
        Reason::ObjectNotOwned,
        "WriteObject",
        problem.to_string(),
    )
}

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

fn cleanup_cancelled(
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
            let wait =
                core::error_backoff(attempt, p.error_backoff_base, p.error_backoff_max, v.jitter);
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
