//! Registration of a successful run's model (`spec.registry`), between export and Succeeded.
//!
//! One registry at a time (OCI first, then MLflow): register (idempotent: OCI is
//! content-addressed, MLflow versions are found by their CXone job id before one is created),
//! read the champion, apply the promotion gate, promote. Each registry's progress is written into
//! `status.registry` as soon as it is known, so a restart resumes where the last one stopped; a
//! registry that was registered but whose promotion is not recorded is simply registered again
//! (the same reference comes back). Once every registry is done, the run ends Succeeded and its
//! audit record names the references and the gate's inputs, thresholds and outcome.
//!
//! Failures: an expired signed URL exports again; an unreachable registry is retried with capped
//! backoff, and after [`MAX_REGISTRY_ATTEMPTS`] consecutive failures the run ends Failed
//! (`RegistrationFailed`; the trained CXone job is untouched); refused credentials are retried at
//! the longest backoff (a fixed Secret is picked up then, or at once when the Secret changes); a
//! request the registry rejects waits for a change of the job.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{
    Conds, Ending, JobMemory, Next, Policy, Step, View, completed_message, finish_on, start,
    warn_once,
};
use crate::audit::{RegistryRecord, RegistryTargetRecord};
use crate::controller::core;
use crate::controller::effect::{
    Effect, RegisterRequest, Registration, RegistryTarget, TargetKind,
};
use crate::controller::memory::Completion;
use crate::controller::vocab::{ConditionStatus as Status, ConditionType as Cond, Reason};
use crate::crd::{Phase, RegistryStatus, SkillTrainingJobStatus, TargetRegistration};
use crate::cxone::model::ExportResponse;
use crate::evaluation::EvaluationReport;
use crate::registry::{ModelSource, Provenance, RegistryError, gate};

/// Consecutive failed attempts (unreachable registry, broken downloads) before the run ends.
pub const MAX_REGISTRY_ATTEMPTS: i64 = 8;

fn configured(v: &View) -> Vec<TargetKind> {
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

fn slot(r: &mut RegistryStatus, kind: TargetKind) -> &mut Option<TargetRegistration> {
    match kind {
        TargetKind::Oci => &mut r.oci,
        TargetKind::Mlflow => &mut r.mlflow,
    }
}

fn recorded(r: &RegistryStatus, kind: TargetKind) -> Option<&TargetRegistration> {
    match kind {
        TargetKind::Oci => r.oci.as_ref(),
        TargetKind::Mlflow => r.mlflow.as_ref(),
    }
}

/// The run is exported: record what is known and register it.
pub(super) fn begin(
    v: &View,
    mut m: JobMemory,
    p: &Policy,
    completion: Completion,
    export: ExportResponse,
) -> Step {
    let mut next = v.status.clone();
    let job_id = completion.job_id.clone();
    m.error_attempt = 0;
    m.completion = Some(Completion {
        export: Some(export),
        ..completion
    });
    if next.phase != Some(Phase::Registering) {
        next.phase = Some(Phase::Registering);
        next.progress = Some(100);
        next.message = Some(format!("registering the model of CXone job {job_id}"));
        Conds(v).set(
            &mut next,
            Cond::Registered,
            Status::Unknown,
            Reason::Registering,
            "the model is being registered",
        );
    }
    if next.registry.as_ref().is_none_or(|r| r.job_id != job_id) {
        next.registry = Some(RegistryStatus {
            job_id,
            ..Default::default()
        });
    }
    next_target(v, p, next, m)
}

/// The next registry to work on, or the end of the run once every one is done.
pub(super) fn next_target(
    v: &View,
    p: &Policy,
    next: SkillTrainingJobStatus,
    m: JobMemory,
) -> Step {
    match &v.registry {
        None => return done(v, next, m),
        Some(Err(problem)) => {
            return give_up(v, next, m, Reason::RegistryNotAllowed, problem.clone());
        }
        Some(Ok(_)) => {}
    }
    let Some(completion) = m.completion.clone() else {
        return start(v, &next, m, p);
    };
    let (Some(analysis), Some(export)) = (completion.analysis.clone(), completion.export.clone())
    else {
        return start(v, &next, m, p);
    };
    let registry = next.registry.clone().unwrap_or_default();
    let pending = configured(v)
        .into_iter()
        .find(|k| recorded(&registry, *k).is_none_or(|r| r.promoted.is_none()));
    let Some(kind) = pending else {
        return done(v, next, m);
    };
    let promotion = v.spec.registry.as_ref().and_then(|s| s.promotion.as_ref());
    let Some(target) = request_target(v, kind) else {
        return done(v, next, m);
    };
    // The champion matters only to a gate that compares with it.
    let champion_at = promotion
        .filter(|p| p.compare_metric.is_some())
        .map(|_| alias(v, kind));
    let ending = success_ending(&completion, &analysis, &export, Some(registry));
    let request = RegisterRequest {
        target,
        secret: secret(v, kind),
        source: ModelSource {
            weights_url: export.artifacts.model_weights_url.clone(),
            config_url: export.artifacts.config_url.clone(),
        },
        provenance: provenance(v, &completion),
        audit_json: super::audit_record(v, &ending, Some(completion.job_id.as_str())).to_json(),
        analysis,
        champion_at,
    };
    Step::new(next, m, Next::AwaitChange).effect(Effect::Register(Box::new(request)))
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

/// Who and what the model is. Every field comes from stored state, so a repeated registration
/// of the same run describes it identically (and an OCI push yields the same digest).
fn provenance(v: &View, completion: &Completion) -> Provenance {
    let created = completion
        .remote
        .completed_at
        .or(v.status.completed_at.as_ref().map(|t| t.0))
        .or(v.status.submitted_at.as_ref().map(|t| t.0))
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let h = v.spec.hyperparameters();
    let mut params = BTreeMap::from([
        ("skill_id".to_string(), v.spec.skill_id.clone()),
        ("language".to_string(), v.spec.language.clone()),
        (
            "validation_split".to_string(),
            v.spec.validation_split().to_string(),
        ),
        ("labels".to_string(), v.spec.labels.len().to_string()),
    ]);
    if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(&h) {
        for (k, value) in map {
            let text = match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            params.insert(format!("hyperparameters.{k}"), text);
        }
    }
    if let Some(d) = &v.status.dataset_digest {
        params.insert("dataset_digest".to_string(), d.clone());
    }
    Provenance {
        namespace: v.namespace.to_string(),
        name: v.name.to_string(),
        uid: v.uid.to_string(),
        generation: v.generation,
        run: v
            .status
            .submission
            .as_ref()
            .map(|s| u32::try_from(s.run).unwrap_or(0))
            .unwrap_or(0),
        cxone_job_id: completion.job_id.clone(),
        skill_id: v.spec.skill_id.clone(),
        dataset_digest: v.status.dataset_digest.clone().unwrap_or_default(),
        created,
        source: format!(
            "kubernetes://{}/skilltrainingjobs.ai.cxone.io/{}",
            v.namespace, v.name
        ),
        params,
    }
}

fn success_ending(
    completion: &Completion,
    analysis: &Arc<EvaluationReport>,
    export: &ExportResponse,
    registry: Option<RegistryStatus>,
) -> Ending {
    Ending {
        phase: Phase::Succeeded,
        reason: Reason::TrainingSucceeded,
        message: completed_message(&completion.job_id, analysis),
        remote: Some(completion.remote.clone()),
        analysis: Some(analysis.clone()),
        training_duration_seconds: completion.training_duration_seconds,
        export: Some(export.clone()),
        registry,
    }
}

/// Every registry is done: the run ends Succeeded.
fn done(v: &View, next: SkillTrainingJobStatus, mut m: JobMemory) -> Step {
    let Some(completion) = m.completion.take() else {
        return Step::new(next, m, Next::AwaitChange);
    };
    let (Some(analysis), Some(export)) = (&completion.analysis, &completion.export) else {
        return Step::new(next, m, Next::AwaitChange);
    };
    let mut ending = success_ending(&completion, analysis, export, next.registry.clone());
    if let Some(r) = &next.registry {
        let refs: Vec<String> = [r.oci.as_ref(), r.mlflow.as_ref()]
            .into_iter()
            .flatten()
            .map(|t| {
                let promoted = match (t.promoted, &t.promoted_as) {
                    (Some(true), Some(a)) => format!(", promoted as {a}"),
                    _ => String::new(),
                };
                format!("{}{promoted}", t.reference)
            })
            .collect();
        if !refs.is_empty() {
            ending.message = format!("{}; registered {}", ending.message, refs.join(" and "));
        }
    }
    finish_on(v, next, m, ending)
}

/// The run ends Failed: the model could not be registered.
fn give_up(
    v: &View,
    mut next: SkillTrainingJobStatus,
    mut m: JobMemory,
    reason: Reason,
    problem: String,
) -> Step {
    let completion = m.completion.take();
    Conds(v).set(&mut next, Cond::Registered, Status::False, reason, &problem);
    let message = format!(
        "the model could not be registered: {problem}; the trained CXone job is unchanged, and changing the job starts a new run"
    );
    let mut ending = Ending::without_results(Phase::Failed, Reason::RegistrationFailed, message);
    if let Some(c) = completion {
        ending.remote = Some(c.remote);
        ending.analysis = c.analysis;
        ending.training_duration_seconds = c.training_duration_seconds;
        ending.export = c.export;
    }
    ending.registry = next.registry.clone();
    finish_on(v, next, m, ending)
}

/// The outcome of [`Effect::Register`].
pub(super) fn registered(
    v: &View,
    m: JobMemory,
    p: &Policy,
    kind: TargetKind,
    result: Result<Registration, RegistryError>,
) -> Step {
    let registration = match result {
        Ok(r) => r,
        Err(e) => return failed(v, m, p, kind, e),
    };
    let Some(analysis) = m.completion.as_ref().and_then(|c| c.analysis.clone()) else {
        return start(v, v.status, m, p);
    };
    let mut next = v.status.clone();
    let mut registry = next.registry.take().unwrap_or_default();
    registry.failed_attempts = None;
    let promotion = v.spec.registry.as_ref().and_then(|s| s.promotion.as_ref());
    let outcome = gate::evaluate(promotion, &analysis, registration.champion.as_ref());
    let earlier = recorded(&registry, kind).cloned();
    let mut record = new_record(v, &registration, earlier.as_ref(), outcome.as_ref());
    let is_champion = registration.champion.as_ref().is_some_and(|c| {
        c.reference == registration.version || c.reference == registration.reference
    });
    let (reason, event) = match &outcome {
        Some(o) if o.passed && !is_champion => {
            // Recorded as registered first; the promotion follows.
            *slot(&mut registry, kind) = Some(record);
            next.registry = Some(registry);
            return promote(v, next, m, kind, registration.version);
        }
        Some(o) if o.passed => {
            record.promoted = Some(true);
            record.promoted_as = Some(alias(v, kind));
            record.promoted_at = earlier.and_then(|e| e.promoted_at).or(Some(Time(v.now)));
            (Reason::Promoted, false)
        }
        Some(_) => (Reason::GateNotMet, true),
        None => (Reason::RegisteredNotPromoted, true),
    };
    record.promoted.get_or_insert(false);
    let message = match (reason, &record.gate) {
        (Reason::GateNotMet, Some(gate)) => format!(
            "{} in {}, not promoted: gate {gate}",
            record.reference,
            kind.as_str()
        ),
        (Reason::Promoted, _) => format!(
            "{} in {}, already promoted",
            record.reference,
            kind.as_str()
        ),
        _ => format!("{} in {}", record.reference, kind.as_str()),
    };
    *slot(&mut registry, kind) = Some(record);
    next.registry = Some(registry);
    Conds(v).set(&mut next, Cond::Registered, Status::True, reason, &message);
    let mut step = next_target(v, p, next, m);
    if event {
        step.events.insert(
            0,
            super::Note {
                warning: false,
                reason,
                action: "Register",
                message,
            },
        );
    }
    step
}

/// What status records of a registration, before promotion is decided.
fn new_record(
    v: &View,
    registration: &Registration,
    earlier: Option<&TargetRegistration>,
    outcome: Option<&gate::GateOutcome>,
) -> TargetRegistration {
    TargetRegistration {
        reference: registration.reference.clone(),
        version: registration.version.clone(),
        run_id: registration.run_id.clone(),
        registered_at: earlier
            .map(|e| e.registered_at.clone())
            .unwrap_or(Time(v.now)),
        promoted: None,
        promoted_as: None,
        promoted_at: None,
        champion: outcome.and_then(|o| o.champion.clone()),
        gate: Some(outcome.map_or_else(
            || "no promotion gate declared".to_string(),
            gate::GateOutcome::describe,
        )),
    }
}

/// Promote the registered model in `kind`.
fn promote(
    v: &View,
    next: SkillTrainingJobStatus,
    m: JobMemory,
    kind: TargetKind,
    version: String,
) -> Step {
    let Some(target) = request_target(v, kind) else {
        return Step::new(next, m, Next::AwaitChange);
    };
    let effect = Effect::Promote {
        secret: secret(v, kind),
        target,
        version,
        alias: alias(v, kind),
    };
    Step::new(next, m, Next::AwaitChange).effect(effect)
}

/// The outcome of [`Effect::Promote`].
pub(super) fn promoted(
    v: &View,
    m: JobMemory,
    p: &Policy,
    kind: TargetKind,
    result: Result<(), RegistryError>,
) -> Step {
    if let Err(e) = result {
        return failed(v, m, p, kind, e);
    }
    let mut next = v.status.clone();
    let mut registry = next.registry.take().unwrap_or_default();
    registry.failed_attempts = None;
    let alias = alias(v, kind);
    let message = match slot(&mut registry, kind) {
        Some(record) => {
            record.promoted = Some(true);
            record.promoted_as = Some(alias.clone());
            record.promoted_at = Some(Time(v.now));
            format!(
                "{} in {}, promoted as {alias}",
                record.reference,
                kind.as_str()
            )
        }
        None => return start(v, v.status, m, p),
    };
    next.registry = Some(registry);
    Conds(v).set(
        &mut next,
        Cond::Registered,
        Status::True,
        Reason::Promoted,
        &message,
    );
    let mut step = next_target(v, p, next, m);
    step.events.insert(
        0,
        super::Note {
            warning: false,
            reason: Reason::Promoted,
            action: "Promote",
            message,
        },
    );
    step
}

fn alias(v: &View, kind: TargetKind) -> String {
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

fn secret(v: &View, kind: TargetKind) -> Option<String> {
    let spec = v.spec.registry.as_ref()?;
    match kind {
        TargetKind::Oci => spec.oci.as_ref()?.credentials_secret_ref.clone(),
        TargetKind::Mlflow => spec.mlflow.as_ref()?.credentials_secret_ref.clone(),
    }
    .map(|s| s.name)
}

fn request_target(v: &View, kind: TargetKind) -> Option<RegistryTarget> {
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

/// A registration or promotion failed.
fn failed(v: &View, mut m: JobMemory, p: &Policy, kind: TargetKind, e: RegistryError) -> Step {
    let mut next = v.status.clone();
    let mut registry = next.registry.take().unwrap_or_default();
    let attempts = registry.failed_attempts.unwrap_or(0) + 1;
    registry.failed_attempts = Some(attempts);
    next.registry = Some(registry);
    let message = format!("{}: {e}", kind.as_str());
    let (reason, then) = match &e {
        RegistryError::SourceExpired(_) => {
            // Fresh signed URLs, then the same registration again.
            if let Some(c) = m.completion.as_mut() {
                c.export = None;
            }
            (Reason::RegistryUnreachable, None)
        }
        RegistryError::Unreachable(_) | RegistryError::Source(_) => {
            (Reason::RegistryUnreachable, Some(backoff(v, p, attempts)))
        }
        RegistryError::Auth(_) => (Reason::RegistryAuthFailed, Some(p.error_backoff_max)),
        RegistryError::Rejected(_) => (Reason::RegistryRejected, None),
    };
    if e.retryable() && attempts >= MAX_REGISTRY_ATTEMPTS {
        let problem = format!("{message} ({attempts} attempts in a row)");
        return give_up(v, next, m, Reason::RegistrationFailed, problem);
    }
    Conds(v).set(&mut next, Cond::Registered, Status::False, reason, &message);
    let step = match (&e, then) {
        (RegistryError::SourceExpired(_), _) => {
            let target = match super::run_target(v) {
                Ok(t) => t,
                Err(problem) => return super::credentials_problem(v, m, &problem),
            };
            let job_id = v.status.job_id.clone().unwrap_or_default();
            Step::new(next, m, Next::AwaitChange).effect(Effect::Export { job_id, target })
        }
        (_, Some(wait)) => Step::new(next, m, Next::Requeue(wait)),
        (_, None) => Step::new(next, m, Next::AwaitChange),
    };
    warn_once(step, reason, "Register", message)
}

fn backoff(v: &View, p: &Policy, attempts: i64) -> std::time::Duration {
    let attempt = u32::try_from(attempts.saturating_sub(1)).unwrap_or(u32::MAX);
    core::error_backoff(attempt, p.error_backoff_base, p.error_backoff_max, v.jitter)
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
