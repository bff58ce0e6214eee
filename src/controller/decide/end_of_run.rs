//! The end of a run ([`EndOfRun`]): its audit record (with the registries' part) goes into its ConfigMap first; the
//! final status, Event and history entry follow once the records are written.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::identity;
use super::registry_targets::registry_record;
use super::schedule;
use super::status_fields;
use super::status_fields::apply_remote;
use super::step::{Conds, Next, Step, View, run_target};
use crate::audit::{AuditInput, AuditRecord, ComputeRecord, JobIdentity, RunResult, Timeline};
use crate::controller::conditions::{ConditionStatus as Status, ConditionType as Cond, Reason};
use crate::controller::effect::Effect;
use crate::controller::memory::{DataOutcome, EndRecording, JobMemory, RecordStage};
use crate::crd::{
    ArtifactsStatus, AuditStatus, Phase, RunHistory, SkillTrainingJobSpec, SkillTrainingJobStatus,
};
use crate::cxone::model::{ExportResponse, JobStatus};
use crate::training::ValidationReport;

/// How a run ended, before its report is written.
pub(super) struct EndOfRun {
    pub(super) phase: Phase,
    pub(super) reason: Reason,
    pub(super) message: String,
    pub(super) remote: Option<JobStatus>,
    pub(super) analysis: Option<Arc<crate::evaluation::EvaluationReport>>,
    pub(super) training_duration_seconds: Option<f64>,
    pub(super) export: Option<ExportResponse>,
    /// Where the model was registered, and the gate's outcome per registry.
    pub(super) registry: Option<crate::crd::RegistryStatus>,
}

impl EndOfRun {
    pub(super) fn without_results(phase: Phase, reason: Reason, message: String) -> Self {
        Self {
            phase,
            reason,
            message,
            remote: None,
            analysis: None,
            training_duration_seconds: None,
            export: None,
            registry: None,
        }
    }
}

/// Ends a run: the audit record goes into its ConfigMap first; the final status follows once it
/// is written (see [`written`]).
pub(super) fn end_run(v: &View, m: JobMemory, ending: EndOfRun) -> Step {
    end_run_from(v, v.status.clone(), m, ending)
}

/// [`end_run`] from a status this step changed (it is written before the report).
pub(super) fn end_run_from(
    v: &View,
    status: SkillTrainingJobStatus,
    mut m: JobMemory,
    ending: EndOfRun,
) -> Step {
    let job_id = v.status.job_id.clone();
    let name = identity::report_config_map_name(
        v.name,
        v.uid,
        v.generation,
        job_id.as_deref().unwrap_or("none"),
    );
    let data = report_data(v, &ending, job_id.as_deref());
    let recording = EndRecording {
        stage: RecordStage::Report,
        phase: ending.phase,
        reason: ending.reason,
        message: ending.message,
        job_id,
        remote: ending.remote,
        analysis: ending.analysis,
        training_duration_seconds: ending.training_duration_seconds,
        export: ending.export,
        digest: v.status.dataset_digest.clone(),
        report_name: name.clone(),
        report_data: data.clone(),
    };
    m.recording_end = Some(Arc::new(recording));
    Step::new(status, m, Next::AwaitChange).effect(Effect::WriteReport { name, data })
}

/// The audit record and the evaluation report of a run.
fn report_data(v: &View, ending: &EndOfRun, job_id: Option<&str>) -> BTreeMap<String, String> {
    let record = audit_record(v, ending, job_id);
    let mut data = BTreeMap::from([("audit.json".to_string(), record.to_json())]);
    if let Some(e) = &ending.analysis {
        data.insert(
            "evaluation.json".to_string(),
            serde_json::to_string(&**e).unwrap_or_default(),
        );
    }
    data
}

/// The governance record of a run: every flag in it is the outcome of a check that ran.
pub(super) fn audit_record(v: &View, ending: &EndOfRun, job_id: Option<&str>) -> AuditRecord {
    let empty = ValidationReport {
        checks: Vec::new(),
        violations: Vec::new(),
        label_counts: BTreeMap::new(),
        language: None,
        utterance_count: 0,
    };
    let (validation, digest, label_count) = match v.data {
        DataOutcome::Valid {
            report,
            digest,
            label_count,
            ..
        } => (report, Some(digest), *label_count),
        _ => (&empty, None, v.spec.labels.len()),
    };
    let signed: Vec<&str> = ending
        .export
        .as_ref()
        .map(|e| {
            vec![
                e.artifacts.model_weights_url.as_str(),
                e.artifacts.config_url.as_str(),
            ]
        })
        .unwrap_or_default();
    let hyperparameters = v.spec.hyperparameters();
    let remote = ending.remote.as_ref();
    let timeline_time = |t: Option<Timestamp>, s: &Option<Time>| t.or(s.as_ref().map(|t| t.0));
    AuditRecord::build(AuditInput {
        job: JobIdentity {
            namespace: v.namespace.to_string(),
            name: v.name.to_string(),
            uid: v.uid.to_string(),
            generation: v.generation,
            skill_id: v.spec.skill_id.clone(),
            endpoint: run_target(v).map(|t| t.base_url).unwrap_or_default(),
            cxone_job_id: job_id.map(str::to_string),
        },
        result: match ending.phase {
            Phase::Succeeded => RunResult::Succeeded,
            Phase::Cancelled => RunResult::Cancelled,
            _ => RunResult::Failed,
        },
        reason: (ending.phase != Phase::Succeeded).then(|| ending.message.clone()),
        validation,
        digest,
        label_count,
        hyperparameters: &hyperparameters,
        validation_split: v.spec.validation_split(),
        evaluation: ending.analysis.as_deref(),
        artifacts_expire_at: ending.export.as_ref().map(|e| e.expires_at),
        signed_urls: &signed,
        training_duration_seconds: ending
            .analysis
            .as_ref()
            .and(ending.training_duration_seconds),
        compute_units: remote.map(|r| ComputeRecord {
            allocated: r.compute_units_allocated,
            used: r.compute_units_used,
        }),
        timeline: Timeline {
            submitted_at: v.status.submitted_at.as_ref().map(|t| t.0),
            started_at: timeline_time(remote.and_then(|r| r.started_at), &v.status.started_at),
            completed_at: Some(
                timeline_time(remote.and_then(|r| r.completed_at), &v.status.completed_at)
                    .unwrap_or(v.now),
            ),
        },
        registry: ending
            .registry
            .as_ref()
            .map(|r| registry_record(v, r, ending.analysis.as_deref())),
        now: v.now,
    })
}

/// "CXone job … completed: macro precision …, recall …, F1 …; recommended threshold …"
pub(super) fn completed_message(
    job_id: &str,
    analysis: &crate::evaluation::EvaluationReport,
) -> String {
    format!(
        "CXone job {} completed: macro precision {}, recall {}, F1 {}{}",
        job_id,
        status_fields::decimal(analysis.macro_average.precision),
        status_fields::decimal(analysis.macro_average.recall),
        status_fields::decimal(analysis.macro_average.f1),
        match &analysis.recommendation {
            Some(r) => format!("; recommended threshold {:.2}", r.threshold),
            None => "; no threshold reaches the requested precision".to_string(),
        }
    )
}

/// The final status of a run whose record is written.
pub(super) fn final_status(v: &View, mut m: JobMemory, run: &EndRecording) -> Step {
    let mut next = v.status.clone();
    next.observed_generation = Some(v.generation);
    record_results(v, &mut next, run);
    record_end(v, &mut next, run);
    let (warning, reason) = match run.phase {
        Phase::Succeeded => (false, Reason::Succeeded),
        Phase::Cancelled => (true, Reason::Cancelled),
        _ => (true, Reason::TrainingFailed),
    };
    m.poll_attempt = 0;
    m.error_attempt = 0;
    m.completion = None;
    let then = match (run.phase, &next.artifacts) {
        (Phase::Succeeded, Some(a)) => Next::Requeue(schedule::refresh_wait(
            refresh_before(v.spec),
            a.expires_at.0,
            v.now,
        )),
        _ => Next::AwaitChange,
    };
    let message = format!(
        "{}; audit record in ConfigMap {}",
        run.message, run.report_name
    );
    Step::new(next, m, then).event(warning, reason, "Train", message)
}

/// What CXone reported and what the analysis found, into status.
fn record_results(v: &View, next: &mut SkillTrainingJobStatus, run: &EndRecording) {
    if let Some(remote) = &run.remote {
        apply_remote(next, remote);
    }
    if let Some(seconds) = run
        .training_duration_seconds
        .filter(|_| run.analysis.is_some())
    {
        next.training_duration_seconds = Some(format!("{seconds:.1}"));
    }
    if let Some(export) = &run.export {
        next.artifacts = Some(artifacts_status(v.spec, export));
    }
    if let Some(e) = &run.analysis {
        next.evaluation = Some(status_fields::evaluation_status(e, &run.report_name));
    }
}

/// The run's end: phase, message, audit record, history and conditions.
fn record_end(v: &View, next: &mut SkillTrainingJobStatus, run: &EndRecording) {
    next.phase = Some(run.phase);
    if run.phase == Phase::Succeeded {
        next.progress = Some(100);
    }
    next.completed_at = Some(next.completed_at.clone().unwrap_or(Time(v.now)));
    next.message = Some(crate::text::truncate_chars(
        &run.message,
        status_fields::MAX_MESSAGE_CHARS,
    ));
    next.audit = Some(AuditStatus {
        config_map: run.report_name.clone(),
        recorded_at: Time(v.now),
    });
    status_fields::push_history(
        &mut next.history,
        RunHistory {
            generation: v.generation,
            job_id: run.job_id.clone(),
            dataset_digest: run.digest.clone(),
            phase: run.phase,
            macro_f1: run
                .analysis
                .as_ref()
                .map(|e| status_fields::decimal(e.macro_average.f1)),
            completed_at: next.completed_at.clone(),
            message: Some(crate::text::truncate_chars(&run.message, 300)),
        },
    );
    let c = Conds(v);
    let (succeeded, ready, ready_reason) = match run.phase {
        Phase::Succeeded => (Status::True, Status::True, Reason::ArtifactsAvailable),
        _ => (Status::False, Status::False, run.reason),
    };
    c.set(next, Cond::Succeeded, succeeded, run.reason, &run.message);
    if run.reason == Reason::SubmissionRejected {
        c.set(
            next,
            Cond::Submitted,
            Status::False,
            run.reason,
            &run.message,
        );
    }
    c.set(next, Cond::Ready, ready, ready_reason, &run.message);
}

/// Artifact URLs as status carries them: in status, or only the Secret's name.
pub(super) fn artifacts_status(
    spec: &SkillTrainingJobSpec,
    export: &ExportResponse,
) -> ArtifactsStatus {
    let secret_name = spec.artifacts.as_ref().and_then(|a| a.secret_name.clone());
    ArtifactsStatus {
        model_weights_url: secret_name
            .is_none()
            .then(|| export.artifacts.model_weights_url.clone()),
        config_url: secret_name
            .is_none()
            .then(|| export.artifacts.config_url.clone()),
        expires_at: Time(export.expires_at),
        secret_name,
    }
}

pub(super) fn refresh_before(spec: &SkillTrainingJobSpec) -> Duration {
    spec.artifacts
        .as_ref()
        .and_then(|a| a.refresh_before_seconds)
        .map(|s| Duration::from_secs(s.into()))
        .unwrap_or(schedule::DEFAULT_REFRESH_BEFORE)
}
