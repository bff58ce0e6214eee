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
//!                 application/vnd.cncf.model.doc.v1.raw            README.md (the model card)
//!                 (file names as org.cncf.model.filepath and org.opencontainers.image.title)
//!   annotations   org.opencontainers.image.{created,source,title}, io.cxone.ai.<provenance>,
//!                 io.cxone.ai.metrics.<name>
//! <registry>/<repository>@sha256:…   the referrer (artifactType application/vnd.cxone.ai.evaluation.v1+json,
//!   subject = the model; layers evaluation.json, audit.json, evaluation.svg)
//! <registry>/<repository>@sha256:…   with a signing key: the signature referrer (artifactType
//!   application/vnd.dev.sigstore.bundle.v0.3+json, subject = the model; layer model.sig, the
//!   OpenSSF model signature of the three model files: docs/model-signing.md)
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
//! password, a token, or a signed URL's query (URLs go through [`crate::registry::redact_url`]).
//!
//! The folder: this file holds the client ([`OciRegistry`]: push, tag, champion) and the media
//! types; `reference.rs` the target and tag checks, `manifest.rs` the manifests built without
//! I/O, `session.rs` one call's requests and the registry's refusals, `auth.rs` challenges and
//! tokens, `upload.rs` the streamed copy from a signed URL. The pure parts are tested in
//! `tests.rs` without a server. It imports `crate::http` and the registry's shared types.

use std::collections::BTreeMap;

use super::card::{CARD_FILE, CardFile};
use super::signing::{self, SIGNATURE_FILE, SignedFile};
use super::{
    CONFIG_FILE, Champion, Documents, ModelSource, Provenance, RegistryAuth, RegistryError,
    WEIGHTS_FILE,
};
use crate::http::Redirects;
use crate::text::truncate_chars;
use manifest::{
    champion_from_manifest, doc_layer, document_layers, manifest_bytes, model_config_json,
    model_manifest, referrer_manifest, signature_manifest,
};
use reference::{check_tag, is_sha256_digest, sha256_hex};
use session::Session;

mod auth;
mod manifest;
mod reference;
mod session;
mod upload;

pub use manifest::{Descriptor, Manifest};
pub use reference::OciTarget;

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
/// A ModelPack documentation layer (the model card `README.md`), stored as the file itself.
pub const DOC_MEDIA_TYPE: &str = "application/vnd.cncf.model.doc.v1.raw";
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
/// `{}`, the OCI empty descriptor's content.
pub(super) const EMPTY_JSON: &[u8] = b"{}";

/// What a push registered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OciPushed {
    /// `sha256:<hex>` of the model manifest.
    pub manifest_digest: String,
    /// `<registry>/<repository>@sha256:<hex>`.
    pub reference: String,
    /// `sha256:<hex>` of the referrer carrying the documents.
    pub referrer_digest: String,
    /// `sha256:<hex>` of the referrer carrying the model's signature, when it was signed.
    pub signature_digest: Option<String>,
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
        Ok(Self {
            http: crate::http::registry_client(Redirects::Never)
                .map_err(RegistryError::Rejected)?,
            source: super::source::client()?,
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
        let weights =
            copy_layer(&mut s, &source.weights_url, WEIGHTS_FILE, WEIGHT_MEDIA_TYPE).await?;
        let config_file = copy_layer(
            &mut s,
            &source.config_url,
            CONFIG_FILE,
            WEIGHT_CONFIG_MEDIA_TYPE,
        )
        .await?;
        let weights_bytes = weights.size;
        let mut layers = vec![weights, config_file];
        let card = documents.card(provenance, &card_files(&layers));
        if let Some(card) = &card {
            s.put_blob(card.as_bytes(), &doing(&s, CARD_FILE)).await?;
            layers.push(doc_layer(card.as_bytes()));
        }
        let model = push_model(&mut s, tag, provenance, metrics, documents, layers.clone()).await?;
        let referrer = push_referrer(&mut s, provenance, documents, &model).await?;
        let signature = match &documents.signing {
            Some(key) => {
                let bundle = signing::sign(key, &provenance.name, &signed_files(&layers));
                Some(
                    push_signature(&mut s, provenance, &bundle, &model, referrer.referrers_api)
                        .await?,
                )
            }
            None => None,
        };
        Ok(OciPushed {
            reference: target.reference(&model.digest),
            manifest_digest: model.digest,
            referrer_digest: referrer.digest,
            signature_digest: signature,
            weights_bytes,
            referrers_api: referrer.referrers_api,
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

/// `pushing <what> to <registry>/<repository>`: what a push step is doing, for messages.
fn doing(s: &Session<'_>, what: &str) -> String {
    format!(
        "pushing {what} to {}/{}",
        s.target.registry, s.target.repository
    )
}

/// The model manifest as pushed.
struct PushedModel {
    json: Vec<u8>,
    digest: String,
}

/// The referrer as pushed.
struct PushedReferrer {
    digest: String,
    referrers_api: bool,
}

/// Step 1 of a push: a file streamed from its signed URL into a blob, described as a ModelPack
/// layer of `media_type` named `file`.
async fn copy_layer(
    s: &mut Session<'_>,
    url: &str,
    file: &str,
    media_type: &str,
) -> Result<Descriptor, RegistryError> {
    let blob = s
        .copy_from_source(url, &doing(s, file))
        .await?
        .annotated(FILEPATH_ANNOTATION, file)
        // Also the OCI title, so generic clients (`oras pull`) write the file by its name.
        .annotated(TITLE_ANNOTATION, file);
    Ok(Descriptor {
        media_type: media_type.into(),
        ..blob
    })
}

/// Step 2: the ModelPack config blob and the model manifest (weights, config, card) under
/// `tag`.
async fn push_model(
    s: &mut Session<'_>,
    tag: &str,
    provenance: &Provenance,
    metrics: &BTreeMap<String, f64>,
    documents: &Documents,
    layers: Vec<Descriptor>,
) -> Result<PushedModel, RegistryError> {
    let model_config = model_config_json(provenance, documents.language(), &layers);
    s.put_blob(&model_config, &doing(s, "the ModelPack config"))
        .await?;
    let manifest = model_manifest(provenance, metrics, layers, &model_config);
    let json = manifest_bytes(&manifest);
    let what = doing(s, &format!("the model manifest as {tag}"));
    let digest = s
        .put_manifest(tag, OCI_MANIFEST_MEDIA_TYPE, &json, &what)
        .await?
        .digest;
    Ok(PushedModel { json, digest })
}

/// Step 3: the documents' blobs and the referrer whose subject is the model, listed in the
/// fallback index when the registry has no referrers API.
async fn push_referrer(
    s: &mut Session<'_>,
    provenance: &Provenance,
    documents: &Documents,
    model: &PushedModel,
) -> Result<PushedReferrer, RegistryError> {
    s.put_blob(EMPTY_JSON, &doing(s, "the empty config"))
        .await?;
    for (descriptor, data) in document_layers(documents) {
        let name = descriptor
            .annotations
            .get(TITLE_ANNOTATION)
            .cloned()
            .unwrap_or_default();
        s.put_blob(data, &doing(s, &name)).await?;
    }
    let subject = Descriptor::of(OCI_MANIFEST_MEDIA_TYPE, &model.json);
    let subject = Descriptor {
        artifact_type: Some(MODEL_ARTIFACT_TYPE.into()),
        ..subject
    };
    let referrer = referrer_manifest(provenance, documents, subject);
    let referrer_json = manifest_bytes(&referrer);
    let digest = sha256_hex(&referrer_json);
    let what = doing(s, "the evaluation referrer");
    let put = s
        .put_manifest(&digest, OCI_MANIFEST_MEDIA_TYPE, &referrer_json, &what)
        .await?;
    let referrers_api = if put.oci_subject.as_deref() == Some(model.digest.as_str()) {
        true
    } else {
        s.referrers_api(&model.digest).await?
    };
    if !referrers_api {
        list_in_fallback(s, model, &referrer, &referrer_json).await?;
    }
    Ok(PushedReferrer {
        digest,
        referrers_api,
    })
}

/// The model's files as the card lists them (a layer's digest is `sha256:<hex>`).
fn card_files(layers: &[Descriptor]) -> Vec<CardFile> {
    layers
        .iter()
        .map(|l| CardFile {
            name: l
                .annotations
                .get(FILEPATH_ANNOTATION)
                .cloned()
                .unwrap_or_default(),
            bytes: l.size,
            sha256: l.digest.trim_start_matches("sha256:").to_string(),
        })
        .collect()
}

/// The model's files as the signature lists them.
fn signed_files(layers: &[Descriptor]) -> Vec<SignedFile> {
    card_files(layers)
        .into_iter()
        .map(|f| SignedFile {
            path: f.name,
            sha256: f.sha256,
        })
        .collect()
}

/// Step 4 (signing): the bundle as a referrer of the model, listed in the fallback index when
/// the registry has no referrers API. The bundle is deterministic, so a repeated push gives the
/// same referrer.
async fn push_signature(
    s: &mut Session<'_>,
    provenance: &Provenance,
    bundle: &[u8],
    model: &PushedModel,
    referrers_api: bool,
) -> Result<String, RegistryError> {
    s.put_blob(EMPTY_JSON, &doing(s, "the empty config"))
        .await?;
    s.put_blob(bundle, &doing(s, SIGNATURE_FILE)).await?;
    let subject = Descriptor {
        artifact_type: Some(MODEL_ARTIFACT_TYPE.into()),
        ..Descriptor::of(OCI_MANIFEST_MEDIA_TYPE, &model.json)
    };
    let manifest = signature_manifest(provenance, bundle, subject);
    let json = manifest_bytes(&manifest);
    let digest = sha256_hex(&json);
    let what = doing(s, "the signature referrer");
    s.put_manifest(&digest, OCI_MANIFEST_MEDIA_TYPE, &json, &what)
        .await?;
    if !referrers_api {
        list_in_fallback(s, model, &manifest, &json).await?;
    }
    Ok(digest)
}

/// Lists a referrer (`manifest`, pushed as `json`) under the model's `sha256-<hex>` tag, for
/// registries without the referrers API.
async fn list_in_fallback(
    s: &mut Session<'_>,
    model: &PushedModel,
    manifest: &Manifest,
    json: &[u8],
) -> Result<(), RegistryError> {
    let entry = Descriptor {
        media_type: OCI_MANIFEST_MEDIA_TYPE.into(),
        digest: sha256_hex(json),
        size: json.len() as u64,
        artifact_type: manifest.artifact_type.clone(),
        annotations: manifest.annotations.clone(),
    };
    s.update_fallback_index(&model.digest, &entry).await
}

#[cfg(test)]
mod tests;
