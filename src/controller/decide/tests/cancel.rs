//! Runs no longer wanted: superseded, invalidated, past their deadline, or with an unknown
//! submission outcome.

use super::*;

#[test]
fn a_spec_change_mid_training_cancels_where_the_run_was_submitted_then_starts_anew() {
    let job = Job::new().training();
    let moved = job.with_spec(|s| {
        s.connection.region = Some("eu1".into());
        s.connection.credentials_secret_ref.name = "eu-credentials".into();
    });
    let mut moved = moved;
    moved.endpoint = Ok(RunTarget {
        base_url: "https://api.eu1.cxone.com/".into(),
        token_url: "https://api.eu1.cxone.com/oauth/token".into(),
        secret: "eu-credentials".into(),
    });
    let step = moved.decide(Observation::Start);
    let Some(Effect::Cancel {
        target,
        purpose,
        job_id,
    }) = &step.effect
    else {
        panic!("{:?}", step.effect);
    };
    assert_eq!(
        (job_id.as_str(), *purpose),
        ("job-1", CancelPurpose::Supersede)
    );
    assert_eq!(
        target.base_url, BASE,
        "the old run's endpoint, not the new one"
    );
    assert_eq!(target.secret, "cxone-credentials", "the old run's Secret");
    let next = moved.after(&step).decide(Observation::Cancelled {
        job_id: "job-1".into(),
        purpose: CancelPurpose::Supersede,
        result: Ok(CancelOutcome::NotFound),
    });
    assert_eq!(phase(&next), Some(Phase::Submitting));
    assert_eq!(reasons(&next)[0], Reason::Superseded);
    assert_eq!(next.status.history.last().unwrap().phase, Phase::Cancelled);
    let Some(Effect::Submit { target, .. }) = &next.effect else {
        panic!()
    };
    assert_eq!(target.secret, "eu-credentials");
    assert_eq!(next.status.submission.as_ref().unwrap().run, 2);
}

#[test]
fn a_superseded_cancel_that_is_rate_limited_waits_and_records_nothing() {
    let job = Job::new()
        .training()
        .with_spec(|s| s.skill_id = "skill-2".into());
    let step = job.decide(Observation::Cancelled {
        job_id: "job-1".into(),
        purpose: CancelPurpose::Supersede,
        result: Err(rate_limited(5)),
    });
    assert_eq!(step.status, job.status);
    assert_eq!(step.next, Next::Requeue(Duration::from_secs(5)));
}

#[test]
fn operational_spec_changes_do_not_retrain() {
    let job = Job::new().training().with_spec(|s| {
        s.deletion_policy = Some(DeletionPolicy::Orphan);
        s.suspend = Some(true);
    });
    let step = job.decide(Observation::Start);
    assert!(
        matches!(step.effect, Some(Effect::Poll { .. })),
        "{:?}",
        step.effect
    );
}

#[test]
fn an_invalid_spec_mid_training_cancels_the_run_first() {
    let mut job = Job::new().training();
    job.data_valid = false;
    let step = job.decide(Observation::Start);
    assert!(matches!(
        step.effect,
        Some(Effect::Cancel {
            purpose: CancelPurpose::Invalidate,
            ..
        })
    ));
    let done = job.after(&step).decide(Observation::Cancelled {
        job_id: "job-1".into(),
        purpose: CancelPurpose::Invalidate,
        result: Ok(CancelOutcome::AlreadyTerminal),
    });
    assert_eq!(phase(&done), Some(Phase::Invalid));
    assert_eq!(done.status.job_id, None);
}

#[test]
fn the_active_deadline_cancels_and_fails_the_run() {
    let job = Job::new()
        .with_spec(|s| {
            s.polling = Some(
                serde_json::from_value(serde_json::json!({"activeDeadlineSeconds": 60})).unwrap(),
            )
        })
        .training()
        .later(61);
    let step = job.decide(Observation::Start);
    assert!(matches!(
        step.effect,
        Some(Effect::Cancel {
            purpose: CancelPurpose::Deadline,
            ..
        })
    ));
    let step = job.after(&step).decide(Observation::Cancelled {
        job_id: "job-1".into(),
        purpose: CancelPurpose::Deadline,
        result: Ok(CancelOutcome::NotFound),
    });
    let done = job.after(&step).decide(Observation::Written(Ok(())));
    assert_eq!(condition(&done, Cond::Succeeded).1, "DeadlineExceeded");
}

#[test]
fn a_spec_change_while_the_submission_outcome_is_unknown_cancels_what_the_key_names() {
    let job = Job::new()
        .submitting()
        .with_spec(|s| s.skill_id = "skill-2".into());
    let step = job.decide(Observation::Start);
    assert!(matches!(
        step.effect,
        Some(Effect::Lookup {
            purpose: CancelPurpose::Supersede,
            ..
        })
    ));
    let found = job.decide(Observation::LookedUp {
        purpose: CancelPurpose::Supersede,
        result: Ok(Some("job-7".into())),
    });
    assert!(matches!(&found.effect, Some(Effect::Cancel { job_id, .. }) if job_id == "job-7"));
    let cancelled = job.after(&found).decide(Observation::Cancelled {
        job_id: "job-7".into(),
        purpose: CancelPurpose::Supersede,
        result: Ok(CancelOutcome::Cancelled(Box::new(remote(
            JobState::Cancelled,
            0,
        )))),
    });
    assert!(is_submit(&cancelled).is_some(), "then the new run starts");
    assert_eq!(
        cancelled.status.history.last().unwrap().job_id.as_deref(),
        Some("job-7")
    );
}

#[test]
fn an_invalid_spec_while_the_submission_outcome_is_unknown_looks_up_first() {
    let mut job = Job::new().submitting();
    job.data_valid = false;
    let step = job.decide(Observation::Start);
    assert!(matches!(
        step.effect,
        Some(Effect::Lookup {
            purpose: CancelPurpose::Invalidate,
            ..
        })
    ));
    let nothing = job.decide(Observation::LookedUp {
        purpose: CancelPurpose::Invalidate,
        result: Ok(None),
    });
    assert_eq!(phase(&nothing), Some(Phase::Invalid));
}

#[test]
fn a_run_recorded_before_endpoints_were_kept_is_cancelled_at_the_specs_endpoint() {
    let mut job = Job::new().training();
    if let Some(s) = job.status.submission.as_mut() {
        (s.base_url, s.token_url, s.credentials_secret) = (None, None, None);
    }
    let step = job.decide_cleanup(Observation::Start);
    let Some(Effect::Cancel { target, .. }) = &step.effect else {
        panic!("{:?}", step.effect);
    };
    assert_eq!(
        (target.base_url.as_str(), target.secret.as_str()),
        (BASE, "cxone-credentials")
    );
}
