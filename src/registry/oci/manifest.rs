//! What is pushed to an OCI registry, built without I/O: the ModelPack model manifest and its
//! config, the evaluation referrer, the referrers fallback index, and the champion read back from
//! a manifest's annotations. Pure; imports the registry's shared types and [`super::reference`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::reference::{OciTarget, sha256_hex};
use super::{
    ANNOTATION_PREFIX, CREATED_ANNOTATION, DOC_MEDIA_TYPE, EMPTY_JSON, EMPTY_MEDIA_TYPE,
    EVALUATION_ARTIFACT_TYPE, FILEPATH_ANNOTATION, METRIC_ANNOTATION_PREFIX, MODEL_ARTIFACT_TYPE,
    MODEL_CONFIG_MEDIA_TYPE, OCI_INDEX_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE, SOURCE_ANNOTATION,
    TITLE_ANNOTATION,
};
use crate::registry::card::CARD_FILE;
use crate::registry::signing::{BUNDLE_MEDIA_TYPE, SIGNATURE_FILE};
use crate::registry::{
    AUDIT_FILE, Champion, Documents, EVALUATION_FILE, PICTURE_FILE, Provenance, RegistryError,
};
use crate::text::truncate_chars;

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
    pub(super) fn of(media_type: &str, data: &[u8]) -> Self {
        Self {
            media_type: media_type.to_string(),
            digest: sha256_hex(data),
            size: data.len() as u64,
            artifact_type: None,
            annotations: BTreeMap::new(),
        }
    }

    pub(super) fn annotated(mut self, key: &str, value: &str) -> Self {
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

/// The ModelPack model config (`application/vnd.cncf.model.config.v1+json`), field by field
/// as the ModelPack config types name them.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ModelConfig<'a> {
    descriptor: ModelDescriptor<'a>,
    config: ModelFormat<'a>,
    modelfs: ModelFs,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ModelDescriptor<'a> {
    created_at: String,
    authors: Vec<String>,
    vendor: &'static str,
    family: &'static str,
    name: &'a str,
    version: String,
    title: String,
    description: String,
    #[serde(rename = "sourceURL")]
    source_url: &'a str,
    revision: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ModelFormat<'a> {
    architecture: &'static str,
    format: &'static str,
    capabilities: Capabilities<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Capabilities<'a> {
    input_types: [&'static str; 1],
    output_types: [&'static str; 1],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    languages: Vec<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ModelFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

/// The model config blob: who the model is, what it takes and gives, and its layers' digests
/// (uncompressed = stored). Licenses are left out: the terms of a CXone-trained model are the
/// tenant's contract, not something the operator knows.
pub(super) fn model_config_json(
    provenance: &Provenance,
    language: Option<&str>,
    layers: &[Descriptor],
) -> Vec<u8> {
    let config = ModelConfig {
        descriptor: ModelDescriptor {
            created_at: provenance.created.to_string(),
            authors: vec![format!(
                "SkillTrainingJob {}/{} (uid {})",
                provenance.namespace, provenance.name, provenance.uid
            )],
            vendor: "NICE CXone",
            family: "cxone-ai-skill",
            name: &provenance.name,
            version: format!("run-{}", provenance.run),
            title: format!("CXone AI skill {}", provenance.skill_id),
            description: format!(
                "Intent classifier for CXone skill {} trained by CXone job {} (dataset {})",
                provenance.skill_id, provenance.cxone_job_id, provenance.dataset_digest
            ),
            source_url: &provenance.source,
            revision: &provenance.cxone_job_id,
        },
        config: ModelFormat {
            architecture: "intent-classifier",
            format: "json",
            capabilities: Capabilities {
                input_types: ["text"],
                output_types: ["text"],
                languages: language.into_iter().collect(),
            },
        },
        modelfs: ModelFs {
            kind: "layers",
            diff_ids: layers.iter().map(|l| l.digest.clone()).collect(),
        },
    };
    // Serialising these plain structs cannot fail.
    serde_json::to_vec(&config).unwrap_or_default()
}

/// The card's layer: a ModelPack doc layer named `README.md`.
pub(super) fn doc_layer(card: &[u8]) -> Descriptor {
    Descriptor::of(DOC_MEDIA_TYPE, card)
        .annotated(FILEPATH_ANNOTATION, CARD_FILE)
        .annotated(TITLE_ANNOTATION, CARD_FILE)
}

/// Annotations of the model manifest: OCI standard ones, provenance, metrics (finite values
/// only, as their shortest round-tripping decimal).
pub(super) fn model_annotations(
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

/// The model manifest for its file layers (weights, config, card) and config blob.
pub(super) fn model_manifest(
    provenance: &Provenance,
    metrics: &BTreeMap<String, f64>,
    layers: Vec<Descriptor>,
    model_config: &[u8],
) -> Manifest {
    Manifest {
        schema_version: 2,
        media_type: OCI_MANIFEST_MEDIA_TYPE.into(),
        artifact_type: Some(MODEL_ARTIFACT_TYPE.into()),
        config: Descriptor::of(MODEL_CONFIG_MEDIA_TYPE, model_config),
        layers,
        subject: None,
        annotations: model_annotations(provenance, metrics),
    }
}

/// The evaluation documents as layers, in a fixed order.
pub(super) fn document_layers(documents: &Documents) -> [(Descriptor, &[u8]); 3] {
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
pub(super) fn referrer_manifest(
    provenance: &Provenance,
    documents: &Documents,
    subject: Descriptor,
) -> Manifest {
    let layers = document_layers(documents).map(|(d, _)| d).into();
    referrer(provenance, EVALUATION_ARTIFACT_TYPE, layers, subject)
}

/// The referrer carrying the model's signature bundle, about `subject` (the model manifest).
pub(super) fn signature_manifest(
    provenance: &Provenance,
    bundle: &[u8],
    subject: Descriptor,
) -> Manifest {
    let layer =
        Descriptor::of(BUNDLE_MEDIA_TYPE, bundle).annotated(TITLE_ANNOTATION, SIGNATURE_FILE);
    referrer(provenance, BUNDLE_MEDIA_TYPE, vec![layer], subject)
}

/// A referrer of `artifact_type` about `subject`: the empty config, `layers`, and the run's
/// completion time (never now: a repeated push gives the same digest).
fn referrer(
    provenance: &Provenance,
    artifact_type: &str,
    layers: Vec<Descriptor>,
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
        artifact_type: Some(artifact_type.into()),
        config: Descriptor::of(EMPTY_MEDIA_TYPE, EMPTY_JSON),
        layers,
        subject: Some(subject),
        annotations,
    }
}

pub(super) fn manifest_bytes(manifest: &Manifest) -> Vec<u8> {
    // A struct of strings, numbers and maps with string keys: serialisation cannot fail.
    serde_json::to_vec(manifest).unwrap_or_default()
}

/// The `sha256-<hex>` tag of the referrers tag-schema fallback for `digest`.
pub(super) fn fallback_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// Adds `referrer` to the fallback index `existing` (the bytes under the `sha256-<hex>` tag, if
/// any). Entries of other tools are kept as they are; an entry with the same digest is not added
/// twice. Returns the new index bytes, or `None` when `existing` already lists the referrer.
pub(super) fn merge_fallback_index(
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
pub(super) fn champion_from_manifest(
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
