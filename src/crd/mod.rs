//! The `SkillTrainingJob` custom resource (`ai.cxone.io/v1alpha1`) and how its spec maps onto the
//! training domain. Doc comments on fields are the `kubectl explain` text; the types generate
//! the CRD YAML in `crds/` ([`crd_yaml`], `cxone-skill-operator crd`), so a change to a type or its
//! comments is a change to the committed CRD.
//!
//! Here: the resource and its top-level spec. `spec` holds the spec's parts (connection, labels,
//! utterances, hyperparameters, evaluation, artifacts, polling), `registry` the model-registry
//! part, `status` the phase and the status, `checks` how a spec is resolved into a dataset and
//! checked before training. Imports the training, evaluation and name-checking domains and the
//! CXone wire types; nothing here does I/O.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

mod checks;
mod registry;
mod spec;
mod status;

pub use checks::{DataSources, SourceError, SpecCheck};
pub use registry::{
    GateMetric, MlflowRegistrySpec, OciRegistrySpec, PromotionSpec, RegistrySpec, SecretName,
    SigningKeyRef, SigningSpec,
};
pub use spec::{
    ArtifactsSpec, ConfigMapKeyRef, Connection, CredentialsSecretRef, DataFormatSpec,
    DeletionPolicy, EvaluationSpec, HyperparametersSpec, LabelSpec, PollingSpec,
    ThresholdSweepSpec, UtteranceSource, UtteranceSpec, ValidationSpec,
};
pub use status::{
    ArtifactsStatus, AuditStatus, EvaluationStatus, LabelEvaluation, Phase, RegistryStatus,
    RunHistory, SkillTrainingJobStatus, Submission, TargetRegistration, ThresholdRecommendation,
};

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
mod tests;
