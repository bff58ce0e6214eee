//! `spec.registry`: where each successful run's model is registered (an OCI registry and/or
//! MLflow) and the gate that promotes it. Doc comments are the `kubectl explain` text. Imports
//! the name patterns of `crate::names`.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::names::{DATA_KEY_PATTERN, DNS_SUBDOMAIN_PATTERN};

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
    /// Sign the model's files (weights, configuration, model card) in the OpenSSF model signing
    /// format, verifiable with `model_signing verify key`: OCI gets the signature as a referrer
    /// of the model, MLflow a `model.sig` next to the model's files (docs/model-signing.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing: Option<SigningSpec>,
}

/// The key models are signed with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SigningSpec {
    /// A Secret in the job's namespace holding an unencrypted ECDSA P-256 private key, PEM
    /// (PKCS #8 or SEC 1). Status and the audit record name the key by the sha256 of its public
    /// key's PEM; the key itself is never logged or copied.
    pub key_secret_ref: SigningKeyRef,
}

/// A key in a Secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SigningKeyRef {
    /// A DNS subdomain (lower-case letters, digits, `-` and `.`, at most 253 characters).
    #[schemars(length(min = 1, max = 253), pattern(DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// The data key holding the PEM (default `private-key.pem`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), pattern(DATA_KEY_PATTERN))]
    pub key: Option<String>,
}

impl SigningKeyRef {
    /// The data key holding the PEM.
    pub fn key(&self) -> &str {
        self.key.as_deref().unwrap_or("private-key.pem")
    }
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
        if let Some(s) = &self.signing {
            names.push((
                "spec.registry.signing.keySecretRef.name",
                s.key_secret_ref.name.as_str(),
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
