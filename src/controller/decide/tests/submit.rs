//! Starting a run: validation, the recorded submission and its key, suspension, missing
//! credentials, and CXone's answer to the POST.

use super::*;

#[test]
fn a_valid_job_records_its_submission_before_it_is_sent() {
    let step = Job::new().decide(Observation::Start);
    assert_eq!(phase(&step), Some(Phase::Submitting));
    assert!(
        step.conditional,
        "the marker is written on a resourceVersion precondition"
    );
    let submission = step.status.submission.clone().unwrap();
    assert_eq!(submission.run, 1);
    assert_eq!(submission.base_url.as_deref(), Some(BASE));
    assert_eq!(
        submission.credentials_secret.as_deref(),
        Some("cxone-credentials")
    );
    assert_eq!(is_submit(&step), Some(submission.idempotency_key));
    assert_eq!(condition(&step, Cond::Validated).0, "True");
}

#[test]
fn the_same_snapshot_decided_twice_submits_with_one_key() {
    // A stale cache or a second replica sees the status before the marker: same key, so CXone
    // answers with the job it already created.
    let job = Job::new();
    let first = job.decide(Observation::Start);
    let again = job.later(30).decide(Observation::Start);
    assert_eq!(is_submit(&first), is_submit(&again));
    assert!(is_submit(&first).is_some());
}

#[test]
fn a_later_run_of_the_same_data_gets_its_own_key() {
    let failed = Job::new().submitted();
    let failed =
        failed.after(&failed.decide(Observation::Polled(Ok(remote(JobState::Failed, 10)))));
    let failed = failed.after(&failed.decide(Observation::Written(Ok(()))));
    assert_eq!(failed.status.phase, Some(Phase::Failed));
    // Suspend and resume do not retrain; a spec change back and forth does (new run number).
    let changed = failed.with_spec(|s| s.skill_id = "skill-other".into());
    let step = changed.decide(Observation::Start);
    let key2 = is_submit(&step).unwrap();
    assert_eq!(step.status.submission.as_ref().unwrap().run, 2);
    assert_ne!(
        Some(key2),
        is_submit(&Job::new().decide(Observation::Start))
    );
}

#[test]
fn invalid_data_is_reported_once_and_nothing_is_submitted() {
    let mut job = Job::new();
    job.data_valid = false;
    let step = job.decide(Observation::Start);
    assert_eq!(phase(&step), Some(Phase::Invalid));
    assert_eq!(step.effect, None);
    assert_eq!(step.next, Next::AwaitChange);
    assert_eq!(
        condition(&step, Cond::Validated),
        ("False".into(), "ValidationFailed".into())
    );
    assert_eq!(reasons(&step), vec![Reason::InvalidSpec]);
    let again = job.after(&step).decide(Observation::Start);
    assert!(again.events.is_empty(), "the same problem is not news");
}

#[test]
fn names_that_would_change_an_api_path_make_the_job_invalid() {
    let job =
        Job::new().with_spec(|s| s.connection.credentials_secret_ref.name = "x?watch=true".into());
    let step = job.decide(Observation::Start);
    assert_eq!(phase(&step), Some(Phase::Invalid));
    assert_eq!(condition(&step, Cond::Validated).1, "InvalidReference");
}

#[test]
fn an_endpoint_outside_the_allowlist_makes_the_job_invalid() {
    let mut job = Job::new();
    job.endpoint = Err("spec.connection.baseUrl https://evil.example/ is not allowed".into());
    let step = job.decide(Observation::Start);
    assert_eq!(condition(&step, Cond::Validated).1, "EndpointNotAllowed");
    assert_eq!(step.effect, None);
}

#[test]
fn a_suspended_job_waits_without_submitting() {
    let job = Job::new().with_spec(|s| s.suspend = Some(true));
    let step = job.decide(Observation::Start);
    assert_eq!(phase(&step), Some(Phase::Pending));
    assert_eq!(condition(&step, Cond::Ready).1, "Suspended");
    assert_eq!(step.effect, None);
}

#[test]
fn a_missing_secret_keeps_the_job_pending_and_says_so_once() {
    let mut job = Job::new();
    job.credentials = Err("Secret \"cxone-credentials\" does not exist".into());
    let step = job.decide(Observation::Start);
    assert_eq!(phase(&step), Some(Phase::Pending));
    assert_eq!(condition(&step, Cond::Ready).1, "CredentialsError");
    assert_eq!(
        step.status.submission, None,
        "nothing recorded without credentials"
    );
    assert_eq!(reasons(&step), vec![Reason::CredentialsError]);
    assert!(matches!(step.next, Next::Requeue(_)));
    let again = job.after(&step).decide(Observation::Start);
    assert!(again.events.is_empty());
}

#[test]
fn an_accepted_submission_records_the_job_and_polls_after_two_seconds() {
    let job = Job::new().submitting();
    let step = job.decide(Observation::Submitted(Ok(SubmitResponse {
        job_id: "job-1".into(),
        status: JobState::Queued,
    })));
    assert_eq!(step.status.job_id.as_deref(), Some("job-1"));
    assert_eq!(phase(&step), Some(Phase::Queued));
    assert_eq!(step.next, Next::Requeue(Duration::from_secs(2)));
    assert!(step.drop_dataset);
    assert_eq!(reasons(&step), vec![Reason::Submitted]);
}

#[test]
fn a_submission_whose_answer_was_lost_is_sent_again_with_the_same_key() {
    let job = Job::new().submitting();
    let key = job.status.submission.clone().unwrap().idempotency_key;
    let step = job.decide(Observation::Submitted(Err(unavailable())));
    assert!(matches!(step.next, Next::Requeue(_)));
    let retry = job.after(&step).decide(Observation::Start);
    assert_eq!(is_submit(&retry), Some(key.clone()));
    // A restart has no memory: the same.
    let restarted = job.with_memory_cleared().decide(Observation::Start);
    assert_eq!(is_submit(&restarted), Some(key));
}

#[test]
fn a_rejected_submission_ends_the_run_with_an_audit_record() {
    let job = Job::new().submitting();
    let step = job.decide(Observation::Submitted(Err(rejected(400))));
    assert!(matches!(step.effect, Some(Effect::WriteReport { .. })));
    let done = job.after(&step).decide(Observation::Written(Ok(())));
    assert_eq!(phase(&done), Some(Phase::Failed));
    assert_eq!(condition(&done, Cond::Submitted).1, "SubmissionRejected");
    assert!(done.status.audit.is_some());
    assert_eq!(done.next, Next::AwaitChange);
}

#[test]
fn a_key_already_in_use_is_this_runs_job_not_a_rejection() {
    let job = Job::new().submitting();
    let step = job.decide(Observation::Submitted(Err(CxoneError::KeyInUse {
        call: Call::Submit,
        job_id: "job-3".into(),
    })));
    assert_eq!(step.status.job_id.as_deref(), Some("job-3"));
    assert_eq!(phase(&step), Some(Phase::Queued));
}

#[test]
fn a_finished_run_needs_no_data_while_its_sources_are_unchanged() {
    let done = Job::new().succeeded();
    assert_eq!(done.status.data_source_key.as_deref(), Some("v1:k"));
    let mut restarted = done.with_memory_cleared();
    restarted.data_recorded = true;
    let step = restarted.decide(Observation::Start);
    assert_eq!(phase(&step), Some(Phase::Succeeded));
    assert_eq!(step.effect, None);
    assert!(!step.memory.read_data);
    assert_eq!(step.status, restarted.status, "nothing to write");
}

#[test]
fn a_recorded_digest_that_does_not_fit_the_spec_asks_for_the_data() {
    let done = Job::new().succeeded();
    let mut changed = done.with_spec(|s| s.skill_id = "skill-other".into());
    changed.data_recorded = true;
    let step = changed.decide(Observation::Start);
    assert_eq!(
        is_submit(&step),
        None,
        "no run starts from a recorded digest"
    );
    assert!(step.memory.read_data);
    assert!(matches!(step.next, Next::Requeue(_)));
    let mut read = changed.after(&step);
    read.data_recorded = false;
    let step = read.decide(Observation::Start);
    assert!(is_submit(&step).is_some());
    assert!(!step.memory.read_data);
}
