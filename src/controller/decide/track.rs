//! CXone's answers about a run: the submission, the lookup of a lost one, each poll, the
//! evaluation and the export (of a completing run, or a refresh of a finished one's URLs).

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::course::{cancel, cancelled, start};
use super::end_of_run::{EndOfRun, completed_message, end_run};
use super::promotion::begin;
use super::records::artifacts_refreshed;
use super::schedule;
use super::schedule::PollSchedule;
use super::status_fields;
use super::status_fields::apply_remote;
use super::step::{Conds, Next, Policy, Step, View, run_target, unknown_submission};
use super::trouble::{credentials_problem, is_gone, trouble, warn_once};
use crate::controller::conditions::{ConditionStatus as Status, ConditionType as Cond, Reason};
use crate::controller::effect::{CancelPurpose, Effect};
use crate::controller::memory::{CompletedJob, JobMemory};
use crate::crd::Phase;
use crate::cxone::model::{
    EvaluationResponse, ExportResponse, JobState, JobStatus, SubmitResponse,
};
use crate::cxone::{CancelOutcome, CxoneError};
use crate::evaluation::analyze;

pub(super) fn submitted(
    v: &View,
    mut m: JobMemory,
    p: &Policy,
    result: Result<SubmitResponse, CxoneError>,
) -> Step {
    let resp = match result {
        Ok(resp) => resp,
        // The key is ours (derived from this job's uid): the job it names is this run's.
        Err(CxoneError::KeyInUse { job_id, .. }) => SubmitResponse {
            job_id,
            status: JobState::Queued,
        },
        Err(CxoneError::Rejected {
            status,
            message,
            details,
            ..
        }) if status != 404 && status != 409 => {
            // CXone refused the payload: retrying the same data cannot help.
            let mut text = message;
            if !details.is_empty() {
                text = format!("{text}: {}", details.join("; "));
            }
            let text = format!("CXone rejected the submission ({status}): {text}");
            return end_run(
                v,
                m,
                EndOfRun::without_results(Phase::Failed, Reason::SubmissionRejected, text),
            );
        }
        Err(e) => return trouble(v, m, p, &e),
    };
    let c = Conds(v);
    let mut next = v.status.clone();
    next.job_id = Some(resp.job_id.clone());
    next.phase = Some(status_fields::phase_for(resp.status));
    next.submitted_at = Some(Time(v.now));
    next.progress = Some(0);
    next.message = Some(format!("CXone job {} {}", resp.job_id, resp.status));
    c.set(
        &mut next,
        Cond::Submitted,
        Status::True,
        Reason::JobSubmitted,
        &format!("CXone job {}", resp.job_id),
    );
    c.set(
        &mut next,
        Cond::Ready,
        Status::False,
        Reason::Training,
        "the skill is being trained",
    );
    m.poll_attempt = 0;
    m.error_attempt = 0;
    m.last_warning = None;
    let validated = status_fields::condition(&next, Cond::Validated)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    let wait = PollSchedule::from_spec(v.spec).interval(0);
    let mut step = Step::new(next, m, Next::Requeue(wait)).event(
        false,
        Reason::Submitted,
        "Submit",
        format!("CXone job {}; validated {validated}", resp.job_id),
    );
    step.drop_dataset = true;
    step
}

/// The outcome of a lookup by idempotency key: cancel the job it names, or, if it names none,
/// nothing was created and there is nothing to cancel.
pub(super) fn looked_up(
    v: &View,
    mut m: JobMemory,
    p: &Policy,
    purpose: CancelPurpose,
    result: Result<Option<String>, CxoneError>,
) -> Step {
    match result {
        Ok(Some(job_id)) => {
            m.found = unknown_submission(v.status).map(|key| (key.to_string(), job_id.clone()));
            cancel(v, p, v.status.clone(), m, &job_id, purpose)
        }
        Ok(None) => cancelled(v, m, p, "", purpose, Ok(CancelOutcome::NotFound)),
        Err(e) => cancelled(v, m, p, "", purpose, Err(e)),
    }
}

pub(super) fn polled(
    v: &View,
    mut m: JobMemory,
    p: &Policy,
    result: Result<JobStatus, CxoneError>,
) -> Step {
    let job_id = v.status.job_id.clone().unwrap_or_default();
    let remote = match result {
        Ok(r) => r,
        Err(CxoneError::Rejected { status: 404, .. }) => {
            let message = format!("CXone no longer knows job {job_id}");
            return end_run(
                v,
                m,
                EndOfRun::without_results(Phase::Failed, Reason::JobNotFound, message),
            );
        }
        Err(e) => return trouble(v, m, p, &e),
    };
    m.error_attempt = 0;
    match remote.status {
        JobState::Completed => {
            m.completion = Some(CompletedJob {
                job_id: job_id.clone(),
                remote,
                analysis: None,
                training_duration_seconds: None,
                export: None,
            });
            let target = match run_target(v) {
                Ok(t) => t,
                Err(problem) => return credentials_problem(v, m, &problem),
            };
            Step::new(v.status.clone(), m, Next::AwaitChange)
                .effect(Effect::FetchEvaluation { job_id, target })
        }
        JobState::Failed => {
            let reason = remote
                .failure_reason
                .as_deref()
                .map(|r| {
                    status_fields::clip_remote_text(r, status_fields::MAX_FAILURE_REASON_CHARS)
                })
                .unwrap_or_else(|| "no reason given".into());
            let message = format!("CXone job {job_id} failed: {reason}");
            let mut ending =
                EndOfRun::without_results(Phase::Failed, Reason::TrainingFailed, message);
            ending.remote = Some(remote);
            end_run(v, m, ending)
        }
        JobState::Cancelled => {
            let message = format!("CXone job {job_id} was cancelled outside the operator");
            let mut ending =
                EndOfRun::without_results(Phase::Cancelled, Reason::Cancelled, message);
            ending.remote = Some(remote);
            end_run(v, m, ending)
        }
        state => running(v, m, p, &job_id, state, &remote),
    }
}

/// CXone reports progress: write it when the phase changed (or, with `progress_step`, when it
/// moved enough), and poll again on the schedule.
fn running(
    v: &View,
    mut m: JobMemory,
    p: &Policy,
    job_id: &str,
    state: JobState,
    remote: &JobStatus,
) -> Step {
    let phase = status_fields::phase_for(state);
    let progress = i32::from(remote.progress);
    let mut next = v.status.clone();
    next.observed_generation = Some(v.generation);
    if v.status.phase != Some(phase)
        || schedule::progress_worth_writing(v.status.progress, progress, p.progress_step)
    {
        apply_remote(&mut next, remote);
        next.phase = Some(phase);
        next.progress = Some(progress);
        let stage = status_fields::clip_remote_text(&remote.stage, status_fields::MAX_STAGE_CHARS);
        next.message = Some(format!("CXone job {job_id} {state}: {stage}"));
        let reason = match phase {
            Phase::Evaluating => Reason::Evaluating,
            Phase::Queued => Reason::Queued,
            _ => Reason::Training,
        };
        Conds(v).set(
            &mut next,
            Cond::Ready,
            Status::False,
            reason,
            &format!("CXone job {job_id} is {state}"),
        );
    }
    let attempt = m.poll_attempt;
    m.poll_attempt = m.poll_attempt.saturating_add(1);
    m.last_warning = None;
    let wait = PollSchedule::from_spec(v.spec).interval(attempt.saturating_add(1));
    Step::new(next, m, Next::Requeue(wait))
}

pub(super) fn evaluated(
    v: &View,
    mut m: JobMemory,
    p: &Policy,
    result: Result<Arc<EvaluationResponse>, CxoneError>,
) -> Step {
    let Some(completion) = m.completion.clone() else {
        // Memory was lost in between: poll again.
        return start(v, v.status, m, p);
    };
    let job_id = completion.job_id.clone();
    let evaluation = match result {
        Ok(e) => e,
        Err(e) if is_gone(&e) => return results_gone(v, m, &completion, "evaluation", &e),
        Err(e) => return trouble(v, m, p, &e),
    };
    match analyze(&evaluation, &v.spec.evaluation_options()) {
        Err(e) => {
            m.completion = None;
            let message = format!("the evaluation of CXone job {job_id} cannot be analysed: {e}");
            let mut ending =
                EndOfRun::without_results(Phase::Failed, Reason::EvaluationInvalid, message);
            ending.remote = Some(completion.remote);
            end_run(v, m, ending)
        }
        Ok(report) => {
            let target = match run_target(v) {
                Ok(t) => t,
                Err(problem) => return credentials_problem(v, m, &problem),
            };
            m.error_attempt = 0;
            m.completion = Some(CompletedJob {
                analysis: Some(Arc::new(report)),
                training_duration_seconds: Some(evaluation.training_duration_seconds),
                ..completion
            });
            Step::new(v.status.clone(), m, Next::AwaitChange)
                .effect(Effect::Export { job_id, target })
        }
    }
}

fn results_gone(
    v: &View,
    mut m: JobMemory,
    completion: &CompletedJob,
    what: &str,
    e: &CxoneError,
) -> Step {
    m.completion = None;
    let message = format!(
        "the {what} of CXone job {} is not available: {e}",
        completion.job_id
    );
    let mut ending = EndOfRun::without_results(Phase::Failed, Reason::ResultsUnavailable, message);
    ending.remote = Some(completion.remote.clone());
    end_run(v, m, ending)
}

pub(super) fn exported(
    v: &View,
    mut m: JobMemory,
    p: &Policy,
    result: Result<ExportResponse, CxoneError>,
) -> Step {
    if v.status.phase == Some(Phase::Succeeded) {
        return refreshed(v, m, p, result);
    }
    let Some(completion) = m.completion.clone().filter(|c| c.analysis.is_some()) else {
        return start(v, v.status, m, p);
    };
    let export = match result {
        Ok(x) => x,
        Err(e) if is_gone(&e) => return results_gone(v, m, &completion, "artifact export", &e),
        Err(e) => return trouble(v, m, p, &e),
    };
    if v.spec.registry.is_some() {
        return begin(v, m, p, completion, export);
    }
    m.completion = None;
    let Some(analysis) = completion.analysis.clone() else {
        return start(v, v.status, m, p);
    };
    let message = completed_message(&completion.job_id, &analysis);
    end_run(
        v,
        m,
        EndOfRun {
            phase: Phase::Succeeded,
            reason: Reason::TrainingSucceeded,
            message,
            remote: Some(completion.remote),
            analysis: Some(analysis),
            training_duration_seconds: completion.training_duration_seconds,
            export: Some(export),
            registry: None,
        },
    )
}

pub(super) fn refreshed(
    v: &View,
    mut m: JobMemory,
    p: &Policy,
    result: Result<ExportResponse, CxoneError>,
) -> Step {
    let export = match result {
        Ok(x) => x,
        Err(e) if is_gone(&e) => {
            // The model was trained and evaluated; only its files are gone. Say so, stop asking.
            let message = format!("artifact URLs cannot be refreshed: {e}");
            let mut next = v.status.clone();
            Conds(v).set(
                &mut next,
                Cond::Ready,
                Status::False,
                Reason::ArtifactsUnavailable,
                &message,
            );
            return warn_once(
                Step::new(next, m, Next::AwaitChange),
                Reason::ArtifactsUnavailable,
                "Export",
                message,
            );
        }
        Err(e) => return trouble(v, m, p, &e),
    };
    m.error_attempt = 0;
    match v
        .spec
        .artifacts
        .as_ref()
        .and_then(|a| a.secret_name.clone())
    {
        Some(name) => {
            m.refreshing = Some(export.clone());
            Step::new(v.status.clone(), m, Next::AwaitChange)
                .effect(Effect::WriteArtifactSecret { name, export })
        }
        None => artifacts_refreshed(v, m, &export),
    }
}
