//! Every phase of a job against every class of observation, without a cluster. A `Job` fixture
//! is driven through real decisions (`Job::new().submitted()` is the status the submit decision
//! writes), so the states tested are the states the operator produces.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use super::status_fields;
use super::*;
use crate::controller::conditions::{ConditionType as Cond, Reason};
use crate::controller::effect::{CancelPurpose, Effect, Observation, RunTarget};
use crate::controller::memory::{DataOutcome, JobMemory};
use crate::crd::DeletionPolicy;
use crate::crd::{Phase, SkillTrainingJobSpec, SkillTrainingJobStatus};
use crate::cxone::model::{ArtifactUrls, EvaluationLabel, JobState};
use crate::cxone::model::{EvaluationResponse, ExportResponse, JobStatus, SubmitResponse};
use crate::cxone::{AuthProblem, CancelOutcome, CxoneError};
use crate::cxone::{Call, Transient};
use crate::training::DatasetDigest;
use crate::training::validate;

const UID: &str = "0d6c1b9e-5a4f-4c55-9e0b-3c1f6a0b2d11";
const BASE: &str = "https://api.us2-01.cxone.com/";

/// A job, its status and memory, and what was observed for it.
#[derive(Clone)]
struct Job {
    spec: SkillTrainingJobSpec,
    status: SkillTrainingJobStatus,
    memory: JobMemory,
    data_valid: bool,
    /// Observe the recorded digest only (a finished run whose sources are unchanged).
    data_recorded: bool,
    endpoint: Result<RunTarget, String>,
    credentials: Result<(), String>,
    registry: Option<Result<crate::registry::allow::Targets, String>>,
    generation: i64,
    now: Timestamp,
    policy: Policy,
}

fn guide_spec() -> SkillTrainingJobSpec {
    serde_json::from_value(serde_json::json!({
        "skillId": "skill-abc-123",
        "connection": {"region": "us2-01", "credentialsSecretRef": {"name": "cxone-credentials"}},
        "language": "en",
        "labels": [
            {"id": "cancel_sub", "name": "Cancel Subscription"},
            {"id": "upgrade_plan", "name": "Upgrade Plan"},
            {"id": "reset_pwd", "name": "Reset Password"}
        ],
        "utterances": [
            {"text": "I want to cancel my subscription", "label": "cancel_sub"},
            {"text": "Please terminate my account", "label": "cancel_sub"},
            {"text": "How do I upgrade my plan", "label": "upgrade_plan"},
            {"text": "I need a higher tier", "label": "upgrade_plan"},
            {"text": "Reset my password", "label": "reset_pwd"},
            {"text": "I forgot my login details", "label": "reset_pwd"}
        ]
    }))
    .expect("the guide's job")
}

fn data_of(spec: &SkillTrainingJobSpec) -> DataOutcome {
    let dataset = spec
        .dataset(&BTreeMap::<String, BTreeMap<String, String>>::new())
        .expect("inline data");
    let validated = validate(dataset, &spec.validation_rules()).expect("valid data");
    let digest = DatasetDigest::of(validated.dataset(), validated.language());
    DataOutcome::Valid {
        summary: format!("6 utterances, 3 labels, language en, digest {digest}"),
        label_count: 3,
        report: validated.report().clone(),
        digest,
        validated: None,
    }
}

fn remote(state: JobState, progress: u8) -> JobStatus {
    serde_json::from_value(serde_json::json!({
        "jobId": "job-1", "status": state, "progress": progress, "stage": "epoch 3/50",
        "computeUnitsAllocated": 4.0, "computeUnitsUsed": 1.5,
        "createdAt": "2026-12-02T08:00:00Z", "startedAt": "2026-12-02T08:00:05Z",
        "completedAt": if state == JobState::Completed { Some("2026-12-02T08:05:00Z") } else { None },
        "failureReason": if state == JobState::Failed { Some("out of memory") } else { None },
    }))
    .expect("a job status")
}

fn evaluation() -> Arc<EvaluationResponse> {
    let label = |id: &str| EvaluationLabel {
        id: id.into(),
        name: id.into(),
    };
    Arc::new(EvaluationResponse {
        labels: vec![
            label("cancel_sub"),
            label("upgrade_plan"),
            label("reset_pwd"),
        ],
        actuals: vec![
            "cancel_sub".into(),
            "upgrade_plan".into(),
            "reset_pwd".into(),
        ],
        predictions: vec![
            "cancel_sub".into(),
            "upgrade_plan".into(),
            "cancel_sub".into(),
        ],
        scores: vec![0.9, 0.8, 0.6],
        precision: None,
        recall: None,
        confusion_matrix: None,
        training_duration_seconds: 42.0,
    })
}

fn export(expires_in: i64, now: Timestamp) -> ExportResponse {
    ExportResponse {
        artifacts: ArtifactUrls {
            model_weights_url: "https://files.example/w?signature=s1".into(),
            config_url: "https://files.example/c?signature=s2".into(),
        },
        expires_at: Timestamp::from_second(now.as_second() + expires_in).unwrap(),
    }
}

fn rejected(status: u16) -> CxoneError {
    CxoneError::Rejected {
        call: Call::Status,
        status,
        code: "x".into(),
        message: "no".into(),
        details: vec!["utterances: empty".into()],
    }
}

fn unavailable() -> CxoneError {
    CxoneError::Retryable {
        call: Call::Status,
        kind: Transient::Server(503),
        message: "busy".into(),
    }
}

fn timed_out() -> CxoneError {
    CxoneError::Retryable {
        call: Call::Status,
        kind: Transient::Timeout,
        message: "no answer".into(),
    }
}

fn rate_limited(secs: u64) -> CxoneError {
    CxoneError::RateLimited {
        call: Call::Status,
        retry_after: Duration::from_secs(secs),
    }
}

fn auth() -> CxoneError {
    CxoneError::Auth {
        call: Call::Token,
        problem: AuthProblem::InvalidClient,
        message: "bad client".into(),
    }
}

impl Job {
    fn new() -> Self {
        Self {
            spec: guide_spec(),
            status: SkillTrainingJobStatus::default(),
            memory: JobMemory::default(),
            data_valid: true,
            data_recorded: false,
            endpoint: Ok(RunTarget {
                base_url: BASE.into(),
                token_url: format!("{BASE}oauth/token"),
                secret: "cxone-credentials".into(),
            }),
            credentials: Ok(()),
            registry: None,
            generation: 1,
            now: Timestamp::from_second(1_800_000_000).unwrap(),
            policy: Policy::default(),
        }
    }

    fn decide(&self, obs: Observation) -> Step {
        let data = if self.data_recorded {
            DataOutcome::Unchanged {
                digest: self.status.dataset_digest.clone().unwrap_or_default(),
            }
        } else if self.data_valid {
            data_of(&self.spec)
        } else {
            DataOutcome::Invalid {
                problems: vec!["spec.utterances: class balance 6:1 is over 3:1".into()],
            }
        };
        let view = View {
            namespace: "team-a",
            name: "billing-support",
            uid: UID,
            generation: self.generation,
            spec: &self.spec,
            status: &self.status,
            data: &data,
            data_source_key: Some("v1:k".into()),
            endpoint: self.endpoint.clone(),
            credentials: self.credentials.clone(),
            registry: self.registry.clone(),
            now: self.now,
            jitter: 0.5,
        };
        decide(&view, &self.memory, obs, &self.policy)
    }

    fn decide_cleanup(&self, obs: Observation) -> Step {
        let data = DataOutcome::NotRead;
        let view = View {
            namespace: "team-a",
            name: "billing-support",
            uid: UID,
            generation: self.generation,
            spec: &self.spec,
            status: &self.status,
            data: &data,
            data_source_key: None,
            endpoint: self.endpoint.clone(),
            credentials: Ok(()),
            registry: None,
            now: self.now,
            jitter: 0.5,
        };
        decide_cleanup(&view, &self.memory, obs, &self.policy)
    }

    /// The job after `step` was carried out (status written, memory kept).
    fn after(&self, step: &Step) -> Self {
        Self {
            status: step.status.clone(),
            memory: step.memory.clone(),
            ..self.clone()
        }
    }

    fn later(mut self, secs: i64) -> Self {
        self.now = Timestamp::from_second(self.now.as_second() + secs).unwrap();
        self
    }

    /// The marker is written; the POST is next.
    fn submitting(&self) -> Self {
        self.after(&self.decide(Observation::Start))
    }

    /// CXone accepted the job.
    fn submitted(&self) -> Self {
        let j = self.submitting();
        j.after(&j.decide(Observation::Submitted(Ok(SubmitResponse {
            job_id: "job-1".into(),
            status: JobState::Queued,
        }))))
    }

    fn training(&self) -> Self {
        let j = self.submitted();
        j.after(&j.decide(Observation::Polled(Ok(remote(JobState::Training, 40)))))
    }

    fn completed(&self) -> Self {
        let j = self.training();
        j.after(&j.decide(Observation::Polled(Ok(remote(JobState::Completed, 100)))))
    }

    fn evaluated(&self) -> Self {
        let j = self.completed();
        j.after(&j.decide(Observation::Evaluated(Ok(evaluation()))))
    }

    fn exported(&self) -> Self {
        let j = self.evaluated();
        j.after(&j.decide(Observation::Exported(Ok(export(3600, j.now)))))
    }

    fn succeeded(&self) -> Self {
        let j = self.exported();
        j.after(&j.decide(Observation::Written(Ok(()))))
    }

    fn with_memory_cleared(mut self) -> Self {
        self.memory = JobMemory::default();
        self
    }

    fn with_spec(mut self, f: impl FnOnce(&mut SkillTrainingJobSpec)) -> Self {
        f(&mut self.spec);
        self.generation += 1;
        self
    }
}

fn phase(step: &Step) -> Option<Phase> {
    step.status.phase
}

fn condition(step: &Step, t: Cond) -> (String, String) {
    status_fields::condition(&step.status, t)
        .map(|c| (c.status.clone(), c.reason.clone()))
        .unwrap_or_default()
}

fn reasons(step: &Step) -> Vec<Reason> {
    step.events.iter().map(|e| e.reason).collect()
}

fn is_submit(step: &Step) -> Option<String> {
    match &step.effect {
        Some(Effect::Submit { key, .. }) => Some(key.clone()),
        _ => None,
    }
}

// ---- starting a run ------------------------------------------------------------------------

#[test]
fn a_valid_job_records_its_submission_before_it_is_sent() {
    let step = Job::new().decide(Observation::Start);
    assert_eq!(phase(&step), Some(Phase::Submitting));
    assert!(
        step.conditional,
        "the marker is written on a resourceVersion precondition"
    );
    let submission = step.status.submission.clone().unwrap();
    assert_eq!(submission.run, 1);
    assert_eq!(submission.base_url.as_deref(), Some(BASE));
    assert_eq!(
        submission.credentials_secret.as_deref(),
        Some("cxone-credentials")
    );
    assert_eq!(is_submit(&step), Some(submission.idempotency_key));
    assert_eq!(condition(&step, Cond::Validated).0, "True");
}

#[test]
fn the_same_snapshot_decided_twice_submits_with_one_key() {
    // A stale cache or a second replica sees the status before the marker: same key, so CXone
    // answers with the job it already created.
    let job = Job::new();
    let first = job.decide(Observation::Start);
    let again = job.later(30).decide(Observation::Start);
    assert_eq!(is_submit(&first), is_submit(&again));
    assert!(is_submit(&first).is_some());
}

#[test]
fn a_later_run_of_the_same_data_gets_its_own_key() {
    let failed = Job::new().submitted();
    let failed =
        failed.after(&failed.decide(Observation::Polled(Ok(remote(JobState::Failed, 10)))));
    let failed = failed.after(&failed.decide(Observation::Written(Ok(()))));
    assert_eq!(failed.status.phase, Some(Phase::Failed));
    // Suspend and resume do not retrain; a spec change back and forth does (new run number).
    let changed = failed.with_spec(|s| s.skill_id = "skill-other".into());
    let step = changed.decide(Observation::Start);
    let key2 = is_submit(&step).unwrap();
    assert_eq!(step.status.submission.as_ref().unwrap().run, 2);
    assert_ne!(
        Some(key2),
        is_submit(&Job::new().decide(Observation::Start))
    );
}

#[test]
fn invalid_data_is_reported_once_and_nothing_is_submitted() {
    let mut job = Job::new();
    job.data_valid = false;
    let step = job.decide(Observation::Start);
    assert_eq!(phase(&step), Some(Phase::Invalid));
    assert_eq!(step.effect, None);
    assert_eq!(step.next, Next::AwaitChange);
    assert_eq!(
        condition(&step, Cond::Validated),
        ("False".into(), "ValidationFailed".into())
    );
    assert_eq!(reasons(&step), vec![Reason::InvalidSpec]);
    let again = job.after(&step).decide(Observation::Start);
    assert!(again.events.is_empty(), "the same problem is not news");
}

#[test]
fn names_that_would_change_an_api_path_make_the_job_invalid() {
    let job =
        Job::new().with_spec(|s| s.connection.credentials_secret_ref.name = "x?watch=true".into());
    let step = job.decide(Observation::Start);
    assert_eq!(phase(&step), Some(Phase::Invalid));
    assert_eq!(condition(&step, Cond::Validated).1, "InvalidReference");
}

#[test]
fn an_endpoint_outside_the_allowlist_makes_the_job_invalid() {
    let mut job = Job::new();
    job.endpoint = Err("spec.connection.baseUrl https://evil.example/ is not allowed".into());
    let step = job.decide(Observation::Start);
    assert_eq!(condition(&step, Cond::Validated).1, "EndpointNotAllowed");
    assert_eq!(step.effect, None);
}

#[test]
fn a_suspended_job_waits_without_submitting() {
    let job = Job::new().with_spec(|s| s.suspend = Some(true));
    let step = job.decide(Observation::Start);
    assert_eq!(phase(&step), Some(Phase::Pending));
    assert_eq!(condition(&step, Cond::Ready).1, "Suspended");
    assert_eq!(step.effect, None);
}

#[test]
fn a_missing_secret_keeps_the_job_pending_and_says_so_once() {
    let mut job = Job::new();
    job.credentials = Err("Secret \"cxone-credentials\" does not exist".into());
    let step = job.decide(Observation::Start);
    assert_eq!(phase(&step), Some(Phase::Pending));
    assert_eq!(condition(&step, Cond::Ready).1, "CredentialsError");
    assert_eq!(
        step.status.submission, None,
        "nothing recorded without credentials"
    );
    assert_eq!(reasons(&step), vec![Reason::CredentialsError]);
    assert!(matches!(step.next, Next::Requeue(_)));
    let again = job.after(&step).decide(Observation::Start);
    assert!(again.events.is_empty());
}

// ---- the submission ------------------------------------------------------------------------

#[test]
fn an_accepted_submission_records_the_job_and_polls_after_two_seconds() {
    let job = Job::new().submitting();
    let step = job.decide(Observation::Submitted(Ok(SubmitResponse {
        job_id: "job-1".into(),
        status: JobState::Queued,
    })));
    assert_eq!(step.status.job_id.as_deref(), Some("job-1"));
    assert_eq!(phase(&step), Some(Phase::Queued));
    assert_eq!(step.next, Next::Requeue(Duration::from_secs(2)));
    assert!(step.drop_dataset);
    assert_eq!(reasons(&step), vec![Reason::Submitted]);
}

#[test]
fn a_submission_whose_answer_was_lost_is_sent_again_with_the_same_key() {
    let job = Job::new().submitting();
    let key = job.status.submission.clone().unwrap().idempotency_key;
    let step = job.decide(Observation::Submitted(Err(unavailable())));
    assert!(matches!(step.next, Next::Requeue(_)));
    let retry = job.after(&step).decide(Observation::Start);
    assert_eq!(is_submit(&retry), Some(key.clone()));
    // A restart has no memory: the same.
    let restarted = job.with_memory_cleared().decide(Observation::Start);
    assert_eq!(is_submit(&restarted), Some(key));
}

#[test]
fn a_rejected_submission_ends_the_run_with_an_audit_record() {
    let job = Job::new().submitting();
    let step = job.decide(Observation::Submitted(Err(rejected(400))));
    assert!(matches!(step.effect, Some(Effect::WriteReport { .. })));
    let done = job.after(&step).decide(Observation::Written(Ok(())));
    assert_eq!(phase(&done), Some(Phase::Failed));
    assert_eq!(condition(&done, Cond::Submitted).1, "SubmissionRejected");
    assert!(done.status.audit.is_some());
    assert_eq!(done.next, Next::AwaitChange);
}

// ---- tracking ------------------------------------------------------------------------------

#[test]
fn a_running_job_is_polled_on_the_schedule_and_progress_moves_with_phases() {
    let job = Job::new().submitted();
    let poll = job.decide(Observation::Start);
    assert!(matches!(poll.effect, Some(Effect::Poll { .. })));
    let step = job.decide(Observation::Polled(Ok(remote(JobState::Training, 40))));
    assert_eq!(phase(&step), Some(Phase::Training));
    assert_eq!(step.status.progress, Some(40));
    assert_eq!(step.next, Next::Requeue(Duration::from_secs(3)));
    let same_phase = job
        .after(&step)
        .decide(Observation::Polled(Ok(remote(JobState::Training, 60))));
    assert_eq!(
        same_phase.status,
        job.after(&step).status,
        "nothing visible changed: no write"
    );
    assert_eq!(same_phase.next, Next::Requeue(Duration::from_secs_f64(4.5)));
}

#[test]
fn remote_text_is_clipped_before_status() {
    let job = Job::new().submitted();
    let mut r = remote(JobState::Training, 10);
    r.stage = "x".repeat(1 << 20);
    let step = job.decide(Observation::Polled(Ok(r)));
    assert!(step.status.stage.unwrap().chars().count() <= status_fields::MAX_STAGE_CHARS + 1);
    assert!(step.status.message.unwrap().len() < 1000);
}

#[test]
fn a_completed_job_is_evaluated_exported_recorded_then_succeeds() {
    let job = Job::new().training();
    let step = job.decide(Observation::Polled(Ok(remote(JobState::Completed, 100))));
    assert!(matches!(step.effect, Some(Effect::FetchEvaluation { .. })));
    let job = job.after(&step);
    let step = job.decide(Observation::Evaluated(Ok(evaluation())));
    assert!(matches!(step.effect, Some(Effect::Export { .. })));
    let job = job.after(&step);
    let step = job.decide(Observation::Exported(Ok(export(3600, job.now))));
    let Some(Effect::WriteReport { data, .. }) = &step.effect else {
        panic!("the audit record is written first: {:?}", step.effect);
    };
    assert!(
        !data["audit.json"].contains("signature="),
        "no signed URL in the record"
    );
    assert_eq!(step.status, job.status, "status waits for the record");
    let job = job.after(&step);
    let done = job.decide(Observation::Written(Ok(())));
    assert_eq!(phase(&done), Some(Phase::Succeeded));
    assert_eq!(done.status.progress, Some(100));
    assert_eq!(
        condition(&done, Cond::Ready),
        ("True".into(), "ArtifactsAvailable".into())
    );
    let eval = done.status.evaluation.clone().unwrap();
    assert_eq!(eval.examples, 3);
    assert_eq!(
        eval.server_metrics_consistent, None,
        "no server summary: unknown"
    );
    assert_eq!(done.status.history.len(), 1);
    assert_eq!(reasons(&done), vec![Reason::Succeeded]);
    // Refreshed at 3600 - 300 s.
    assert_eq!(done.next, Next::Requeue(Duration::from_secs(3300)));
}

#[test]
fn failed_and_cancelled_remote_jobs_end_the_run() {
    for (state, end, reason) in [
        (JobState::Failed, Phase::Failed, "TrainingFailed"),
        (JobState::Cancelled, Phase::Cancelled, "Cancelled"),
    ] {
        let job = Job::new().training();
        let step = job.decide(Observation::Polled(Ok(remote(state, 50))));
        let done = job.after(&step).decide(Observation::Written(Ok(())));
        assert_eq!(phase(&done), Some(end));
        assert_eq!(condition(&done, Cond::Succeeded).1, reason);
        if state == JobState::Failed {
            assert!(done.status.message.unwrap().contains("out of memory"));
        }
    }
}

#[test]
fn a_job_cxone_forgot_fails_as_not_found() {
    let job = Job::new().training();
    let step = job.decide(Observation::Polled(Err(rejected(404))));
    let done = job.after(&step).decide(Observation::Written(Ok(())));
    assert_eq!(condition(&done, Cond::Succeeded).1, "JobNotFound");
}

#[test]
fn results_cxone_no_longer_has_end_the_run_instead_of_retrying_forever() {
    for status in [404, 410] {
        let job = Job::new().completed();
        let step = job.decide(Observation::Evaluated(Err(rejected(status))));
        let done = job.after(&step).decide(Observation::Written(Ok(())));
        assert_eq!(condition(&done, Cond::Succeeded).1, "ResultsUnavailable");
        let job = Job::new().evaluated();
        let step = job.decide(Observation::Exported(Err(rejected(status))));
        let done = job.after(&step).decide(Observation::Written(Ok(())));
        assert_eq!(condition(&done, Cond::Succeeded).1, "ResultsUnavailable");
    }
}

#[test]
fn transient_errors_back_off_and_show_in_ready_after_three_attempts() {
    let mut job = Job::new().training();
    let mut waits = Vec::new();
    for attempt in 0..4 {
        let step = job.decide(Observation::Polled(Err(unavailable())));
        let Next::Requeue(wait) = step.next else {
            panic!()
        };
        waits.push(wait);
        let shown = condition(&step, Cond::Ready).1 == "CxoneUnavailable";
        assert_eq!(shown, attempt >= 3, "attempt {attempt}");
        assert_eq!(
            step.events.len(),
            usize::from(attempt == 0),
            "one Warning for a run of errors"
        );
        job = job.after(&step);
    }
    assert!(waits.windows(2).all(|w| w[1] > w[0]), "{waits:?}");
    let recovered = job.decide(Observation::Polled(Ok(remote(JobState::Training, 50))));
    assert_eq!(recovered.memory.error_attempt, 0);
}

#[test]
fn timeouts_are_transient_like_server_errors() {
    let step = Job::new()
        .training()
        .decide(Observation::Polled(Err(timed_out())));
    assert!(matches!(step.next, Next::Requeue(_)));
    assert_eq!(reasons(&step), vec![Reason::CxoneUnavailable]);
}

#[test]
fn rate_limits_wait_for_retry_after() {
    let step = Job::new()
        .training()
        .decide(Observation::Polled(Err(rate_limited(7))));
    let Next::Requeue(wait) = step.next else {
        panic!()
    };
    assert!(
        wait >= Duration::from_secs(7) && wait <= Duration::from_secs(11),
        "{wait:?}"
    );
    assert_eq!(reasons(&step), vec![Reason::RateLimited]);
}

#[test]
fn rejected_credentials_show_in_ready_at_once() {
    let step = Job::new()
        .training()
        .decide(Observation::Polled(Err(auth())));
    assert_eq!(condition(&step, Cond::Ready).1, "CredentialsError");
    let Next::Requeue(wait) = step.next else {
        panic!()
    };
    assert!(wait >= Duration::from_secs(10));
}

#[test]
fn no_rate_limit_slot_changes_nothing_and_comes_back_then() {
    let job = Job::new().training();
    let step = job.decide(Observation::NoSlot(Duration::from_millis(250)));
    assert_eq!(step.status, job.status);
    assert_eq!(step.next, Next::Requeue(Duration::from_millis(250)));
}

#[test]
fn a_secret_deleted_mid_run_is_a_credentials_problem_not_a_new_run() {
    let job = Job::new().training();
    let step = job.decide(Observation::CannotCall(
        "Secret \"cxone-credentials\" does not exist".into(),
    ));
    assert_eq!(phase(&step), Some(Phase::Training));
    assert_eq!(condition(&step, Cond::Ready).1, "CredentialsError");
    assert_eq!(step.status.job_id.as_deref(), Some("job-1"));
}

#[test]
fn an_analysis_that_fails_ends_the_run_as_evaluation_invalid() {
    let job = Job::new().completed();
    let mut bad = (*evaluation()).clone();
    bad.predictions.pop();
    let step = job.decide(Observation::Evaluated(Ok(Arc::new(bad))));
    let done = job.after(&step).decide(Observation::Written(Ok(())));
    assert_eq!(condition(&done, Cond::Succeeded).1, "EvaluationInvalid");
}

// ---- spec changes, deadline, refresh ------------------------------------------------------

#[test]
fn a_spec_change_mid_training_cancels_where_the_run_was_submitted_then_starts_anew() {
    let job = Job::new().training();
    let moved = job.with_spec(|s| {
        s.connection.region = Some("eu1".into());
        s.connection.credentials_secret_ref.name = "eu-credentials".into();
    });
    let mut moved = moved;
    moved.endpoint = Ok(RunTarget {
        base_url: "https://api.eu1.cxone.com/".into(),
        token_url: "https://api.eu1.cxone.com/oauth/token".into(),
        secret: "eu-credentials".into(),
    });
    let step = moved.decide(Observation::Start);
    let Some(Effect::Cancel {
        target,
        purpose,
        job_id,
    }) = &step.effect
    else {
        panic!("{:?}", step.effect);
    };
    assert_eq!(
        (job_id.as_str(), *purpose),
        ("job-1", CancelPurpose::Supersede)
    );
    assert_eq!(
        target.base_url, BASE,
        "the old run's endpoint, not the new one"
    );
    assert_eq!(target.secret, "cxone-credentials", "the old run's Secret");
    let next = moved.after(&step).decide(Observation::Cancelled {
        job_id: "job-1".into(),
        purpose: CancelPurpose::Supersede,
        result: Ok(CancelOutcome::NotFound),
    });
    assert_eq!(phase(&next), Some(Phase::Submitting));
    assert_eq!(reasons(&next)[0], Reason::Superseded);
    assert_eq!(next.status.history.last().unwrap().phase, Phase::Cancelled);
    let Some(Effect::Submit { target, .. }) = &next.effect else {
        panic!()
    };
    assert_eq!(target.secret, "eu-credentials");
    assert_eq!(next.status.submission.as_ref().unwrap().run, 2);
}

#[test]
fn a_superseded_cancel_that_is_rate_limited_waits_and_records_nothing() {
    let job = Job::new()
        .training()
        .with_spec(|s| s.skill_id = "skill-2".into());
    let step = job.decide(Observation::Cancelled {
        job_id: "job-1".into(),
        purpose: CancelPurpose::Supersede,
        result: Err(rate_limited(5)),
    });
    assert_eq!(step.status, job.status);
    assert_eq!(step.next, Next::Requeue(Duration::from_secs(5)));
}

#[test]
fn operational_spec_changes_do_not_retrain() {
    let job = Job::new().training().with_spec(|s| {
        s.deletion_policy = Some(DeletionPolicy::Orphan);
        s.suspend = Some(true);
    });
    let step = job.decide(Observation::Start);
    assert!(
        matches!(step.effect, Some(Effect::Poll { .. })),
        "{:?}",
        step.effect
    );
}

#[test]
fn an_invalid_spec_mid_training_cancels_the_run_first() {
    let mut job = Job::new().training();
    job.data_valid = false;
    let step = job.decide(Observation::Start);
    assert!(matches!(
        step.effect,
        Some(Effect::Cancel {
            purpose: CancelPurpose::Invalidate,
            ..
        })
    ));
    let done = job.after(&step).decide(Observation::Cancelled {
        job_id: "job-1".into(),
        purpose: CancelPurpose::Invalidate,
        result: Ok(CancelOutcome::AlreadyTerminal),
    });
    assert_eq!(phase(&done), Some(Phase::Invalid));
    assert_eq!(done.status.job_id, None);
}

#[test]
fn the_active_deadline_cancels_and_fails_the_run() {
    let job = Job::new()
        .with_spec(|s| {
            s.polling = Some(
                serde_json::from_value(serde_json::json!({"activeDeadlineSeconds": 60})).unwrap(),
            )
        })
        .training()
        .later(61);
    let step = job.decide(Observation::Start);
    assert!(matches!(
        step.effect,
        Some(Effect::Cancel {
            purpose: CancelPurpose::Deadline,
            ..
        })
    ));
    let step = job.after(&step).decide(Observation::Cancelled {
        job_id: "job-1".into(),
        purpose: CancelPurpose::Deadline,
        result: Ok(CancelOutcome::NotFound),
    });
    let done = job.after(&step).decide(Observation::Written(Ok(())));
    assert_eq!(condition(&done, Cond::Succeeded).1, "DeadlineExceeded");
}

#[test]
fn artifact_urls_are_refreshed_before_they_expire_and_never_in_a_storm() {
    let job = Job::new().succeeded();
    assert!(
        job.decide(Observation::Start).effect.is_none(),
        "not due yet"
    );
    let due = job.clone().later(3400);
    let step = due.decide(Observation::Start);
    assert!(matches!(step.effect, Some(Effect::Export { .. })));
    // CXone hands out URLs that are already expired: no export every second.
    let step = due.decide(Observation::Exported(Ok(export(-10, due.now))));
    assert_eq!(step.next, Next::Requeue(schedule::REFRESH_FLOOR));
    assert_eq!(reasons(&step), vec![Reason::ArtifactsRefreshed]);
}

#[test]
fn artifacts_cxone_no_longer_has_stop_the_refreshing() {
    let due = Job::new().succeeded().later(3400);
    let step = due.decide(Observation::Exported(Err(rejected(410))));
    assert_eq!(condition(&step, Cond::Ready).1, "ArtifactsUnavailable");
    assert_eq!(step.next, Next::AwaitChange);
    assert_eq!(phase(&step), Some(Phase::Succeeded));
}

#[test]
fn artifact_urls_go_to_the_jobs_secret_after_the_record() {
    let mut job = Job::new().with_spec(|s| {
        s.artifacts =
            Some(serde_json::from_value(serde_json::json!({"secretName": "urls"})).unwrap())
    });
    job.policy.artifact_secrets = true;
    let job = job.exported();
    let step = job.decide(Observation::Written(Ok(())));
    assert!(matches!(
        step.effect,
        Some(Effect::WriteArtifactSecret { .. })
    ));
    let done = job.after(&step).decide(Observation::Written(Ok(())));
    let artifacts = done.status.artifacts.unwrap();
    assert_eq!(artifacts.secret_name.as_deref(), Some("urls"));
    assert_eq!(artifacts.model_weights_url, None, "no signed URL in status");
}

#[test]
fn an_object_the_job_does_not_own_is_reported_and_retried_with_backoff() {
    let job = Job::new().exported();
    let step = job.decide(Observation::Written(Err(
        "Secret \"app-config\" exists and was not created by this job".into(),
    )));
    assert_eq!(condition(&step, Cond::Ready).1, "ObjectNotOwned");
    assert_eq!(reasons(&step), vec![Reason::ObjectNotOwned]);
    assert!(matches!(step.next, Next::Requeue(_)));
    assert_eq!(step.memory.recording_end, None);
}

// ---- deletion ------------------------------------------------------------------------------

#[test]
fn deleting_a_training_job_cancels_it_at_its_own_endpoint() {
    let job = Job::new().training();
    let step = job.decide_cleanup(Observation::Start);
    let Some(Effect::Cancel {
        target, purpose, ..
    }) = &step.effect
    else {
        panic!()
    };
    assert_eq!(
        (target.base_url.as_str(), *purpose),
        (BASE, CancelPurpose::Delete)
    );
    let done = job.decide_cleanup(Observation::Cancelled {
        job_id: "job-1".into(),
        purpose: CancelPurpose::Delete,
        result: Ok(CancelOutcome::Cancelled(Box::new(remote(
            JobState::Cancelled,
            40,
        )))),
    });
    assert_eq!(done.next, Next::AwaitChange);
    assert_eq!(reasons(&done), vec![Reason::Cancelled]);
}

#[test]
fn deleting_waits_for_rate_limits_and_retries_errors_then_gives_up() {
    let job = Job::new().training();
    let limited = job.decide_cleanup(Observation::Cancelled {
        job_id: "job-1".into(),
        purpose: CancelPurpose::Delete,
        result: Err(rate_limited(3)),
    });
    assert!(matches!(limited.next, Next::Requeue(_)));
    assert_eq!(
        limited.memory.cleanup_attempt, 0,
        "a 429 is no failed attempt"
    );
    let mut j = job.clone();
    for _ in 0..9 {
        let step = j.decide_cleanup(Observation::Cancelled {
            job_id: "job-1".into(),
            purpose: CancelPurpose::Delete,
            result: Err(unavailable()),
        });
        assert!(matches!(step.next, Next::Requeue(_)));
        j = j.after(&step);
    }
    let last = j.decide_cleanup(Observation::Cancelled {
        job_id: "job-1".into(),
        purpose: CancelPurpose::Delete,
        result: Err(unavailable()),
    });
    assert_eq!(last.next, Next::AwaitChange);
    assert_eq!(reasons(&last), vec![Reason::CancelFailed]);
    let no_slot = job.decide_cleanup(Observation::NoSlot(Duration::from_millis(100)));
    assert_eq!(no_slot.next, Next::Requeue(Duration::from_millis(100)));
}

#[test]
fn deleting_with_orphan_policy_or_nothing_in_flight_is_immediate() {
    let orphan = Job::new()
        .training()
        .with_spec(|s| s.deletion_policy = Some(DeletionPolicy::Orphan));
    assert_eq!(orphan.decide_cleanup(Observation::Start).effect, None);
    assert_eq!(
        orphan.decide_cleanup(Observation::Start).next,
        Next::AwaitChange
    );
    for job in [Job::new(), Job::new().succeeded()] {
        let step = job.decide_cleanup(Observation::Start);
        assert_eq!((step.effect, step.next), (None, Next::AwaitChange));
    }
}

#[test]
fn deleting_without_credentials_gives_up_with_a_warning() {
    let job = Job::new().training();
    let step = job.decide_cleanup(Observation::CannotCall("Secret gone".into()));
    assert_eq!(step.next, Next::AwaitChange);
    assert_eq!(reasons(&step), vec![Reason::CancelFailed]);
}

// ---- a restart: memory cleared in every phase ------------------------------------------------

#[test]
fn with_memory_cleared_every_phase_makes_the_same_call_or_looks_again_never_submits_twice() {
    let phases: Vec<(&str, Job)> = vec![
        ("new", Job::new()),
        ("submitting", Job::new().submitting()),
        ("queued", Job::new().submitted()),
        ("training", Job::new().training()),
        ("completed", Job::new().completed()),
        ("evaluated", Job::new().evaluated()),
        ("exported", Job::new().exported()),
        ("succeeded", Job::new().succeeded()),
    ];
    for (name, job) in phases {
        let remembered = job.decide(Observation::Start);
        let forgotten = job.clone().with_memory_cleared().decide(Observation::Start);
        match (&remembered.effect, &forgotten.effect) {
            (Some(Effect::Submit { key: a, .. }), Some(Effect::Submit { key: b, .. })) => {
                assert_eq!(a, b, "{name}: a resubmission reuses the recorded key");
                assert!(
                    job.status.submission.is_none() || job.status.job_id.is_none(),
                    "{name}: a submitted run is never submitted again"
                );
            }
            (a, b) => {
                assert!(is_submit(&forgotten).is_none(), "{name}: {b:?}");
                let safe = matches!(b, None | Some(Effect::Poll { .. }))
                    || std::mem::discriminant(a.as_ref().unwrap_or(&Effect::Poll {
                        job_id: String::new(),
                        target: job.endpoint.clone().unwrap(),
                    })) == std::mem::discriminant(b.as_ref().unwrap());
                assert!(safe, "{name}: {a:?} vs {b:?}");
            }
        }
        // Every later observation with empty memory is handled without a new run either.
        for obs in [
            Observation::Evaluated(Ok(evaluation())),
            Observation::Exported(Ok(export(3600, job.now))),
            Observation::Written(Ok(())),
        ] {
            let step = job.clone().with_memory_cleared().decide(obs);
            assert!(
                is_submit(&step).is_none() || job.status.job_id.is_none(),
                "{name}: {:?}",
                step.effect
            );
        }
    }
}

// ---- a submission whose answer was lost ------------------------------------------------------

#[test]
fn deleting_a_job_whose_submission_answer_was_lost_looks_the_key_up_then_cancels() {
    let job = Job::new().submitting();
    let key = job.status.submission.clone().unwrap().idempotency_key;
    let step = job.decide_cleanup(Observation::Start);
    let Some(Effect::Lookup { key: asked, .. }) = &step.effect else {
        panic!("{:?}", step.effect);
    };
    assert_eq!(asked, &key);
    let found = job.decide_cleanup(Observation::LookedUp {
        purpose: CancelPurpose::Delete,
        result: Ok(Some("job-9".into())),
    });
    let Some(Effect::Cancel { job_id, .. }) = &found.effect else {
        panic!()
    };
    assert_eq!(job_id, "job-9");
    // No rate-limit slot for the cancel: the next pass cancels without looking again.
    let next = job.after(&found).decide_cleanup(Observation::Start);
    assert!(
        matches!(&next.effect, Some(Effect::Cancel { job_id, .. }) if job_id == "job-9"),
        "{:?}",
        next.effect
    );
    let nothing = job.decide_cleanup(Observation::LookedUp {
        purpose: CancelPurpose::Delete,
        result: Ok(None),
    });
    assert_eq!((nothing.effect, nothing.next), (None, Next::AwaitChange));
}

#[test]
fn a_spec_change_while_the_submission_outcome_is_unknown_cancels_what_the_key_names() {
    let job = Job::new()
        .submitting()
        .with_spec(|s| s.skill_id = "skill-2".into());
    let step = job.decide(Observation::Start);
    assert!(matches!(
        step.effect,
        Some(Effect::Lookup {
            purpose: CancelPurpose::Supersede,
            ..
        })
    ));
    let found = job.decide(Observation::LookedUp {
        purpose: CancelPurpose::Supersede,
        result: Ok(Some("job-7".into())),
    });
    assert!(matches!(&found.effect, Some(Effect::Cancel { job_id, .. }) if job_id == "job-7"));
    let cancelled = job.after(&found).decide(Observation::Cancelled {
        job_id: "job-7".into(),
        purpose: CancelPurpose::Supersede,
        result: Ok(CancelOutcome::Cancelled(Box::new(remote(
            JobState::Cancelled,
            0,
        )))),
    });
    assert!(is_submit(&cancelled).is_some(), "then the new run starts");
    assert_eq!(
        cancelled.status.history.last().unwrap().job_id.as_deref(),
        Some("job-7")
    );
}

#[test]
fn an_invalid_spec_while_the_submission_outcome_is_unknown_looks_up_first() {
    let mut job = Job::new().submitting();
    job.data_valid = false;
    let step = job.decide(Observation::Start);
    assert!(matches!(
        step.effect,
        Some(Effect::Lookup {
            purpose: CancelPurpose::Invalidate,
            ..
        })
    ));
    let nothing = job.decide(Observation::LookedUp {
        purpose: CancelPurpose::Invalidate,
        result: Ok(None),
    });
    assert_eq!(phase(&nothing), Some(Phase::Invalid));
}

#[test]
fn a_key_already_in_use_is_this_runs_job_not_a_rejection() {
    let job = Job::new().submitting();
    let step = job.decide(Observation::Submitted(Err(CxoneError::KeyInUse {
        call: Call::Submit,
        job_id: "job-3".into(),
    })));
    assert_eq!(step.status.job_id.as_deref(), Some("job-3"));
    assert_eq!(phase(&step), Some(Phase::Queued));
}

#[test]
fn a_run_recorded_before_endpoints_were_kept_is_cancelled_at_the_specs_endpoint() {
    let mut job = Job::new().training();
    if let Some(s) = job.status.submission.as_mut() {
        (s.base_url, s.token_url, s.credentials_secret) = (None, None, None);
    }
    let step = job.decide_cleanup(Observation::Start);
    let Some(Effect::Cancel { target, .. }) = &step.effect else {
        panic!("{:?}", step.effect);
    };
    assert_eq!(
        (target.base_url.as_str(), target.secret.as_str()),
        (BASE, "cxone-credentials")
    );
}

// ---- every phase against every class of remote error ---------------------------------------

fn every_error() -> Vec<(&'static str, CxoneError)> {
    vec![
        ("5xx", unavailable()),
        ("timeout", timed_out()),
        ("429", rate_limited(4)),
        ("auth", auth()),
        (
            "malformed",
            CxoneError::Malformed {
                call: Call::Status,
                message: "not JSON".into(),
            },
        ),
        (
            "too large",
            CxoneError::TooLarge {
                call: Call::Evaluation,
                limit: 16 << 20,
            },
        ),
        ("400", rejected(400)),
        ("404", rejected(404)),
        ("410", rejected(410)),
    ]
}

/// The observation that carries `e` as the outcome of the effect a phase makes.
fn failing(effect: &Effect, e: CxoneError) -> Observation {
    match effect {
        Effect::Submit { .. } => Observation::Submitted(Err(e)),
        Effect::Poll { .. } => Observation::Polled(Err(e)),
        Effect::FetchEvaluation { .. } => Observation::Evaluated(Err(e)),
        Effect::Export { .. } => Observation::Exported(Err(e)),
        Effect::Cancel {
            purpose, job_id, ..
        } => Observation::Cancelled {
            job_id: job_id.clone(),
            purpose: *purpose,
            result: Err(e),
        },
        Effect::Lookup { purpose, .. } => Observation::LookedUp {
            purpose: *purpose,
            result: Err(e),
        },
        other => panic!("not a CXone call: {other:?}"),
    }
}

/// What a step does next, in one word.
#[derive(Debug, PartialEq)]
enum Then {
    /// Comes back later, nothing else (backoff, Retry-After).
    Wait,
    /// Ends the run: its audit record is written.
    End,
    /// The old run is over; the new one is submitted.
    NewRun,
    /// Nothing more to do until something changes.
    Stop,
}

fn then(step: &Step) -> Then {
    match (&step.effect, step.next) {
        (Some(Effect::WriteReport { .. }), _) => Then::End,
        (Some(Effect::Submit { .. }), _) => Then::NewRun,
        (None, Next::Requeue(w)) if !w.is_zero() => Then::Wait,
        (None, Next::AwaitChange) => Then::Stop,
        other => panic!("unexpected step {other:?}"),
    }
}

#[test]
fn every_phase_answers_every_remote_error_as_the_error_class_demands() {
    use Then::*;
    let deadline = Job::new().with_spec(|s| {
        s.polling =
            Some(serde_json::from_value(serde_json::json!({"activeDeadlineSeconds": 60})).unwrap())
    });
    let changed = |s: &mut SkillTrainingJobSpec| s.skill_id = "skill-2".into();
    // Per phase, the outcome for: 5xx, timeout, 429, auth, malformed, too large, 400, 404, 410.
    let table: Vec<(&str, Job, [Then; 9])> = vec![
        (
            "submit",
            Job::new().submitting(),
            [Wait, Wait, Wait, Wait, Wait, Wait, End, Wait, End],
        ),
        (
            "poll queued",
            Job::new().submitted(),
            [Wait, Wait, Wait, Wait, Wait, Wait, Wait, End, Wait],
        ),
        (
            "poll training",
            Job::new().training(),
            [Wait, Wait, Wait, Wait, Wait, Wait, Wait, End, Wait],
        ),
        (
            "evaluation",
            Job::new().completed(),
            [Wait, Wait, Wait, Wait, Wait, Wait, Wait, End, End],
        ),
        (
            "export",
            Job::new().evaluated(),
            [Wait, Wait, Wait, Wait, Wait, Wait, Wait, End, End],
        ),
        (
            "refresh",
            Job::new().succeeded().later(3400),
            [Wait, Wait, Wait, Wait, Wait, Wait, Wait, Stop, Stop],
        ),
        (
            "supersede",
            Job::new().training().with_spec(changed),
            [
                Wait, Wait, Wait, NewRun, NewRun, NewRun, NewRun, NewRun, NewRun,
            ],
        ),
        (
            "deadline",
            deadline.training().later(61),
            [Wait, Wait, Wait, End, End, End, End, End, End],
        ),
        (
            "lost answer",
            Job::new().submitting().with_spec(changed),
            [
                Wait, Wait, Wait, NewRun, NewRun, NewRun, NewRun, NewRun, NewRun,
            ],
        ),
    ];
    for (phase_name, job, expected) in table {
        let start = job.decide(Observation::Start);
        let effect = start
            .effect
            .clone()
            .unwrap_or_else(|| panic!("{phase_name}: no call"));
        let job = job.after(&start);
        for ((error_name, e), want) in every_error().into_iter().zip(expected) {
            let step = job.decide(failing(&effect, e));
            assert_eq!(then(&step), want, "{phase_name} × {error_name}");
            if want == Wait {
                assert_eq!(
                    step.status.submission, job.status.submission,
                    "{phase_name} × {error_name}"
                );
                assert_eq!(
                    step.status.job_id, job.status.job_id,
                    "{phase_name} × {error_name}"
                );
            }
            if let Some(Effect::Submit { key, .. }) = &step.effect {
                let old = job.status.submission.as_ref().map(|s| &s.idempotency_key);
                assert_ne!(
                    Some(key),
                    old,
                    "{phase_name} × {error_name}: a new run, a new key"
                );
            }
        }
    }
}

#[test]
fn every_phase_with_a_missing_secret_or_no_rate_limit_slot_waits_without_losing_the_run() {
    for (name, job) in [
        ("submitting", Job::new().submitting()),
        ("training", Job::new().training()),
        ("completed", Job::new().completed()),
        ("succeeded", Job::new().succeeded().later(3400)),
    ] {
        let no_secret = job.decide(Observation::CannotCall(
            "Secret \"c\" does not exist".into(),
        ));
        assert_eq!(no_secret.status.job_id, job.status.job_id, "{name}");
        assert_eq!(no_secret.status.submission, job.status.submission, "{name}");
        assert!(matches!(no_secret.next, Next::Requeue(_)), "{name}");
        assert_eq!(
            condition(&no_secret, Cond::Ready).1,
            "CredentialsError",
            "{name}"
        );
        let no_slot = job.decide(Observation::NoSlot(Duration::from_millis(300)));
        assert_eq!(no_slot.status, job.status, "{name}");
        assert_eq!(
            no_slot.next,
            Next::Requeue(Duration::from_millis(300)),
            "{name}"
        );
    }
}

#[test]
fn a_finished_run_needs_no_data_while_its_sources_are_unchanged() {
    let done = Job::new().succeeded();
    assert_eq!(done.status.data_source_key.as_deref(), Some("v1:k"));
    let mut restarted = done.with_memory_cleared();
    restarted.data_recorded = true;
    let step = restarted.decide(Observation::Start);
    assert_eq!(phase(&step), Some(Phase::Succeeded));
    assert_eq!(step.effect, None);
    assert!(!step.memory.read_data);
    assert_eq!(step.status, restarted.status, "nothing to write");
}

#[test]
fn a_recorded_digest_that_does_not_fit_the_spec_asks_for_the_data() {
    let done = Job::new().succeeded();
    let mut changed = done.with_spec(|s| s.skill_id = "skill-other".into());
    changed.data_recorded = true;
    let step = changed.decide(Observation::Start);
    assert_eq!(
        is_submit(&step),
        None,
        "no run starts from a recorded digest"
    );
    assert!(step.memory.read_data);
    assert!(matches!(step.next, Next::Requeue(_)));
    let mut read = changed.after(&step);
    read.data_recorded = false;
    let step = read.decide(Observation::Start);
    assert!(is_submit(&step).is_some());
    assert!(!step.memory.read_data);
}

mod registration;
