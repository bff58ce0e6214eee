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

mod cancel;
mod cleanup;
mod end_of_run;
mod promotion;
mod restart;
mod submit;
mod track;
mod trouble;
