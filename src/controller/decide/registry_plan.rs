//! What a registration carries and how the Registering phase ends: the model's provenance, the
//! Succeeded ending with the references, or Failed once a registry cannot be used.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::end_of_run::{EndOfRun, completed_message, end_run_from};
use super::step::{Conds, Next, Step, View};
use crate::controller::conditions::{ConditionStatus as Status, ConditionType as Cond, Reason};
use crate::controller::memory::{CompletedJob, JobMemory};
use crate::crd::{Phase, RegistryStatus, SkillTrainingJobStatus};
use crate::cxone::model::ExportResponse;
use crate::evaluation::EvaluationReport;
use crate::registry::Provenance;

/// Who and what the model is. Every field comes from stored state, so a repeated registration
/// of the same run describes it identically (and an OCI push yields the same digest).
pub(super) fn provenance(v: &View, completion: &CompletedJob) -> Provenance {
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

pub(super) fn success_ending(
    completion: &CompletedJob,
    analysis: &Arc<EvaluationReport>,
    export: &ExportResponse,
    registry: Option<RegistryStatus>,
) -> EndOfRun {
    EndOfRun {
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
pub(super) fn done(v: &View, next: SkillTrainingJobStatus, mut m: JobMemory) -> Step {
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
    end_run_from(v, next, m, ending)
}

/// The run ends Failed: the model could not be registered.
pub(super) fn fail_registration(
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
    let mut ending = EndOfRun::without_results(Phase::Failed, Reason::RegistrationFailed, message);
    if let Some(c) = completion {
        ending.remote = Some(c.remote);
        ending.analysis = c.analysis;
        ending.training_duration_seconds = c.training_duration_seconds;
        ending.export = c.export;
    }
    ending.registry = next.registry.clone();
    end_run_from(v, next, m, ending)
}
