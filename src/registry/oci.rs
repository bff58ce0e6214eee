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
