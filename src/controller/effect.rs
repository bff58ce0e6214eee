//! The exchange between the decisions and the I/O: the [`Effect`] a decision asks for and the
//! [`Observation`] that comes back, with the targets and requests they carry (a CXone endpoint
//! and Secret, a registry and its registration request). Pure data: imports no sibling module,
//! so `decide/` (which builds these) and `act.rs`/`registration.rs` (which perform them) both
//! depend on it and not on each other.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::AuditRecord;
use crate::crd::{PromotionSpec, SigningKeyRef};
use crate::cxone::model::{EvaluationResponse, ExportResponse, JobStatus, SubmitResponse};
use crate::cxone::{CancelOutcome, CxoneError};
use crate::evaluation::EvaluationReport;
use crate::registry::mlflow::MlflowTarget;
use crate::registry::oci::OciTarget;
use crate::registry::{Champion, ModelSource, Provenance, RegistryError};

/// Where and as whom a CXone call goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunTarget {
    pub base_url: String,
    pub token_url: String,
    /// Credentials Secret in the job's namespace.
    pub secret: String,
}

/// Why a CXone job is being cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelPurpose {
    /// What is trained changed: a new run replaces it.
    Supersede,
    /// The spec became invalid.
    Invalidate,
    /// `polling.activeDeadlineSeconds` passed.
    Deadline,
    /// The resource is being deleted.
    Delete,
}

/// What the driver saw: the start of a reconciliation, or the outcome of the last effect.
#[derive(Debug)]
pub enum Observation {
    Start,
    Submitted(Result<SubmitResponse, CxoneError>),
    Polled(Result<JobStatus, CxoneError>),
    Evaluated(Result<Arc<EvaluationResponse>, CxoneError>),
    Exported(Result<ExportResponse, CxoneError>),
    Cancelled {
        job_id: String,
        purpose: CancelPurpose,
        result: Result<CancelOutcome, CxoneError>,
    },
    /// What CXone knows under the run's idempotency key (a submission whose answer was lost).
    LookedUp {
        purpose: CancelPurpose,
        result: Result<Option<String>, CxoneError>,
    },
    /// The ConfigMap or Secret was written; `Err`: an object the job does not own is in the way.
    Written(Result<(), String>),
    /// The call could not be made: no usable credentials or endpoint (what is wrong).
    CannotCall(String),
    /// The shared rate limiter has no slot before this long.
    NoSlot(Duration),
    /// The model was registered in one registry (or why not).
    Registered {
        kind: TargetKind,
        result: Result<Registration, RegistryError>,
    },
    /// The promotion (MLflow alias, OCI tag) was set (or why not).
    Promoted {
        kind: TargetKind,
        result: Result<(), RegistryError>,
    },
}

/// The one thing to do next, outside the status write.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// POST the run (the driver builds the payload from the job's data).
    Submit {
        key: String,
        target: RunTarget,
    },
    Poll {
        job_id: String,
        target: RunTarget,
    },
    FetchEvaluation {
        job_id: String,
        target: RunTarget,
    },
    Export {
        job_id: String,
        target: RunTarget,
    },
    Cancel {
        job_id: String,
        target: RunTarget,
        purpose: CancelPurpose,
    },
    /// Ask CXone which job, if any, the key names, without creating one.
    Lookup {
        key: String,
        target: RunTarget,
        purpose: CancelPurpose,
    },
    /// Create the run's immutable audit ConfigMap (or find it already written by the job).
    WriteReport {
        name: String,
        data: BTreeMap<String, String>,
    },
    /// Write the signed URLs into the job's own Secret.
    WriteArtifactSecret {
        name: String,
        export: ExportResponse,
    },
    /// Register the run's model in one registry (idempotent), reading its champion too.
    Register(Box<RegisterRequest>),
    /// Promote a registered model (MLflow alias, OCI tag).
    Promote {
        target: RegistryTarget,
        secret: Option<String>,
        /// MLflow version, or OCI manifest digest.
        version: String,
        alias: String,
    },
}

/// Which registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetKind {
    Oci,
    Mlflow,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Oci => "oci",
            Self::Mlflow => "mlflow",
        }
    }
}

/// Where a model goes.
#[derive(Clone, Debug, PartialEq)]
pub enum RegistryTarget {
    Oci { target: OciTarget, tag: String },
    Mlflow(MlflowTarget),
}

impl RegistryTarget {
    pub fn kind(&self) -> TargetKind {
        match self {
            Self::Oci { .. } => TargetKind::Oci,
            Self::Mlflow(_) => TargetKind::Mlflow,
        }
    }

    /// For humans: the repository, or the tracking server and model name.
    pub fn location(&self) -> String {
        match self {
            Self::Oci { target, .. } => format!("{}/{}", target.registry, target.repository),
            Self::Mlflow(m) => format!(
                "{} model {}",
                crate::registry::redact_url(&m.tracking_uri),
                m.model_name
            ),
        }
    }
}

/// Everything one registration needs.
#[derive(Clone, Debug, PartialEq)]
pub struct RegisterRequest {
    pub target: RegistryTarget,
    /// The credentials Secret in the job's namespace (anonymous without).
    pub secret: Option<String>,
    pub source: ModelSource,
    pub provenance: Provenance,
    pub analysis: Arc<EvaluationReport>,
    /// The audit record as of registration (the final one, with the references, is in the
    /// run's audit ConfigMap).
    pub audit: AuditRecord,
    /// Also read the model promoted under this alias or tag (the champion).
    pub champion_at: Option<String>,
    /// The declared gate, for the model card (the decision itself is made from the outcome).
    pub promotion: Option<PromotionSpec>,
    /// Sign the model with the key in this Secret of the job's namespace.
    pub signing: Option<SigningKeyRef>,
}

/// What a registration found.
#[derive(Clone, Debug, PartialEq)]
pub struct Registration {
    /// `registry/repo@sha256:…` or `models:/<name>/<version>`.
    pub reference: String,
    /// The OCI manifest digest, or the MLflow version number.
    pub version: String,
    /// MLflow: the run id.
    pub run_id: Option<String>,
    pub champion: Option<Champion>,
    /// `sha256:<hex>` of the signing key's public PEM, when the model was signed.
    pub signing_key: Option<String>,
    /// The signature: OCI, its referrer's digest; MLflow, `model.sig`.
    pub signature: Option<String>,
}
