//! The Registering phase, between export and Succeeded: the outcome of each registration and
//! promotion (`spec.registry`).
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

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::course::{next_target, start};
use super::registry_plan::fail_registration;
use super::registry_targets::{alias, recorded, request_target, secret, slot};
use super::schedule;
use super::step::{Conds, Event, Next, Policy, Step, View, run_target};
use super::trouble::{credentials_problem, warn_once};
use crate::controller::conditions::{ConditionStatus as Status, ConditionType as Cond, Reason};
use crate::controller::effect::Effect;
use crate::controller::effect::{Registration, TargetKind};
use crate::controller::memory::{CompletedJob, JobMemory};
use crate::crd::{Phase, RegistryStatus, SkillTrainingJobStatus, TargetRegistration};
use crate::cxone::model::ExportResponse;
use crate::registry::{RegistryError, gate};

/// Consecutive failed attempts (unreachable registry, broken downloads) before the run ends.
pub const MAX_REGISTRY_ATTEMPTS: i64 = 8;

/// The run is exported: record what is known and register it.
pub(super) fn begin(
    v: &View,
    mut m: JobMemory,
    p: &Policy,
    completion: CompletedJob,
    export: ExportResponse,
) -> Step {
    let mut next = v.status.clone();
    let job_id = completion.job_id.clone();
    m.error_attempt = 0;
    m.completion = Some(CompletedJob {
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
            Event {
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
        signing_key: registration.signing_key.clone(),
        signature: registration.signature.clone(),
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
        Event {
            warning: false,
            reason: Reason::Promoted,
            action: "Promote",
            message,
        },
    );
    step
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
        return fail_registration(v, next, m, Reason::RegistrationFailed, problem);
    }
    Conds(v).set(&mut next, Cond::Registered, Status::False, reason, &message);
    let step = match (&e, then) {
        (RegistryError::SourceExpired(_), _) => {
            let target = match run_target(v) {
                Ok(t) => t,
                Err(problem) => return credentials_problem(v, m, &problem),
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
    schedule::error_backoff(attempt, p.error_backoff_base, p.error_backoff_max, v.jitter)
}
