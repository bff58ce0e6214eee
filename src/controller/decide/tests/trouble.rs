//! When something is in the way: errors, rate limits, credentials, objects the job does not own,
//! for every phase and every class of error.

use super::*;

#[test]
fn transient_errors_back_off_and_show_in_ready_after_three_attempts() {
    let mut job = Job::new().training();
    let mut waits = Vec::new();
    for attempt in 0..4 {
        let step = job.decide(Observation::Polled(Err(unavailable())));
        let Next::Requeue(wait) = step.next else {
            panic!()
        };
        waits.push(wait);
        let shown = condition(&step, Cond::Ready).1 == "CxoneUnavailable";
        assert_eq!(shown, attempt >= 3, "attempt {attempt}");
        assert_eq!(
            step.events.len(),
            usize::from(attempt == 0),
            "one Warning for a run of errors"
        );
        job = job.after(&step);
    }
    assert!(waits.windows(2).all(|w| w[1] > w[0]), "{waits:?}");
    let recovered = job.decide(Observation::Polled(Ok(remote(JobState::Training, 50))));
    assert_eq!(recovered.memory.error_attempt, 0);
}

#[test]
fn timeouts_are_transient_like_server_errors() {
    let step = Job::new()
        .training()
        .decide(Observation::Polled(Err(timed_out())));
    assert!(matches!(step.next, Next::Requeue(_)));
    assert_eq!(reasons(&step), vec![Reason::CxoneUnavailable]);
}

#[test]
fn rate_limits_wait_for_retry_after() {
    let step = Job::new()
        .training()
        .decide(Observation::Polled(Err(rate_limited(7))));
    let Next::Requeue(wait) = step.next else {
        panic!()
    };
    assert!(
        wait >= Duration::from_secs(7) && wait <= Duration::from_secs(11),
        "{wait:?}"
    );
    assert!(reasons(&step).is_empty(), "one 429 is no news");
}

#[test]
fn a_rate_limit_episode_is_written_once_whatever_each_answer_says() {
    let mut job = Job::new().training();
    let mut writes = 0;
    for attempt in 0..8u64 {
        // Each 429 names another Retry-After, so each message differs.
        let step = job.decide(Observation::Polled(Err(rate_limited(attempt + 1))));
        if step.status != job.status {
            writes += 1;
            assert_eq!(attempt, 3, "only the attempt that first shows it writes");
        }
        assert_eq!(
            step.events.len(),
            usize::from(attempt == 3),
            "one Warning for the episode, once it persists"
        );
        job = job.after(&step);
    }
    assert_eq!(writes, 1);
    assert_eq!(
        condition(&job.decide(Observation::Start), Cond::Ready).1,
        "RateLimited"
    );
    // Another kind of trouble is news: Ready says so.
    let step = job.decide(Observation::Polled(Err(unavailable())));
    assert_eq!(condition(&step, Cond::Ready).1, "CxoneUnavailable");
}

#[test]
fn rejected_credentials_show_in_ready_at_once() {
    let step = Job::new()
        .training()
        .decide(Observation::Polled(Err(auth())));
    assert_eq!(condition(&step, Cond::Ready).1, "CredentialsError");
    let Next::Requeue(wait) = step.next else {
        panic!()
    };
    assert!(wait >= Duration::from_secs(10));
}

#[test]
fn no_rate_limit_slot_changes_nothing_and_comes_back_then() {
    let job = Job::new().training();
    let step = job.decide(Observation::NoSlot(Duration::from_millis(250)));
    assert_eq!(step.status, job.status);
    assert_eq!(step.next, Next::Requeue(Duration::from_millis(250)));
}

#[test]
fn a_secret_deleted_mid_run_is_a_credentials_problem_not_a_new_run() {
    let job = Job::new().training();
    let step = job.decide(Observation::CannotCall(
        "Secret \"cxone-credentials\" does not exist".into(),
    ));
    assert_eq!(phase(&step), Some(Phase::Training));
    assert_eq!(condition(&step, Cond::Ready).1, "CredentialsError");
    assert_eq!(step.status.job_id.as_deref(), Some("job-1"));
}

#[test]
fn an_object_the_job_does_not_own_is_reported_and_retried_with_backoff() {
    let job = Job::new().exported();
    let step = job.decide(Observation::Written(Err(
        "Secret \"app-config\" exists and was not created by this job".into(),
    )));
    assert_eq!(condition(&step, Cond::Ready).1, "ObjectNotOwned");
    assert_eq!(reasons(&step), vec![Reason::ObjectNotOwned]);
    assert!(matches!(step.next, Next::Requeue(_)));
    assert_eq!(step.memory.recording_end, None);
}

fn every_error() -> Vec<(&'static str, CxoneError)> {
    vec![
        ("5xx", unavailable()),
        ("timeout", timed_out()),
        ("429", rate_limited(4)),
        ("auth", auth()),
        (
            "malformed",
            CxoneError::Malformed {
                call: Call::Status,
                message: "not JSON".into(),
            },
        ),
        (
            "too large",
            CxoneError::TooLarge {
                call: Call::Evaluation,
                limit: 16 << 20,
            },
        ),
        ("400", rejected(400)),
        ("404", rejected(404)),
        ("410", rejected(410)),
    ]
}

/// The observation that carries `e` as the outcome of the effect a phase makes.
fn failing(effect: &Effect, e: CxoneError) -> Observation {
    match effect {
        Effect::Submit { .. } => Observation::Submitted(Err(e)),
        Effect::Poll { .. } => Observation::Polled(Err(e)),
        Effect::FetchEvaluation { .. } => Observation::Evaluated(Err(e)),
        Effect::Export { .. } => Observation::Exported(Err(e)),
        Effect::Cancel {
            purpose, job_id, ..
        } => Observation::Cancelled {
            job_id: job_id.clone(),
            purpose: *purpose,
            result: Err(e),
        },
        Effect::Lookup { purpose, .. } => Observation::LookedUp {
            purpose: *purpose,
            result: Err(e),
        },
        other => panic!("not a CXone call: {other:?}"),
    }
}

/// What a step does next, in one word.
#[derive(Debug, PartialEq)]
enum Then {
    /// Comes back later, nothing else (backoff, Retry-After).
    Wait,
    /// Ends the run: its audit record is written.
    End,
    /// The old run is over; the new one is submitted.
    NewRun,
    /// Nothing more to do until something changes.
    Stop,
}

fn then(step: &Step) -> Then {
    match (&step.effect, step.next) {
        (Some(Effect::WriteReport { .. }), _) => Then::End,
        (Some(Effect::Submit { .. }), _) => Then::NewRun,
        (None, Next::Requeue(w)) if !w.is_zero() => Then::Wait,
        (None, Next::AwaitChange) => Then::Stop,
        other => panic!("unexpected step {other:?}"),
    }
}

#[test]
fn every_phase_answers_every_remote_error_as_the_error_class_demands() {
    use Then::*;
    let deadline = Job::new().with_spec(|s| {
        s.polling =
            Some(serde_json::from_value(serde_json::json!({"activeDeadlineSeconds": 60})).unwrap())
    });
    let changed = |s: &mut SkillTrainingJobSpec| s.skill_id = "skill-2".into();
    // Per phase, the outcome for: 5xx, timeout, 429, auth, malformed, too large, 400, 404, 410.
    let table: Vec<(&str, Job, [Then; 9])> = vec![
        (
            "submit",
            Job::new().submitting(),
            [Wait, Wait, Wait, Wait, Wait, Wait, End, Wait, End],
        ),
        (
            "poll queued",
            Job::new().submitted(),
            [Wait, Wait, Wait, Wait, Wait, Wait, Wait, End, Wait],
        ),
        (
            "poll training",
            Job::new().training(),
            [Wait, Wait, Wait, Wait, Wait, Wait, Wait, End, Wait],
        ),
        (
            "evaluation",
            Job::new().completed(),
            [Wait, Wait, Wait, Wait, Wait, Wait, Wait, End, End],
        ),
        (
            "export",
            Job::new().evaluated(),
            [Wait, Wait, Wait, Wait, Wait, Wait, Wait, End, End],
        ),
        (
            "refresh",
            Job::new().succeeded().later(3400),
            [Wait, Wait, Wait, Wait, Wait, Wait, Wait, Stop, Stop],
        ),
        (
            "supersede",
            Job::new().training().with_spec(changed),
            [
                Wait, Wait, Wait, NewRun, NewRun, NewRun, NewRun, NewRun, NewRun,
            ],
        ),
        (
            "deadline",
            deadline.training().later(61),
            [Wait, Wait, Wait, End, End, End, End, End, End],
        ),
        (
            "lost answer",
            Job::new().submitting().with_spec(changed),
            [
                Wait, Wait, Wait, NewRun, NewRun, NewRun, NewRun, NewRun, NewRun,
            ],
        ),
    ];
    for (phase_name, job, expected) in table {
        let start = job.decide(Observation::Start);
        let effect = start
            .effect
            .clone()
            .unwrap_or_else(|| panic!("{phase_name}: no call"));
        let job = job.after(&start);
        for ((error_name, e), want) in every_error().into_iter().zip(expected) {
            let step = job.decide(failing(&effect, e));
            assert_eq!(then(&step), want, "{phase_name} × {error_name}");
            if want == Wait {
                assert_eq!(
                    step.status.submission, job.status.submission,
                    "{phase_name} × {error_name}"
                );
                assert_eq!(
                    step.status.job_id, job.status.job_id,
                    "{phase_name} × {error_name}"
                );
            }
            if let Some(Effect::Submit { key, .. }) = &step.effect {
                let old = job.status.submission.as_ref().map(|s| &s.idempotency_key);
                assert_ne!(
                    Some(key),
                    old,
                    "{phase_name} × {error_name}: a new run, a new key"
                );
            }
        }
    }
}

#[test]
fn every_phase_with_a_missing_secret_or_no_rate_limit_slot_waits_without_losing_the_run() {
    for (name, job) in [
        ("submitting", Job::new().submitting()),
        ("training", Job::new().training()),
        ("completed", Job::new().completed()),
        ("succeeded", Job::new().succeeded().later(3400)),
    ] {
        let no_secret = job.decide(Observation::CannotCall(
            "Secret \"c\" does not exist".into(),
        ));
        assert_eq!(no_secret.status.job_id, job.status.job_id, "{name}");
        assert_eq!(no_secret.status.submission, job.status.submission, "{name}");
        assert!(matches!(no_secret.next, Next::Requeue(_)), "{name}");
        assert_eq!(
            condition(&no_secret, Cond::Ready).1,
            "CredentialsError",
            "{name}"
        );
        let no_slot = job.decide(Observation::NoSlot(Duration::from_millis(300)));
        assert_eq!(no_slot.status, job.status, "{name}");
        assert_eq!(
            no_slot.next,
            Next::Requeue(Duration::from_millis(300)),
            "{name}"
        );
    }
}
