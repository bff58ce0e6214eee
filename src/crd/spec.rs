//! The parts of a SkillTrainingJob's spec: the CXone connection and credentials, labels and
//! utterances (inline or from ConfigMaps), validation limits, hyperparameters, evaluation
//! options, artifacts and polling. Doc comments are the `kubectl explain` text. Imports the
//! training domain and the name patterns of `crate::names`.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::names::{DATA_KEY_PATTERN, DNS_SUBDOMAIN_PATTERN};
use crate::training::DataFormat;

/// CXone endpoint and credentials.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.region) != has(self.baseUrl)").message("set exactly one of connection.region and connection.baseUrl"))]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    /// CXone region, e.g. `us2-01`: the API is `https://api.<region>.cxone.com`. Exactly one of
    /// `region` and `baseUrl`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub region: Option<String>,
    /// Explicit API base URL (must be allowed by the operator's endpoint allowlist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 8, max = 2048))]
    pub base_url: Option<String>,
    /// OAuth2 token URL; default `<base URL>/oauth/token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 8, max = 2048))]
    pub token_url: Option<String>,
    /// Secret in the job's namespace holding the OAuth2 client id and secret.
    pub credentials_secret_ref: CredentialsSecretRef,
}

/// Reference to the credentials Secret (same namespace as the job).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSecretRef {
    /// Name of the Secret, in the job's namespace: a DNS subdomain (lower-case letters, digits,
    /// `-` and `.`, at most 253 characters).
    #[schemars(length(min = 1, max = 253), pattern(DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Key in the Secret's `data` holding the OAuth2 client id (default `clientId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), pattern(DATA_KEY_PATTERN))]
    pub client_id_key: Option<String>,
    /// Key in the Secret's `data` holding the OAuth2 client secret (default `clientSecret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), pattern(DATA_KEY_PATTERN))]
    pub client_secret_key: Option<String>,
}

impl CredentialsSecretRef {
    pub fn client_id_key(&self) -> &str {
        self.client_id_key.as_deref().unwrap_or("clientId")
    }
    pub fn client_secret_key(&self) -> &str {
        self.client_secret_key.as_deref().unwrap_or("clientSecret")
    }
}

/// A label (intent).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelSpec {
    /// Label id used by utterances, e.g. `cancel_sub`.
    #[schemars(length(min = 1, max = 128))]
    pub id: String,
    /// Display name.
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// What the label means.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
}

/// One inline utterance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UtteranceSpec {
    /// What a customer says.
    #[schemars(length(min = 1, max = 1000))]
    pub text: String,
    /// Id of the label this utterance belongs to.
    #[schemars(length(min = 1, max = 128))]
    pub label: String,
    /// ISO 639-1 language; default `spec.language`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 2))]
    pub language: Option<String>,
}

/// A ConfigMap key holding utterances.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UtteranceSource {
    /// The ConfigMap (same namespace) and key.
    pub config_map_key_ref: ConfigMapKeyRef,
    /// Format of the data: `jsonl` (one `{"text","label","language"}` object per line), `csv`
    /// (`text,label[,language]`, optional header) or `json` (an array of utterance objects).
    pub format: DataFormatSpec,
}

/// A key of a ConfigMap in the job's namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeyRef {
    /// Name of the ConfigMap, in the job's namespace: a DNS subdomain (lower-case letters,
    /// digits, `-` and `.`, at most 253 characters).
    #[schemars(length(min = 1, max = 253), pattern(DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Key in the ConfigMap's `data` (letters, digits, `-`, `_` and `.`, at most 253
    /// characters), e.g. `utterances.jsonl`.
    #[schemars(length(min = 1, max = 253), pattern(DATA_KEY_PATTERN))]
    pub key: String,
}

/// Data format of an utterance source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DataFormatSpec {
    Jsonl,
    Csv,
    Json,
}

impl From<DataFormatSpec> for DataFormat {
    fn from(f: DataFormatSpec) -> Self {
        match f {
            DataFormatSpec::Jsonl => DataFormat::Jsonl,
            DataFormatSpec::Csv => DataFormat::Csv,
            DataFormatSpec::Json => DataFormat::Json,
        }
    }
}

/// Validation limits.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidationSpec {
    /// Largest allowed ratio between the biggest and smallest class (default 3.0, as CXone
    /// enforces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1.0, max = 100.0))]
    pub max_class_imbalance_ratio: Option<f64>,
    /// Fewest utterances each label needs (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub min_utterances_per_label: Option<u32>,
}

/// Hyperparameters sent to CXone.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("(has(self.patience) ? self.patience : 5) <= (has(self.maxEpochs) ? self.maxEpochs : 50)").message("hyperparameters.patience must not exceed maxEpochs (defaults: patience 5, maxEpochs 50)"))]
#[serde(rename_all = "camelCase")]
pub struct HyperparametersSpec {
    /// Fraction of utterances held out for evaluation (default 0.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.05, max = 0.5))]
    pub validation_split: Option<f64>,
    /// Most training epochs (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_epochs: Option<u32>,
    /// Stop when validation loss stops improving (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<bool>,
    /// Epochs without improvement before early stopping (default 5, at most maxEpochs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub patience: Option<u32>,
}

/// Evaluation analysis settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationSpec {
    /// Confidence thresholds to try (default 0.30 to 0.90 in steps of 0.05).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_sweep: Option<ThresholdSweepSpec>,
    /// If set, recommend the threshold with the most coverage whose precision is at least this;
    /// otherwise the one with the best F1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_precision: Option<f64>,
}

/// A range of confidence thresholds: `start, start + step, …` up to `end`, at most 1000 of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("self.start <= self.end").message("thresholdSweep.start must not exceed end"))]
#[x_kube(validation = Rule::new("self.end - self.start <= 999.0 * self.step").message("thresholdSweep has more than 1000 thresholds: (end - start) / step must not exceed 999"))]
#[serde(rename_all = "camelCase")]
pub struct ThresholdSweepSpec {
    /// Lowest confidence threshold tried, 0-1 (default 0.30).
    #[schemars(range(min = 0.0, max = 1.0))]
    pub start: f64,
    /// Highest confidence threshold tried, 0-1, at least `start` (default 0.90); included when
    /// it lies on the grid `start + n * step`.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub end: f64,
    /// Distance between consecutive thresholds, 0.001-1 (default 0.05).
    #[schemars(range(min = 0.001, max = 1.0))]
    pub step: f64,
}

/// Artifact handling.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactsSpec {
    /// Refresh the signed artifact URLs this many seconds before they expire (default 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 86400))]
    pub refresh_before_seconds: Option<u32>,
    /// Write the signed artifact URLs into a Secret of this name (same namespace, created and
    /// owned by the job) instead of status, for consumers and for clusters where status is
    /// readable too widely. A DNS subdomain (lower-case letters, digits, `-` and `.`, at most
    /// 253 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), pattern(DNS_SUBDOMAIN_PATTERN))]
    pub secret_name: Option<String>,
}

/// Poll schedule of the CXone job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("(has(self.initialIntervalSeconds) ? self.initialIntervalSeconds : 2) <= (has(self.maxIntervalSeconds) ? self.maxIntervalSeconds : 30)").message("polling.initialIntervalSeconds must not exceed maxIntervalSeconds (defaults: 2 and 30)"))]
#[serde(rename_all = "camelCase")]
pub struct PollingSpec {
    /// First poll interval in seconds (default 2, the least CXone allows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 2, max = 3600))]
    pub initial_interval_seconds: Option<u32>,
    /// Growth factor of the interval (default 1.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1.0, max = 10.0))]
    pub multiplier: Option<f64>,
    /// Largest poll interval in seconds (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 2, max = 3600))]
    pub max_interval_seconds: Option<u32>,
    /// Cancel the CXone job and fail if it has not finished this many seconds after submission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<u64>,
}

/// What to do with a running CXone job when the resource is deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Cancel the CXone job.
    #[default]
    Cancel,
    /// Leave the CXone job running.
    Orphan,
}
