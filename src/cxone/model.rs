//! Wire models of the CXone AI training API (docs/cxone-api.md).
//!
//! The same types are used by the client (to send requests and decode responses) and by the
//! simulator (to decode requests and encode responses), so the two cannot drift apart.

use serde::{Deserialize, Serialize};

/// Scopes the operator asks for: everything the training flow needs, nothing more.
pub const TRAINING_SCOPES: &[&str] = &[
    "ai:skills:read",
    "ai:skills:write",
    "ai:training:read",
    "ai:training:write",
];

/// `POST /oauth/token` response (RFC 6749 §5.1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// One training utterance.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Utterance {
    pub text: String,
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

/// A label (intent) the skill can predict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelDef {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainingData {
    pub utterances: Vec<Utterance>,
    pub validation_split: f64,
    pub language: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hyperparameters {
    pub max_epochs: u32,
    pub early_stopping: bool,
    pub patience: u32,
}

impl Default for Hyperparameters {
    fn default() -> Self {
        Self {
            max_epochs: 50,
            early_stopping: true,
            patience: 5,
        }
    }
}

/// `POST /api/v2/ai/skills/training/jobs` body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrainingJobRequest {
    pub skill_id: String,
    pub training_data: TrainingData,
    pub labels: Vec<LabelDef>,
    pub hyperparameters: Hyperparameters,
}

/// State of a remote training job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    Queued,
    Provisioning,
    Training,
    Evaluating,
    Completed,
    Failed,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 7] = [
        JobState::Queued,
        JobState::Provisioning,
        JobState::Training,
        JobState::Evaluating,
        JobState::Completed,
        JobState::Failed,
        JobState::Cancelled,
    ];

    /// COMPLETED, FAILED and CANCELLED never change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::Cancelled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "QUEUED",
            JobState::Provisioning => "PROVISIONING",
            JobState::Training => "TRAINING",
            JobState::Evaluating => "EVALUATING",
            JobState::Completed => "COMPLETED",
            JobState::Failed => "FAILED",
            JobState::Cancelled => "CANCELLED",
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Response to a submission.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubmitResponse {
    pub job_id: String,
    pub status: JobState,
}

/// `GET …/jobs/{jobId}` (also returned by cancel).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    pub job_id: String,
    pub status: JobState,
    /// 0-100.
    pub progress: u8,
    #[serde(default)]
    pub stage: String,
    #[serde(default)]
    pub compute_units_allocated: f64,
    #[serde(default)]
    pub compute_units_used: f64,
    pub created_at: jiff::Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<jiff::Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<jiff::Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
}

/// A label as the evaluation endpoint describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvaluationLabel {
    pub id: String,
    #[serde(default)]
    pub name: String,
}

/// `GET …/jobs/{jobId}/evaluation`: per-example results on the validation split plus the
/// server's own summary metrics.
///
/// `predictions` and `actuals` are label ids; `scores[i]` is the confidence of `predictions[i]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationResponse {
    pub labels: Vec<EvaluationLabel>,
    pub actuals: Vec<String>,
    pub predictions: Vec<String>,
    #[serde(default)]
    pub scores: Vec<f64>,
    /// Server-reported macro precision.
    pub precision: f64,
    /// Server-reported macro recall.
    pub recall: f64,
    /// Server-reported confusion matrix, rows = actual, columns = predicted, in `labels` order.
    pub confusion_matrix: Vec<Vec<u64>>,
    #[serde(default)]
    pub training_duration_seconds: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactUrls {
    pub model_weights_url: String,
    pub config_url: String,
}

/// `GET …/jobs/{jobId}/artifacts/export`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportResponse {
    pub artifacts: ArtifactUrls,
    pub expires_at: jiff::Timestamp,
}

/// Error body returned by the API (and the simulator) with any 4xx/5xx.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiErrorBody {
    /// Short machine-readable code, e.g. `validation_failed`, `invalid_token`.
    #[serde(default)]
    pub error: String,
    /// Human-readable explanation.
    #[serde(default)]
    pub message: String,
    /// Individual problems (for validation failures: one per violation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

/// API paths, shared by client and simulator.
pub mod paths {
    pub const TOKEN: &str = "/oauth/token";
    pub const JOBS: &str = "/api/v2/ai/skills/training/jobs";

    pub fn job(job_id: &str) -> String {
        format!("{JOBS}/{job_id}")
    }
    pub fn evaluation(job_id: &str) -> String {
        format!("{JOBS}/{job_id}/evaluation")
    }
    pub fn export(job_id: &str) -> String {
        format!("{JOBS}/{job_id}/artifacts/export")
    }
    pub fn cancel(job_id: &str) -> String {
        format!("{JOBS}/{job_id}/cancel")
    }
}
