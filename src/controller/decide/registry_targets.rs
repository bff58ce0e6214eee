//! What `spec.registry` names: the registries configured, where each one's model goes (target,
//! tag or alias, Secret), its slot in `status.registry`, and its part of the audit record.

use super::step::View;
use crate::audit::{RegistryRecord, RegistryTargetRecord};
use crate::controller::effect::{RegistryTarget, TargetKind};
use crate::crd::{RegistryStatus, TargetRegistration};
use crate::evaluation::EvaluationReport;

pub(super) fn configured(v: &View) -> Vec<TargetKind> {
    let Some(spec) = &v.spec.registry else {
        return Vec::new();
    };
    let mut kinds = Vec::new();
    if spec.oci.is_some() {
        kinds.push(TargetKind::Oci);
    }
    if spec.mlflow.is_some() {
        kinds.push(TargetKind::Mlflow);
    }
    kinds
}

pub(super) fn slot(r: &mut RegistryStatus, kind: TargetKind) -> &mut Option<TargetRegistration> {
    match kind {
        TargetKind::Oci => &mut r.oci,
        TargetKind::Mlflow => &mut r.mlflow,
    }
}

pub(super) fn recorded(r: &RegistryStatus, kind: TargetKind) -> Option<&TargetRegistration> {
    match kind {
        TargetKind::Oci => r.oci.as_ref(),
        TargetKind::Mlflow => r.mlflow.as_ref(),
    }
}

/// `g<generation>-<12 hex digits of the dataset digest>`.
fn default_tag(v: &View) -> String {
    let digest = v
        .status
        .dataset_digest
        .as_deref()
        .unwrap_or_default()
        .trim_start_matches("sha256:");
    let prefix: String = digest.chars().take(12).collect();
    if prefix.is_empty() {
        format!("g{}", v.generation)
    } else {
        format!("g{}-{prefix}", v.generation)
    }
}

pub(super) fn alias(v: &View, kind: TargetKind) -> String {
    let promotion = v.spec.registry.as_ref().and_then(|s| s.promotion.as_ref());
    match kind {
        TargetKind::Oci => promotion
            .and_then(|p| p.oci_tag.clone())
            .unwrap_or_else(|| "approved".into()),
        TargetKind::Mlflow => promotion
            .and_then(|p| p.mlflow_alias.clone())
            .unwrap_or_else(|| "champion".into()),
    }
}

pub(super) fn secret(v: &View, kind: TargetKind) -> Option<String> {
    let spec = v.spec.registry.as_ref()?;
    match kind {
        TargetKind::Oci => spec.oci.as_ref()?.credentials_secret_ref.clone(),
        TargetKind::Mlflow => spec.mlflow.as_ref()?.credentials_secret_ref.clone(),
    }
    .map(|s| s.name)
}

pub(super) fn request_target(v: &View, kind: TargetKind) -> Option<RegistryTarget> {
    let targets = v.registry.as_ref()?.as_ref().ok()?;
    match kind {
        TargetKind::Oci => {
            let tag = v
                .spec
                .registry
                .as_ref()
                .and_then(|s| s.oci.as_ref())
                .and_then(|o| o.tag.clone())
                .unwrap_or_else(|| default_tag(v));
            Some(RegistryTarget::Oci {
                target: targets.oci.clone()?,
                tag,
            })
        }
        TargetKind::Mlflow => Some(RegistryTarget::Mlflow(targets.mlflow.clone()?)),
    }
}

/// The files of a registered model (docs/model-signing.md: the signed ones, then the signature).
fn model_files(signed: bool) -> Vec<String> {
    let mut files: Vec<String> = [
        crate::registry::WEIGHTS_FILE,
        crate::registry::CONFIG_FILE,
        crate::registry::card::CARD_FILE,
    ]
    .map(String::from)
    .into();
    if signed {
        files.push(crate::registry::signing::SIGNATURE_FILE.to_string());
    }
    files
}

/// The audit record's registry part, from what status recorded.
pub(super) fn registry_record(
    v: &View,
    r: &RegistryStatus,
    analysis: Option<&EvaluationReport>,
) -> RegistryRecord {
    let targets = configured(v)
        .into_iter()
        .map(|kind| {
            let rec = recorded(r, kind);
            let location = request_target(v, kind)
                .map(|t| t.location())
                .unwrap_or_default();
            RegistryTargetRecord {
                target: kind.as_str().to_string(),
                location,
                reference: rec.map(|t| t.reference.clone()),
                promoted: rec.and_then(|t| t.promoted),
                promoted_as: rec.and_then(|t| t.promoted_as.clone()),
                champion: rec.and_then(|t| t.champion.clone()),
                gate: rec.and_then(|t| t.gate.clone()),
                files: rec
                    .map(|t| model_files(t.signature.is_some()))
                    .unwrap_or_default(),
                signing_key: rec.and_then(|t| t.signing_key.clone()),
                signature: rec.and_then(|t| t.signature.clone()),
            }
        })
        .collect();
    RegistryRecord {
        promotion: v.spec.registry.as_ref().and_then(|s| s.promotion.clone()),
        inputs: analysis
            .map(crate::registry::key_metrics)
            .unwrap_or_default(),
        targets,
    }
}
