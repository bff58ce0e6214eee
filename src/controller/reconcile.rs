//! Reconciliation of one SkillTrainingJob: resolve data → validate → submit → poll → evaluate →
//! export → succeed, each step a decision from the pure core plus a thin I/O edge.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use super::core::{self, PollSchedule, idempotency_key, phase_for, set_condition};
use super::vocab::{ConditionStatus as Status, ConditionType as Cond, Reason};
use super::{Context, DataOutcome, FIELD_MANAGER, FINALIZER, ResolvedData};
use crate::audit::{AuditInput, AuditRecord, ComputeRecord, JobIdentity, RunResult, Timeline};
use crate::crd::{
    ArtifactsStatus, AuditStatus, DataSources, DeletionPolicy, Phase, RunHistory, SkillTrainingJob,
    SkillTrainingJobSpec, SkillTrainingJobStatus, Submission,
};
use crate::cxone::model::{ExportResponse, JobState, JobStatus};
use crate::cxone::{
    AuthProblem, CancelOutcome, Credentials, CxoneError, Endpoint, SecretString, Target, Transient,
};
use crate::evaluation::{EvaluationReport, analyze};
use crate::training::{DatasetDigest, ValidationReport, build_payload, validate};

/// Errors that end a reconciliation early; the controller retries them with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("CXone: {0}")]
    Cxone(#[from] CxoneError),
    #[error("object has no {0}")]
    MissingField(&'static str),
    #[error("{0}")]
    NotOwned(String),
    #[error("{0}")]
    Conflict(String),
    #[error("reconciliation took longer than {0:?} and was stopped")]
    Timeout(Duration),
    /// Not a failure: come back after this long (used where an Ok would end the step, as in
    /// cleanup, whose Ok removes the finalizer).
    #[error("waiting {0:?} for the CXone rate limit")]
    Wait(Duration),
}

/// Longest one reconciliation of one job may take.
const RECONCILE_TIMEOUT: Duration = Duration::from_secs(90);

impl Error {
    /// Static category for metrics labels and logs.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Finalizer(_) => "finalizer",
            Error::Cxone(e) => e.category(),
            Error::MissingField(_) => "invalid_object",
            Error::NotOwned(_) => "not_owned",
            Error::Conflict(_) => "conflict",
            Error::Timeout(_) => "timeout",
            Error::Wait(_) => "rate_limited",
        }
    }
}

/// Entry point for the controller: runs apply or cleanup inside the finalizer helper.
pub async fn reconcile(job: Arc<SkillTrainingJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let ns = job.namespace().ok_or(Error::MissingField("namespace"))?;
    let api: Api<SkillTrainingJob> = Api::namespaced(ctx.kube.clone(), &ns);
    let work = finalizer(&api, FINALIZER, job, |event| async {
        match event {
            Finalizer::Apply(job) => apply_reporting(&job, &ctx).await,
            Finalizer::Cleanup(job) => cleanup(&job, &ctx).await,
        }
    });
    // Every call inside has its own timeout; this bounds their sum, so no worker is held by one
    // job for long whatever its remote ends do. Stopping here is like a crash between two
    // writes, which every step survives (idempotent writes, idempotency key).
    let Ok(result) = tokio::time::timeout(RECONCILE_TIMEOUT, work).await else {
        ctx.metrics.reconciled("error", started.elapsed());
        return Err(Error::Timeout(RECONCILE_TIMEOUT));
    };
    let result = result.map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        kube::runtime::finalizer::Error::AddFinalizer(e)
        | kube::runtime::finalizer::Error::RemoveFinalizer(e) => Error::Kube(e),
        other => Error::Finalizer(other.to_string()),
    });
    let outcome = match &result {
        Ok(a) if *a == Action::await_change() => "success",
        Ok(_) => "requeue",
        Err(_) => "error",
    };
    ctx.metrics.reconciled(outcome, started.elapsed());
    result
}

/// Backoff for errors that escaped reconciliation (Kubernetes API failures, mostly).
pub fn error_policy(job: Arc<SkillTrainingJob>, error: &Error, ctx: Arc<Context>) -> Action {
    if let Error::Wait(wait) = error {
        return Action::requeue(*wait);
    }
    ctx.metrics.reconcile_failed(error.category());
    if matches!(error, Error::Conflict(_)) {
        // Someone wrote the object since it was read: read it again soon, no backoff.
        return Action::requeue(Duration::from_secs(1));
    }
    let uid = job.uid().unwrap_or_default();
    let (_, wait) = ctx.next_error_backoff(&uid, ctx.config.error_backoff_base);
    warn!(job = %job.name_any(), namespace = job.namespace().as_deref().unwrap_or(""),
        category = error.category(), error = %error, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

/// The object being reconciled, with what every step needs.
struct Job<'a> {
    obj: &'a SkillTrainingJob,
    spec: &'a SkillTrainingJobSpec,
    ns: String,
    name: String,
    uid: String,
    generation: i64,
    status: SkillTrainingJobStatus,
    now: Timestamp,
}

impl<'a> Job<'a> {
    fn new(obj: &'a SkillTrainingJob) -> Result<Self, Error> {
        Ok(Self {
            obj,
            spec: &obj.spec,
            ns: obj.namespace().ok_or(Error::MissingField("namespace"))?,
            name: obj.name_any(),
            uid: obj.uid().ok_or(Error::MissingField("uid"))?,
            generation: obj.metadata.generation.unwrap_or(0),
            status: obj.status.clone().unwrap_or_default(),
            now: Timestamp::now(),
        })
    }

    fn api(&self, ctx: &Context) -> Api<SkillTrainingJob> {
        Api::namespaced(ctx.kube.clone(), &self.ns)
    }

    fn cond(
        &self,
        next: &mut SkillTrainingJobStatus,
        type_: Cond,
        status: Status,
        reason: Reason,
        message: &str,
    ) {
        set_condition(
            &mut next.conditions,
            type_,
            status,
            reason,
            message,
            Some(self.generation),
            self.now,
        );
    }

    /// The run in status is in flight at CXone (submitted and not finished).
    fn in_flight(&self) -> Option<&str> {
        match self.status.phase {
            Some(Phase::Queued | Phase::Training | Phase::Evaluating | Phase::Exporting) => {
                self.status.job_id.as_deref()
            }
            _ => None,
        }
    }
}

/// `apply`, with the problems a user must fix (an object in the way that the job does not own)
/// shown on the job as the Ready condition and a Warning Event instead of only in the log.
async fn apply_reporting(obj: &SkillTrainingJob, ctx: &Context) -> Result<Action, Error> {
    match apply(obj, ctx).await {
        Err(Error::NotOwned(problem)) => {
            let job = Job::new(obj)?;
            let mut next = job.status.clone();
            job.cond(
                &mut next,
                Cond::Ready,
                Status::False,
                Reason::ObjectNotOwned,
                &problem,
            );
            write_status(&job, ctx, &next).await?;
            warn_once(&job, ctx, Reason::ObjectNotOwned, "WriteObject", &problem).await;
            let (_, wait) = ctx.next_error_backoff(&job.uid, Duration::from_secs(10));
            Ok(Action::requeue(wait))
        }
        other => other,
    }
}

/// A Warning Event, unless the same reason was the job's last warning.
async fn warn_once(job: &Job<'_>, ctx: &Context, reason: Reason, action: &str, note: &str) {
    if ctx.memory(&job.uid).last_warning.as_deref() == Some(reason.as_str()) {
        return;
    }
    ctx.update_memory(&job.uid, |m| {
        m.last_warning = Some(reason.as_str().to_string())
    });
    event(ctx, job.obj, EventType::Warning, reason, action, note).await;
}

async fn apply(obj: &SkillTrainingJob, ctx: &Context) -> Result<Action, Error> {
    let job = Job::new(obj)?;
    let mut next = job.status.clone();
    next.observed_generation = Some(job.generation);
    // Names go into API paths: check them before any read (objects stored before the CRD
    // enforced the patterns can still carry anything).
    let problems = core::reference_problems(job.spec, ctx.config.artifact_secrets);
    if !problems.is_empty() {
        return invalid(&job, ctx, next, Reason::InvalidReference, &problems).await;
    }
    let data = resolve_data(&job, ctx, false).await?;

    let (report, digest) = match &*data.outcome {
        DataOutcome::Invalid { problems, .. } => {
            return invalid(&job, ctx, next, Reason::ValidationFailed, problems).await;
        }
        DataOutcome::Valid { report, digest, .. } => (report, digest),
    };

    let endpoint = match endpoint(job.spec, ctx) {
        Ok(e) => e,
        Err(problem) => {
            return invalid(&job, ctx, next, Reason::EndpointNotAllowed, &[problem]).await;
        }
    };

    let fingerprint =
        core::run_fingerprint(job.spec, endpoint.base_url().as_str(), digest.as_str());
    let current_run = job
        .status
        .submission
        .as_ref()
        .is_some_and(|s| s.fingerprint == fingerprint);

    if !current_run {
        // New data, skill, endpoint or hyperparameters: a run still training is superseded.
        if let Some(old) = job.in_flight().map(str::to_string)
            && let Some(wait) = supersede(&job, ctx, &old, &mut next).await?
        {
            return Ok(Action::requeue(wait));
        }
        let data = resolve_data(&job, ctx, true).await?;
        let Some(validated) = dataset_of(&data) else {
            return Err(Error::MissingField("resolved dataset"));
        };
        return start_run(&job, ctx, next, &endpoint, validated, digest, &fingerprint).await;
    }

    match (job.status.phase, &job.status.job_id) {
        (Some(Phase::Succeeded), Some(_)) => refresh_artifacts(&job, ctx, next, &endpoint).await,
        (Some(Phase::Failed | Phase::Cancelled | Phase::Invalid), _) => {
            // The run is over; only a change of what is trained starts another.
            write_status(&job, ctx, &next).await?;
            Ok(Action::await_change())
        }
        (_, None) => {
            let data = resolve_data(&job, ctx, true).await?;
            let Some(validated) = dataset_of(&data) else {
                return Err(Error::MissingField("resolved dataset"));
            };
            submit(&job, ctx, next, &endpoint, validated, digest).await
        }
        (_, Some(job_id)) => {
            let job_id = job_id.clone();
            poll(&job, ctx, next, &endpoint, &job_id, report, digest).await
        }
    }
}

/// Records a validation failure: nothing is submitted and nothing is retried until the spec or
/// its data change (the watches bring the job back then).
async fn invalid(
    job: &Job<'_>,
    ctx: &Context,
    mut next: SkillTrainingJobStatus,
    reason: Reason,
    problems: &[String],
) -> Result<Action, Error> {
    if let Some(old) = job.in_flight().map(str::to_string)
        && let Some(wait) = supersede(job, ctx, &old, &mut next).await?
    {
        return Ok(Action::requeue(wait));
    }
    let message = format!("{} problems: {}", problems.len(), problems.join("; "));
    let was_invalid = job.status.phase == Some(Phase::Invalid);
    // Whatever was running or pending is over; a fixed spec starts a new run.
    next.submission = None;
    next.phase = Some(Phase::Invalid);
    next.message = Some(crate::text::truncate_chars(&message, 1000));
    job.cond(&mut next, Cond::Validated, Status::False, reason, &message);
    job.cond(
        &mut next,
        Cond::Ready,
        Status::False,
        Reason::InvalidSpec,
        "fix the problems in the Validated condition; nothing was submitted",
    );
    write_status(job, ctx, &next).await?;
    if !was_invalid || job.status.message != next.message {
        event(
            ctx,
            job.obj,
            EventType::Warning,
            Reason::InvalidSpec,
            "Validate",
            &message,
        )
        .await;
    }
    Ok(Action::await_change())
}

async fn start_run(
    job: &Job<'_>,
    ctx: &Context,
    mut next: SkillTrainingJobStatus,
    endpoint: &Endpoint,
    validated: &crate::training::Validated,
    digest: &DatasetDigest,
    fingerprint: &str,
) -> Result<Action, Error> {
    let report = validated.report();
    let summary = format!(
        "{} utterances, {} labels, language {}, {}",
        report.utterance_count,
        validated.dataset().labels.len(),
        validated.language(),
        digest
    );
    job.cond(
        &mut next,
        Cond::Validated,
        Status::True,
        Reason::ValidationPassed,
        &summary,
    );
    if job.spec.suspend == Some(true) {
        next.phase = Some(Phase::Pending);
        next.message = Some("suspended: set spec.suspend to false to train".into());
        job.cond(
            &mut next,
            Cond::Submitted,
            Status::False,
            Reason::Suspended,
            "spec.suspend is true",
        );
        job.cond(
            &mut next,
            Cond::Ready,
            Status::False,
            Reason::Suspended,
            "spec.suspend is true",
        );
        write_status(job, ctx, &next).await?;
        return Ok(Action::await_change());
    }
    // Credentials first: without them there is no point recording a submission.
    let creds = match credentials(job, ctx).await? {
        Ok(c) => c,
        Err(problem) => return credentials_problem(job, ctx, next, &problem).await,
    };
    ctx.update_memory(&job.uid, |m| {
        m.poll_attempt = 0;
        m.error_attempt = 0;
    });
    // The marker goes to the API server before the POST: a crash after the POST then finds the
    // same idempotency key and CXone returns the same job instead of training twice.
    let run = job.status.runs_started.unwrap_or(0).saturating_add(1);
    next.runs_started = Some(run);
    next.submission = Some(Submission {
        idempotency_key: idempotency_key(&job.uid, run, fingerprint),
        run,
        base_url: Some(endpoint.base_url().to_string()),
        token_url: Some(endpoint.token_url().to_string()),
        credentials_secret: Some(job.spec.connection.credentials_secret_ref.name.clone()),
        generation: job.generation,
        dataset_digest: digest.to_string(),
        fingerprint: fingerprint.to_string(),
        requested_at: Time(job.now),
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
    job.cond(
        &mut next,
        Cond::Submitted,
        Status::False,
        Reason::Submitting,
        "sending the training job to CXone",
    );
    job.cond(
        &mut next,
        Cond::Succeeded,
        Status::Unknown,
        Reason::InProgress,
        "training has not finished",
    );
    job.cond(
        &mut next,
        Cond::Ready,
        Status::False,
        Reason::Submitting,
        "the training job is being submitted",
    );
    write_marker(job, ctx, &next).await?;
    // A spec that was Invalid and is now valid gets its own Event; otherwise the validation
    // summary rides on the Submitted Event (one API server write fewer per run).
    if job.status.phase == Some(Phase::Invalid) {
        event(
            ctx,
            job.obj,
            EventType::Normal,
            Reason::Validated,
            "Validate",
            &summary,
        )
        .await;
    }
    let job = Job {
        status: next.clone(),
        ..Job::new(job.obj)?
    };
    submit_with(&job, ctx, next, endpoint, &creds, validated, digest).await
}

async fn submit(
    job: &Job<'_>,
    ctx: &Context,
    next: SkillTrainingJobStatus,
    endpoint: &Endpoint,
    validated: &crate::training::Validated,
    digest: &DatasetDigest,
) -> Result<Action, Error> {
    if job.spec.suspend == Some(true) {
        // A submission recorded before suspension is not sent until resumed.
        return Ok(Action::await_change());
    }
    let creds = match credentials(job, ctx).await? {
        Ok(c) => c,
        Err(problem) => return credentials_problem(job, ctx, next, &problem).await,
    };
    submit_with(job, ctx, next, endpoint, &creds, validated, digest).await
}

async fn submit_with(
    job: &Job<'_>,
    ctx: &Context,
    mut next: SkillTrainingJobStatus,
    endpoint: &Endpoint,
    creds: &Credentials,
    validated: &crate::training::Validated,
    digest: &DatasetDigest,
) -> Result<Action, Error> {
    let Some(key) = next.submission.as_ref().map(|s| s.idempotency_key.clone()) else {
        return Err(Error::MissingField("status.submission"));
    };
    if let Err(wait) = ctx.permit(&job.uid, endpoint.base_url().as_str(), &creds.client_id) {
        return Ok(Action::requeue(wait));
    }
    let (payload, _) = build_payload(
        &job.spec.skill_id,
        validated,
        job.spec.validation_split(),
        &job.spec.hyperparameters(),
    );
    let target = Target {
        endpoint,
        credentials: creds,
    };
    let outcome = ctx.cxone.submit(target, &payload, &key).await;
    answered_if_ok(ctx, target, &outcome);
    match outcome {
        Ok(resp) => {
            let phase = phase_for(resp.status);
            next.job_id = Some(resp.job_id.clone());
            next.phase = Some(phase);
            next.submitted_at = Some(Time(job.now));
            next.progress = Some(0);
            next.message = Some(format!("CXone job {} {}", resp.job_id, resp.status));
            job.cond(
                &mut next,
                Cond::Submitted,
                Status::True,
                Reason::JobSubmitted,
                &format!("CXone job {}", resp.job_id),
            );
            job.cond(
                &mut next,
                Cond::Ready,
                Status::False,
                Reason::Training,
                "the skill is being trained",
            );
            write_status(job, ctx, &next).await?;
            ctx.update_memory(&job.uid, |m| {
                m.poll_attempt = 0;
                m.error_attempt = 0;
                m.last_warning = None;
                m.data = m.data.as_ref().map(|d| d.without_dataset());
            });
            info!(job = %job.name, namespace = %job.ns, cxone_job = %resp.job_id, %digest, "submitted");
            event(
                ctx,
                job.obj,
                EventType::Normal,
                Reason::Submitted,
                "Submit",
                &format!(
                    "CXone job {}; validated {}",
                    resp.job_id,
                    core::condition(&next, Cond::Validated)
                        .map(|c| c.message.as_str())
                        .unwrap_or_default()
                ),
            )
            .await;
            Ok(Action::requeue(
                PollSchedule::from_spec(job.spec).interval(0),
            ))
        }
        Err(CxoneError::Rejected {
            status,
            message,
            details,
            ..
        }) if status != 404 => {
            // CXone refused the payload: retrying the same data cannot help.
            let mut text = message;
            if !details.is_empty() {
                text = format!("{text}: {}", details.join("; "));
            }
            let text = format!("CXone rejected the submission ({status}): {text}");
            finish_run(
                job,
                ctx,
                next,
                FinishedRun::unsuccessful(
                    Phase::Failed,
                    Reason::SubmissionRejected,
                    text,
                    None,
                    validated.report(),
                    digest,
                ),
            )
            .await
        }
        Err(e) => cxone_trouble(job, ctx, next, e, target).await,
    }
}

async fn poll(
    job: &Job<'_>,
    ctx: &Context,
    mut next: SkillTrainingJobStatus,
    endpoint: &Endpoint,
    job_id: &str,
    report: &ValidationReport,
    digest: &DatasetDigest,
) -> Result<Action, Error> {
    let creds = match credentials(job, ctx).await? {
        Ok(c) => c,
        Err(problem) => return credentials_problem(job, ctx, next, &problem).await,
    };
    let target = Target {
        endpoint,
        credentials: &creds,
    };
    // Active deadline: cancel and fail.
    if let (Some(deadline), Some(submitted)) = (
        job.spec
            .polling
            .as_ref()
            .and_then(|p| p.active_deadline_seconds),
        next.submitted_at.as_ref(),
    ) {
        let elapsed = job.now.as_second() - submitted.0.as_second();
        if elapsed >= deadline as i64 {
            match ctx.cxone.cancel(target, job_id).await {
                Ok(_) => {}
                Err(e) if e.is_transient() => {
                    return cxone_trouble(job, ctx, next, e, target).await;
                }
                Err(e) => warn!(job = %job.name, error = %e, "cancel after deadline failed"),
            }
            return finish_run(job, ctx, next, FinishedRun::unsuccessful(Phase::Failed, Reason::DeadlineExceeded, format!("not finished within activeDeadlineSeconds ({deadline} s); the CXone job was cancelled"), None, report, digest))
            .await;
        }
    }
    let known = ctx
        .memory(&job.uid)
        .completion
        .filter(|c| c.job_id == job_id)
        .map(|c| c.remote);
    let remote = match known {
        Some(remote) => remote,
        None => {
            if let Err(wait) = ctx.permit(&job.uid, endpoint.base_url().as_str(), &creds.client_id)
            {
                return Ok(Action::requeue(wait));
            }
            let outcome = ctx.cxone.status(target, job_id).await;
            answered_if_ok(ctx, target, &outcome);
            match outcome {
                Ok(s) => s,
                Err(CxoneError::Rejected { status: 404, .. }) => {
                    return finish_run(
                        job,
                        ctx,
                        next,
                        FinishedRun::unsuccessful(
                            Phase::Failed,
                            Reason::JobNotFound,
                            format!("CXone no longer knows job {job_id}"),
                            None,
                            report,
                            digest,
                        ),
                    )
                    .await;
                }
                Err(e) => {
                    return cxone_trouble(job, ctx, next, e, target).await;
                }
            }
        }
    };
    let old_phase = next.phase;
    apply_remote(&mut next, &remote);
    match remote.status {
        JobState::Completed => {
            complete(job, ctx, next, target, job_id, &remote, report, digest).await
        }
        JobState::Failed => {
            // Remote text is clipped before it reaches status: an oversized value would make
            // every status write fail.
            let reason = remote
                .failure_reason
                .as_deref()
                .map(|r| core::clip_remote_text(r, core::MAX_FAILURE_REASON_CHARS))
                .unwrap_or_else(|| "no reason given".into());
            finish_run(
                job,
                ctx,
                next,
                FinishedRun::unsuccessful(
                    Phase::Failed,
                    Reason::TrainingFailed,
                    format!("CXone job {job_id} failed: {reason}"),
                    Some(&remote),
                    report,
                    digest,
                ),
            )
            .await
        }
        JobState::Cancelled => {
            finish_run(
                job,
                ctx,
                next,
                FinishedRun::unsuccessful(
                    Phase::Cancelled,
                    Reason::Cancelled,
                    format!("CXone job {job_id} was cancelled outside the operator"),
                    Some(&remote),
                    report,
                    digest,
                ),
            )
            .await
        }
        state => {
            let phase = phase_for(state);
            next.phase = Some(phase);
            let progress = i32::from(remote.progress);
            let phase_changed = old_phase != Some(phase);
            if phase_changed
                || core::progress_worth_writing(
                    job.status.progress,
                    progress,
                    ctx.config.progress_step,
                )
            {
                next.progress = Some(progress);
                next.message = Some(format!(
                    "CXone job {job_id} {state}: {}",
                    core::clip_remote_text(&remote.stage, core::MAX_STAGE_CHARS)
                ));
                let reason = match phase {
                    Phase::Evaluating => Reason::Evaluating,
                    Phase::Queued => Reason::Queued,
                    _ => Reason::Training,
                };
                job.cond(
                    &mut next,
                    Cond::Ready,
                    Status::False,
                    reason,
                    &format!("CXone job {job_id} is {state}"),
                );
            } else {
                // Nothing visible changed enough to write: keep what status already says.
                next = SkillTrainingJobStatus {
                    observed_generation: Some(job.generation),
                    ..job.status.clone()
                };
            }
            write_status(job, ctx, &next).await?;
            let mut attempt = 0;
            ctx.update_memory(&job.uid, |m| {
                attempt = m.poll_attempt;
                m.poll_attempt = m.poll_attempt.saturating_add(1);
                m.error_attempt = 0;
                m.last_warning = None;
            });
            Ok(Action::requeue(
                PollSchedule::from_spec(job.spec).interval(attempt.saturating_add(1)),
            ))
        }
    }
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

#[allow(clippy::too_many_arguments)]
async fn complete(
    job: &Job<'_>,
    ctx: &Context,
    mut next: SkillTrainingJobStatus,
    target: Target<'_>,
    job_id: &str,
    remote: &JobStatus,
    report: &ValidationReport,
    digest: &DatasetDigest,
) -> Result<Action, Error> {
    let (base, client) = (
        target.endpoint.base_url().as_str(),
        target.credentials.client_id.as_str(),
    );
    let known = ctx
        .memory(&job.uid)
        .completion
        .filter(|c| c.job_id == job_id);
    let evaluation = match known.and_then(|c| c.evaluation) {
        Some(e) => e,
        None => {
            ctx.update_memory(&job.uid, |m| {
                m.completion = Some(super::Completion {
                    job_id: job_id.to_string(),
                    remote: remote.clone(),
                    evaluation: None,
                })
            });
            if let Err(wait) = ctx.permit(&job.uid, base, client) {
                return Ok(Action::requeue(wait));
            }
            let outcome = ctx.cxone.evaluation(target, job_id).await;
            answered_if_ok(ctx, target, &outcome);
            match outcome {
                Err(e) if is_gone(&e) => {
                    return results_gone(
                        job,
                        ctx,
                        next,
                        job_id,
                        "evaluation",
                        e,
                        remote,
                        report,
                        digest,
                    )
                    .await;
                }
                Ok(e) => {
                    let e = Arc::new(e);
                    ctx.update_memory(&job.uid, |m| {
                        if let Some(c) = m.completion.as_mut() {
                            c.evaluation = Some(e.clone());
                        }
                    });
                    e
                }
                Err(e) => return cxone_trouble(job, ctx, next, e, target).await,
            }
        }
    };
    let analysed = match analyze(&evaluation, &job.spec.evaluation_options()) {
        Ok(r) => r,
        Err(e) => {
            ctx.update_memory(&job.uid, |m| m.completion = None);
            return finish_run(
                job,
                ctx,
                next,
                FinishedRun {
                    phase: Phase::Failed,
                    reason: Reason::EvaluationInvalid,
                    message: format!(
                        "the evaluation of CXone job {job_id} cannot be analysed: {e}"
                    ),
                    remote: Some(remote),
                    evaluation: None,
                    export: None,
                    report: Some(report),
                    digest: Some(digest),
                },
            )
            .await;
        }
    };
    if let Err(wait) = ctx.permit(&job.uid, base, client) {
        return Ok(Action::requeue(wait));
    }
    let outcome = ctx.cxone.export(target, job_id).await;
    answered_if_ok(ctx, target, &outcome);
    let export = match outcome {
        Ok(e) => e,
        Err(e) if is_gone(&e) => {
            ctx.update_memory(&job.uid, |m| m.completion = None);
            return results_gone(
                job,
                ctx,
                next,
                job_id,
                "artifact export",
                e,
                remote,
                report,
                digest,
            )
            .await;
        }
        Err(e) => return cxone_trouble(job, ctx, next, e, target).await,
    };
    ctx.update_memory(&job.uid, |m| m.completion = None);
    next.training_duration_seconds = Some(format!("{:.1}", evaluation.training_duration_seconds));
    let summary = format!(
        "CXone job {job_id} completed: macro precision {}, recall {}, F1 {}{}",
        core::decimal(analysed.macro_average.precision),
        core::decimal(analysed.macro_average.recall),
        core::decimal(analysed.macro_average.f1),
        match &analysed.recommendation {
            Some(r) => format!("; recommended threshold {:.2}", r.threshold),
            None => "; no threshold reaches the requested precision".to_string(),
        }
    );
    finish_run(
        job,
        ctx,
        next,
        FinishedRun {
            phase: Phase::Succeeded,
            reason: Reason::TrainingSucceeded,
            message: summary,
            remote: Some(remote),
            evaluation: Some(&analysed),
            export: Some(&export),
            report: Some(report),
            digest: Some(digest),
        },
    )
    .await
}

/// CXone answered that a completed job's results do not exist (404, 410): asking again every few
/// minutes forever cannot help.
fn is_gone(e: &CxoneError) -> bool {
    matches!(
        e,
        CxoneError::Rejected {
            status: 404 | 410,
            ..
        }
    )
}

/// Ends a run whose results CXone no longer has.
#[allow(clippy::too_many_arguments)]
async fn results_gone(
    job: &Job<'_>,
    ctx: &Context,
    next: SkillTrainingJobStatus,
    job_id: &str,
    what: &str,
    error: CxoneError,
    remote: &JobStatus,
    report: &ValidationReport,
    digest: &DatasetDigest,
) -> Result<Action, Error> {
    let message = format!("the {what} of CXone job {job_id} is not available: {error}");
    let run = FinishedRun::unsuccessful(
        Phase::Failed,
        Reason::ResultsUnavailable,
        message,
        Some(remote),
        report,
        digest,
    );
    finish_run(job, ctx, next, run).await
}

impl<'a> FinishedRun<'a> {
    /// A run that ended without an evaluation (failed, cancelled, rejected).
    fn unsuccessful(
        phase: Phase,
        reason: Reason,
        message: String,
        remote: Option<&'a JobStatus>,
        report: &'a ValidationReport,
        digest: &'a DatasetDigest,
    ) -> Self {
        Self {
            phase,
            reason,
            message,
            remote,
            evaluation: None,
            export: None,
            report: Some(report),
            digest: Some(digest),
        }
    }
}

struct FinishedRun<'a> {
    phase: Phase,
    reason: Reason,
    message: String,
    remote: Option<&'a JobStatus>,
    evaluation: Option<&'a EvaluationReport>,
    export: Option<&'a ExportResponse>,
    report: Option<&'a ValidationReport>,
    digest: Option<&'a DatasetDigest>,
}

/// Ends a run: audit record (ConfigMap, log line, Event), history, final status.
async fn finish_run(
    job: &Job<'_>,
    ctx: &Context,
    mut next: SkillTrainingJobStatus,
    run: FinishedRun<'_>,
) -> Result<Action, Error> {
    let job_id = next.job_id.clone();
    let cm_name = core::report_config_map_name(
        &job.name,
        &job.uid,
        job.generation,
        job_id.as_deref().unwrap_or("none"),
    );
    let endpoint_text = endpoint(job.spec, ctx)
        .map(|e| e.base_url().to_string())
        .unwrap_or_default();
    let signed: Vec<&str> = run
        .export
        .map(|e| {
            vec![
                e.artifacts.model_weights_url.as_str(),
                e.artifacts.config_url.as_str(),
            ]
        })
        .unwrap_or_default();
    let empty_report;
    let validation = match run.report {
        Some(r) => r,
        None => {
            empty_report = ValidationReport {
                checks: Vec::new(),
                violations: Vec::new(),
                label_counts: BTreeMap::new(),
                language: None,
                utterance_count: 0,
            };
            &empty_report
        }
    };
    let hyperparameters = job.spec.hyperparameters();
    let record = AuditRecord::build(AuditInput {
        job: JobIdentity {
            namespace: job.ns.clone(),
            name: job.name.clone(),
            uid: job.uid.clone(),
            generation: job.generation,
            skill_id: job.spec.skill_id.clone(),
            endpoint: endpoint_text,
            cxone_job_id: job_id.clone(),
        },
        result: match run.phase {
            Phase::Succeeded => RunResult::Succeeded,
            Phase::Cancelled => RunResult::Cancelled,
            _ => RunResult::Failed,
        },
        reason: (run.phase != Phase::Succeeded).then(|| run.message.clone()),
        validation,
        digest: run.digest,
        label_count: job.spec.labels.len(),
        hyperparameters: &hyperparameters,
        validation_split: job.spec.validation_split(),
        evaluation: run.evaluation,
        artifacts_expire_at: run.export.map(|e| e.expires_at),
        signed_urls: &signed,
        training_duration_seconds: run
            .evaluation
            .and(next.training_duration_seconds.as_deref())
            .and_then(|s| s.parse().ok()),
        compute_units: run.remote.map(|r| ComputeRecord {
            allocated: r.compute_units_allocated,
            used: r.compute_units_used,
        }),
        timeline: Timeline {
            submitted_at: next.submitted_at.as_ref().map(|t| t.0),
            started_at: next.started_at.as_ref().map(|t| t.0),
            completed_at: Some(next.completed_at.as_ref().map(|t| t.0).unwrap_or(job.now)),
        },
        now: job.now,
    });
    let audit_json = record.to_json();
    let mut data = BTreeMap::from([("audit.json".to_string(), audit_json.clone())]);
    if let Some(e) = run.evaluation {
        data.insert(
            "evaluation.json".to_string(),
            serde_json::to_string(e).unwrap_or_default(),
        );
    }
    create_report_config_map(job, ctx, &cm_name, data).await?;
    tracing::info!(target: "audit", record = %audit_json, "audit record");

    if let Some(export) = run.export {
        set_artifacts(job, ctx, &mut next, export).await?;
    }
    if let Some(e) = run.evaluation {
        next.evaluation = Some(core::evaluation_status(e, &cm_name));
    }
    next.phase = Some(run.phase);
    if run.phase == Phase::Succeeded {
        next.progress = Some(100);
    }
    next.completed_at = Some(next.completed_at.clone().unwrap_or(Time(job.now)));
    next.message = Some(crate::text::truncate_chars(
        &run.message,
        core::MAX_MESSAGE_CHARS,
    ));
    next.audit = Some(AuditStatus {
        config_map: cm_name.clone(),
        recorded_at: Time(job.now),
    });
    core::push_history(
        &mut next.history,
        RunHistory {
            generation: job.generation,
            job_id: job_id.clone(),
            dataset_digest: run.digest.map(|d| d.to_string()),
            phase: run.phase,
            macro_f1: run.evaluation.map(|e| core::decimal(e.macro_average.f1)),
            completed_at: next.completed_at.clone(),
            message: Some(crate::text::truncate_chars(&run.message, 300)),
        },
    );
    let (succeeded, ready, ready_reason) = match run.phase {
        Phase::Succeeded => (Status::True, Status::True, Reason::ArtifactsAvailable),
        _ => (Status::False, Status::False, run.reason),
    };
    job.cond(
        &mut next,
        Cond::Succeeded,
        succeeded,
        run.reason,
        &run.message,
    );
    if run.reason == Reason::SubmissionRejected {
        job.cond(
            &mut next,
            Cond::Submitted,
            Status::False,
            Reason::SubmissionRejected,
            &run.message,
        );
    }
    job.cond(&mut next, Cond::Ready, ready, ready_reason, &run.message);
    write_status(job, ctx, &next).await?;
    let (kind, reason) = match run.phase {
        Phase::Succeeded => (EventType::Normal, Reason::Succeeded),
        Phase::Cancelled => (EventType::Warning, Reason::Cancelled),
        _ => (EventType::Warning, Reason::TrainingFailed),
    };
    event(
        ctx,
        job.obj,
        kind,
        reason,
        "Train",
        &format!("{}; audit record in ConfigMap {cm_name}", run.message),
    )
    .await;
    ctx.update_memory(&job.uid, |m| {
        m.poll_attempt = 0;
        m.error_attempt = 0;
    });
    match (run.phase, &next.artifacts) {
        (Phase::Succeeded, Some(a)) => Ok(Action::requeue(refresh_wait(
            job.spec,
            a.expires_at.0,
            job.now,
        ))),
        _ => Ok(Action::await_change()),
    }
}

async fn create_report_config_map(
    job: &Job<'_>,
    ctx: &Context,
    name: &str,
    data: BTreeMap<String, String>,
) -> Result<(), Error> {
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(job.ns.clone()),
            labels: Some(BTreeMap::from([
                (
                    "app.kubernetes.io/managed-by".to_string(),
                    FIELD_MANAGER.to_string(),
                ),
                // The uid is a valid label value whatever the job's name (up to 253
                // characters) is; the name is in the owner reference.
                (super::REPORT_LABEL.to_string(), job.uid.clone()),
            ])),
            owner_references: Some(vec![owner_reference(job.obj)?]),
            ..ObjectMeta::default()
        },
        data: Some(data),
        immutable: Some(true),
        ..ConfigMap::default()
    };
    let api: Api<ConfigMap> = Api::namespaced(ctx.kube.clone(), &job.ns);
    match api
        .create(
            &PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            },
            &cm,
        )
        .await
    {
        Ok(_) => Ok(()),
        // Already written by an earlier attempt of this same run (the name is deterministic),
        // unless somebody else put a ConfigMap of that name there first.
        Err(kube::Error::Api(e)) if e.code == 409 => match api.get_metadata_opt(name).await? {
            Some(meta) if owned_by(&meta.metadata, &job.uid) => Ok(()),
            Some(_) => Err(Error::NotOwned(format!(
                "ConfigMap {name:?} for the audit record exists and was not created by this job; \
                 delete it so the run can be recorded"
            ))),
            None => Err(Error::Conflict(format!(
                "ConfigMap {name:?} disappeared while the audit record was written; retrying"
            ))),
        },
        Err(e) => Err(e.into()),
    }
}

fn owner_reference(obj: &SkillTrainingJob) -> Result<OwnerReference, Error> {
    obj.controller_owner_ref(&())
        .ok_or(Error::MissingField("metadata.uid"))
}

/// Puts fresh artifact URLs into status (or, if requested, into a Secret the job owns).
async fn set_artifacts(
    job: &Job<'_>,
    ctx: &Context,
    next: &mut SkillTrainingJobStatus,
    export: &ExportResponse,
) -> Result<(), Error> {
    let secret_name = job
        .spec
        .artifacts
        .as_ref()
        .and_then(|a| a.secret_name.clone());
    if let Some(name) = &secret_name {
        write_artifact_secret(job, ctx, name, export).await?;
    }
    next.artifacts = Some(ArtifactsStatus {
        model_weights_url: secret_name
            .is_none()
            .then(|| export.artifacts.model_weights_url.clone()),
        config_url: secret_name
            .is_none()
            .then(|| export.artifacts.config_url.clone()),
        expires_at: Time(export.expires_at),
        secret_name,
    });
    Ok(())
}

/// Writes the signed URLs into the Secret `name`, which must be absent (it is created, owned by
/// the job) or already owned by this job: a Secret anybody else made is never modified. The
/// update carries the resourceVersion that was checked, so a Secret replaced in between is not
/// touched either (409).
async fn write_artifact_secret(
    job: &Job<'_>,
    ctx: &Context,
    name: &str,
    export: &ExportResponse,
) -> Result<(), Error> {
    let api: Api<Secret> = Api::namespaced(ctx.kube.clone(), &job.ns);
    let existing = api.get_metadata_opt(name).await?;
    let version = match &existing {
        None => None,
        Some(meta) if owned_by(&meta.metadata, &job.uid) => meta.metadata.resource_version.clone(),
        Some(_) => {
            return Err(Error::NotOwned(format!(
                "Secret {name:?} (spec.artifacts.secretName) exists and was not created by this job; \
                 the operator modifies only Secrets it created for the job: choose another name or delete that Secret"
            )));
        }
    };
    let mut secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(job.ns.clone()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_string(),
                FIELD_MANAGER.to_string(),
            )])),
            owner_references: Some(vec![owner_reference(job.obj)?]),
            resource_version: version.clone(),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        string_data: Some(BTreeMap::from([
            (
                "modelWeightsUrl".to_string(),
                export.artifacts.model_weights_url.clone(),
            ),
            ("configUrl".to_string(), export.artifacts.config_url.clone()),
            ("expiresAt".to_string(), export.expires_at.to_string()),
        ])),
        ..Secret::default()
    };
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let result = match version {
        None => api.create(&params, &secret).await.map(|_| ()),
        Some(_) => {
            // Replace keeps exactly our keys; the resourceVersion makes it conditional.
            secret.data = None;
            api.replace(name, &params, &secret).await.map(|_| ())
        }
    };
    match result {
        Ok(()) => Ok(()),
        // Created or changed by someone else since we looked: look again next time.
        Err(kube::Error::Api(e)) if e.code == 409 => Err(Error::Conflict(format!(
            "Secret {name:?} changed while the artifact URLs were written; retrying"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// The object's controlling owner is the job with this uid.
fn owned_by(meta: &ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|o| o.uid == uid && o.controller == Some(true))
}

fn refresh_before(spec: &SkillTrainingJobSpec) -> Duration {
    spec.artifacts
        .as_ref()
        .and_then(|a| a.refresh_before_seconds)
        .map(|s| Duration::from_secs(s.into()))
        .unwrap_or(core::DEFAULT_REFRESH_BEFORE)
}

fn refresh_wait(spec: &SkillTrainingJobSpec, expires_at: Timestamp, now: Timestamp) -> Duration {
    core::refresh_wait(refresh_before(spec), expires_at, now)
}

async fn refresh_artifacts(
    job: &Job<'_>,
    ctx: &Context,
    mut next: SkillTrainingJobStatus,
    endpoint: &Endpoint,
) -> Result<Action, Error> {
    let Some(artifacts) = job.status.artifacts.clone() else {
        write_status(job, ctx, &next).await?;
        return Ok(Action::await_change());
    };
    let remaining = artifacts.expires_at.0.as_second() - job.now.as_second();
    if remaining > refresh_before(job.spec).as_secs() as i64 {
        write_status(job, ctx, &next).await?;
        return Ok(Action::requeue(refresh_wait(
            job.spec,
            artifacts.expires_at.0,
            job.now,
        )));
    }
    let Some(job_id) = job.status.job_id.clone() else {
        return Ok(Action::await_change());
    };
    let creds = match credentials(job, ctx).await? {
        Ok(c) => c,
        Err(problem) => return credentials_problem(job, ctx, next, &problem).await,
    };
    if let Err(wait) = ctx.permit(&job.uid, endpoint.base_url().as_str(), &creds.client_id) {
        return Ok(Action::requeue(wait));
    }
    let target = Target {
        endpoint,
        credentials: &creds,
    };
    let outcome = ctx.cxone.export(target, &job_id).await;
    answered_if_ok(ctx, target, &outcome);
    let export = match outcome {
        Ok(e) => e,
        Err(e) if is_gone(&e) => {
            // The model was trained and evaluated; only its files are gone. Say so, stop asking.
            let message = format!("artifact URLs cannot be refreshed: {e}");
            job.cond(
                &mut next,
                Cond::Ready,
                Status::False,
                Reason::ArtifactsUnavailable,
                &message,
            );
            write_status(job, ctx, &next).await?;
            warn_once(job, ctx, Reason::ArtifactsUnavailable, "Export", &message).await;
            return Ok(Action::await_change());
        }
        Err(e) => {
            return cxone_trouble(job, ctx, next, e, target).await;
        }
    };
    set_artifacts(job, ctx, &mut next, &export).await?;
    write_status(job, ctx, &next).await?;
    event(
        ctx,
        job.obj,
        EventType::Normal,
        Reason::ArtifactsRefreshed,
        "Export",
        &format!(
            "artifact URLs refreshed; they expire at {}",
            export.expires_at
        ),
    )
    .await;
    Ok(Action::requeue(refresh_wait(
        job.spec,
        export.expires_at,
        job.now,
    )))
}

/// Cancels the superseded in-flight run (at the endpoint and with the credentials it was
/// submitted with) and records it in history. `Some(wait)`: the shared rate limiter has no slot
/// yet; nothing changed, come back after `wait`.
async fn supersede(
    job: &Job<'_>,
    ctx: &Context,
    old_job: &str,
    next: &mut SkillTrainingJobStatus,
) -> Result<Option<Duration>, Error> {
    match run_target(job, ctx).await? {
        Ok((endpoint, creds)) => {
            if let Err(wait) = ctx.permit(&job.uid, endpoint.base_url().as_str(), &creds.client_id)
            {
                return Ok(Some(wait));
            }
            let target = Target {
                endpoint: &endpoint,
                credentials: &creds,
            };
            let outcome = ctx.cxone.cancel(target, old_job).await;
            answered_if_ok(ctx, target, &outcome);
            match outcome {
                Ok(_) => {}
                Err(CxoneError::RateLimited { retry_after, .. }) => {
                    ctx.limiter.throttled(
                        endpoint.base_url().as_str(),
                        &creds.client_id,
                        retry_after,
                    );
                    return Ok(Some(retry_after.max(PollSchedule::FLOOR)));
                }
                Err(e) if e.is_transient() => return Err(e.into()),
                Err(e) => {
                    warn!(job = %job.name, cxone_job = old_job, error = %e, "cancelling the superseded run failed")
                }
            }
        }
        Err(problem) => {
            warn!(job = %job.name, cxone_job = old_job, %problem, "cannot cancel the superseded run")
        }
    }
    let generation = job
        .status
        .submission
        .as_ref()
        .map(|s| s.generation)
        .unwrap_or(0);
    core::push_history(
        &mut next.history,
        RunHistory {
            generation,
            job_id: Some(old_job.to_string()),
            dataset_digest: job.status.dataset_digest.clone(),
            phase: Phase::Cancelled,
            macro_f1: None,
            completed_at: Some(Time(job.now)),
            message: Some(format!(
                "superseded by generation {} or new data",
                job.generation
            )),
        },
    );
    event(
        ctx,
        job.obj,
        EventType::Normal,
        Reason::Superseded,
        "Cancel",
        &format!("cancelled CXone job {old_job}: the spec or its data changed"),
    )
    .await;
    Ok(None)
}

/// Where and with what the current run was submitted: the endpoint and credentials Secret
/// recorded with it (the spec may point elsewhere by now), else the spec's. A Secret that is gone
/// (a namespace being deleted removes it before the job) falls back to the last credentials the
/// operator read from it. `Ok(Err(problem))`: nothing to cancel with.
async fn run_target(
    job: &Job<'_>,
    ctx: &Context,
) -> Result<Result<(Endpoint, Credentials), String>, Error> {
    let recorded = job.status.submission.as_ref();
    let endpoint = match recorded.and_then(|s| s.base_url.as_deref()) {
        Some(base) => Endpoint::new(base, recorded.and_then(|s| s.token_url.as_deref()))
            .and_then(|e| allowed(e, ctx)),
        None => endpoint(job.spec, ctx),
    };
    let endpoint = match endpoint {
        Ok(e) => e,
        Err(problem) => return Ok(Err(problem)),
    };
    let secret = recorded
        .and_then(|s| s.credentials_secret.clone())
        .unwrap_or_else(|| job.spec.connection.credentials_secret_ref.name.clone());
    if let Err(problem) = crate::names::check_object_name("credentials Secret", &secret) {
        return Ok(Err(problem));
    }
    Ok(match credentials_named(job, ctx, &secret).await? {
        Ok(creds) => Ok((endpoint, creds)),
        Err(problem) => match ctx.cached_credentials(&job.ns, &secret) {
            Some(creds) => Ok((endpoint, creds)),
            None => Err(problem),
        },
    })
}

/// A successful call ends any pause of its endpoint (see `CxoneRateLimiter::unanswered`).
fn answered_if_ok<T>(ctx: &Context, target: Target<'_>, outcome: &Result<T, CxoneError>) {
    if outcome.is_ok() {
        ctx.limiter.answered(target.endpoint.base_url().as_str());
    }
}

/// A CXone call failed: decide how long to wait, and say so in status when it is news.
async fn cxone_trouble(
    job: &Job<'_>,
    ctx: &Context,
    mut next: SkillTrainingJobStatus,
    error: CxoneError,
    target: Target<'_>,
) -> Result<Action, Error> {
    let (attempt, backoff) = ctx.next_error_backoff(&job.uid, ctx.config.error_backoff_base);
    let (reason, wait) = match &error {
        CxoneError::RateLimited { retry_after, .. } => {
            ctx.limiter.throttled(
                target.endpoint.base_url().as_str(),
                &target.credentials.client_id,
                *retry_after,
            );
            // Spread the retries so jobs told the same Retry-After do not come back together.
            let spread = Duration::from_secs_f64(ctx.jitter() * retry_after.as_secs_f64().max(1.0));
            (
                Reason::RateLimited,
                (*retry_after).max(PollSchedule::FLOOR) + spread,
            )
        }
        CxoneError::Auth { .. } => (
            Reason::CredentialsError,
            backoff.max(Duration::from_secs(10)),
        ),
        CxoneError::Retryable {
            kind: Transient::Timeout | Transient::Connection,
            ..
        } => {
            // Nobody answered: every job of this endpoint pauses, not only this one.
            ctx.limiter.unanswered(target.endpoint.base_url().as_str());
            (Reason::CxoneUnavailable, backoff)
        }
        _ => (Reason::CxoneUnavailable, backoff),
    };
    if !matches!(error, CxoneError::Retryable { .. }) {
        ctx.limiter.answered(target.endpoint.base_url().as_str());
    }
    warn!(job = %job.name, namespace = %job.ns, category = error.category(), error = %error, retry_in = ?wait, "CXone call failed");
    let message = error.to_string();
    let is_news = ctx.memory(&job.uid).last_warning.as_deref() != Some(reason.as_str());
    if is_news {
        ctx.update_memory(&job.uid, |m| {
            m.last_warning = Some(reason.as_str().to_string())
        });
        event(
            ctx,
            job.obj,
            EventType::Warning,
            reason,
            "CallCxone",
            &message,
        )
        .await;
    }
    // Auth problems need a human: show them in Ready. Transient ones only after a few attempts.
    if matches!(error, CxoneError::Auth { .. }) || attempt >= 3 {
        job.cond(&mut next, Cond::Ready, Status::False, reason, &message);
        write_status(job, ctx, &next).await?;
    }
    Ok(Action::requeue(wait))
}

async fn credentials_problem(
    job: &Job<'_>,
    ctx: &Context,
    mut next: SkillTrainingJobStatus,
    problem: &str,
) -> Result<Action, Error> {
    if next.phase.is_none() || next.phase == Some(Phase::Invalid) {
        next.phase = Some(Phase::Pending);
    }
    next.message = Some(problem.to_string());
    job.cond(
        &mut next,
        Cond::Ready,
        Status::False,
        Reason::CredentialsError,
        problem,
    );
    write_status(job, ctx, &next).await?;
    let is_news = ctx.memory(&job.uid).last_warning.as_deref() != Some(problem);
    if is_news {
        ctx.update_memory(&job.uid, |m| m.last_warning = Some(problem.to_string()));
        event(
            ctx,
            job.obj,
            EventType::Warning,
            Reason::CredentialsError,
            "ReadSecret",
            problem,
        )
        .await;
    }
    // The Secret watch brings the job back as soon as the Secret appears or changes.
    let (_, wait) = ctx.next_error_backoff(&job.uid, Duration::from_secs(10));
    Ok(Action::requeue(wait))
}

/// The CXone endpoint of the job, if the allowlist permits it.
fn endpoint(spec: &SkillTrainingJobSpec, ctx: &Context) -> Result<Endpoint, String> {
    let c = &spec.connection;
    let endpoint = match (&c.region, &c.base_url) {
        (Some(region), None) => Endpoint::for_region(region),
        (None, Some(base)) => Endpoint::new(base, c.token_url.as_deref()),
        _ => Err("spec.connection: set exactly one of region and baseUrl".to_string()),
    }
    .map_err(|e| format!("spec.connection: {e}"))?;
    let endpoint = match (&c.region, &c.token_url) {
        (Some(_), Some(token)) => Endpoint::new(endpoint.base_url().as_str(), Some(token))
            .map_err(|e| format!("spec.connection: {e}"))?,
        _ => endpoint,
    };
    allowed(endpoint, ctx)
}

/// The endpoint, if the allowlist permits both of its URLs.
fn allowed(endpoint: Endpoint, ctx: &Context) -> Result<Endpoint, String> {
    for (field, url) in [
        ("baseUrl", endpoint.base_url()),
        ("tokenUrl", endpoint.token_url()),
    ] {
        if !ctx.config.allowlist.allows(url) {
            return Err(format!(
                "spec.connection.{field} {url} is not an allowed CXone endpoint (allowed: {}); ask the operator's administrators to allow it",
                ctx.config.allowlist.describe()
            ));
        }
    }
    Ok(endpoint)
}

/// Reads the credentials Secret (same namespace). `Ok(Err(problem))` is a user-fixable problem.
async fn credentials(job: &Job<'_>, ctx: &Context) -> Result<Result<Credentials, String>, Error> {
    credentials_named(job, ctx, &job.spec.connection.credentials_secret_ref.name).await
}

/// Reads the credentials from Secret `name` (same namespace), with the spec's key names.
async fn credentials_named(
    job: &Job<'_>,
    ctx: &Context,
    name: &str,
) -> Result<Result<Credentials, String>, Error> {
    let r = &crate::crd::CredentialsSecretRef {
        name: name.to_string(),
        ..job.spec.connection.credentials_secret_ref.clone()
    };
    let version = ctx.stores.secret_version(&job.ns, &r.name);
    if let (Some(v), Some(cached)) = (&version, ctx.cached_credentials(&job.ns, &r.name))
        && &cached.version == v
    {
        return Ok(Ok(cached));
    }
    let api: Api<Secret> = Api::namespaced(ctx.kube.clone(), &job.ns);
    let secret = match api.get_opt(&r.name).await? {
        Some(s) => s,
        None => {
            return Ok(Err(format!(
                "Secret {:?} (spec.connection.credentialsSecretRef) does not exist in namespace {:?}; create it with keys {:?} and {:?}",
                r.name,
                job.ns,
                r.client_id_key(),
                r.client_secret_key()
            )));
        }
    };
    let read = |key: &str| -> Result<String, String> {
        let data = secret.data.as_ref().and_then(|d| d.get(key));
        let Some(bytes) = data else {
            return Err(format!("Secret {:?} has no key {key:?}", r.name));
        };
        let s = String::from_utf8(bytes.0.clone())
            .map_err(|_| format!("Secret {:?} key {key:?} is not UTF-8", r.name))?;
        let s = s.trim().to_string();
        if s.is_empty() {
            return Err(format!("Secret {:?} key {key:?} is empty", r.name));
        }
        Ok(s)
    };
    let creds = match (read(r.client_id_key()), read(r.client_secret_key())) {
        (Ok(id), Ok(secret_value)) => Credentials {
            client_id: id,
            client_secret: SecretString::new(secret_value),
            version: secret.metadata.resource_version.clone().unwrap_or_default(),
        },
        (Err(e), _) | (_, Err(e)) => return Ok(Err(e)),
    };
    ctx.cache_credentials(&job.ns, &r.name, creds.clone());
    Ok(Ok(creds))
}

/// ConfigMap data fetched for one reconciliation.
struct FetchedSources(BTreeMap<String, Result<BTreeMap<String, String>, String>>);

impl DataSources for FetchedSources {
    fn get(&self, config_map: &str, key: &str) -> Result<&str, String> {
        match self.0.get(config_map) {
            None => Err(format!("ConfigMap {config_map:?} was not read")),
            Some(Err(e)) => Err(e.clone()),
            Some(Ok(data)) => data
                .get(key)
                .map(String::as_str)
                .ok_or_else(|| format!("ConfigMap {config_map:?} has no key {key:?}")),
        }
    }
}

fn dataset_of(data: &ResolvedData) -> Option<&crate::training::Validated> {
    match &*data.outcome {
        DataOutcome::Valid {
            validated: Some(v), ..
        } => Some(v),
        _ => None,
    }
}

/// Resolves and validates the job's data, reusing the last result while neither the generation
/// nor any source ConfigMap changed (and, with `need_dataset`, while it still holds the dataset).
async fn resolve_data(
    job: &Job<'_>,
    ctx: &Context,
    need_dataset: bool,
) -> Result<ResolvedData, Error> {
    let mut key = format!("{}", job.generation);
    for src in &job.spec.utterances_from {
        let name = &src.config_map_key_ref.name;
        let version = ctx
            .stores
            .config_map_version(&job.ns, name)
            .unwrap_or_default();
        key.push_str(&format!("|{name}@{version}"));
    }
    if let Some(cached) = ctx.memory(&job.uid).data
        && cached.key == key
        && (!need_dataset || dataset_of(&cached).is_some())
    {
        return Ok(cached);
    }
    let api: Api<ConfigMap> = Api::namespaced(ctx.kube.clone(), &job.ns);
    let mut fetched = BTreeMap::new();
    for src in &job.spec.utterances_from {
        let name = src.config_map_key_ref.name.clone();
        if fetched.contains_key(&name) {
            continue;
        }
        let entry = match api.get_opt(&name).await? {
            None => Err(format!(
                "ConfigMap {name:?} does not exist in namespace {:?}",
                job.ns
            )),
            Some(cm) => Ok(cm.data.unwrap_or_default()),
        };
        fetched.insert(name, entry);
    }
    let sources = FetchedSources(fetched);
    let mut problems = job.spec.check_parameters();
    let outcome = match job.spec.dataset(&sources) {
        Err(errors) => {
            problems.extend(errors.iter().map(ToString::to_string));
            DataOutcome::Invalid { problems }
        }
        Ok(dataset) => match validate(dataset, &job.spec.validation_rules()) {
            Err(rejected) => {
                problems.extend(rejected.report.violations.iter().map(ToString::to_string));
                DataOutcome::Invalid { problems }
            }
            Ok(validated) if problems.is_empty() => {
                let digest = DatasetDigest::of(validated.dataset(), validated.language());
                DataOutcome::Valid {
                    report: validated.report().clone(),
                    validated: Some(Box::new(validated)),
                    digest,
                }
            }
            Ok(_) => DataOutcome::Invalid { problems },
        },
    };
    let resolved = ResolvedData {
        key,
        outcome: Arc::new(outcome),
    };
    ctx.update_memory(&job.uid, |m| m.data = Some(resolved.clone()));
    Ok(resolved)
}

/// Writes status by server-side apply, only when it differs from what the object has.
async fn write_status(
    job: &Job<'_>,
    ctx: &Context,
    next: &SkillTrainingJobStatus,
) -> Result<(), Error> {
    ctx.metrics.set_phase(&job.uid, next.phase);
    if job.obj.status.as_ref() == Some(next) {
        return Ok(());
    }
    let patch = json!({
        "apiVersion": "ai.cxone.io/v1alpha1",
        "kind": "SkillTrainingJob",
        "status": next,
    });
    job.api(ctx)
        .patch_status(
            &job.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(patch),
        )
        .await?;
    Ok(())
}

/// Writes the submission marker on the condition that the object is still the version this
/// reconciliation read: a stale cached copy, or a second replica, gets 409 and re-reads instead of
/// recording (and sending) a submission of its own.
async fn write_marker(
    job: &Job<'_>,
    ctx: &Context,
    next: &SkillTrainingJobStatus,
) -> Result<(), Error> {
    ctx.metrics.set_phase(&job.uid, next.phase);
    let patch = json!({
        "apiVersion": "ai.cxone.io/v1alpha1",
        "kind": "SkillTrainingJob",
        "metadata": {"resourceVersion": job.obj.metadata.resource_version},
        "status": next,
    });
    match job
        .api(ctx)
        .patch_status(
            &job.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Err(Error::Conflict(
            "the job changed since it was read; reading it again before submitting".into(),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Publishes an Event; failures are logged, never fatal.
async fn event(
    ctx: &Context,
    obj: &SkillTrainingJob,
    type_: EventType,
    reason: Reason,
    action: &str,
    note: &str,
) {
    let ev = KubeEvent {
        type_,
        reason: reason.as_str().to_string(),
        // The API server refuses notes over 1024 bytes; cut at a character boundary.
        note: Some(crate::text::truncate_bytes(note, 1024)),
        action: action.to_string(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &obj.object_ref(&())).await {
        warn!(job = %obj.name_any(), error = %e, "cannot publish event");
    }
}

/// Deletion: cancel an in-flight CXone job unless the policy says to orphan it.
async fn cleanup(obj: &SkillTrainingJob, ctx: &Context) -> Result<Action, Error> {
    let job = Job::new(obj)?;
    let policy = job.spec.deletion_policy.unwrap_or_default();
    let Some(job_id) = job.in_flight().map(str::to_string) else {
        ctx.forget(&job.uid);
        return Ok(Action::await_change()); // never submitted, or already finished
    };
    if policy == DeletionPolicy::Orphan {
        info!(job = %job.name, cxone_job = %job_id, "deleted with deletionPolicy Orphan; CXone job left running");
        ctx.forget(&job.uid);
        return Ok(Action::await_change());
    }
    let attempts = ctx.memory(&job.uid).cleanup_attempt;
    let give_up = |why: String| {
        warn!(job = %job.name, cxone_job = %job_id, reason = %why, "giving up cancelling on deletion");
        ctx.forget(&job.uid);
        Ok(Action::await_change())
    };
    let (endpoint, creds) = match run_target(&job, ctx).await? {
        Ok(t) => t,
        Err(problem) => {
            event(
                ctx,
                obj,
                EventType::Warning,
                Reason::CredentialsError,
                "Cancel",
                &format!("cannot cancel CXone job {job_id}: {problem}"),
            )
            .await;
            return give_up(problem);
        }
    };
    // Cancels share the rate limit with every other call; waiting for a slot is no attempt.
    // (An Ok from cleanup removes the finalizer, so waiting is an error here.)
    if let Err(wait) = ctx.permit(&job.uid, endpoint.base_url().as_str(), &creds.client_id) {
        return Err(Error::Wait(wait));
    }
    let target = Target {
        endpoint: &endpoint,
        credentials: &creds,
    };
    let outcome = ctx.cxone.cancel(target, &job_id).await;
    answered_if_ok(ctx, target, &outcome);
    match outcome {
        Ok(CancelOutcome::Cancelled(_)) => {
            event(
                ctx,
                obj,
                EventType::Normal,
                Reason::Cancelled,
                "Cancel",
                &format!("cancelled CXone job {job_id} because the resource was deleted"),
            )
            .await;
            ctx.forget(&job.uid);
            Ok(Action::await_change())
        }
        Ok(CancelOutcome::AlreadyTerminal | CancelOutcome::NotFound) => {
            ctx.forget(&job.uid);
            Ok(Action::await_change())
        }
        // A 429 is CXone asking us to wait, not a failure to cancel.
        Err(CxoneError::RateLimited { retry_after, .. }) => {
            ctx.limiter
                .throttled(endpoint.base_url().as_str(), &creds.client_id, retry_after);
            let spread = Duration::from_secs_f64(ctx.jitter() * retry_after.as_secs_f64().max(1.0));
            Err(Error::Wait(retry_after.max(PollSchedule::FLOOR) + spread))
        }
        Err(e) if attempts + 1 >= ctx.config.cleanup_attempts => give_up(e.to_string()),
        Err(CxoneError::Auth {
            problem: AuthProblem::InvalidClient,
            ..
        }) => give_up("CXone rejected the credentials".into()),
        Err(e) => {
            ctx.update_memory(&job.uid, |m| m.cleanup_attempt += 1);
            Err(e.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_is_the_controlling_owner_uid() {
        let meta = |controller: Option<bool>| ObjectMeta {
            owner_references: Some(vec![OwnerReference {
                uid: "u1".into(),
                controller,
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        };
        assert!(owned_by(&meta(Some(true)), "u1"));
        assert!(!owned_by(&meta(Some(true)), "u2"));
        assert!(!owned_by(&meta(None), "u1"));
        assert!(!owned_by(&ObjectMeta::default(), "u1"));
    }
}
