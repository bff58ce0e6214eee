//! External model registries: where a successful run's model is registered, with its provenance,
//! exactly once (OCI registries with the CNCF ModelPack format, and the MLflow Model Registry).
//!
//! This module holds what both targets share: credentials, the classified error, the source of
//! the files (the CXone export's signed URLs), the provenance and the documents that travel with
//! the model. The wire protocols live in [`oci`] and [`mlflow`]; the evaluation picture in
//! [`picture`]. Decisions about registration (when, retries, promotion) are not made here: see
//! `src/controller/decide/`.
//!
//! - `mod.rs` (this file): the shared types, [`key_metrics`], [`redact_url`] and reading a
//!   registry's answer within a cap (imports `crate::http`, `crate::evaluation`).
//! - `source.rs`: the one download from a signed URL, for both targets (its expired rule and
//!   size cap; imports `crate::http`).
//! - `oci/`: the OCI registry client, ModelPack artifacts (imports `source`, `crate::http`).
//! - `mlflow/`: the MLflow registry client (imports `source`, `crate::http`).
//! - `allow.rs`: the registry allowlist and a job's registry credentials (imports the targets).
//! - `gate.rs`: the promotion gate (pure; imports `crate::crd`, `crate::evaluation`).
//! - `picture.rs`: the evaluation picture as SVG (pure; imports `crate::evaluation`).

pub mod allow;
pub mod card;
pub mod gate;
pub mod mlflow;
pub mod oci;
pub mod picture;
pub mod signing;
mod source;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::audit::AuditRecord;
use gate::GateOutcome;
use signing::ModelSigningKey;

use crate::evaluation::EvaluationReport;

/// Credentials for a registry, read from a Secret in the job's namespace.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum RegistryAuth {
    /// No credentials.
    #[default]
    Anonymous,
    /// HTTP Basic (an OCI registry's htpasswd, MLflow's basic-auth app).
    Basic { username: String, password: String },
    /// A bearer token (MLflow behind a token gateway; an OCI identity token).
    Bearer { token: String },
}

impl fmt::Debug for RegistryAuth {
    /// Never prints a password or token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Basic { username, .. } => write!(f, "Basic({username:?}, password redacted)"),
            Self::Bearer { .. } => f.write_str("Bearer(redacted)"),
        }
    }
}

/// What went wrong while registering, classified for decisions. Messages never contain a
/// credential, a token or a signed URL's query.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// 401/403 from the registry: the credentials are wrong or lack a permission. Not retried
    /// until the Secret changes.
    #[error("the registry refused the credentials: {0}")]
    Auth(String),
    /// No answer, a refused connection, a timeout or a 5xx/429: retried with backoff.
    #[error("the registry could not be reached: {0}")]
    Unreachable(String),
    /// Any other refusal (4xx): the request itself is wrong for this registry. Not retried.
    #[error("the registry rejected the request: {0}")]
    Rejected(String),
    /// The signed artifact URL expired or was refused (401/403/404/410 from the source, see
    /// `src/registry/source.rs`): export again for fresh URLs, then retry.
    #[error("the artifact URL is no longer valid: {0}")]
    SourceExpired(String),
    /// The download broke off or did not match its declared size: retried with backoff.
    #[error("the artifact download failed: {0}")]
    Source(String),
}

impl RegistryError {
    /// True when trying again later (with backoff) can succeed without anyone changing anything.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Self::Unreachable(_) | Self::Source(_) | Self::SourceExpired(_)
        )
    }
}

/// Where the model files come from: the signed URLs of the CXone export. Never logged in full
/// (see [`redact_url`]).
#[derive(Clone, PartialEq, Eq)]
pub struct ModelSource {
    pub weights_url: String,
    pub config_url: String,
}

impl fmt::Debug for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelSource")
            .field("weights_url", &redact_url(&self.weights_url))
            .field("config_url", &redact_url(&self.config_url))
            .finish()
    }
}

/// The file names of the model inside a registry artifact.
pub const WEIGHTS_FILE: &str = "model-weights.json";
pub const CONFIG_FILE: &str = "model-config.json";
pub const EVALUATION_FILE: &str = "evaluation.json";
pub const AUDIT_FILE: &str = "audit.json";
pub const PICTURE_FILE: &str = "evaluation.svg";

/// Who and what the model is: recorded as OCI annotations and MLflow tags/params.
#[derive(Clone, Debug, PartialEq)]
pub struct Provenance {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub generation: i64,
    /// The run number (`status.runsStarted` of the run).
    pub run: u32,
    pub cxone_job_id: String,
    pub skill_id: String,
    /// `sha256:<hex>` of the training data.
    pub dataset_digest: String,
    /// The run's completion time: fixed per run, so a repeated push is byte-identical.
    pub created: jiff::Timestamp,
    /// Where the model came from, e.g. `kubernetes://<namespace>/skilltrainingjobs/<name>`.
    pub source: String,
    /// Hyperparameters and other inputs, as strings (MLflow params).
    pub params: BTreeMap<String, String>,
}

/// Small documents that travel with the model (each well under 16 MiB).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Documents {
    /// The evaluation report (`src/evaluation/`), JSON.
    pub evaluation_json: Vec<u8>,
    /// The governance audit record (`src/audit.rs`), JSON.
    pub audit_json: Vec<u8>,
    /// The evaluation picture ([`picture::render`]), SVG.
    pub picture_svg: Vec<u8>,
    /// What the model card is made from; `None`: the model carries no card.
    pub card: Option<CardFacts>,
    /// Sign the model's files with this key (`spec.registry.signing`).
    pub signing: Option<Arc<ModelSigningKey>>,
}

/// What a model card says beside the model's files (whose digests are known once copied):
/// see [`card`].
#[derive(Clone, Debug, PartialEq)]
pub struct CardFacts {
    pub audit: AuditRecord,
    pub report: Arc<EvaluationReport>,
    /// The gate's outcome in this registry; `None`: no gate declared.
    pub gate: Option<GateOutcome>,
}

impl Documents {
    /// The model card for these files; `None` without card facts.
    pub fn card(&self, provenance: &Provenance, files: &[card::CardFile]) -> Option<String> {
        let facts = self.card.as_ref()?;
        Some(card::render(&card::CardInput {
            provenance,
            audit: &facts.audit,
            report: &facts.report,
            gate: facts.gate.as_ref(),
            files,
            signing_key: self.signing.as_deref().map(ModelSigningKey::fingerprint),
        }))
    }

    /// The language the model was trained on, when the card facts know it.
    pub fn language(&self) -> Option<&str> {
        self.card.as_ref()?.audit.dataset.language.as_deref()
    }
}

/// The model currently promoted in a registry (the champion), as far as the gate needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct Champion {
    /// An MLflow version number or an OCI manifest reference (`repo@sha256:…`).
    pub reference: String,
    /// The champion's key metrics (names of [`key_metrics`]); a metric it lacks is absent.
    pub metrics: BTreeMap<String, f64>,
}

/// The metrics recorded with every registered model, by name: `accuracy`, `macro_precision`,
/// `macro_recall`, `macro_f1`, `weighted_precision`, `weighted_recall`, `weighted_f1`.
pub fn key_metrics(report: &EvaluationReport) -> BTreeMap<String, f64> {
    let m = &report.macro_average;
    let w = &report.weighted_average;
    [
        ("accuracy", report.accuracy),
        ("macro_precision", m.precision),
        ("macro_recall", m.recall),
        ("macro_f1", m.f1),
        ("weighted_precision", w.precision),
        ("weighted_recall", w.recall),
        ("weighted_f1", w.f1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A URL without its query and fragment (signed URLs carry their signature there) and without
/// user information: safe for logs, Events and error messages.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let had_query = u.query().is_some();
            u.set_query(None);
            u.set_fragment(None);
            let _ = u.set_username("");
            let _ = u.set_password(None);
            let mut s = u.to_string();
            if had_query {
                s.push_str("?…");
            }
            s
        }
        Err(_) => "<unparsable URL>".to_string(),
    }
}

/// A registry's successful answer, at most `limit` bytes of it: a larger answer is `Rejected`, one
/// that breaks off `Unreachable`. `what` leads the message.
pub(crate) async fn read_answer(
    resp: reqwest::Response,
    limit: usize,
    what: &str,
) -> Result<bytes::Bytes, RegistryError> {
    match crate::http::read_capped(resp, limit).await {
        Ok(crate::http::Capped::Complete(bytes)) => Ok(bytes),
        Ok(crate::http::Capped::TooLarge) => Err(RegistryError::Rejected(format!(
            "{what}: the answer is larger than {limit} bytes"
        ))),
        Err(e) => Err(RegistryError::Unreachable(format!(
            "{what}: reading the answer: {}",
            crate::http::describe_transport(e)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_urls_keep_no_signature_or_password() {
        let r = redact_url("https://u:p@cdn.example/a/b.json?expires=1&signature=abc#x");
        assert_eq!(r, "https://cdn.example/a/b.json?…");
        assert_eq!(redact_url("not a url"), "<unparsable URL>");
        assert_eq!(redact_url("http://h/x"), "http://h/x");
    }

    #[test]
    fn credentials_never_print() {
        let basic = RegistryAuth::Basic {
            username: "ci".into(),
            password: "hunter2".into(),
        };
        let bearer = RegistryAuth::Bearer {
            token: "tok-123".into(),
        };
        assert!(!format!("{basic:?}").contains("hunter2"));
        assert!(!format!("{bearer:?}").contains("tok-123"));
        let src = ModelSource {
            weights_url: "https://x/w?signature=s1".into(),
            config_url: "https://x/c?signature=s2".into(),
        };
        assert!(!format!("{src:?}").contains("s1"));
    }
}
