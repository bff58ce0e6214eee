//! Where a model goes in an OCI registry: [`OciTarget`] (`host[:port]/repository`) parsed and
//! checked, tags and digests checked. Pure; imports only the registry's error type.

use reqwest::Url;
use sha2::{Digest as _, Sha256};

use crate::registry::RegistryError;
use crate::text::truncate_chars;

/// Where a model goes: a repository in a registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OciTarget {
    /// `host[:port]`.
    pub registry: String,
    /// The repository path inside the registry, e.g. `cxone/billing-support`.
    pub repository: String,
    /// Speak plain HTTP instead of HTTPS (decided by the controller; loopback test registries).
    pub plain_http: bool,
}

/// Longest `registry/repository` accepted (the distribution registry's name limit).
pub(super) const MAX_REFERENCE_CHARS: usize = 255;

impl OciTarget {
    /// Parses `registry.example.com:5000/cxone/billing-support`: a registry host (with an
    /// optional port) and a repository path, without a scheme, tag or digest. The message says
    /// what is wrong.
    pub fn parse(repository_ref: &str, plain_http: bool) -> Result<Self, String> {
        let shown = truncate_chars(repository_ref, 80);
        let fail = |why: String| Err(format!("repository reference {shown:?}: {why}"));
        if repository_ref.is_empty() {
            return fail(
                "is empty; expected host[:port]/path, e.g. registry.example.com/cxone/skill".into(),
            );
        }
        if repository_ref.chars().count() > MAX_REFERENCE_CHARS {
            return fail(format!("is longer than {MAX_REFERENCE_CHARS} characters"));
        }
        if let Some(c) = repository_ref
            .chars()
            .find(|c| c.is_whitespace() || c.is_control())
        {
            return fail(format!(
                "contains {c:?}; spaces and control characters are not allowed"
            ));
        }
        if repository_ref.contains("://") {
            return fail(
                "must not have a scheme (http:// or https://); plain HTTP is a separate setting"
                    .into(),
            );
        }
        if repository_ref.contains('@') {
            return fail("must not carry a digest (@sha256:…) or credentials (user@host); the operator chooses the digest and credentials come from a Secret".into());
        }
        let Some((registry, repository)) = repository_ref.split_once('/') else {
            return fail("has no repository path; expected host[:port]/path".into());
        };
        check_registry_host(registry)
            .map_err(|e| format!("repository reference {shown:?}: {e}"))?;
        if repository.is_empty() {
            return fail("has no repository path after the registry host".into());
        }
        if let Some(last) = repository.rsplit('/').next()
            && let Some((_, tag)) = last.split_once(':')
        {
            return fail(format!(
                "must not carry a tag (:{}); the tag is chosen per push",
                truncate_chars(tag, 40)
            ));
        }
        for component in repository.split('/') {
            check_path_component(component)
                .map_err(|e| format!("repository reference {shown:?}: {e}"))?;
        }
        Ok(Self {
            registry: registry.to_string(),
            repository: repository.to_string(),
            plain_http,
        })
    }

    /// `https://host[:port]` (or `http://` with [`Self::plain_http`]).
    pub(super) fn base_url(&self) -> Result<Url, RegistryError> {
        let scheme = if self.plain_http { "http" } else { "https" };
        Url::parse(&format!("{scheme}://{}/", self.registry)).map_err(|e| {
            RegistryError::Rejected(format!("registry {:?} is not a host: {e}", self.registry))
        })
    }

    /// `<registry>/<repository>@<digest>`.
    pub(super) fn reference(&self, digest: &str) -> String {
        format!("{}/{}@{digest}", self.registry, self.repository)
    }
}

pub(super) fn check_registry_host(registry: &str) -> Result<(), String> {
    if registry.is_empty() {
        return Err("has no registry host before the first '/'".into());
    }
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        // [IPv6]:port
        let Some((ip, after)) = rest.split_once(']') else {
            return Err("has an unclosed '[' in the registry host".into());
        };
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("registry host [{ip}] is not an IPv6 address"));
        }
        match after {
            "" => (None, None),
            p => match p.strip_prefix(':') {
                Some(p) => (None, Some(p)),
                None => return Err("has text after the IPv6 registry host's ']'".into()),
            },
        }
    } else {
        match registry.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(registry), None),
        }
    };
    if let Some(host) = host {
        if host.is_empty() {
            return Err("has an empty registry host".into());
        }
        if host.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(format!("registry host {host:?} must be lowercase"));
        }
        let labels_ok = host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
        if !labels_ok {
            return Err(format!(
                "registry host {:?} is not a host name or IPv4 address (letters, digits, '-' and '.')",
                truncate_chars(host, 64)
            ));
        }
    }
    if let Some(port) = port {
        let ok = !port.is_empty()
            && port.len() <= 5
            && port.chars().all(|c| c.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p));
        if !ok {
            return Err(format!(
                "registry port {:?} is not a number from 1 to 65535",
                truncate_chars(port, 16)
            ));
        }
    }
    Ok(())
}

/// A repository path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` (the OCI distribution
/// grammar).
pub(super) fn check_path_component(component: &str) -> Result<(), String> {
    let shown = truncate_chars(component, 40);
    if component.is_empty() {
        return Err("has an empty path component ('//' or a trailing '/')".into());
    }
    if component.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!("path component {shown:?} must be lowercase"));
    }
    if let Some(c) = component
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "path component {shown:?} contains {c:?}; only a-z, 0-9, '.', '_' and '-' are allowed"
        ));
    }
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err(format!(
            "path component {shown:?} must start and end with a letter or digit"
        ));
    }
    // Separators between alphanumeric runs: '.', '_', '__' or one or more '-'.
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.chars().all(|c| c == '-');
        if !ok {
            return Err(format!(
                "path component {shown:?} has the separator {sep:?}; use '.', '_', '__' or dashes between letters and digits"
            ));
        }
    }
    Ok(())
}

/// `sha256:` and 64 lowercase hex digits.
pub(super) fn is_sha256_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// An OCI tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub(super) fn check_tag(tag: &str) -> Result<(), RegistryError> {
    let ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && !tag.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(RegistryError::Rejected(format!(
            "tag {:?} is not 1-128 letters, digits, '_', '.' or '-' (not starting with '.' or '-')",
            truncate_chars(tag, 40)
        )))
    }
}

pub(super) fn sha256_hex(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}
