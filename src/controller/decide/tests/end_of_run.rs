//! A finished run's records and artifact URLs: the Secret after the audit record, refreshes before
//! expiry.

use super::*;

#[test]
fn artifact_urls_are_refreshed_before_they_expire_and_never_in_a_storm() {
    let job = Job::new().succeeded();
    assert!(
        job.decide(Observation::Start).effect.is_none(),
        "not due yet"
    );
    let due = job.clone().later(3400);
    let step = due.decide(Observation::Start);
    assert!(matches!(step.effect, Some(Effect::Export { .. })));
    // CXone hands out URLs that are already expired: no export every second.
    let step = due.decide(Observation::Exported(Ok(export(-10, due.now))));
    assert_eq!(step.next, Next::Requeue(schedule::REFRESH_FLOOR));
    assert_eq!(reasons(&step), vec![Reason::ArtifactsRefreshed]);
}

#[test]
fn artifacts_cxone_no_longer_has_stop_the_refreshing() {
    let due = Job::new().succeeded().later(3400);
    let step = due.decide(Observation::Exported(Err(rejected(410))));
    assert_eq!(condition(&step, Cond::Ready).1, "ArtifactsUnavailable");
    assert_eq!(step.next, Next::AwaitChange);
    assert_eq!(phase(&step), Some(Phase::Succeeded));
}

#[test]
fn artifact_urls_go_to_the_jobs_secret_after_the_record() {
    let mut job = Job::new().with_spec(|s| {
        s.artifacts =
            Some(serde_json::from_value(serde_json::json!({"secretName": "urls"})).unwrap())
    });
    job.policy.artifact_secrets = true;
    let job = job.exported();
    let step = job.decide(Observation::Written(Ok(())));
    assert!(matches!(
        step.effect,
        Some(Effect::WriteArtifactSecret { .. })
    ));
    let done = job.after(&step).decide(Observation::Written(Ok(())));
    let artifacts = done.status.artifacts.unwrap();
    assert_eq!(artifacts.secret_name.as_deref(), Some("urls"));
    assert_eq!(artifacts.model_weights_url, None, "no signed URL in status");
}
