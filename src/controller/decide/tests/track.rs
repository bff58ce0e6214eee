//! A run at CXone: polls, progress, completion with evaluation and export, and remote failures that
//! end the run.

use super::*;

#[test]
fn a_running_job_is_polled_on_the_schedule_and_progress_moves_with_phases() {
    let job = Job::new().submitted();
    let poll = job.decide(Observation::Start);
    assert!(matches!(poll.effect, Some(Effect::Poll { .. })));
    let step = job.decide(Observation::Polled(Ok(remote(JobState::Training, 40))));
    assert_eq!(phase(&step), Some(Phase::Training));
    assert_eq!(step.status.progress, Some(40));
    assert_eq!(step.next, Next::Requeue(Duration::from_secs(3)));
    let same_phase = job
        .after(&step)
        .decide(Observation::Polled(Ok(remote(JobState::Training, 60))));
    assert_eq!(
        same_phase.status,
        job.after(&step).status,
        "nothing visible changed: no write"
    );
    assert_eq!(same_phase.next, Next::Requeue(Duration::from_secs_f64(4.5)));
}

#[test]
fn remote_text_is_clipped_before_status() {
    let job = Job::new().submitted();
    let mut r = remote(JobState::Training, 10);
    r.stage = "x".repeat(1 << 20);
    let step = job.decide(Observation::Polled(Ok(r)));
    assert!(step.status.stage.unwrap().chars().count() <= status_fields::MAX_STAGE_CHARS + 1);
    assert!(step.status.message.unwrap().len() < 1000);
}

#[test]
fn a_completed_job_is_evaluated_exported_recorded_then_succeeds() {
    let job = Job::new().training();
    let step = job.decide(Observation::Polled(Ok(remote(JobState::Completed, 100))));
    assert!(matches!(step.effect, Some(Effect::FetchEvaluation { .. })));
    let job = job.after(&step);
    let step = job.decide(Observation::Evaluated(Ok(evaluation())));
    assert!(matches!(step.effect, Some(Effect::Export { .. })));
    let job = job.after(&step);
    let step = job.decide(Observation::Exported(Ok(export(3600, job.now))));
    let Some(Effect::WriteReport { data, .. }) = &step.effect else {
        panic!("the audit record is written first: {:?}", step.effect);
    };
    assert!(
        !data["audit.json"].contains("signature="),
        "no signed URL in the record"
    );
    assert_eq!(step.status, job.status, "status waits for the record");
    let job = job.after(&step);
    let done = job.decide(Observation::Written(Ok(())));
    assert_eq!(phase(&done), Some(Phase::Succeeded));
    assert_eq!(done.status.progress, Some(100));
    assert_eq!(
        condition(&done, Cond::Ready),
        ("True".into(), "ArtifactsAvailable".into())
    );
    let eval = done.status.evaluation.clone().unwrap();
    assert_eq!(eval.examples, 3);
    assert_eq!(
        eval.server_metrics_consistent, None,
        "no server summary: unknown"
    );
    assert_eq!(done.status.history.len(), 1);
    assert_eq!(reasons(&done), vec![Reason::Succeeded]);
    // Refreshed at 3600 - 300 s.
    assert_eq!(done.next, Next::Requeue(Duration::from_secs(3300)));
}

#[test]
fn failed_and_cancelled_remote_jobs_end_the_run() {
    for (state, end, reason) in [
        (JobState::Failed, Phase::Failed, "TrainingFailed"),
        (JobState::Cancelled, Phase::Cancelled, "Cancelled"),
    ] {
        let job = Job::new().training();
        let step = job.decide(Observation::Polled(Ok(remote(state, 50))));
        let done = job.after(&step).decide(Observation::Written(Ok(())));
        assert_eq!(phase(&done), Some(end));
        assert_eq!(condition(&done, Cond::Succeeded).1, reason);
        if state == JobState::Failed {
            assert!(done.status.message.unwrap().contains("out of memory"));
        }
    }
}

#[test]
fn a_job_cxone_forgot_fails_as_not_found() {
    let job = Job::new().training();
    let step = job.decide(Observation::Polled(Err(rejected(404))));
    let done = job.after(&step).decide(Observation::Written(Ok(())));
    assert_eq!(condition(&done, Cond::Succeeded).1, "JobNotFound");
}

#[test]
fn results_cxone_no_longer_has_end_the_run_instead_of_retrying_forever() {
    for status in [404, 410] {
        let job = Job::new().completed();
        let step = job.decide(Observation::Evaluated(Err(rejected(status))));
        let done = job.after(&step).decide(Observation::Written(Ok(())));
        assert_eq!(condition(&done, Cond::Succeeded).1, "ResultsUnavailable");
        let job = Job::new().evaluated();
        let step = job.decide(Observation::Exported(Err(rejected(status))));
        let done = job.after(&step).decide(Observation::Written(Ok(())));
        assert_eq!(condition(&done, Cond::Succeeded).1, "ResultsUnavailable");
    }
}

#[test]
fn an_analysis_that_fails_ends_the_run_as_evaluation_invalid() {
    let job = Job::new().completed();
    let mut bad = (*evaluation()).clone();
    bad.predictions.pop();
    let step = job.decide(Observation::Evaluated(Ok(Arc::new(bad))));
    let done = job.after(&step).decide(Observation::Written(Ok(())));
    assert_eq!(condition(&done, Cond::Succeeded).1, "EvaluationInvalid");
}
