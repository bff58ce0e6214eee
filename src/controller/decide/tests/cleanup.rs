//! Deletion: cancel at the run's endpoint, rate limits and retries, orphaning, giving up, lost
//! submissions.

use super::*;

#[test]
fn deleting_a_training_job_cancels_it_at_its_own_endpoint() {
    let job = Job::new().training();
    let step = job.decide_cleanup(Observation::Start);
    let Some(Effect::Cancel {
        target, purpose, ..
    }) = &step.effect
    else {
        panic!()
    };
    assert_eq!(
        (target.base_url.as_str(), *purpose),
        (BASE, CancelPurpose::Delete)
    );
    let done = job.decide_cleanup(Observation::Cancelled {
        job_id: "job-1".into(),
        purpose: CancelPurpose::Delete,
        result: Ok(CancelOutcome::Cancelled(Box::new(remote(
            JobState::Cancelled,
            40,
        )))),
    });
    assert_eq!(done.next, Next::AwaitChange);
    assert_eq!(reasons(&done), vec![Reason::Cancelled]);
}

#[test]
fn deleting_waits_for_rate_limits_and_retries_errors_then_gives_up() {
    let job = Job::new().training();
    let limited = job.decide_cleanup(Observation::Cancelled {
        job_id: "job-1".into(),
        purpose: CancelPurpose::Delete,
        result: Err(rate_limited(3)),
    });
    assert!(matches!(limited.next, Next::Requeue(_)));
    assert_eq!(
        limited.memory.cleanup_attempt, 0,
        "a 429 is no failed attempt"
    );
    let mut j = job.clone();
    for _ in 0..9 {
        let step = j.decide_cleanup(Observation::Cancelled {
            job_id: "job-1".into(),
            purpose: CancelPurpose::Delete,
            result: Err(unavailable()),
        });
        assert!(matches!(step.next, Next::Requeue(_)));
        j = j.after(&step);
    }
    let last = j.decide_cleanup(Observation::Cancelled {
        job_id: "job-1".into(),
        purpose: CancelPurpose::Delete,
        result: Err(unavailable()),
    });
    assert_eq!(last.next, Next::AwaitChange);
    assert_eq!(reasons(&last), vec![Reason::CancelFailed]);
    let no_slot = job.decide_cleanup(Observation::NoSlot(Duration::from_millis(100)));
    assert_eq!(no_slot.next, Next::Requeue(Duration::from_millis(100)));
}

#[test]
fn deleting_with_orphan_policy_or_nothing_in_flight_is_immediate() {
    let orphan = Job::new()
        .training()
        .with_spec(|s| s.deletion_policy = Some(DeletionPolicy::Orphan));
    assert_eq!(orphan.decide_cleanup(Observation::Start).effect, None);
    assert_eq!(
        orphan.decide_cleanup(Observation::Start).next,
        Next::AwaitChange
    );
    for job in [Job::new(), Job::new().succeeded()] {
        let step = job.decide_cleanup(Observation::Start);
        assert_eq!((step.effect, step.next), (None, Next::AwaitChange));
    }
}

#[test]
fn deleting_without_credentials_gives_up_with_a_warning() {
    let job = Job::new().training();
    let step = job.decide_cleanup(Observation::CannotCall("Secret gone".into()));
    assert_eq!(step.next, Next::AwaitChange);
    assert_eq!(reasons(&step), vec![Reason::CancelFailed]);
}

#[test]
fn deleting_a_job_whose_submission_answer_was_lost_looks_the_key_up_then_cancels() {
    let job = Job::new().submitting();
    let key = job.status.submission.clone().unwrap().idempotency_key;
    let step = job.decide_cleanup(Observation::Start);
    let Some(Effect::Lookup { key: asked, .. }) = &step.effect else {
        panic!("{:?}", step.effect);
    };
    assert_eq!(asked, &key);
    let found = job.decide_cleanup(Observation::LookedUp {
        purpose: CancelPurpose::Delete,
        result: Ok(Some("job-9".into())),
    });
    let Some(Effect::Cancel { job_id, .. }) = &found.effect else {
        panic!()
    };
    assert_eq!(job_id, "job-9");
    // No rate-limit slot for the cancel: the next pass cancels without looking again.
    let next = job.after(&found).decide_cleanup(Observation::Start);
    assert!(
        matches!(&next.effect, Some(Effect::Cancel { job_id, .. }) if job_id == "job-9"),
        "{:?}",
        next.effect
    );
    let nothing = job.decide_cleanup(Observation::LookedUp {
        purpose: CancelPurpose::Delete,
        result: Ok(None),
    });
    assert_eq!((nothing.effect, nothing.next), (None, Next::AwaitChange));
}
