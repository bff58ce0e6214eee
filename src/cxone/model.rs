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

/// `GET …/jobs/{jobId}/evaluation`: per-example results on the validation split plus, when the
/// server reports it, its own summary metrics.
///
/// `predictions` and `actuals` are label ids; `scores[i]` is the confidence of `predictions[i]`.
/// Only the per-example arrays are required: every metric is recomputed from them
/// ([`crate::evaluation::analyze`]), and the summary, when present, is only compared with the
/// recomputed values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationResponse {
    pub labels: Vec<EvaluationLabel>,
    pub actuals: Vec<String>,
    pub predictions: Vec<String>,
    #[serde(default)]
    pub scores: Vec<f64>,
    /// Server-reported macro precision, if reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<f64>,
    /// Server-reported macro recall, if reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recall: Option<f64>,
    /// Server-reported confusion matrix, rows = actual, columns = predicted, in `labels` order,
    /// if reported (an empty matrix counts as not reported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confusion_matrix: Option<Vec<Vec<u64>>>,
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
#[serde(rename_all = "camelCase")]
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
    /// (ext) With `idempotency_key_reused`: the job created under the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluation_with_the_server_summary() {
        let e: EvaluationResponse = serde_json::from_str(
            r#"{"labels": [{"id": "a", "name": "A"}, {"id": "b"}],
                "actuals": ["a", "b"], "predictions": ["a", "a"], "scores": [0.9, 0.6],
                "precision": 0.25, "recall": 0.5, "confusionMatrix": [[1, 0], [1, 0]],
                "trainingDurationSeconds": 4.5}"#,
        )
        .unwrap();
        assert_eq!(e.precision, Some(0.25));
        assert_eq!(e.recall, Some(0.5));
        assert_eq!(e.confusion_matrix, Some(vec![vec![1, 0], vec![1, 0]]));
        assert_eq!(e.labels[1].name, "");
        assert_eq!(e.training_duration_seconds, 4.5);
        // Written back the same way.
        let again: EvaluationResponse =
            serde_json::from_value(serde_json::to_value(&e).unwrap()).unwrap();
        assert_eq!(again, e);
    }

    #[test]
    fn evaluation_without_the_server_summary() {
        for summary in [
            "",
            r#", "precision": null, "recall": null, "confusionMatrix": null"#,
        ] {
            let json = format!(
                r#"{{"labels": [{{"id": "a"}}], "actuals": ["a"], "predictions": ["a"]{summary}}}"#
            );
            let e: EvaluationResponse = serde_json::from_str(&json).unwrap();
            assert_eq!((e.precision, e.recall), (None, None), "{json}");
            assert_eq!(e.confusion_matrix, None, "{json}");
            assert!(e.scores.is_empty());
            let out = serde_json::to_value(&e).unwrap();
            for field in ["precision", "recall", "confusionMatrix"] {
                assert!(out.get(field).is_none(), "{field} written although absent");
            }
        }
        // The per-example arrays stay required.
        for missing in ["labels", "actuals", "predictions"] {
            let mut v = serde_json::json!({"labels": [{"id": "a"}], "actuals": ["a"], "predictions": ["a"]});
            v.as_object_mut().unwrap().remove(missing);
            let err = serde_json::from_value::<EvaluationResponse>(v).unwrap_err();
            assert!(err.to_string().contains(missing), "{err}");
        }
        // A summary of the wrong type is still an error.
        assert!(
            serde_json::from_str::<EvaluationResponse>(
                r#"{"labels": [], "actuals": [], "predictions": [], "precision": "high"}"#
            )
            .is_err()
        );
    }
}
