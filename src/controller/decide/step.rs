//! The shapes of a decision: the job as it is seen ([`View`]), the operator's [`Policy`], the
//! [`Step`] a decision returns with its [`Event`]s and [`Next`] visit, and the small readings of
//! status every stage shares (the run in flight, the submission whose outcome is unknown, where
//! the run was submitted).

use std::time::Duration;

use jiff::Timestamp;

use super::status_fields;
use crate::controller::conditions::{ConditionStatus as Status, ConditionType as Cond, Reason};
use crate::controller::effect::{Effect, RunTarget};
use crate::controller::memory::{DataOutcome, JobMemory};
use crate::crd::{Phase, SkillTrainingJobSpec, SkillTrainingJobStatus};

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
pub struct Event {
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
    pub events: Vec<Event>,
    pub next: Next,
    /// Write the status only if the object is still the version this reconciliation read (the
    /// submission marker: a stale copy or a second replica must not record a run of its own).
    pub conditional: bool,
    /// Drop the job's dataset from the cache (the run is submitted).
    pub drop_dataset: bool,
}

impl Step {
    pub(super) fn new(status: SkillTrainingJobStatus, memory: JobMemory, next: Next) -> Self {
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

    pub(super) fn effect(mut self, effect: Effect) -> Self {
        self.effect = Some(effect);
        self
    }

    pub(super) fn event(
        mut self,
        warning: bool,
        reason: Reason,
        action: &'static str,
        message: String,
    ) -> Self {
        self.events.push(Event {
            warning,
            reason,
            action,
            message,
        });
        self
    }
}

/// A condition setter bound to the view's generation and time.
pub(super) struct Conds<'v, 'a>(pub(super) &'v View<'a>);

impl Conds<'_, '_> {
    pub(super) fn set(
        &self,
        next: &mut SkillTrainingJobStatus,
        t: Cond,
        s: Status,
        r: Reason,
        m: &str,
    ) {
        status_fields::set_condition(
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
pub(super) fn found(m: &JobMemory, key: &str) -> Option<String> {
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
