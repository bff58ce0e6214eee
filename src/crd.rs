//! The `SkillTrainingJob` custom resource (`ai.cxone.io/v1alpha1`) and how its spec maps onto the
//! training domain. Doc comments on fields are the `kubectl explain` text.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cxone::model::{Hyperparameters, LabelDef, Utterance};
use crate::evaluation::{EvaluationOptions, ThresholdSweep};
use crate::names::{DATA_KEY_PATTERN, DNS_SUBDOMAIN_PATTERN};
use crate::training::{DataFormat, Dataset, LoadError, ValidationRules, parse_utterances};

/// Most utterances allowed inline in the spec; larger sets belong in ConfigMaps.
pub const MAX_INLINE_UTTERANCES: usize = 500;

/// Trains a NICE CXone AI skill from labelled utterances and records the evaluation, artifacts and
/// a governance audit record in its status.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "ai.cxone.io",
    version = "v1alpha1",
    kind = "SkillTrainingJob",
    plural = "skilltrainingjobs",
    shortname = "stj",
    category = "cxone",
    namespaced,
    status = "SkillTrainingJobStatus",
    doc = "Trains a NICE CXone AI skill and records its evaluation, artifacts and audit record.",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Progress","type":"integer","jsonPath":".status.progress"}"#,
    printcolumn = r#"{"name":"Precision","type":"string","jsonPath":".status.evaluation.macroPrecision"}"#,
    printcolumn = r#"{"name":"Recall","type":"string","jsonPath":".status.evaluation.macroRecall"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Job","type":"string","priority":1,"jsonPath":".status.jobId"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("!has(self.utterances) || self.utterances.all(u, self.labels.exists(l, l.id == u.label))").message("every inline utterance must use a label id defined in spec.labels"))]
#[x_kube(validation = Rule::new("has(self.utterances) || has(self.utterancesFrom)").message("give training data: spec.utterances and/or spec.utterancesFrom"))]
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
    /// The labels (intents) the skill predicts (at most 200); ids are unique.
    #[schemars(length(min = 1, max = 200))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["id"]))]
    pub labels: Vec<LabelSpec>,
    /// Inline training utterances (at most 500; use `utterancesFrom` for more).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 500))]
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
    /// Register every successful run's model in the team's model registry (an OCI registry
    /// and/or the MLflow Model Registry), and promote it when it passes `promotion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistrySpec>,
    /// When true, nothing new is submitted; a job already running is left to finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// What happens to a running CXone job when this resource is deleted: `Cancel` (default) or
    /// `Orphan`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
}

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

/// Where each successful run's model is registered, and when it is promoted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("has(self.oci) || has(self.mlflow)").message("spec.registry needs at least one target: oci and/or mlflow"))]
#[serde(rename_all = "camelCase")]
pub struct RegistrySpec {
    /// An OCI registry (Harbor, Quay, ECR, ACR, GAR, distribution): the model is pushed as a CNCF
    /// ModelPack artifact, with the evaluation, the audit record and the evaluation picture
    /// attached as a referrer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci: Option<OciRegistrySpec>,
    /// The MLflow Model Registry: a run with params, metrics and files, and a model version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlflow: Option<MlflowRegistrySpec>,
    /// The quality gate a run must pass to be promoted. Every successful run is registered;
    /// without `promotion` none is promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<PromotionSpec>,
}

impl RegistrySpec {
    /// What is wrong with it that the API server's schema cannot see (or that an object stored
    /// before the schema had it may carry), each naming its field.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.oci.is_none() && self.mlflow.is_none() {
            problems.push("spec.registry needs at least one target: oci and/or mlflow".into());
        }
        if let Some(o) = &self.oci
            && let Err(e) = crate::registry::oci::OciTarget::parse(&o.repository, false)
        {
            problems.push(format!("spec.registry.oci.repository: {e}"));
        }
        if let Some(m) = &self.mlflow {
            match reqwest::Url::parse(&m.tracking_uri) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {}
                Ok(_) => problems.push(
                    "spec.registry.mlflow.trackingUri must be an http or https URL with a host"
                        .into(),
                ),
                Err(e) => problems.push(format!(
                    "spec.registry.mlflow.trackingUri is not a URL: {e}"
                )),
            }
            if m.model_name.trim().is_empty() || m.model_name.chars().any(char::is_control) {
                problems.push(
                    "spec.registry.mlflow.modelName must be visible text without control characters"
                        .into(),
                );
            }
        }
        if let Some(p) = &self.promotion {
            if p.max_regression.is_some() && p.compare_metric.is_none() {
                problems.push("spec.registry.promotion.maxRegression needs compareMetric".into());
            }
            let thresholds = [
                ("minAccuracy", p.min_accuracy),
                ("minMacroF1", p.min_macro_f1),
                ("minMacroPrecision", p.min_macro_precision),
                ("minMacroRecall", p.min_macro_recall),
                ("minLabelF1", p.min_label_f1),
                ("maxRegression", p.max_regression),
            ];
            for (field, value) in thresholds {
                if let Some(v) = value
                    && !(0.0..=1.0).contains(&v)
                {
                    problems.push(format!(
                        "spec.registry.promotion.{field} is {v}; it must be between 0 and 1"
                    ));
                }
            }
        }
        problems
    }

    /// The credentials Secrets it names, with their fields.
    pub fn secret_names(&self) -> Vec<(&'static str, &str)> {
        let mut names = Vec::new();
        if let Some(s) = self
            .oci
            .as_ref()
            .and_then(|o| o.credentials_secret_ref.as_ref())
        {
            names.push((
                "spec.registry.oci.credentialsSecretRef.name",
                s.name.as_str(),
            ));
        }
        if let Some(s) = self
            .mlflow
            .as_ref()
            .and_then(|m| m.credentials_secret_ref.as_ref())
        {
            names.push((
                "spec.registry.mlflow.credentialsSecretRef.name",
                s.name.as_str(),
            ));
        }
        names
    }
}

/// An OCI repository.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct OciRegistrySpec {
    /// `registry-host[:port]/path/to/repository`, without a tag or digest, lower case (for
    /// example `registry.example.com/cxone/billing-support`). Must be allowed by the operator's
    /// `--allowed-registries`.
    #[schemars(
        length(min = 3, max = 255),
        pattern(r"^[a-z0-9.-]+(:[0-9]{1,5})?(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)+$")
    )]
    pub repository: String,
    /// The tag of each run's model (default `g<generation>-<first 12 hex digits of the dataset
    /// digest>`): an OCI tag, at most 128 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 128),
        pattern(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
    )]
    pub tag: Option<String>,
    /// A Secret in the job's namespace with the registry credentials: type
    /// `kubernetes.io/dockerconfigjson` (the entry for the repository's host) or
    /// `kubernetes.io/basic-auth` (`username`, `password`). Anonymous when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretName>,
}

/// An MLflow tracking server with its Model Registry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MlflowRegistrySpec {
    /// The tracking server's URL (`https://mlflow.example.com`, optionally with a path prefix).
    /// Must be allowed by the operator's `--allowed-registries`.
    #[schemars(length(min = 8, max = 2048))]
    pub tracking_uri: String,
    /// The registered model's name.
    #[schemars(length(min = 1, max = 256))]
    pub model_name: String,
    /// The experiment the runs are logged in (default: `cxone/<namespace>/<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub experiment_name: Option<String>,
    /// A Secret in the job's namespace: type `kubernetes.io/basic-auth` (`username`,
    /// `password`, for MLflow's basic-auth app), or a `token` key (sent as a bearer token).
    /// Anonymous when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretName>,
}

/// The name of a Secret in the job's namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretName {
    /// A DNS subdomain (lower-case letters, digits, `-` and `.`, at most 253 characters).
    #[schemars(length(min = 1, max = 253), pattern(DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
}

/// The promotion gate: the recomputed metrics a run needs, and what promotion means per target.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("!has(self.maxRegression) || has(self.compareMetric)").message("promotion.maxRegression needs promotion.compareMetric"))]
#[serde(rename_all = "camelCase")]
pub struct PromotionSpec {
    /// Least accuracy, 0-1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_accuracy: Option<f64>,
    /// Least macro-averaged F1, 0-1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_macro_f1: Option<f64>,
    /// Least macro-averaged precision, 0-1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_macro_precision: Option<f64>,
    /// Least macro-averaged recall, 0-1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_macro_recall: Option<f64>,
    /// Least F1 of every label, 0-1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_label_f1: Option<f64>,
    /// Champion against challenger: the metric compared with the model promoted now (read from
    /// the registry). Unset: no comparison.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare_metric: Option<GateMetric>,
    /// How much worse than the champion on `compareMetric` the new run may be and still be
    /// promoted, 0-1 (default 0: not worse at all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_regression: Option<f64>,
    /// The MLflow alias a promoted run's version gets (default `champion`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255), pattern(r"^[A-Za-z_][A-Za-z0-9_-]*$"))]
    pub mlflow_alias: Option<String>,
    /// The OCI tag a promoted run's manifest gets (default `approved`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 128),
        pattern(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
    )]
    pub oci_tag: Option<String>,
}

/// A metric the promotion gate can compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum GateMetric {
    #[serde(rename = "accuracy")]
    Accuracy,
    #[serde(rename = "macroF1")]
    MacroF1,
    #[serde(rename = "macroPrecision")]
    MacroPrecision,
    #[serde(rename = "macroRecall")]
    MacroRecall,
    #[serde(rename = "weightedF1")]
    WeightedF1,
}

impl GateMetric {
    /// The name it has in the registries (`crate::registry::key_metrics`).
    pub fn key(self) -> &'static str {
        match self {
            Self::Accuracy => "accuracy",
            Self::MacroF1 => "macro_f1",
            Self::MacroPrecision => "macro_precision",
            Self::MacroRecall => "macro_recall",
            Self::WeightedF1 => "weighted_f1",
        }
    }
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
    pub registered_at: Time,
    /// Whether the gate passed and the promotion (tag or alias) was set; unset until decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted: Option<bool>,
    /// The promotion tag or alias.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_as: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_at: Option<Time>,
    /// The champion the gate compared against in this registry, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub champion: Option<String>,
    /// The promotion gate's outcome: each check with its input and threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<String>,
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

/// The outcome of [`SkillTrainingJobSpec::check`].
pub enum SpecCheck {
    Valid {
        validated: Box<crate::training::Validated>,
        digest: crate::training::DatasetDigest,
        summary: String,
    },
    Invalid {
        problems: Vec<String>,
    },
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

    /// Every field that names a Kubernetes object (the credentials Secret, the utterance
    /// ConfigMaps, the artifacts Secret) or a key in one, checked with the API server's rules
    /// ([`crate::names`]). The CRD's schema enforces the same patterns; this catches objects
    /// stored before it did, and manifests checked offline. One message per bad field, naming it.
    pub fn check_names(&self) -> Vec<String> {
        use crate::names::{check_data_key, check_object_name};
        let r = &self.connection.credentials_secret_ref;
        let path = "spec.connection.credentialsSecretRef";
        let mut results = vec![check_object_name(&format!("{path}.name"), &r.name)];
        if let Some(k) = &r.client_id_key {
            results.push(check_data_key(&format!("{path}.clientIdKey"), k));
        }
        if let Some(k) = &r.client_secret_key {
            results.push(check_data_key(&format!("{path}.clientSecretKey"), k));
        }
        for (i, src) in self.utterances_from.iter().enumerate() {
            let path = format!("spec.utterancesFrom[{i}].configMapKeyRef");
            let r = &src.config_map_key_ref;
            results.push(check_object_name(&format!("{path}.name"), &r.name));
            results.push(check_data_key(&format!("{path}.key"), &r.key));
        }
        if let Some(name) = self.artifacts.as_ref().and_then(|a| a.secret_name.as_ref()) {
            results.push(check_object_name("spec.artifacts.secretName", name));
        }
        results.into_iter().filter_map(Result::err).collect()
    }

    /// Everything checked before a job trains, offline (`validate`) and in the operator alike:
    /// the parameters and names, the data from `sources`, and the dataset rules. Valid: the
    /// validated dataset, its digest and a one-line summary.
    pub fn check(&self, sources: &impl DataSources) -> SpecCheck {
        let mut problems = self.check_parameters();
        match self.dataset(sources) {
            Err(errors) => problems.extend(errors.iter().map(ToString::to_string)),
            Ok(dataset) => match crate::training::validate(dataset, &self.validation_rules()) {
                Err(rejected) => {
                    problems.extend(rejected.report.violations.iter().map(ToString::to_string))
                }
                Ok(validated) if problems.is_empty() => {
                    let digest = crate::training::DatasetDigest::of(
                        validated.dataset(),
                        validated.language(),
                    );
                    let summary = format!(
                        "{} utterances, {} labels, language {}, digest {}",
                        validated.report().utterance_count,
                        validated.dataset().labels.len(),
                        validated.language(),
                        digest
                    );
                    return SpecCheck::Valid {
                        validated: Box::new(validated),
                        digest,
                        summary,
                    };
                }
                Ok(_) => {}
            },
        }
        SpecCheck::Invalid { problems }
    }

    /// Checks of the spec that the dataset rules do not cover (they are also schema patterns and
    /// CEL rules in the CRD, but `validate` runs offline and old API servers may skip CEL),
    /// [`Self::check_names`] included.
    pub fn check_parameters(&self) -> Vec<String> {
        let mut problems = self.check_names();
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
        if self.evaluation.is_some()
            && let Err(e) = self.evaluation_options().sweep.points()
        {
            problems.push(format!("spec.evaluation.thresholdSweep: {e}"));
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

/// The CustomResourceDefinition as YAML, as committed in `crds/`.
pub fn crd_yaml() -> Result<String, String> {
    use kube::CustomResourceExt;
    let crd = SkillTrainingJob::crd();
    let yaml = serde_saphyr::to_string(&crd).map_err(|e| format!("cannot render the CRD: {e}"))?;
    Ok(format!(
        "# Generated by `cxone-skill-operator crd`; do not edit.\n---\n{yaml}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SkillTrainingJobSpec {
        serde_json::from_value(serde_json::json!({
            "skillId": "skill-1",
            "connection": {"region": "us2-01", "credentialsSecretRef": {"name": "creds"}},
            "language": "en",
            "labels": [{"id": "a", "name": "A"}, {"id": "b", "name": "B"}],
            "utterances": [{"text": "hello", "label": "a"}, {"text": "bye", "label": "b"}],
            "utterancesFrom": [
                {"configMapKeyRef": {"name": "data", "key": "u.jsonl"}, "format": "jsonl"},
                {"configMapKeyRef": {"name": "more.data", "key": "u.csv"}, "format": "csv"}
            ],
            "artifacts": {"secretName": "urls"}
        }))
        .unwrap()
    }

    #[test]
    fn valid_names_pass() {
        assert_eq!(spec().check_names(), Vec::<String>::new());
        assert_eq!(spec().check_parameters(), Vec::<String>::new());
    }

    #[test]
    fn every_field_naming_an_object_or_key_is_checked_and_named() {
        let mut s = spec();
        let r = &mut s.connection.credentials_secret_ref;
        r.name = "creds?watch=true".into();
        r.client_id_key = Some("../id".into());
        r.client_secret_key = Some("..".into());
        s.utterances_from[1].config_map_key_ref.name = "../x".into();
        s.utterances_from[1].config_map_key_ref.key = "a/b".into();
        s.artifacts = Some(ArtifactsSpec {
            secret_name: Some("../../ns/secrets/stolen".into()),
            ..ArtifactsSpec::default()
        });
        let problems = s.check_parameters();
        let fields: Vec<&str> = problems
            .iter()
            .map(|p| p.split(':').next().unwrap_or(""))
            .collect();
        assert_eq!(
            fields,
            [
                "spec.connection.credentialsSecretRef.name",
                "spec.connection.credentialsSecretRef.clientIdKey",
                "spec.connection.credentialsSecretRef.clientSecretKey",
                "spec.utterancesFrom[1].configMapKeyRef.name",
                "spec.utterancesFrom[1].configMapKeyRef.key",
                "spec.artifacts.secretName",
            ],
            "{problems:#?}"
        );
    }

    #[test]
    fn a_threshold_sweep_the_analysis_would_refuse_is_reported_before_training() {
        let mut s = spec();
        s.evaluation = Some(EvaluationSpec {
            threshold_sweep: Some(ThresholdSweepSpec {
                start: 0.0,
                end: 1.0,
                step: 0.001,
            }),
            min_precision: None,
        });
        let problems = s.check_parameters();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("spec.evaluation.thresholdSweep: invalid threshold sweep")
                && problems[0].contains("more than the maximum of 1000"),
            "{problems:?}"
        );
        // 1000 thresholds are fine.
        if let Some(e) = &mut s.evaluation
            && let Some(t) = &mut e.threshold_sweep
        {
            t.end = 0.999;
        }
        assert_eq!(s.check_parameters(), Vec::<String>::new());
    }
}
