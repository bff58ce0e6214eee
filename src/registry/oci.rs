//! OCI registries (distribution API), CNCF ModelPack artifacts.
//!
//! [`OciRegistry::push`] copies a trained model from the CXone export's signed URLs into an OCI
//! repository as a ModelPack artifact, streaming: each file is downloaded and uploaded in chunks
//! of [`DEFAULT_UPLOAD_CHUNK_BYTES`] (one chunk being read while the previous one is sent), its
//! sha256 computed on the way, so memory does not grow with the model's size. The evaluation,
//! the audit record and the evaluation picture follow as a second manifest whose `subject` is the
//! model (an OCI referrer). [`OciRegistry::tag`] promotes a model under another tag;
//! [`OciRegistry::champion`] reads the promoted model's metrics back from its annotations.
//!
//! What is pushed:
//!
//! ```text
//! <registry>/<repository>:<tag>      application/vnd.oci.image.manifest.v1+json
//!   artifactType  application/vnd.cncf.model.manifest.v1+json
//!   config        application/vnd.cncf.model.config.v1+json     (ModelPack model config)
//!   layers        application/vnd.cncf.model.weight.v1.raw         model-weights.json
//!                 application/vnd.cncf.model.weight.config.v1.raw  model-config.json
//!                 (file names as org.cncf.model.filepath and org.opencontainers.image.title)
//!   annotations   org.opencontainers.image.{created,source,title}, io.cxone.ai.<provenance>,
//!                 io.cxone.ai.metrics.<name>
//! <registry>/<repository>@sha256:…   the referrer (artifactType application/vnd.cxone.ai.evaluation.v1+json,
//!   subject = the model; layers evaluation.json, audit.json, evaluation.svg)
//! ```
//!
//! Registries without the referrers API (the distribution registry 2.8 answers 404 on
//! `/v2/<repo>/referrers/<digest>` and sends no `OCI-Subject` header) get the OCI tag-schema
//! fallback: an image index under the tag `sha256-<hex of the model digest>` listing the
//! referrers, merged with what that tag already lists.
//!
//! Why the distribution API is spoken here directly with reqwest rather than through the
//! `oci-client` crate (0.18, which was evaluated for this module):
//! - its error paths read whole response bodies (`text()`) without a limit, and the team's rule
//!   is to read at most 64 KiB of any error body and 4 MiB of any manifest;
//! - a failing token endpoint becomes `AuthenticationFailure(body)` without the HTTP status, so a
//!   503 from the token service could not be told from refused credentials (our `Unreachable`,
//!   retried, versus `Auth`, not retried until the Secret changes);
//! - its manifest push returns neither the `Docker-Content-Digest` (which we verify against our
//!   own hash) nor the `OCI-Subject` header (which says whether the referrers API exists);
//! - its streaming blob upload sends each item of the stream as its own `PATCH` (a download
//!   yields items of a few KiB), and its one-shot uploads take the whole blob in memory;
//! - it would add some twenty crates (proc macros among them) to the build for what is here a
//!   few serde structs.
//!
//! Every request has a connect timeout and a per-read timeout; the requests that carry no file
//! also have a total timeout. Errors are classified into [`RegistryError`] and never carry a
//! password, a token, or a signed URL's query (URLs go through [`redact_url`]).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{
    AUDIT_FILE, CONFIG_FILE, Champion, Documents, EVALUATION_FILE, ModelSource, PICTURE_FILE,
    Provenance, RegistryAuth, RegistryError, WEIGHTS_FILE, redact_url,
};
use crate::text::truncate_chars;

/// The OCI image manifest media type (set explicitly as the manifest's `mediaType`).
pub const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The OCI image index media type (the referrers tag-schema fallback).
pub const OCI_INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// The ModelPack artifact type of the model manifest.
pub const MODEL_ARTIFACT_TYPE: &str = "application/vnd.cncf.model.manifest.v1+json";
/// The ModelPack model config blob.
pub const MODEL_CONFIG_MEDIA_TYPE: &str = "application/vnd.cncf.model.config.v1+json";
/// A ModelPack weights layer, stored as the file itself.
pub const WEIGHT_MEDIA_TYPE: &str = "application/vnd.cncf.model.weight.v1.raw";
/// A ModelPack weights-configuration layer, stored as the file itself.
pub const WEIGHT_CONFIG_MEDIA_TYPE: &str = "application/vnd.cncf.model.weight.config.v1.raw";
/// The artifact type of the evaluation documents (the referrer).
pub const EVALUATION_ARTIFACT_TYPE: &str = "application/vnd.cxone.ai.evaluation.v1+json";
/// The OCI empty descriptor's media type (the referrer's config).
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// ModelPack: the file name of a layer.
pub const FILEPATH_ANNOTATION: &str = "org.cncf.model.filepath";
pub const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";
pub const SOURCE_ANNOTATION: &str = "org.opencontainers.image.source";
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";
/// Prefix of the provenance annotations (`io.cxone.ai.namespace`, …).
pub const ANNOTATION_PREFIX: &str = "io.cxone.ai.";
/// Prefix of the metric annotations (`io.cxone.ai.metrics.accuracy`, …).
pub const METRIC_ANNOTATION_PREFIX: &str = "io.cxone.ai.metrics.";

/// Size of the `PATCH` chunks of a streamed upload. Two chunks are in memory at a time (one being
/// sent, one being read); measured with benches/registry.rs.
pub const DEFAULT_UPLOAD_CHUNK_BYTES: usize = 4 * 1024 * 1024;
const MIN_UPLOAD_CHUNK_BYTES: usize = 64 * 1024;
const MAX_UPLOAD_CHUNK_BYTES: usize = 64 * 1024 * 1024;
/// Most of an error body read (its code and message are all we keep).
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Most of a manifest or index read.
const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// Most of a token endpoint's answer read.
const MAX_TOKEN_BODY: usize = 64 * 1024;
/// Largest file copied from a source: a bound on a source that never ends.
const MAX_SOURCE_BYTES: u64 = 64 * 1024 * 1024 * 1024;
/// Longest error detail quoted from a registry.
const MAX_DETAIL_CHARS: usize = 300;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for any single read (not a total: a large copy may take much longer).
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Total time of a request that carries no file (manifests, tokens, HEADs, upload sessions).
const SMALL_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Total time of one `PATCH` chunk.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(600);

/// The `sha256:<hex>` of `{}`, the OCI empty descriptor's content.
const EMPTY_JSON: &[u8] = b"{}";

// ---------------------------------------------------------------------------------------------
// References

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
const MAX_REFERENCE_CHARS: usize = 255;

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
    fn base_url(&self) -> Result<Url, RegistryError> {
        let scheme = if self.plain_http { "http" } else { "https" };
        Url::parse(&format!("{scheme}://{}/", self.registry)).map_err(|e| {
            RegistryError::Rejected(format!("registry {:?} is not a host: {e}", self.registry))
        })
    }

    /// `<registry>/<repository>@<digest>`.
    fn reference(&self, digest: &str) -> String {
        format!("{}/{}@{digest}", self.registry, self.repository)
    }
}

fn check_registry_host(registry: &str) -> Result<(), String> {
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
fn check_path_component(component: &str) -> Result<(), String> {
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
fn is_sha256_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// An OCI tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
fn check_tag(tag: &str) -> Result<(), RegistryError> {
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

fn sha256_hex(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

// ---------------------------------------------------------------------------------------------
// Manifests

/// An OCI content descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    fn of(media_type: &str, data: &[u8]) -> Self {
        Self {
            media_type: media_type.to_string(),
            digest: sha256_hex(data),
            size: data.len() as u64,
            artifact_type: None,
            annotations: BTreeMap::new(),
        }
    }

    fn annotated(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.to_string(), value.to_string());
        self
    }
}

/// An OCI image manifest. Field order and `BTreeMap`s make its serialisation deterministic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The ModelPack model config (`application/vnd.cncf.model.config.v1+json`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ModelConfig<'a> {
    descriptor: ModelDescriptor<'a>,
    config: ModelFormat,
    modelfs: ModelFs,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ModelDescriptor<'a> {
    created_at: String,
    name: &'a str,
    version: String,
    revision: &'a str,
}

#[derive(Serialize)]
struct ModelFormat {
    format: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ModelFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

/// The model config blob: who the model is and its layers' digests (uncompressed = stored).
fn model_config_json(provenance: &Provenance, layers: &[Descriptor]) -> Vec<u8> {
    let config = ModelConfig {
        descriptor: ModelDescriptor {
            created_at: provenance.created.to_string(),
            name: &provenance.name,
            version: format!("run-{}", provenance.run),
            revision: &provenance.cxone_job_id,
        },
        config: ModelFormat { format: "json" },
        modelfs: ModelFs {
            kind: "layers",
            diff_ids: layers.iter().map(|l| l.digest.clone()).collect(),
        },
    };
    // Serialising these plain structs cannot fail.
    serde_json::to_vec(&config).unwrap_or_default()
}

/// Annotations of the model manifest: OCI standard ones, provenance, metrics (finite values
/// only, as their shortest round-tripping decimal).
fn model_annotations(
    provenance: &Provenance,
    metrics: &BTreeMap<String, f64>,
) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    a.insert(CREATED_ANNOTATION.into(), provenance.created.to_string());
    a.insert(SOURCE_ANNOTATION.into(), provenance.source.clone());
    a.insert(TITLE_ANNOTATION.into(), provenance.name.clone());
    for (key, value) in [
        ("namespace", provenance.namespace.clone()),
        ("name", provenance.name.clone()),
        ("uid", provenance.uid.clone()),
        ("generation", provenance.generation.to_string()),
        ("run", provenance.run.to_string()),
        ("job-id", provenance.cxone_job_id.clone()),
        ("skill-id", provenance.skill_id.clone()),
        ("dataset-digest", provenance.dataset_digest.clone()),
    ] {
        a.insert(format!("{ANNOTATION_PREFIX}{key}"), value);
    }
    for (name, value) in metrics {
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if name_ok && value.is_finite() {
            a.insert(
                format!("{METRIC_ANNOTATION_PREFIX}{name}"),
                value.to_string(),
            );
        }
    }
    a
}

/// The model manifest for its two file layers (weights, config) and config blob.
fn model_manifest(
    provenance: &Provenance,
    metrics: &BTreeMap<String, f64>,
    weights: Descriptor,
    config_file: Descriptor,
    model_config: &[u8],
) -> Manifest {
    Manifest {
        schema_version: 2,
        media_type: OCI_MANIFEST_MEDIA_TYPE.into(),
        artifact_type: Some(MODEL_ARTIFACT_TYPE.into()),
        config: Descriptor::of(MODEL_CONFIG_MEDIA_TYPE, model_config),
        layers: vec![weights, config_file],
        subject: None,
        annotations: model_annotations(provenance, metrics),
    }
}

/// The evaluation documents as layers, in a fixed order.
fn document_layers(documents: &Documents) -> [(Descriptor, &[u8]); 3] {
    [
        (
            EVALUATION_FILE,
            "application/json",
            &documents.evaluation_json[..],
        ),
        (AUDIT_FILE, "application/json", &documents.audit_json[..]),
        (PICTURE_FILE, "image/svg+xml", &documents.picture_svg[..]),
    ]
    .map(|(name, media_type, data)| {
        (
            Descriptor::of(media_type, data).annotated(TITLE_ANNOTATION, name),
            data,
        )
    })
}

/// The referrer carrying the documents, about `subject` (the model manifest).
fn referrer_manifest(
    provenance: &Provenance,
    documents: &Documents,
    subject: Descriptor,
) -> Manifest {
    let mut annotations = BTreeMap::new();
    annotations.insert(
        CREATED_ANNOTATION.to_string(),
        provenance.created.to_string(),
    );
    Manifest {
        schema_version: 2,
        media_type: OCI_MANIFEST_MEDIA_TYPE.into(),
        artifact_type: Some(EVALUATION_ARTIFACT_TYPE.into()),
        config: Descriptor::of(EMPTY_MEDIA_TYPE, EMPTY_JSON),
        layers: document_layers(documents).map(|(d, _)| d).into(),
        subject: Some(subject),
        annotations,
    }
}

fn manifest_bytes(manifest: &Manifest) -> Vec<u8> {
    // A struct of strings, numbers and maps with string keys: serialisation cannot fail.
    serde_json::to_vec(manifest).unwrap_or_default()
}

/// The `sha256-<hex>` tag of the referrers tag-schema fallback for `digest`.
fn fallback_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// Adds `referrer` to the fallback index `existing` (the bytes under the `sha256-<hex>` tag, if
/// any). Entries of other tools are kept as they are; an entry with the same digest is not added
/// twice. Returns the new index bytes, or `None` when `existing` already lists the referrer.
fn merge_fallback_index(
    existing: Option<&[u8]>,
    referrer: &Descriptor,
) -> Result<Option<Vec<u8>>, String> {
    let mut index = match existing {
        None => serde_json::Map::new(),
        Some(bytes) => match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(serde_json::Value::Object(map)) => map,
            Ok(_) => return Err("the referrers fallback tag does not hold a JSON object".into()),
            Err(e) => {
                return Err(format!(
                    "the referrers fallback tag holds invalid JSON: {e}"
                ));
            }
        },
    };
    if let Some(media_type) = index.get("mediaType")
        && media_type.as_str() != Some(OCI_INDEX_MEDIA_TYPE)
    {
        return Err(format!(
            "the referrers fallback tag holds a {}, not an image index",
            truncate_chars(&media_type.to_string(), 80)
        ));
    }
    let mut manifests = match index.remove("manifests") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::Array(list)) => list,
        Some(_) => return Err("the referrers fallback index's manifests is not a list".into()),
    };
    if manifests
        .iter()
        .any(|m| m.get("digest").and_then(|d| d.as_str()) == Some(referrer.digest.as_str()))
    {
        return Ok(None);
    }
    let entry = serde_json::to_value(referrer).map_err(|e| e.to_string())?;
    manifests.push(entry);
    index.insert("schemaVersion".into(), 2.into());
    index.insert("mediaType".into(), OCI_INDEX_MEDIA_TYPE.into());
    index.insert("manifests".into(), manifests.into());
    serde_json::to_vec(&index)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// The champion described by a manifest: its reference and the metrics in its annotations.
fn champion_from_manifest(
    target: &OciTarget,
    digest: &str,
    manifest: &Manifest,
) -> Result<Champion, RegistryError> {
    if manifest.artifact_type.as_deref() != Some(MODEL_ARTIFACT_TYPE) {
        return Err(RegistryError::Rejected(format!(
            "{} is not a ModelPack model (artifactType {:?})",
            target.reference(digest),
            truncate_chars(manifest.artifact_type.as_deref().unwrap_or(""), 80)
        )));
    }
    let metrics = manifest
        .annotations
        .iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix(METRIC_ANNOTATION_PREFIX)?;
            let value = v.trim().parse::<f64>().ok().filter(|f| f.is_finite())?;
            (!name.is_empty()).then(|| (name.to_string(), value))
        })
        .collect();
    Ok(Champion {
        reference: target.reference(digest),
        metrics,
    })
}

// ---------------------------------------------------------------------------------------------
// The client

/// What a push registered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OciPushed {
    /// `sha256:<hex>` of the model manifest.
    pub manifest_digest: String,
    /// `<registry>/<repository>@sha256:<hex>`.
    pub reference: String,
    /// `sha256:<hex>` of the referrer carrying the documents.
    pub referrer_digest: String,
    /// Size of the weights file.
    pub weights_bytes: u64,
    /// False when the registry has no referrers API and the `sha256-<hex>` tag fallback was
    /// maintained instead.
    pub referrers_api: bool,
}

/// A client for OCI registries. Cheap to clone; clones share connection pools. Holds no state
/// between calls (each call authenticates afresh).
#[derive(Clone, Debug)]
pub struct OciRegistry {
    /// For the registry: never follows redirects (they could carry credentials elsewhere).
    http: reqwest::Client,
    /// For the signed source URLs: follows a few redirects (a CDN may send one), sends no
    /// credentials.
    source: reqwest::Client,
    chunk_bytes: usize,
}

impl OciRegistry {
    pub fn new() -> Result<Self, RegistryError> {
        let build = |redirects: reqwest::redirect::Policy| {
            reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(READ_TIMEOUT)
                .user_agent(concat!("cxone-skill-operator/", env!("CARGO_PKG_VERSION")))
                .redirect(redirects)
                .pool_idle_timeout(Duration::from_secs(90))
                .build()
                .map_err(|e| {
                    RegistryError::Rejected(format!(
                        "cannot build the HTTP client: {}",
                        e.without_url()
                    ))
                })
        };
        Ok(Self {
            http: build(reqwest::redirect::Policy::none())?,
            source: build(reqwest::redirect::Policy::limited(5))?,
            chunk_bytes: DEFAULT_UPLOAD_CHUNK_BYTES,
        })
    }

    /// The same client with another upload chunk size (clamped to 64 KiB – 64 MiB); for tuning
    /// (benches/registry.rs).
    pub fn with_upload_chunk_bytes(mut self, bytes: usize) -> Self {
        self.chunk_bytes = bytes.clamp(MIN_UPLOAD_CHUNK_BYTES, MAX_UPLOAD_CHUNK_BYTES);
        self
    }

    /// Push the model under `tag` and the documents as a referrer. Idempotent: the same inputs
    /// give the same digests (provenance.created is fixed per run), blobs already present are
    /// skipped (HEAD) where their digest is known before the upload (the generated ones); the
    /// two source files are streamed each time, since their digest is known only at the end.
    #[allow(clippy::too_many_arguments)]
    pub async fn push(
        &self,
        target: &OciTarget,
        auth: &RegistryAuth,
        tag: &str,
        source: &ModelSource,
        provenance: &Provenance,
        metrics: &BTreeMap<String, f64>,
        documents: &Documents,
    ) -> Result<OciPushed, RegistryError> {
        check_tag(tag)?;
        let mut s = Session::new(self, target, auth, "pull,push")?;
        let dest = format!("{}/{}", target.registry, target.repository);
        let doing = |what: &str| format!("pushing {what} to {dest}");

        let weights = s
            .copy_from_source(&source.weights_url, &doing(WEIGHTS_FILE))
            .await?
            .annotated(FILEPATH_ANNOTATION, WEIGHTS_FILE)
            // Also the OCI title, so generic clients (`oras pull`) write the file by its name.
            .annotated(TITLE_ANNOTATION, WEIGHTS_FILE);
        let weights = Descriptor {
            media_type: WEIGHT_MEDIA_TYPE.into(),
            ..weights
        };
        let config_file = s
            .copy_from_source(&source.config_url, &doing(CONFIG_FILE))
            .await?
            .annotated(FILEPATH_ANNOTATION, CONFIG_FILE)
            // Also the OCI title, so generic clients (`oras pull`) write the file by its name.
            .annotated(TITLE_ANNOTATION, CONFIG_FILE);
        let config_file = Descriptor {
            media_type: WEIGHT_CONFIG_MEDIA_TYPE.into(),
            ..config_file
        };
        let weights_bytes = weights.size;

        let model_config = model_config_json(provenance, &[weights.clone(), config_file.clone()]);
        s.put_blob(&model_config, &doing("the ModelPack config"))
            .await?;
        let manifest = model_manifest(provenance, metrics, weights, config_file, &model_config);
        let manifest_json = manifest_bytes(&manifest);
        let manifest_digest = s
            .put_manifest(
                tag,
                OCI_MANIFEST_MEDIA_TYPE,
                &manifest_json,
                &doing(&format!("the model manifest as {tag}")),
            )
            .await?
            .digest;

        // The referrer.
        s.put_blob(EMPTY_JSON, &doing("the empty config")).await?;
        for (descriptor, data) in document_layers(documents) {
            let name = descriptor
                .annotations
                .get(TITLE_ANNOTATION)
                .cloned()
                .unwrap_or_default();
            s.put_blob(data, &doing(&name)).await?;
        }
        let subject = Descriptor::of(OCI_MANIFEST_MEDIA_TYPE, &manifest_json);
        let subject = Descriptor {
            artifact_type: Some(MODEL_ARTIFACT_TYPE.into()),
            ..subject
        };
        let referrer = referrer_manifest(provenance, documents, subject);
        let referrer_json = manifest_bytes(&referrer);
        let referrer_digest = sha256_hex(&referrer_json);
        let put = s
            .put_manifest(
                &referrer_digest,
                OCI_MANIFEST_MEDIA_TYPE,
                &referrer_json,
                &doing("the evaluation referrer"),
            )
            .await?;
        let referrers_api = if put.oci_subject.as_deref() == Some(manifest_digest.as_str()) {
            true
        } else {
            s.referrers_api(&manifest_digest).await?
        };
        if !referrers_api {
            let entry = Descriptor {
                media_type: OCI_MANIFEST_MEDIA_TYPE.into(),
                digest: referrer_digest.clone(),
                size: referrer_json.len() as u64,
                artifact_type: referrer.artifact_type.clone(),
                annotations: referrer.annotations.clone(),
            };
            s.update_fallback_index(&manifest_digest, &entry).await?;
        }
        Ok(OciPushed {
            reference: target.reference(&manifest_digest),
            manifest_digest,
            referrer_digest,
            weights_bytes,
            referrers_api,
        })
    }

    /// Promotion: the manifest `digest` also under `tag` (re-PUT the same manifest bytes).
    pub async fn tag(
        &self,
        target: &OciTarget,
        auth: &RegistryAuth,
        digest: &str,
        tag: &str,
    ) -> Result<(), RegistryError> {
        check_tag(tag)?;
        if !is_sha256_digest(digest) {
            return Err(RegistryError::Rejected(format!(
                "{:?} is not a sha256:<64 hex digits> digest",
                truncate_chars(digest, 80)
            )));
        }
        let mut s = Session::new(self, target, auth, "pull,push")?;
        let Some(fetched) = s.get_manifest(digest).await? else {
            return Err(RegistryError::Rejected(format!(
                "{} does not exist; push it before tagging it",
                target.reference(digest)
            )));
        };
        if fetched.digest != digest {
            return Err(RegistryError::Rejected(format!(
                "the registry answered {} with content of digest {}",
                target.reference(digest),
                fetched.digest
            )));
        }
        s.put_manifest(
            tag,
            &fetched.media_type,
            &fetched.bytes,
            &format!("tagging {}@{digest} as {tag}", target.repository),
        )
        .await?;
        Ok(())
    }

    /// The model currently under `tag` (e.g. "approved"), with the metrics read back from its
    /// manifest annotations; Ok(None) when the tag does not exist.
    pub async fn champion(
        &self,
        target: &OciTarget,
        auth: &RegistryAuth,
        tag: &str,
    ) -> Result<Option<Champion>, RegistryError> {
        check_tag(tag)?;
        let mut s = Session::new(self, target, auth, "pull")?;
        let Some(fetched) = s.get_manifest(tag).await? else {
            return Ok(None);
        };
        if fetched.media_type != OCI_MANIFEST_MEDIA_TYPE {
            return Err(RegistryError::Rejected(format!(
                "{}:{tag} is a {}, not an OCI image manifest",
                target.registry,
                truncate_chars(&fetched.media_type, 80)
            )));
        }
        let manifest: Manifest = serde_json::from_slice(&fetched.bytes).map_err(|e| {
            RegistryError::Rejected(format!(
                "the manifest under tag {tag} is not a valid OCI manifest: {}",
                truncate_chars(&e.to_string(), 200)
            ))
        })?;
        champion_from_manifest(target, &fetched.digest, &manifest).map(Some)
    }
}

/// A manifest as fetched: bytes, their digest and media type.
struct Fetched {
    bytes: Bytes,
    digest: String,
    media_type: String,
}

/// The outcome of a manifest PUT.
struct PutManifest {
    digest: String,
    /// The `OCI-Subject` header: the registry processed the manifest's subject (referrers API).
    oci_subject: Option<String>,
}

/// One call's conversation with a registry: the credentials, and the `Authorization` header
/// found to work (kept for the call only).
struct Session<'a> {
    reg: &'a OciRegistry,
    target: &'a OciTarget,
    auth: &'a RegistryAuth,
    base: Url,
    /// `pull` or `pull,push`: the scope asked of a token service.
    actions: &'static str,
    authorization: Option<HeaderValue>,
}

impl<'a> Session<'a> {
    fn new(
        reg: &'a OciRegistry,
        target: &'a OciTarget,
        auth: &'a RegistryAuth,
        actions: &'static str,
    ) -> Result<Self, RegistryError> {
        let base = target.base_url()?;
        // Basic credentials and bearer tokens are offered up front; a challenge may replace
        // them (a token service).
        let authorization = match auth {
            RegistryAuth::Anonymous => None,
            RegistryAuth::Basic { username, password } => Some(basic_header(username, password)?),
            RegistryAuth::Bearer { token } => Some(bearer_header(token)?),
        };
        Ok(Self {
            reg,
            target,
            auth,
            base,
            actions,
            authorization,
        })
    }

    /// `/v2/<repository>/<rest>` on the registry.
    fn url(&self, rest: &str) -> Result<Url, RegistryError> {
        self.base
            .join(&format!("v2/{}/{rest}", self.target.repository))
            .map_err(|e| RegistryError::Rejected(format!("cannot build a registry URL: {e}")))
    }

    /// A `Location` header resolved against the registry (it may be relative).
    fn location(&self, resp: &reqwest::Response, what: &str) -> Result<Url, RegistryError> {
        let location = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                RegistryError::Rejected(format!(
                    "{what}: the registry answered {} without a usable Location header",
                    resp.status()
                ))
            })?;
        let url = self.base.join(location).map_err(|e| {
            RegistryError::Rejected(format!(
                "{what}: the registry's Location header is not a URL: {e}"
            ))
        })?;
        // Model data goes where the registry says, but never from HTTPS down to plain HTTP
        // (credentials are only sent to the registry's own origin, see `send`).
        let scheme_ok =
            url.scheme() == "https" || (url.scheme() == "http" && self.target.plain_http);
        if !scheme_ok {
            return Err(RegistryError::Rejected(format!(
                "{what}: the registry's Location {} is not HTTPS",
                redact_url(url.as_str())
            )));
        }
        Ok(url)
    }

    fn same_origin(&self, url: &Url) -> bool {
        url.scheme() == self.base.scheme()
            && url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default()
    }

    /// Sends a request (credentials attached when it goes to the registry itself), answering a
    /// `401` challenge once. Returns the response whatever its status; transport failures are
    /// `Unreachable`.
    async fn send(
        &mut self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: Option<Bytes>,
        timeout: Duration,
        what: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut challenged = false;
        loop {
            let mut req = self
                .reg
                .http
                .request(method.clone(), url.clone())
                .headers(headers.clone())
                .timeout(timeout);
            if let Some(auth) = &self.authorization
                && self.same_origin(&url)
            {
                req = req.header(header::AUTHORIZATION, auth.clone());
            }
            req = match &body {
                Some(b) => req.body(b.clone()),
                None if method == Method::PUT
                    || method == Method::POST
                    || method == Method::PATCH =>
                {
                    req.header(header::CONTENT_LENGTH, "0")
                }
                None => req,
            };
            let resp = req
                .send()
                .await
                .map_err(|e| RegistryError::Unreachable(format!("{what}: {}", transport(e))))?;
            if resp.status() != StatusCode::UNAUTHORIZED || challenged || !self.same_origin(&url) {
                return Ok(resp);
            }
            challenged = true;
            self.answer_challenge(&resp, what).await?;
        }
    }

    /// Sets [`Self::authorization`] from a 401's `WWW-Authenticate` challenge.
    async fn answer_challenge(
        &mut self,
        resp: &reqwest::Response,
        what: &str,
    ) -> Result<(), RegistryError> {
        let challenges: Vec<Challenge> = resp
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(parse_challenge)
            .collect();
        let bearer = challenges.iter().find_map(|c| match c {
            Challenge::Bearer { realm, service } => Some((realm.clone(), service.clone())),
            Challenge::Basic => None,
        });
        if let Some((realm, service)) = bearer {
            let token = self.fetch_token(&realm, service.as_deref(), what).await?;
            self.authorization = Some(bearer_header(&token)?);
            return Ok(());
        }
        let basic = challenges.iter().any(|c| matches!(c, Challenge::Basic));
        match (basic, self.auth) {
            // Basic credentials were already sent with the refused request.
            (true, RegistryAuth::Basic { username, .. }) => Err(RegistryError::Auth(format!(
                "{what}: the registry refused the password of user {:?} (HTTP 401)",
                truncate_chars(username, 64)
            ))),
            (true, RegistryAuth::Anonymous) => Err(RegistryError::Auth(format!(
                "{what}: the registry requires a user name and password (HTTP 401), and none were given"
            ))),
            (true, RegistryAuth::Bearer { .. }) => Err(RegistryError::Auth(format!(
                "{what}: the registry refused the bearer token and asks for a user name and password (HTTP 401)"
            ))),
            (false, _) => Err(RegistryError::Auth(format!(
                "{what}: the registry answered HTTP 401 without a Basic or Bearer challenge"
            ))),
        }
    }

    /// The token flow of a `Bearer realm=…,service=…` challenge: GET the realm (with Basic
    /// credentials when configured), or exchange an identity token (OAuth2 refresh_token grant).
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        what: &str,
    ) -> Result<String, RegistryError> {
        let realm_url = Url::parse(realm).map_err(|_| {
            RegistryError::Rejected(format!(
                "{what}: the registry's token realm {} is not a URL",
                redact_url(realm)
            ))
        })?;
        // Credentials go to the token service only over HTTPS, unless the target itself is
        // plain HTTP (a loopback test registry).
        let scheme_ok = realm_url.scheme() == "https"
            || (realm_url.scheme() == "http" && self.target.plain_http);
        if !scheme_ok {
            return Err(RegistryError::Rejected(format!(
                "{what}: the registry's token realm {} is not HTTPS; credentials are not sent there",
                redact_url(realm)
            )));
        }
        let scope = format!("repository:{}:{}", self.target.repository, self.actions);
        let mut query_url = realm_url.clone();
        {
            let mut q = query_url.query_pairs_mut();
            q.append_pair("scope", &scope);
            if let Some(service) = service {
                q.append_pair("service", service);
            }
        }
        let shown = redact_url(realm);
        let req = match self.auth {
            RegistryAuth::Bearer { token } => {
                let mut form: Vec<(&str, &str)> = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token),
                    ("client_id", "cxone-skill-operator"),
                    ("scope", &scope),
                ];
                if let Some(service) = service {
                    form.push(("service", service));
                }
                self.reg.http.post(realm_url).form(&form)
            }
            RegistryAuth::Basic { username, password } => self
                .reg
                .http
                .get(query_url)
                .basic_auth(username, Some(password)),
            RegistryAuth::Anonymous => self.reg.http.get(query_url),
        };
        let resp = req
            .timeout(SMALL_REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|e| {
                RegistryError::Unreachable(format!(
                    "{what}: token service {shown}: {}",
                    transport(e)
                ))
            })?;
        let status = resp.status();
        if !status.is_success() {
            let detail = error_detail(resp).await;
            return Err(classify(
                status,
                &format!("{what}: the token service {shown} refused to issue a token for {scope}"),
                &detail,
            ));
        }
        let body = read_capped(resp, MAX_TOKEN_BODY, what).await?;
        #[derive(Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
        }
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|_| {
            RegistryError::Rejected(format!(
                "{what}: the token service {shown} answered no JSON token"
            ))
        })?;
        answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                RegistryError::Rejected(format!(
                    "{what}: the token service {shown} answered without a token"
                ))
            })
    }

    /// Fails with the registry's answer classified, unless its status is `expected`.
    async fn expect(
        &self,
        resp: reqwest::Response,
        expected: &[StatusCode],
        what: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        if expected.contains(&resp.status()) {
            return Ok(resp);
        }
        let status = resp.status();
        let detail = error_detail(resp).await;
        Err(classify(status, what, &detail))
    }

    /// HEAD a blob: true when the registry has it.
    async fn has_blob(&mut self, digest: &str, what: &str) -> Result<bool, RegistryError> {
        let url = self.url(&format!("blobs/{digest}"))?;
        let resp = self
            .send(
                Method::HEAD,
                url,
                HeaderMap::new(),
                None,
                SMALL_REQUEST_TIMEOUT,
                what,
            )
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => self.expect(resp, &[], what).await.map(|_| false),
        }
    }

    /// `POST /v2/<repo>/blobs/uploads/` → the upload's location.
    async fn start_upload(&mut self, what: &str) -> Result<Url, RegistryError> {
        let url = self.url("blobs/uploads/")?;
        let resp = self
            .send(
                Method::POST,
                url,
                HeaderMap::new(),
                None,
                SMALL_REQUEST_TIMEOUT,
                what,
            )
            .await?;
        let resp = self.expect(resp, &[StatusCode::ACCEPTED], what).await?;
        self.location(&resp, what)
    }

    /// `PUT <location>?digest=…` with the last bytes (possibly none): completes an upload.
    async fn finish_upload(
        &mut self,
        location: Url,
        digest: &str,
        body: Option<Bytes>,
        what: &str,
    ) -> Result<(), RegistryError> {
        let mut url = location;
        url.query_pairs_mut().append_pair("digest", digest);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        let resp = self
            .send(Method::PUT, url, headers, body, CHUNK_TIMEOUT, what)
            .await?;
        let resp = self
            .expect(
                resp,
                &[StatusCode::CREATED, StatusCode::NO_CONTENT, StatusCode::OK],
                what,
            )
            .await?;
        stored_as(&resp, digest, "blob", what)?;
        Ok(())
    }

    /// Uploads a blob held in memory, unless the registry has it already.
    async fn put_blob(&mut self, data: &[u8], what: &str) -> Result<(), RegistryError> {
        let digest = sha256_hex(data);
        if self.has_blob(&digest, what).await? {
            return Ok(());
        }
        let location = self.start_upload(what).await?;
        self.finish_upload(location, &digest, Some(Bytes::copy_from_slice(data)), what)
            .await
    }

    /// Streams a file from a signed URL into a blob: chunked upload, sha256 and byte count on the
    /// way, size checked against the source's Content-Length. Returns the blob's descriptor
    /// (media type `application/octet-stream`, to be replaced by the caller).
    async fn copy_from_source(
        &mut self,
        url: &str,
        what: &str,
    ) -> Result<Descriptor, RegistryError> {
        // The registry first: refused credentials or a registry that is down are found before
        // anything is downloaded.
        let location = self.start_upload(what).await?;
        let shown = redact_url(url);
        let mut last_location = location.clone();
        let result = self
            .stream_source(url, &shown, location, &mut last_location, what)
            .await;
        if result.is_err() {
            // Best effort: the registry would expire the abandoned upload anyway.
            let headers = self.auth_headers_for(&last_location);
            let _ = self
                .reg
                .http
                .delete(last_location)
                .headers(headers)
                .timeout(Duration::from_secs(10))
                .send()
                .await;
        }
        result
    }

    /// The `Authorization` header of this session for `url` (none for another origin), for a
    /// request that bypasses [`Self::send`].
    fn auth_headers_for(&self, url: &Url) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(auth) = &self.authorization
            && self.same_origin(url)
        {
            headers.insert(header::AUTHORIZATION, auth.clone());
        }
        headers
    }

    async fn stream_source(
        &mut self,
        url: &str,
        shown: &str,
        mut location: Url,
        last_location: &mut Url,
        what: &str,
    ) -> Result<Descriptor, RegistryError> {
        let resp =
            self.reg.source.get(url).send().await.map_err(|e| {
                RegistryError::Source(format!("{what}: GET {shown}: {}", transport(e)))
            })?;
        let status = resp.status();
        if matches!(
            status,
            StatusCode::FORBIDDEN | StatusCode::NOT_FOUND | StatusCode::GONE
        ) {
            return Err(RegistryError::SourceExpired(format!(
                "{what}: GET {shown} answered {status}"
            )));
        }
        if !status.is_success() {
            return Err(RegistryError::Source(format!(
                "{what}: GET {shown} answered {status}"
            )));
        }
        let mut reader = SourceReader {
            expected: resp.content_length(),
            resp,
            pending: Bytes::new(),
            total: 0,
            hasher: Sha256::new(),
            what,
            shown,
        };
        if let Some(n) = reader.expected.filter(|n| *n > MAX_SOURCE_BYTES) {
            return Err(RegistryError::Source(format!(
                "{what}: GET {shown} announces {n} bytes, more than the {MAX_SOURCE_BYTES} copied at most"
            )));
        }

        let chunk_bytes = self.reg.chunk_bytes;
        let mut offset: u64 = 0;
        let mut current = reader.next_chunk(chunk_bytes).await?;
        while !current.is_empty() {
            // Send this chunk while reading the next one.
            let len = current.len() as u64;
            *last_location = location.clone();
            let patch = self.patch_chunk(location, current, offset, what);
            let (patched, next) = tokio::join!(patch, reader.next_chunk(chunk_bytes));
            location = patched?;
            current = next?;
            offset += len;
        }
        *last_location = location.clone();
        reader.finish()?;
        let digest = format!("sha256:{}", hex::encode(reader.hasher.finalize()));
        self.finish_upload(location, &digest, None, what).await?;
        Ok(Descriptor {
            media_type: "application/octet-stream".into(),
            digest,
            size: offset,
            artifact_type: None,
            annotations: BTreeMap::new(),
        })
    }

    /// One `PATCH` of a chunked upload; returns the location for the next request.
    async fn patch_chunk(
        &mut self,
        location: Url,
        chunk: Bytes,
        offset: u64,
        what: &str,
    ) -> Result<Url, RegistryError> {
        let end = offset + chunk.len() as u64 - 1;
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        // `Content-Range: <start>-<end>` (inclusive, without a unit), as the distribution API
        // has it.
        let range = HeaderValue::from_str(&format!("{offset}-{end}"))
            .map_err(|e| RegistryError::Rejected(format!("{what}: {e}")))?;
        headers.insert(header::CONTENT_RANGE, range);
        let resp = self
            .send(
                Method::PATCH,
                location,
                headers,
                Some(chunk),
                CHUNK_TIMEOUT,
                what,
            )
            .await?;
        let resp = self.expect(resp, &[StatusCode::ACCEPTED], what).await?;
        self.location(&resp, what)
    }

    /// GET a manifest by tag or digest; `None` when it does not exist. Reads at most 4 MiB and
    /// checks the content against a requested digest.
    async fn get_manifest(&mut self, reference: &str) -> Result<Option<Fetched>, RegistryError> {
        let separator = if reference.starts_with("sha256:") {
            '@'
        } else {
            ':'
        };
        let what = format!(
            "fetching {}/{}{separator}{reference}",
            self.target.registry, self.target.repository
        );
        let url = self.url(&format!("manifests/{reference}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static(
                "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
            ),
        );
        let resp = self
            .send(
                Method::GET,
                url,
                headers,
                None,
                SMALL_REQUEST_TIMEOUT,
                &what,
            )
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self.expect(resp, &[StatusCode::OK], &what).await?;
        let content_type = header_str(&resp, "content-type").map(str::to_string);
        let bytes = read_capped(resp, MAX_MANIFEST_BYTES, &what).await?;
        let digest = sha256_hex(&bytes);
        if reference.starts_with("sha256:") && digest != reference {
            return Err(RegistryError::Rejected(format!(
                "{what}: the registry answered content of digest {digest}"
            )));
        }
        // The manifest's own mediaType wins over the Content-Type header.
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct MediaType {
            media_type: Option<String>,
        }
        let media_type = serde_json::from_slice::<MediaType>(&bytes)
            .ok()
            .and_then(|m| m.media_type)
            .or(content_type)
            .unwrap_or_default();
        Ok(Some(Fetched {
            bytes,
            digest,
            media_type,
        }))
    }

    /// `PUT /v2/<repo>/manifests/<reference>`; checks `Docker-Content-Digest` against our hash.
    async fn put_manifest(
        &mut self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
        what: &str,
    ) -> Result<PutManifest, RegistryError> {
        let digest = sha256_hex(bytes);
        let url = self.url(&format!("manifests/{reference}"))?;
        let mut headers = HeaderMap::new();
        let content_type = HeaderValue::from_str(media_type).map_err(|_| {
            RegistryError::Rejected(format!(
                "{what}: media type {media_type:?} is not a header value"
            ))
        })?;
        headers.insert(header::CONTENT_TYPE, content_type);
        let resp = self
            .send(
                Method::PUT,
                url,
                headers,
                Some(Bytes::copy_from_slice(bytes)),
                SMALL_REQUEST_TIMEOUT,
                what,
            )
            .await?;
        let resp = self
            .expect(
                resp,
                &[StatusCode::CREATED, StatusCode::OK, StatusCode::ACCEPTED],
                what,
            )
            .await?;
        stored_as(&resp, &digest, "manifest", what)?;
        Ok(PutManifest {
            digest,
            oci_subject: header_str(&resp, "oci-subject").map(str::to_string),
        })
    }

    /// Whether `GET /v2/<repo>/referrers/<digest>` exists (404: no referrers API).
    async fn referrers_api(&mut self, digest: &str) -> Result<bool, RegistryError> {
        let what = &format!(
            "checking {}/{} for the referrers API",
            self.target.registry, self.target.repository
        );
        let url = self.url(&format!("referrers/{digest}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static(OCI_INDEX_MEDIA_TYPE),
        );
        let resp = self
            .send(Method::GET, url, headers, None, SMALL_REQUEST_TIMEOUT, what)
            .await?;
        match resp.status() {
            StatusCode::OK => {
                let is_index = header_str(&resp, "content-type")
                    .is_some_and(|t| t.starts_with(OCI_INDEX_MEDIA_TYPE));
                Ok(is_index)
            }
            StatusCode::NOT_FOUND => Ok(false),
            _ => self.expect(resp, &[], what).await.map(|_| false),
        }
    }

    /// The referrers tag-schema fallback: `referrer` listed in the index under `sha256-<hex>`.
    async fn update_fallback_index(
        &mut self,
        subject_digest: &str,
        referrer: &Descriptor,
    ) -> Result<(), RegistryError> {
        let tag = fallback_tag(subject_digest);
        let existing = self.get_manifest(&tag).await?;
        let merged = merge_fallback_index(existing.as_ref().map(|f| &f.bytes[..]), referrer)
            .map_err(|e| {
                RegistryError::Rejected(format!("{}:{tag}: {e}", self.target.repository))
            })?;
        if let Some(index) = merged {
            self.put_manifest(
                &tag,
                OCI_INDEX_MEDIA_TYPE,
                &index,
                &format!(
                    "pushing the referrers fallback index {}:{tag}",
                    self.target.repository
                ),
            )
            .await?;
        }
        Ok(())
    }
}

/// Reads a source response in chunks of a given size, hashing and counting.
struct SourceReader<'a> {
    resp: reqwest::Response,
    /// Bytes read from the response and not yet handed out.
    pending: Bytes,
    total: u64,
    expected: Option<u64>,
    hasher: Sha256,
    what: &'a str,
    shown: &'a str,
}

impl SourceReader<'_> {
    /// The next `max` bytes (fewer at the end; empty when the file is done).
    async fn next_chunk(&mut self, max: usize) -> Result<Bytes, RegistryError> {
        let mut buf = BytesMut::with_capacity(max);
        loop {
            if !self.pending.is_empty() {
                let take = self.pending.len().min(max - buf.len());
                buf.extend_from_slice(&self.pending.split_to(take));
                if buf.len() == max {
                    break;
                }
            }
            match self.resp.chunk().await {
                Ok(Some(piece)) => {
                    self.total += piece.len() as u64;
                    if self.total > MAX_SOURCE_BYTES
                        || self.expected.is_some_and(|n| self.total > n)
                    {
                        return Err(RegistryError::Source(format!(
                            "{}: GET {} sent more than {} bytes",
                            self.what,
                            self.shown,
                            self.expected.unwrap_or(MAX_SOURCE_BYTES)
                        )));
                    }
                    self.hasher.update(&piece);
                    self.pending = piece;
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(RegistryError::Source(format!(
                        "{}: the download from {} broke off after {} bytes: {}",
                        self.what,
                        self.shown,
                        self.total,
                        transport(e)
                    )));
                }
            }
        }
        Ok(buf.freeze())
    }

    /// Checks the byte count against the declared Content-Length.
    fn finish(&self) -> Result<(), RegistryError> {
        match self.expected {
            Some(n) if n != self.total => Err(RegistryError::Source(format!(
                "{}: GET {} declared {n} bytes but sent {}",
                self.what, self.shown, self.total
            ))),
            _ => Ok(()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn basic_header(username: &str, password: &str) -> Result<HeaderValue, RegistryError> {
    use base64::Engine as _;
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))
        .map_err(|_| RegistryError::Auth("the user name cannot be sent in a header".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

fn bearer_header(token: &str) -> Result<HeaderValue, RegistryError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        RegistryError::Auth("the bearer token has characters not allowed in a header".into())
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// The registry stored the `kind` under the digest it was sent as (its `Docker-Content-Digest`,
/// when it answers one).
fn stored_as(
    resp: &reqwest::Response,
    digest: &str,
    kind: &str,
    what: &str,
) -> Result<(), RegistryError> {
    match header_str(resp, "docker-content-digest") {
        Some(answered) if answered != digest => Err(RegistryError::Rejected(format!(
            "{what}: the registry stored the {kind} as {}, not {digest}",
            truncate_chars(answered, 80)
        ))),
        _ => Ok(()),
    }
}

fn header_str<'r>(resp: &'r reqwest::Response, name: &str) -> Option<&'r str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// A `WWW-Authenticate` challenge we can answer.
#[derive(Debug, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// Parses one `WWW-Authenticate` value: `Basic realm="…"` or
/// `Bearer realm="…",service="…",scope="…"`. Other schemes give `None`.
fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_auth_params(rest);
    let realm = params.get("realm")?.clone();
    Some(Challenge::Bearer {
        realm,
        service: params.get("service").cloned(),
    })
}

/// `key="quoted \" value", key=token, …` → lowercase keys and unquoted values.
fn parse_auth_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            break;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() != Some(&'=') {
            continue;
        }
        chars.next();
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(escaped) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value = value.trim().to_string();
        }
        out.insert(key.to_ascii_lowercase(), value);
    }
    out
}

/// A transport error without its URL (a signed URL's query must not leak), with its causes.
fn transport(e: reqwest::Error) -> String {
    let timeout = e.is_timeout();
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    if timeout && !message.contains("timed out") {
        message.push_str(" (timed out)");
    }
    truncate_chars(&message, MAX_DETAIL_CHARS)
}

/// Reads at most `limit` bytes of a body; more is an error.
async fn read_capped(
    mut resp: reqwest::Response,
    limit: usize,
    what: &str,
) -> Result<Bytes, RegistryError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(RegistryError::Rejected(format!(
            "{what}: the registry's answer is larger than {limit} bytes"
        )));
    }
    let mut out = BytesMut::new();
    loop {
        match resp.chunk().await {
            Ok(Some(piece)) => {
                if piece.len() > limit - out.len() {
                    return Err(RegistryError::Rejected(format!(
                        "{what}: the registry's answer is larger than {limit} bytes"
                    )));
                }
                out.extend_from_slice(&piece);
            }
            Ok(None) => return Ok(out.freeze()),
            Err(e) => {
                return Err(RegistryError::Unreachable(format!(
                    "{what}: reading the answer: {}",
                    transport(e)
                )));
            }
        }
    }
}

/// The registry's error code and message from at most 64 KiB of an error body: the OCI error
/// envelope's `CODE: message` entries, or the start of a plain-text body.
async fn error_detail(mut resp: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match resp.chunk().await {
            Ok(Some(piece)) => {
                let room = MAX_ERROR_BODY - body.len();
                body.extend_from_slice(&piece[..piece.len().min(room)]);
            }
            _ => break,
        }
    }
    detail_of(&body)
}

fn detail_of(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Envelope {
        errors: Vec<EnvelopeError>,
    }
    #[derive(Deserialize)]
    struct EnvelopeError {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let text = match serde_json::from_slice::<Envelope>(body) {
        Ok(envelope) if !envelope.errors.is_empty() => envelope
            .errors
            .iter()
            .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => format!("{}: {}", e.code, e.message),
                (false, true) => e.code.clone(),
                _ => e.message.clone(),
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => String::from_utf8_lossy(body).into_owned(),
    };
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    truncate_chars(clean.trim(), MAX_DETAIL_CHARS)
}

/// A registry's non-success answer as a [`RegistryError`]: 401/403 `Auth`; 429 and 5xx
/// `Unreachable`; everything else `Rejected`.
fn classify(status: StatusCode, what: &str, detail: &str) -> RegistryError {
    let message = if detail.is_empty() {
        format!("{what}: HTTP {status}")
    } else {
        format!("{what}: HTTP {status}: {detail}")
    };
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => RegistryError::Auth(message),
        StatusCode::TOO_MANY_REQUESTS => RegistryError::Unreachable(message),
        s if s.is_server_error() => RegistryError::Unreachable(message),
        _ => RegistryError::Rejected(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provenance() -> Provenance {
        Provenance {
            namespace: "team-a".into(),
            name: "billing".into(),
            uid: "0d6f-uid".into(),
            generation: 3,
            run: 2,
            cxone_job_id: "job-42".into(),
            skill_id: "skill-abc".into(),
            dataset_digest: format!("sha256:{}", "ab".repeat(32)),
            created: "2025-06-01T12:00:00Z".parse().unwrap(),
            source: "kubernetes://team-a/skilltrainingjobs/billing".into(),
            params: BTreeMap::new(),
        }
    }

    fn metrics() -> BTreeMap<String, f64> {
        [
            ("accuracy".to_string(), 0.8333333333333334),
            ("macro_f1".to_string(), 1.0),
            ("bad value".to_string(), 0.5),
            ("nan".to_string(), f64::NAN),
        ]
        .into_iter()
        .collect()
    }

    fn layers() -> (Descriptor, Descriptor) {
        let w = Descriptor {
            media_type: WEIGHT_MEDIA_TYPE.into(),
            ..Descriptor::of("x", b"weights")
        }
        .annotated(FILEPATH_ANNOTATION, WEIGHTS_FILE);
        let c = Descriptor {
            media_type: WEIGHT_CONFIG_MEDIA_TYPE.into(),
            ..Descriptor::of("x", b"config")
        }
        .annotated(FILEPATH_ANNOTATION, CONFIG_FILE);
        (w, c)
    }

    fn built() -> (Manifest, Vec<u8>) {
        let (w, c) = layers();
        let cfg = model_config_json(&provenance(), &[w.clone(), c.clone()]);
        let m = model_manifest(&provenance(), &metrics(), w, c, &cfg);
        let bytes = manifest_bytes(&m);
        (m, bytes)
    }

    #[test]
    fn valid_references_parse() {
        let t = OciTarget::parse("registry.example.com:5000/cxone/billing-support", false).unwrap();
        assert_eq!(t.registry, "registry.example.com:5000");
        assert_eq!(t.repository, "cxone/billing-support");
        assert!(!t.plain_http);
        for ok in [
            "127.0.0.1:5000/a",
            "localhost/a/b/c",
            "[::1]:5000/x",
            "r.io/a.b/c_d/e__f/g---h/0",
        ] {
            assert!(OciTarget::parse(ok, true).is_ok(), "{ok}");
        }
        assert_eq!(
            OciTarget::parse("h:1/x", true)
                .unwrap()
                .base_url()
                .unwrap()
                .as_str(),
            "http://h:1/"
        );
        assert_eq!(
            OciTarget::parse("h/x", false)
                .unwrap()
                .base_url()
                .unwrap()
                .as_str(),
            "https://h/"
        );
    }

    #[test]
    fn hostile_references_are_refused_with_the_reason() {
        for (bad, why) in [
            ("", "empty"),
            ("registry.example.com", "no repository path"),
            ("registry.example.com/", "no repository path"),
            ("registry.example.com/cxone/skill:v1", "tag"),
            ("registry.example.com/cxone/skill@sha256:abc", "digest"),
            ("user:pw@registry.example.com/x", "credentials"),
            ("https://registry.example.com/x", "scheme"),
            ("registry.example.com/Cxone/skill", "lowercase"),
            ("Registry.example.com/x", "lowercase"),
            ("registry.example.com/a//b", "empty path component"),
            ("registry.example.com/a/", "empty path component"),
            ("registry.example.com/-a", "start and end"),
            ("registry.example.com/a..b", "separator"),
            ("registry.example.com/a/../b", "start and end"),
            ("registry.example.com/a b", "spaces"),
            ("registry.example.com/a\nb", "control"),
            ("registry.example.com/a%2fb", "contains '%'"),
            ("registry.example.com:0/a", "port"),
            ("registry.example.com:99999/a", "port"),
            ("registry.example.com:x/a", "port"),
            ("reg_istry/a", "host name"),
            ("[::1/a", "unclosed"),
            ("[zz]:5/a", "IPv6"),
            (":5000/a", "empty registry host"),
            ("/a", "no registry host"),
        ] {
            let err = OciTarget::parse(bad, false).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        let long = format!("r.io/{}", "a".repeat(300));
        assert!(
            OciTarget::parse(&long, false)
                .unwrap_err()
                .contains("longer")
        );
        // Refusals quote at most a short prefix of what was given.
        let err = OciTarget::parse(&format!("r.io/{}:tag", "b".repeat(200)), false).unwrap_err();
        assert!(err.len() < 400, "{err}");
    }

    #[test]
    fn tags_and_digests_are_checked() {
        assert!(check_tag("approved").is_ok());
        assert!(check_tag("run-2_v1.0").is_ok());
        for bad in ["", ".x", "-x", "a/b", "a:b", &"t".repeat(129)] {
            assert!(check_tag(bad).is_err(), "{bad}");
        }
        assert!(is_sha256_digest(&format!("sha256:{}", "0a".repeat(32))));
        assert!(!is_sha256_digest(&format!("sha256:{}", "0A".repeat(32))));
        assert!(!is_sha256_digest("sha256:abc"));
        assert!(!is_sha256_digest(&format!("sha512:{}", "0a".repeat(32))));
    }

    #[test]
    fn the_model_manifest_is_modelpack_and_deterministic() {
        let (m, bytes) = built();
        let (_, again) = built();
        assert_eq!(bytes, again, "same inputs, same bytes");
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["schemaVersion"], 2);
        assert_eq!(v["mediaType"], OCI_MANIFEST_MEDIA_TYPE);
        assert_eq!(v["artifactType"], MODEL_ARTIFACT_TYPE);
        assert_eq!(v["config"]["mediaType"], MODEL_CONFIG_MEDIA_TYPE);
        assert_eq!(v["layers"][0]["mediaType"], WEIGHT_MEDIA_TYPE);
        assert_eq!(
            v["layers"][0]["annotations"][FILEPATH_ANNOTATION],
            WEIGHTS_FILE
        );
        assert_eq!(v["layers"][1]["mediaType"], WEIGHT_CONFIG_MEDIA_TYPE);
        assert_eq!(
            v["layers"][1]["annotations"][FILEPATH_ANNOTATION],
            CONFIG_FILE
        );
        assert!(v.get("subject").is_none());
        let a = &v["annotations"];
        assert_eq!(a[CREATED_ANNOTATION], "2025-06-01T12:00:00Z");
        assert_eq!(
            a[SOURCE_ANNOTATION],
            "kubernetes://team-a/skilltrainingjobs/billing"
        );
        assert_eq!(a[TITLE_ANNOTATION], "billing");
        assert_eq!(a["io.cxone.ai.namespace"], "team-a");
        assert_eq!(a["io.cxone.ai.generation"], "3");
        assert_eq!(a["io.cxone.ai.run"], "2");
        assert_eq!(a["io.cxone.ai.job-id"], "job-42");
        assert_eq!(a["io.cxone.ai.skill-id"], "skill-abc");
        assert_eq!(a["io.cxone.ai.uid"], "0d6f-uid");
        assert_eq!(
            a["io.cxone.ai.dataset-digest"],
            format!("sha256:{}", "ab".repeat(32))
        );
        assert_eq!(a["io.cxone.ai.metrics.accuracy"], "0.8333333333333334");
        assert_eq!(a["io.cxone.ai.metrics.macro_f1"], "1");
        // Metrics that cannot be annotations are left out.
        assert!(a.get("io.cxone.ai.metrics.nan").is_none());
        assert!(a.get("io.cxone.ai.metrics.bad value").is_none());
        // The config blob: ModelPack descriptor/config/modelfs with the layers' digests.
        let (w, c) = layers();
        let cfg: serde_json::Value =
            serde_json::from_slice(&model_config_json(&provenance(), &[w.clone(), c.clone()]))
                .unwrap();
        assert_eq!(cfg["modelfs"]["type"], "layers");
        assert_eq!(
            cfg["modelfs"]["diffIds"],
            serde_json::json!([w.digest, c.digest])
        );
        assert_eq!(cfg["descriptor"]["createdAt"], "2025-06-01T12:00:00Z");
        assert_eq!(cfg["descriptor"]["name"], "billing");
        assert_eq!(
            m.config.digest,
            sha256_hex(&model_config_json(&provenance(), &[w, c]))
        );
        // Another metric value gives another manifest.
        let mut other = metrics();
        other.insert("accuracy".into(), 0.9);
        let (w, c) = layers();
        let cfg = model_config_json(&provenance(), &[w.clone(), c.clone()]);
        assert_ne!(
            manifest_bytes(&model_manifest(&provenance(), &other, w, c, &cfg)),
            bytes
        );
    }

    #[test]
    fn the_referrer_points_at_the_model() {
        let (_, model) = built();
        let subject = Descriptor::of(OCI_MANIFEST_MEDIA_TYPE, &model);
        let docs = Documents {
            evaluation_json: b"{\"accuracy\":1}".to_vec(),
            audit_json: b"{}".to_vec(),
            picture_svg: b"<svg/>".to_vec(),
        };
        let r = referrer_manifest(&provenance(), &docs, subject.clone());
        let bytes = manifest_bytes(&r);
        assert_eq!(
            bytes,
            manifest_bytes(&referrer_manifest(&provenance(), &docs, subject.clone()))
        );
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["artifactType"], EVALUATION_ARTIFACT_TYPE);
        assert_eq!(v["config"]["mediaType"], EMPTY_MEDIA_TYPE);
        assert_eq!(
            v["config"]["digest"],
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(v["config"]["size"], 2);
        assert_eq!(v["subject"]["digest"], subject.digest);
        let titles: Vec<&str> = r
            .layers
            .iter()
            .map(|l| l.annotations[TITLE_ANNOTATION].as_str())
            .collect();
        assert_eq!(titles, [EVALUATION_FILE, AUDIT_FILE, PICTURE_FILE]);
        assert_eq!(r.layers[2].media_type, "image/svg+xml");
        assert_eq!(r.layers[0].size, 14);
    }

    #[test]
    fn annotations_round_trip_into_a_champion() {
        let (m, bytes) = built();
        let target = OciTarget::parse("r.io/cxone/billing", false).unwrap();
        let digest = sha256_hex(&bytes);
        let parsed: Manifest = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(parsed, m);
        let champion = champion_from_manifest(&target, &digest, &parsed).unwrap();
        assert_eq!(champion.reference, format!("r.io/cxone/billing@{digest}"));
        let expected: BTreeMap<String, f64> = [
            ("accuracy".to_string(), 0.8333333333333334),
            ("macro_f1".to_string(), 1.0),
        ]
        .into_iter()
        .collect();
        assert_eq!(champion.metrics, expected);

        // Unparsable metric annotations are ignored; a non-model artifact is refused.
        let mut odd = parsed.clone();
        odd.annotations.insert(
            format!("{METRIC_ANNOTATION_PREFIX}x"),
            "not a number".into(),
        );
        odd.annotations
            .insert(format!("{METRIC_ANNOTATION_PREFIX}y"), "inf".into());
        assert_eq!(
            champion_from_manifest(&target, &digest, &odd)
                .unwrap()
                .metrics,
            expected
        );
        odd.artifact_type = Some("application/vnd.other".into());
        assert!(matches!(
            champion_from_manifest(&target, &digest, &odd),
            Err(RegistryError::Rejected(_))
        ));
    }

    #[test]
    fn the_fallback_index_is_merged_without_duplicates() {
        let a = Descriptor {
            artifact_type: Some(EVALUATION_ARTIFACT_TYPE.into()),
            ..Descriptor::of(OCI_MANIFEST_MEDIA_TYPE, b"a")
        };
        let b = Descriptor::of(OCI_MANIFEST_MEDIA_TYPE, b"b");
        let first = merge_fallback_index(None, &a).unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&first).unwrap();
        assert_eq!(v["mediaType"], OCI_INDEX_MEDIA_TYPE);
        assert_eq!(v["schemaVersion"], 2);
        assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
        assert_eq!(v["manifests"][0]["artifactType"], EVALUATION_ARTIFACT_TYPE);
        // Already listed: nothing to write.
        assert_eq!(merge_fallback_index(Some(&first), &a).unwrap(), None);
        // Another tool's entry (with fields we do not model) is kept, ours appended.
        let foreign = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX_MEDIA_TYPE,
            "manifests": [{"mediaType": OCI_MANIFEST_MEDIA_TYPE, "digest": b.digest, "size": 1,
                           "platform": {"os": "linux"}}],
            "annotations": {"k": "v"}
        });
        let merged = merge_fallback_index(Some(&serde_json::to_vec(&foreign).unwrap()), &a)
            .unwrap()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&merged).unwrap();
        let list = v["manifests"].as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["platform"]["os"], "linux");
        assert_eq!(list[1]["digest"], a.digest);
        assert_eq!(v["annotations"]["k"], "v");
        // Not an index, or not JSON: refused.
        let manifest =
            serde_json::json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST_MEDIA_TYPE});
        assert!(merge_fallback_index(Some(&serde_json::to_vec(&manifest).unwrap()), &a).is_err());
        assert!(merge_fallback_index(Some(b"[1]"), &a).is_err());
        assert!(merge_fallback_index(Some(b"\xff"), &a).is_err());
        assert!(
            merge_fallback_index(Some(br#"{"manifests": 3}"#), &a)
                .unwrap_err()
                .contains("not a list")
        );
        assert_eq!(fallback_tag("sha256:abcd"), "sha256-abcd");
    }

    #[test]
    fn challenges_parse() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into())
            })
        );
        assert_eq!(
            parse_challenge(r#"bearer realm = "https://a/\"t\"" , service=plain"#),
            Some(Challenge::Bearer {
                realm: "https://a/\"t\"".into(),
                service: Some("plain".into())
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(parse_challenge("Bearer service=x"), None);
        assert_eq!(parse_challenge(""), None);
        // Hostile values do not panic.
        for s in [
            "Bearer =",
            "Bearer realm=\"",
            "Bearer ,,,",
            "Bearer realm=\"\\",
        ] {
            let _ = parse_challenge(s);
        }
    }

    #[test]
    fn registry_errors_are_classified_and_clipped() {
        let body = br#"{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid","detail":{"x":1}}]}"#;
        assert_eq!(detail_of(body), "MANIFEST_INVALID: manifest invalid");
        assert_eq!(detail_of(b"plain\ntext"), "plain text");
        assert!(detail_of(&[b'x'; 10_000]).chars().count() <= MAX_DETAIL_CHARS + 1);
        let e = |s: u16| classify(StatusCode::from_u16(s).unwrap(), "w", "d");
        assert!(matches!(e(401), RegistryError::Auth(_)));
        assert!(matches!(e(403), RegistryError::Auth(_)));
        assert!(matches!(e(429), RegistryError::Unreachable(_)));
        assert!(matches!(e(503), RegistryError::Unreachable(_)));
        assert!(matches!(e(400), RegistryError::Rejected(_)));
        assert!(matches!(e(404), RegistryError::Rejected(_)));
        assert!(matches!(e(302), RegistryError::Rejected(_)));
        assert_eq!(
            e(400).to_string(),
            "the registry rejected the request: w: HTTP 400 Bad Request: d"
        );
    }

    #[test]
    fn locations_resolve_against_the_registry_and_never_downgrade() {
        let registry = OciRegistry::new().unwrap();
        let answer = |location: &str| {
            reqwest::Response::from(
                axum::http::Response::builder()
                    .status(202)
                    .header("Location", location)
                    .body(Vec::<u8>::new())
                    .unwrap(),
            )
        };
        let plain = OciTarget::parse("127.0.0.1:5000/cxone/x", true).unwrap();
        let s = Session::new(&registry, &plain, &RegistryAuth::Anonymous, "pull").unwrap();
        let url = s
            .location(&answer("/v2/cxone/x/blobs/uploads/u1?_state=abc"), "w")
            .unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:5000/v2/cxone/x/blobs/uploads/u1?_state=abc"
        );
        assert!(s.same_origin(&url));
        let elsewhere = s
            .location(&answer("http://storage.example/upload/1"), "w")
            .unwrap();
        assert!(
            !s.same_origin(&elsewhere),
            "no credentials for another host"
        );

        let tls = OciTarget::parse("registry.example.com/cxone/x", false).unwrap();
        let s = Session::new(&registry, &tls, &RegistryAuth::Anonymous, "pull").unwrap();
        assert_eq!(
            s.location(&answer("uploads/u2"), "w").unwrap().as_str(),
            "https://registry.example.com/uploads/u2"
        );
        let err = s
            .location(
                &answer("http://registry.example.com/v2/x?_state=secret"),
                "w",
            )
            .unwrap_err();
        assert!(err.to_string().contains("not HTTPS"), "{err}");
        assert!(!err.to_string().contains("secret"), "{err}");
        let missing = reqwest::Response::from(
            axum::http::Response::builder()
                .status(202)
                .body(Vec::<u8>::new())
                .unwrap(),
        );
        assert!(matches!(
            s.location(&missing, "w"),
            Err(RegistryError::Rejected(_))
        ));
    }

    #[test]
    fn credentials_are_sensitive_headers() {
        let h = basic_header("ci", "hunter2").unwrap();
        assert!(h.is_sensitive());
        assert!(!format!("{h:?}").contains("hunter2"));
        assert!(bearer_header("tok\n").is_err());
    }
}
