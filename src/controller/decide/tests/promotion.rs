//! Registration of a successful run (`spec.registry`): every outcome of a registration and a
//! promotion, a restart in between, and the end states.

use super::*;
use crate::controller::effect::{RegisterRequest, Registration, RegistryTarget, TargetKind};
use crate::crd::{GateMetric, RegistrySpec};
use crate::evaluation::analyze;
use crate::registry::allow::Targets;
use crate::registry::mlflow::MlflowTarget;
use crate::registry::oci::OciTarget;
use crate::registry::{Champion, RegistryError};

fn registry_spec(promotion: Option<serde_json::Value>) -> RegistrySpec {
    let mut spec = serde_json::json!({
        "oci": {"repository": "registry.example.com/cxone/billing",
                "credentialsSecretRef": {"name": "oci-creds"}},
        "mlflow": {"trackingUri": "https://mlflow.example.com", "modelName": "billing"},
    });
    if let Some(p) = promotion {
        spec["promotion"] = p;
    }
    serde_json::from_value(spec).unwrap()
}

fn targets() -> Targets {
    Targets {
        oci: Some(OciTarget {
            registry: "registry.example.com".into(),
            repository: "cxone/billing".into(),
            plain_http: false,
        }),
        mlflow: Some(MlflowTarget {
            tracking_uri: "https://mlflow.example.com".into(),
            model_name: "billing".into(),
            experiment_name: "cxone/team-a/billing-support".into(),
        }),
    }
}

fn registering(promotion: Option<serde_json::Value>) -> Job {
    let mut job = Job::new();
    job.spec.registry = Some(registry_spec(promotion));
    job.registry = Some(Ok(targets()));
    job
}

fn request(step: &Step) -> &RegisterRequest {
    match &step.effect {
        Some(Effect::Register(r)) => r,
        other => panic!("expected a registration, got {other:?}"),
    }
}

fn oci_ok(digest: &str, champion: Option<Champion>) -> Observation {
    Observation::Registered {
        kind: TargetKind::Oci,
        result: Ok(Registration {
            reference: format!("registry.example.com/cxone/billing@{digest}"),
            version: digest.into(),
            run_id: None,
            champion,
            signing_key: None,
            signature: None,
        }),
    }
}

fn mlflow_ok(version: &str, champion: Option<Champion>) -> Observation {
    Observation::Registered {
        kind: TargetKind::Mlflow,
        result: Ok(Registration {
            reference: format!("models:/billing/{version}"),
            version: version.into(),
            run_id: Some("run-1".into()),
            champion,
            signing_key: None,
            signature: None,
        }),
    }
}

fn failure(kind: TargetKind, e: RegistryError) -> Observation {
    Observation::Registered {
        kind,
        result: Err(e),
    }
}

fn report_json(step: &Step) -> serde_json::Value {
    match &step.effect {
        Some(Effect::WriteReport { data, .. }) => {
            serde_json::from_str(&data["audit.json"]).unwrap()
        }
        other => panic!("expected the audit record, got {other:?}"),
    }
}

#[test]
fn an_exported_run_is_registered_before_it_succeeds() {
    let job = registering(None).exported();
    assert_eq!(job.status.phase, Some(Phase::Registering));
    assert_eq!(
        status_fields::condition(&job.status, Cond::Registered).map(|c| c.reason.as_str()),
        Some("Registering")
    );
    let step = job.decide(Observation::Start);
    let req = request(&step);
    assert_eq!(req.target.kind(), TargetKind::Oci, "OCI first");
    assert_eq!(req.secret.as_deref(), Some("oci-creds"));
    assert_eq!(req.champion_at, None, "no gate: no champion to read");
    let RegistryTarget::Oci { tag, .. } = &req.target else {
        unreachable!()
    };
    assert!(tag.starts_with("g1-"), "{tag}");
    assert_eq!(tag.len(), "g1-".len() + 12);
    assert_eq!(req.provenance.cxone_job_id, "job-1");
    assert_eq!(req.provenance.run, 1);
    assert!(req.audit.to_json().contains("\"result\""));
    assert!(
        !format!("{req:?}").contains("signature=s1"),
        "signed URLs never print"
    );
}

#[test]
fn the_provenance_is_the_same_however_late_the_registration_is_retried() {
    let job = registering(None).exported();
    let now = request(&job.decide(Observation::Start)).provenance.clone();
    let later = request(&job.later(7200).decide(Observation::Start))
        .provenance
        .clone();
    assert_eq!(now, later, "a repeated OCI push must yield the same digest");
}

#[test]
fn both_registries_then_the_audit_record_then_succeeded() {
    let job = registering(None).exported();
    let job = job.after(&job.decide(Observation::Start));
    let step = job.decide(oci_ok("sha256:aa", None));
    let recorded = step.status.registry.as_ref().unwrap().oci.clone().unwrap();
    assert_eq!(recorded.promoted, Some(false), "no gate: registered only");
    assert!(reasons(&step).contains(&Reason::RegisteredNotPromoted));
    assert_eq!(request(&step).target.kind(), TargetKind::Mlflow);
    let job = job.after(&step);
    let step = job.decide(mlflow_ok("3", None));
    let audit = report_json(&step);
    let targets = audit["registry"]["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 2);
    assert_eq!(targets[1]["reference"], "models:/billing/3");
    assert!(audit["registry"]["inputs"]["macro_f1"].is_number());
    let job = job.after(&step);
    let done = job.decide(Observation::Written(Ok(())));
    assert_eq!(phase(&done), Some(Phase::Succeeded));
    assert_eq!(
        condition(&done, Cond::Registered),
        ("True".into(), "RegisteredNotPromoted".into())
    );
    assert!(
        done.status
            .message
            .as_deref()
            .unwrap()
            .contains("models:/billing/3")
    );
}

#[test]
fn a_run_that_passes_the_gate_is_promoted_in_each_registry() {
    let gate = serde_json::json!({"minAccuracy": 0.5, "compareMetric": "accuracy"});
    let job = registering(Some(gate)).exported();
    let step = job.decide(Observation::Start);
    assert_eq!(request(&step).champion_at.as_deref(), Some("approved"));
    let job = job.after(&step);
    let step = job.decide(oci_ok("sha256:aa", None));
    match &step.effect {
        Some(Effect::Promote { version, alias, .. }) => {
            assert_eq!(version, "sha256:aa");
            assert_eq!(alias, "approved");
        }
        other => panic!("expected a promotion, got {other:?}"),
    }
    assert_eq!(
        step.status
            .registry
            .as_ref()
            .unwrap()
            .oci
            .as_ref()
            .unwrap()
            .promoted,
        None
    );
    let job = job.after(&step);
    let step = job.decide(Observation::Promoted {
        kind: TargetKind::Oci,
        result: Ok(()),
    });
    let oci = step.status.registry.as_ref().unwrap().oci.clone().unwrap();
    assert_eq!(oci.promoted, Some(true));
    assert_eq!(oci.promoted_as.as_deref(), Some("approved"));
    assert!(reasons(&step).contains(&Reason::Promoted));
    let req = request(&step);
    assert_eq!(req.champion_at.as_deref(), Some("champion"));
}

#[test]
fn a_run_that_misses_the_gate_is_registered_not_promoted_and_the_record_says_why() {
    let gate = serde_json::json!({"minAccuracy": 0.99});
    let job = registering(Some(gate)).exported();
    let job = job.after(&job.decide(Observation::Start));
    let step = job.decide(oci_ok("sha256:aa", None));
    assert!(!matches!(step.effect, Some(Effect::Promote { .. })));
    assert_eq!(
        condition(&step, Cond::Registered),
        ("True".into(), "GateNotMet".into())
    );
    assert!(reasons(&step).contains(&Reason::GateNotMet));
    let job = job.after(&step);
    let step = job.decide(mlflow_ok("4", None));
    let audit = report_json(&step);
    let oci = &audit["registry"]["targets"][0];
    assert_eq!(oci["promoted"], false);
    assert!(
        oci["gate"]
            .as_str()
            .unwrap()
            .contains("accuracy 0.6667 (needs 0.9900) FAILED"),
        "{oci}"
    );
    assert_eq!(audit["registry"]["promotion"]["minAccuracy"], 0.99);
}

#[test]
fn a_worse_challenger_does_not_replace_the_champion() {
    let gate = serde_json::json!({"compareMetric": "accuracy", "maxRegression": 0.01});
    let job = registering(Some(gate)).exported();
    let job = job.after(&job.decide(Observation::Start));
    let champion = Champion {
        reference: "registry.example.com/cxone/billing@sha256:old".into(),
        metrics: BTreeMap::from([("accuracy".to_string(), 0.95)]),
    };
    let step = job.decide(oci_ok("sha256:new", Some(champion)));
    let oci = step.status.registry.as_ref().unwrap().oci.clone().unwrap();
    assert_eq!(oci.promoted, Some(false));
    assert_eq!(
        oci.champion.as_deref(),
        Some("registry.example.com/cxone/billing@sha256:old")
    );
    assert!(oci.gate.unwrap().contains("against champion"));
}

#[test]
fn a_model_that_is_already_the_champion_is_not_promoted_twice() {
    let gate = serde_json::json!({"compareMetric": "macroF1"});
    let job = registering(Some(gate)).exported();
    let job = job.after(&job.decide(Observation::Start));
    let job = job.after(&job.decide(oci_ok("sha256:aa", None)));
    let job = job.after(&job.decide(Observation::Promoted {
        kind: TargetKind::Oci,
        result: Ok(()),
    }));
    // The MLflow alias was set, then the operator stopped before it recorded so.
    let itself = Champion {
        reference: "7".into(),
        metrics: crate::registry::key_metrics(
            &analyze(&evaluation(), &Default::default()).unwrap(),
        ),
    };
    let step = job.decide(mlflow_ok("7", Some(itself)));
    let ml = step
        .status
        .registry
        .as_ref()
        .unwrap()
        .mlflow
        .clone()
        .unwrap();
    assert_eq!(ml.promoted, Some(true));
    assert!(matches!(step.effect, Some(Effect::WriteReport { .. })));
}

#[test]
fn a_restart_resumes_with_the_registry_that_is_left() {
    let job = registering(None).exported();
    let job = job.after(&job.decide(Observation::Start));
    let job = job.after(&job.decide(oci_ok("sha256:aa", None)));
    // Memory is lost: the results are fetched again, OCI is not pushed again.
    let job = job.with_memory_cleared();
    let step = job.decide(Observation::Start);
    assert!(
        matches!(step.effect, Some(Effect::Poll { .. })),
        "{:?}",
        step.effect
    );
    let job = job.after(&step);
    let job = job.after(&job.decide(Observation::Polled(Ok(remote(JobState::Completed, 100)))));
    let job = job.after(&job.decide(Observation::Evaluated(Ok(evaluation()))));
    let step = job.decide(Observation::Exported(Ok(export(3600, job.now))));
    assert_eq!(request(&step).target.kind(), TargetKind::Mlflow);
    assert_eq!(phase(&step), Some(Phase::Registering));
}

#[test]
fn an_expired_signed_url_is_exported_again_then_registered() {
    let job = registering(None).exported();
    let job = job.after(&job.decide(Observation::Start));
    let step = job.decide(failure(
        TargetKind::Oci,
        RegistryError::SourceExpired("403 from the artifact URL".into()),
    ));
    assert!(matches!(step.effect, Some(Effect::Export { .. })));
    let job = job.after(&step);
    let step = job.decide(Observation::Exported(Ok(export(3600, job.now))));
    assert_eq!(request(&step).target.kind(), TargetKind::Oci);
}

#[test]
fn an_unreachable_registry_is_retried_with_backoff_then_the_run_fails() {
    let job = registering(None).exported();
    let mut job = job.after(&job.decide(Observation::Start));
    let mut waits = Vec::new();
    for attempt in 1..crate::controller::decide::promotion::MAX_REGISTRY_ATTEMPTS {
        let step = job.decide(failure(
            TargetKind::Oci,
            RegistryError::Unreachable("connection refused".into()),
        ));
        let Next::Requeue(wait) = step.next else {
            panic!("attempt {attempt}: {:?}", step.next)
        };
        waits.push(wait);
        assert_eq!(condition(&step, Cond::Registered).1, "RegistryUnreachable");
        job = job.after(&step);
        job = job.after(&job.decide(Observation::Start));
    }
    assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
    assert!(*waits.last().unwrap() <= job.policy.error_backoff_max);
    let step = job.decide(failure(
        TargetKind::Oci,
        RegistryError::Unreachable("connection refused".into()),
    ));
    let audit = report_json(&step);
    assert_eq!(audit["result"], "Failed");
    let job = job.after(&step);
    let end = job.decide(Observation::Written(Ok(())));
    assert_eq!(phase(&end), Some(Phase::Failed));
    assert_eq!(
        condition(&end, Cond::Registered),
        ("False".into(), "RegistrationFailed".into())
    );
}

#[test]
fn refused_credentials_say_so_once_and_retry_slowly() {
    let job = registering(None).exported();
    let job = job.after(&job.decide(Observation::Start));
    let step = job.decide(failure(
        TargetKind::Oci,
        RegistryError::Auth("401 from registry.example.com".into()),
    ));
    assert_eq!(condition(&step, Cond::Registered).1, "RegistryAuthFailed");
    assert_eq!(step.next, Next::Requeue(job.policy.error_backoff_max));
    assert_eq!(reasons(&step), vec![Reason::RegistryAuthFailed]);
    let job = job.after(&step);
    let job = job.after(&job.decide(Observation::Start));
    let again = job.decide(failure(
        TargetKind::Oci,
        RegistryError::Auth("401 from registry.example.com".into()),
    ));
    assert!(again.events.is_empty(), "the same problem is not news");
    assert_eq!(
        phase(&again),
        Some(Phase::Registering),
        "auth failures never end the run"
    );
}

#[test]
fn a_registry_outside_the_allowlist_is_refused_before_anything_is_trained() {
    let mut job = registering(None);
    job.registry = Some(Err(
        "spec.registry.oci.repository evil.example/x is not an allowed registry".into(),
    ));
    let step = job.decide(Observation::Start);
    assert_eq!(phase(&step), Some(Phase::Invalid));
    assert_eq!(condition(&step, Cond::Validated).1, "RegistryNotAllowed");
    assert_eq!(step.effect, None);
}

#[test]
fn a_gate_comparing_with_the_champion_needs_a_metric_the_registry_keeps() {
    assert_eq!(GateMetric::MacroF1.key(), "macro_f1");
    let keys = crate::registry::key_metrics(&analyze(&evaluation(), &Default::default()).unwrap());
    for m in [
        GateMetric::Accuracy,
        GateMetric::MacroF1,
        GateMetric::MacroPrecision,
        GateMetric::MacroRecall,
        GateMetric::WeightedF1,
    ] {
        assert!(keys.contains_key(m.key()), "{m:?}");
    }
}

#[test]
fn a_signed_model_names_its_key_and_signature_in_status_and_the_audit_record() {
    let mut job = registering(None);
    job.spec.registry.as_mut().unwrap().signing = Some(
        serde_json::from_value(serde_json::json!({"keySecretRef": {"name": "model-signing"}}))
            .unwrap(),
    );
    let job = job.exported();
    let step = job.decide(Observation::Start);
    let signing = request(&step)
        .signing
        .clone()
        .expect("the signing key reference");
    assert_eq!(
        (signing.name.as_str(), signing.key()),
        ("model-signing", "private-key.pem")
    );
    let job = job.after(&step);
    let signed = |kind, reference: &str, version: &str, signature: &str| Observation::Registered {
        kind,
        result: Ok(Registration {
            reference: reference.into(),
            version: version.into(),
            run_id: None,
            champion: None,
            signing_key: Some("sha256:ab12".into()),
            signature: Some(signature.into()),
        }),
    };
    let step = job.decide(signed(
        TargetKind::Oci,
        "registry.example.com/cxone/billing@sha256:aa",
        "sha256:aa",
        "sha256:51",
    ));
    let oci = step.status.registry.as_ref().unwrap().oci.clone().unwrap();
    assert_eq!(oci.signing_key.as_deref(), Some("sha256:ab12"));
    assert_eq!(oci.signature.as_deref(), Some("sha256:51"));
    let job = job.after(&step);
    let step = job.decide(signed(
        TargetKind::Mlflow,
        "models:/billing/3",
        "3",
        "model.sig",
    ));
    let audit = report_json(&step);
    let targets = audit["registry"]["targets"].as_array().unwrap();
    for t in targets {
        assert_eq!(t["signingKey"], "sha256:ab12", "{t}");
        assert_eq!(
            t["files"],
            serde_json::json!([
                "model-weights.json",
                "model-config.json",
                "README.md",
                "model.sig"
            ])
        );
    }
    assert_eq!(targets[1]["signature"], "model.sig");
}
