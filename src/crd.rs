//! The `SkillTrainingJob` custom resource (`ai.cxone.io/v1alpha1`) and how its spec maps onto the
//! training domain. Doc comments on fields are the `kubectl explain` text.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cxone::model::{Hyperparameters, LabelDef, Utterance};
use crate::evaluation::{EvaluationOptions, ThresholdSweep};
use crate::training::{DataFormat, Dataset, LoadError, ValidationRules, parse_utterances};

/// Most utterances allowed inline in the spec; larger sets belong in ConfigMaps.
pub const MAX_INLINE_UTTERANCES: usize = 1000;

/// Trains a NICE CXone AI skill from labelled utterances and records the evaluation, artifacts and
/// a governance audit record in its status.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "ai.cxone.io",
    version = "v1alpha1",
    kind = "SkillTrainingJob",
    plural = "skilltrainingjobs",
    shortname = "stj",
    category = "cxone",
    namespaced
)]
#[serde(rename_all = "camelCase")]
pub struct SkillTrainingJobSpec {
    /// The CXone AI skill to train, e.g. `skill-abc-123`.
    #[schemars(length(min = 1, max = 128))]
    pub skill_id: String,
    /// Where the CXone API is and which credentials to use.
    pub connection: Connection,
    /// ISO 639-1 code of the one language of the training set (e.g. `en`). Utterances without a
    /// language inherit it; utterances with another language make the job Invalid.
    #[schemars(length(min = 2, max = 2))]
    pub language: String,
    /// The labels (intents) the skill predicts.
    #[schemars(length(min = 1, max = 500))]
    pub labels: Vec<LabelSpec>,
    /// Inline training utterances (at most 1000; use `utterancesFrom` for more).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub utterances: Vec<UtteranceSpec>,
    /// ConfigMap keys holding more utterances (JSONL, CSV or JSON), in the job's namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub utterances_from: Vec<UtteranceSource>,
    /// Limits of training-data validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<ValidationSpec>,
    /// Training hyperparameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hyperparameters: Option<HyperparametersSpec>,
    /// How the evaluation is analysed (threshold sweep, minimum precision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<EvaluationSpec>,
    /// Handling of the exported model artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<ArtifactsSpec>,
    /// How often the CXone job is polled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polling: Option<PollingSpec>,
    /// When true, nothing new is submitted; a job already running is left to finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// What happens to a running CXone job when this resource is deleted: `Cancel` (default) or
    /// `Orphan`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
}

/// CXone endpoint and credentials.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
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
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key of the client id (default `clientId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub client_id_key: Option<String>,
    /// Key of the client secret (default `clientSecret`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
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
    /// ConfigMap name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key in the ConfigMap's `data`.
    #[schemars(length(min = 1, max = 253))]
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
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
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

/// A range of confidence thresholds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThresholdSweepSpec {
    #[schemars(range(min = 0.0, max = 1.0))]
    pub start: f64,
    #[schemars(range(min = 0.0, max = 1.0))]
    pub end: f64,
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
    /// Also write the artifact URLs into this Secret (same namespace, owned by the job), for
    /// consumers and for clusters where status is readable too widely.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: Option<String>,
}

/// Poll schedule of the CXone job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
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

/// Where `utterancesFrom` data comes from: ConfigMap data by (name, key).
pub trait DataSources {
    /// The value of `key` in ConfigMap `name`, or why it cannot be had.
    fn get(&self, config_map: &str, key: &str) -> Result<&str, String>;
}

/// ConfigMap data held in memory: name → key → value.
impl DataSources for BTreeMap<String, BTreeMap<String, String>> {
    fn get(&self, config_map: &str, key: &str) -> Result<&str, String> {
        let data = self
            .get(config_map)
            .ok_or_else(|| format!("ConfigMap {config_map:?} not found"))?;
        data.get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("ConfigMap {config_map:?} has no key {key:?}"))
    }
}

/// A data source could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SourceError {
    #[error("utterancesFrom[{index}]: {message}")]
    Missing { index: usize, message: String },
    #[error("utterancesFrom[{index}]: {error}")]
    Load { index: usize, error: LoadError },
}

impl SkillTrainingJobSpec {
    /// Resolves inline utterances and `utterancesFrom` into one dataset. Every source problem is
    /// reported; no partial dataset is returned.
    pub fn dataset(&self, sources: &impl DataSources) -> Result<Dataset, Vec<SourceError>> {
        let labels = self
            .labels
            .iter()
            .map(|l| LabelDef {
                id: l.id.clone(),
                name: l.name.clone(),
                description: l.description.clone(),
            })
            .collect();
        let mut dataset = Dataset::new(Some(self.language.clone()), labels);
        dataset.extend_inline(
            "spec.utterances",
            self.utterances.iter().map(|u| Utterance {
                text: u.text.clone(),
                label: u.label.clone(),
                language: u.language.clone(),
            }),
        );
        let mut errors = Vec::new();
        for (index, src) in self.utterances_from.iter().enumerate() {
            let r = &src.config_map_key_ref;
            match sources.get(&r.name, &r.key) {
                Err(message) => errors.push(SourceError::Missing { index, message }),
                Ok(text) => {
                    let name = format!("configmap/{} key {}", r.name, r.key);
                    match parse_utterances(src.format.into(), &name, text.as_bytes()) {
                        Ok(items) => dataset.extend(items),
                        Err(error) => errors.push(SourceError::Load { index, error }),
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(dataset)
        } else {
            Err(errors)
        }
    }

    pub fn validation_rules(&self) -> ValidationRules {
        let mut rules = ValidationRules::default();
        if let Some(v) = &self.validation {
            if let Some(r) = v.max_class_imbalance_ratio {
                rules.max_class_imbalance_ratio = r;
            }
            if let Some(m) = v.min_utterances_per_label {
                rules.min_utterances_per_label = m as usize;
            }
        }
        rules
    }

    pub fn hyperparameters(&self) -> Hyperparameters {
        let d = Hyperparameters::default();
        match &self.hyperparameters {
            None => d,
            Some(h) => Hyperparameters {
                max_epochs: h.max_epochs.unwrap_or(d.max_epochs),
                early_stopping: h.early_stopping.unwrap_or(d.early_stopping),
                patience: h.patience.unwrap_or(d.patience),
            },
        }
    }

    pub fn validation_split(&self) -> f64 {
        self.hyperparameters
            .as_ref()
            .and_then(|h| h.validation_split)
            .unwrap_or(0.2)
    }

    pub fn evaluation_options(&self) -> EvaluationOptions {
        let mut opts = EvaluationOptions::default();
        if let Some(e) = &self.evaluation {
            if let Some(s) = &e.threshold_sweep {
                opts.sweep = ThresholdSweep {
                    start: s.start,
                    end: s.end,
                    step: s.step,
                };
            }
            opts.min_precision = e.min_precision;
        }
        opts
    }

    /// Checks of the spec that the dataset rules do not cover (they are also CEL rules in the
    /// CRD, but `validate` runs offline and old API servers may skip CEL).
    pub fn check_parameters(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let c = &self.connection;
        match (&c.region, &c.base_url) {
            (Some(_), Some(_)) => {
                problems.push("spec.connection: set either region or baseUrl, not both".to_string())
            }
            (None, None) => {
                problems.push("spec.connection: set region (e.g. us2-01) or baseUrl".to_string())
            }
            _ => {}
        }
        if self.utterances.len() > MAX_INLINE_UTTERANCES {
            problems.push(format!(
                "spec.utterances: {} inline utterances, more than {MAX_INLINE_UTTERANCES}; move them to a ConfigMap and use utterancesFrom",
                self.utterances.len()
            ));
        }
        let h = self.hyperparameters();
        if h.patience > h.max_epochs {
            problems.push(format!(
                "spec.hyperparameters.patience ({}) must not exceed maxEpochs ({})",
                h.patience, h.max_epochs
            ));
        }
        let split = self.validation_split();
        if !(0.05..=0.5).contains(&split) {
            problems.push(format!(
                "spec.hyperparameters.validationSplit {split} is outside 0.05-0.5"
            ));
        }
        let rules = self.validation_rules();
        if rules.max_class_imbalance_ratio.is_nan() || rules.max_class_imbalance_ratio < 1.0 {
            problems.push(format!(
                "spec.validation.maxClassImbalanceRatio {} must be at least 1",
                rules.max_class_imbalance_ratio
            ));
        }
        if let Some(p) = &self.polling
            && let (Some(i), Some(m)) = (p.initial_interval_seconds, p.max_interval_seconds)
            && i > m
        {
            problems.push(format!(
                "spec.polling.initialIntervalSeconds ({i}) must not exceed maxIntervalSeconds ({m})"
            ));
        }
        problems
    }
}
