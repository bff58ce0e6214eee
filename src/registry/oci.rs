//! OCI registries (distribution API), CNCF ModelPack artifacts.

/// An OCI repository a model is pushed to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OciTarget {
    /// `host[:port]`.
    pub registry: String,
    pub repository: String,
    pub plain_http: bool,
}

impl OciTarget {
    /// `registry-host[:port]/path`, without tag or digest.
    pub fn parse(repository_ref: &str, plain_http: bool) -> Result<Self, String> {
        let (registry, repository) = repository_ref
            .split_once('/')
            .ok_or_else(|| format!("{repository_ref:?} needs a registry host and a path"))?;
        if repository.contains([':', '@']) {
            return Err(format!("{repository_ref:?} must not carry a tag or digest"));
        }
        Ok(Self {
            registry: registry.to_string(),
            repository: repository.to_string(),
            plain_http,
        })
    }
}

use std::collections::BTreeMap;

use super::{Champion, Documents, ModelSource, Provenance, RegistryAuth, RegistryError};

/// What a push created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OciPushed {
    pub manifest_digest: String,
    pub reference: String,
    pub referrer_digest: String,
    pub weights_bytes: u64,
    pub referrers_api: bool,
}

/// OCI registry client (replaced by the distribution-API implementation).
pub struct OciRegistry;

impl OciRegistry {
    pub fn new() -> Result<Self, RegistryError> {
        Ok(Self)
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn push(
        &self,
        _target: &OciTarget,
        _auth: &RegistryAuth,
        _tag: &str,
        _source: &ModelSource,
        _provenance: &Provenance,
        _metrics: &BTreeMap<String, f64>,
        _documents: &Documents,
    ) -> Result<OciPushed, RegistryError> {
        Err(RegistryError::Rejected("OCI push is not built yet".into()))
    }

    pub async fn tag(
        &self,
        _target: &OciTarget,
        _auth: &RegistryAuth,
        _digest: &str,
        _tag: &str,
    ) -> Result<(), RegistryError> {
        Err(RegistryError::Rejected("OCI push is not built yet".into()))
    }

    pub async fn champion(
        &self,
        _target: &OciTarget,
        _auth: &RegistryAuth,
        _tag: &str,
    ) -> Result<Option<Champion>, RegistryError> {
        Ok(None)
    }
}
