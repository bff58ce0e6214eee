//! Empty memory (a restart) in every phase: the same call or a safe re-observation, never a second
//! submission.

use super::*;

#[test]
fn with_memory_cleared_every_phase_makes_the_same_call_or_looks_again_never_submits_twice() {
    let phases: Vec<(&str, Job)> = vec![
        ("new", Job::new()),
        ("submitting", Job::new().submitting()),
        ("queued", Job::new().submitted()),
        ("training", Job::new().training()),
        ("completed", Job::new().completed()),
        ("evaluated", Job::new().evaluated()),
        ("exported", Job::new().exported()),
        ("succeeded", Job::new().succeeded()),
    ];
    for (name, job) in phases {
        let remembered = job.decide(Observation::Start);
        let forgotten = job.clone().with_memory_cleared().decide(Observation::Start);
        match (&remembered.effect, &forgotten.effect) {
            (Some(Effect::Submit { key: a, .. }), Some(Effect::Submit { key: b, .. })) => {
                assert_eq!(a, b, "{name}: a resubmission reuses the recorded key");
                assert!(
                    job.status.submission.is_none() || job.status.job_id.is_none(),
                    "{name}: a submitted run is never submitted again"
                );
            }
            (a, b) => {
                assert!(is_submit(&forgotten).is_none(), "{name}: {b:?}");
                let safe = matches!(b, None | Some(Effect::Poll { .. }))
                    || std::mem::discriminant(a.as_ref().unwrap_or(&Effect::Poll {
                        job_id: String::new(),
                        target: job.endpoint.clone().unwrap(),
                    })) == std::mem::discriminant(b.as_ref().unwrap());
                assert!(safe, "{name}: {a:?} vs {b:?}");
            }
        }
        // Every later observation with empty memory is handled without a new run either.
        for obs in [
            Observation::Evaluated(Ok(evaluation())),
            Observation::Exported(Ok(export(3600, job.now))),
            Observation::Written(Ok(())),
        ] {
            let step = job.clone().with_memory_cleared().decide(obs);
            assert!(
                is_submit(&step).is_none() || job.status.job_id.is_none(),
                "{name}: {:?}",
                step.effect
            );
        }
    }
}
