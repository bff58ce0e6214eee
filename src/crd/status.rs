//! The observed state of a SkillTrainingJob: its lifecycle [`Phase`] and the status the
//! operator writes (conditions, submission, evaluation, artifacts, audit record, registrations,
//! history). Doc comments are the `kubectl explain` text. Imports the name patterns of
//! `crate::names`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::names::DNS_SUBDOMAIN_PATTERN;

/// Lifecycle phase of a SkillTrainingJob.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    /// Accepted, nothing submitted yet (also while suspended or waiting for credentials).
    Pending,
    /// The spec or its data failed validation; fix it to continue.
    Invalid,
    /// A submission is being sent to CXone.
    Submitting,
    /// CXone accepted the job and is queueing or provisioning it.
    Queued,
    /// CXone is training.
    Training,
    /// CXone is evaluating on the validation split.
    Evaluating,
    /// The evaluation is being analysed and artifacts exported.
    Exporting,
    /// The model is being registered in the registries of `spec.registry`.
    Registering,
    /// Trained, evaluated and exported.
    Succeeded,
    /// Training failed or CXone rejected the job.
    Failed,
    /// The CXone job was cancelled.
    Cancelled,
}

impl Phase {
    pub const ALL: [Phase; 11] = [
        Phase::Pending,
        Phase::Invalid,
        Phase::Submitting,
        Phase::Queued,
        Phase::Training,
        Phase::Evaluating,
        Phase::Exporting,
        Phase::Registering,
        Phase::Succeeded,
        Phase::Failed,
        Phase::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Invalid => "Invalid",
            Phase::Submitting => "Submitting",
            Phase::Queued => "Queued",
            Phase::Training => "Training",
            Phase::Evaluating => "Evaluating",
            Phase::Exporting => "Exporting",
            Phase::Registering => "Registering",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
            Phase::Cancelled => "Cancelled",
        }
    }

    /// Whether a run in this phase is over.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Phase::Succeeded | Phase::Failed | Phase::Cancelled | Phase::Invalid
        )
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Observed state of a SkillTrainingJob.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SkillTrainingJobStatus {
    /// Where the job is in its lifecycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Validated, Submitted, Succeeded and Ready, each with a reason and an actionable message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Human-readable summary of the current state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The submission of the current run, recorded before it is sent so a retry reuses its
    /// idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submission: Option<Submission>,
    /// Runs this object has started (never decreases); numbers the next run's idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs_started: Option<i64>,
    /// CXone training job id of the current run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// What the current data was read from (a hash of the generation and each source ConfigMap's
    /// resourceVersion): a finished job whose sources are unchanged is not read again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_source_key: Option<String>,
    /// SHA-256 of the dataset of the current run (`sha256:<hex>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_digest: Option<String>,
    /// Training progress reported by CXone, 0-100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<i32>,
    /// CXone's description of the current stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Compute units CXone allocated to the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_units_allocated: Option<String>,
    /// Compute units the job used so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_units_used: Option<String>,
    /// When CXone accepted the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<Time>,
    /// When CXone started training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the CXone job finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// Training time CXone reported, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_duration_seconds: Option<String>,
    /// Evaluation summary (the full report is in the ConfigMap named in `evaluation.reportConfigMap`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<EvaluationStatus>,
    /// Exported model artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<ArtifactsStatus>,
    /// Where the current run's model is registered (`spec.registry`), and whether it was
    /// promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistryStatus>,
    /// Where the governance audit record of the last finished run is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditStatus>,
    /// The last runs, newest last (at most 5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5))]
    pub history: Vec<RunHistory>,
}

/// Registration of the current run's model.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryStatus {
    /// The CXone job whose model this is.
    pub job_id: String,
    /// The OCI registration, once the manifest is pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci: Option<TargetRegistration>,
    /// The MLflow registration, once the model version exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlflow: Option<TargetRegistration>,
    /// Consecutive failed registration attempts (reset by success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_attempts: Option<i64>,
}

/// One registry's record of the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetRegistration {
    /// OCI: `registry/repository@sha256:…`; MLflow: `models:/<name>/<version>`.
    pub reference: String,
    /// OCI: the run's tag; MLflow: the version number.
    pub version: String,
    /// MLflow: the run id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// When the model was registered here.
    pub registered_at: Time,
    /// Whether the gate passed and the promotion (tag or alias) was set; unset until decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted: Option<bool>,
    /// The promotion tag or alias.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_as: Option<String>,
    /// When it was promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_at: Option<Time>,
    /// The champion the gate compared against in this registry, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub champion: Option<String>,
    /// The promotion gate's outcome: each check with its input and threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<String>,
    /// With `spec.registry.signing`: the key the model was signed with, as `sha256:` of its
    /// public key's PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
    /// With `spec.registry.signing`: OCI, the signature referrer's digest; MLflow, the path of
    /// `model.sig` among the model's files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// A submission of the current run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Submission {
    /// Sent as `Idempotency-Key`; derived from stored state only (the object's uid, the run's
    /// number and its fingerprint), so each run has its own key and every retry of the same run,
    /// by any replica and from any cached copy of the object, reuses it.
    pub idempotency_key: String,
    /// The run's number (1 for the first run of this object): `status.runsStarted` when the
    /// run started.
    #[serde(default)]
    pub run: i64,
    /// CXone base URL the run was submitted to; cancels go there even if the spec moved on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Token URL of that endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    /// Name of the credentials Secret the run was submitted with (same namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// The generation that started the run.
    pub generation: i64,
    /// The dataset being trained.
    pub dataset_digest: String,
    /// SHA-256 of what the run trains (dataset digest, skill, endpoint, hyperparameters,
    /// validation split). Spec changes that leave it alone (polling, suspend, deletionPolicy,
    /// artifacts) do not start a new run.
    pub fingerprint: String,
    /// When the submission was first attempted.
    pub requested_at: Time,
}

/// Evaluation summary; metrics are decimal strings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationStatus {
    /// Number of validation examples.
    pub examples: i64,
    /// Share of validation examples predicted correctly, 0-1 (decimal string, e.g. `0.8000`).
    pub accuracy: String,
    /// Precision averaged over labels with equal weight, 0-1 (decimal string).
    pub macro_precision: String,
    /// Recall averaged over labels with equal weight, 0-1 (decimal string).
    pub macro_recall: String,
    /// F1 averaged over labels with equal weight, 0-1 (decimal string).
    pub macro_f1: String,
    /// F1 averaged over labels weighted by their number of validation examples, 0-1 (decimal
    /// string).
    pub weighted_f1: String,
    /// Per-label metrics (omitted when there are more than 50 labels; the report ConfigMap has
    /// them all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_label: Vec<LabelEvaluation>,
    /// Label ids in confusion matrix order (present when there are at most 10 labels).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub confusion_matrix_labels: Vec<String>,
    /// Rows = actual, columns = predicted (present when there are at most 10 labels).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub confusion_matrix: Vec<Vec<i64>>,
    /// The recommended confidence threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommended_threshold: Option<ThresholdRecommendation>,
    /// Whether CXone's reported metrics agree with the recomputed ones; absent (unknown) when
    /// CXone reported no summary metrics to compare.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_metrics_consistent: Option<bool>,
    /// ConfigMap holding the full evaluation report and the audit record.
    #[schemars(length(min = 1, max = 253), pattern(DNS_SUBDOMAIN_PATTERN))]
    pub report_config_map: String,
}

/// Metrics of one label.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelEvaluation {
    /// Label id.
    pub label: String,
    /// Of the examples predicted as this label, the share that really has it, 0-1 (decimal
    /// string; 0 when nothing was predicted as it).
    pub precision: String,
    /// Of the examples that have this label, the share predicted as it, 0-1 (decimal string).
    pub recall: String,
    /// Harmonic mean of precision and recall, 0-1 (decimal string).
    pub f1: String,
    /// Number of validation examples that have this label.
    pub support: i64,
}

/// A recommended confidence threshold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThresholdRecommendation {
    /// Confidence threshold, 0-1 (decimal string): answer when the top score is at least this,
    /// otherwise abstain.
    pub threshold: String,
    /// Share of answered examples answered correctly at this threshold, 0-1 (decimal string).
    pub precision: String,
    /// Harmonic mean of the precision and of the share of all examples answered correctly, 0-1
    /// (decimal string).
    pub f1: String,
    /// Share of examples answered (score at or above the threshold), 0-1 (decimal string).
    pub coverage: String,
    /// What the threshold optimises: `maxF1` (best F1) or `minPrecision` (most coverage with at
    /// least `spec.evaluation.minPrecision`).
    pub objective: String,
}

/// Exported artifacts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactsStatus {
    /// Signed URL of the model weights (omitted when `spec.artifacts.secretName` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_weights_url: Option<String>,
    /// Signed URL of the model configuration (omitted when `spec.artifacts.secretName` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_url: Option<String>,
    /// When the URLs expire; they are refreshed before that.
    pub expires_at: Time,
    /// Secret holding the URLs, when requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), pattern(DNS_SUBDOMAIN_PATTERN))]
    pub secret_name: Option<String>,
}

/// Location of an audit record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditStatus {
    /// Immutable ConfigMap (owned by the job) holding `audit.json`.
    #[schemars(length(min = 1, max = 253), pattern(DNS_SUBDOMAIN_PATTERN))]
    pub config_map: String,
    /// When the audit record was written.
    pub recorded_at: Time,
}

/// A finished or superseded run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunHistory {
    /// The `metadata.generation` that started the run.
    pub generation: i64,
    /// CXone training job id (absent when the run ended before CXone accepted it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// SHA-256 of the run's dataset (`sha256:<hex>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_digest: Option<String>,
    /// How the run ended.
    pub phase: Phase,
    /// Macro-averaged F1 of the run's evaluation, 0-1 (decimal string), when it was evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macro_f1: Option<String>,
    /// When the run finished or was superseded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// Summary of how the run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
