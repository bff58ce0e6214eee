//! What identifies the job being reconciled ([`JobRef`]) and the driver's error type
//! ([`Error`]). Imports nothing from its siblings.

use std::time::Duration;

use crate::crd::SkillTrainingJob;
use crate::cxone::CxoneError;

/// Errors that end a reconciliation early; the controller retries them with backoff. Coming
/// back later is not one of them: that is an `Action` (see `reconcile.rs`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("CXone: {0}")]
    Cxone(#[from] CxoneError),
    #[error("object has no {0}")]
    MissingField(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("reconciliation took longer than {0:?} and was stopped")]
    Timeout(Duration),
    /// A step would write or act on the job cache's copy, which lacks some of the status: the
    /// reconciliation reads the whole object and decides again (never a failure).
    #[error("the cached copy of the job lacks what this step writes")]
    Projected,
}

impl Error {
    /// Static category for metrics labels and logs.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Finalizer(_) => "finalizer",
            Error::Cxone(e) => e.category(),
            Error::MissingField(_) => "invalid_object",
            Error::Conflict(_) => "conflict",
            Error::Timeout(_) => "timeout",
            Error::Projected => "projected",
        }
    }
}

/// The object being reconciled, with the identity every step needs.
pub(crate) struct JobRef<'a> {
    pub obj: &'a SkillTrainingJob,
    pub ns: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub generation: i64,
    /// `obj` is the job cache's copy and lacks some of its status (`projection.rs`): a step
    /// that would write or act on it is decided again on the whole object.
    pub projected: bool,
}

impl<'a> JobRef<'a> {
    pub(crate) fn new(obj: &'a SkillTrainingJob) -> Result<Self, Error> {
        Ok(Self {
            obj,
            ns: obj
                .metadata
                .namespace
                .as_deref()
                .ok_or(Error::MissingField("namespace"))?,
            name: obj
                .metadata
                .name
                .as_deref()
                .ok_or(Error::MissingField("name"))?,
            uid: obj
                .metadata
                .uid
                .as_deref()
                .ok_or(Error::MissingField("uid"))?,
            generation: obj.metadata.generation.unwrap_or(0),
            projected: false,
        })
    }
}
