use super::*;

fn spec() -> SkillTrainingJobSpec {
    serde_json::from_value(serde_json::json!({
        "skillId": "skill-1",
        "connection": {"region": "us2-01", "credentialsSecretRef": {"name": "creds"}},
        "language": "en",
        "labels": [{"id": "a", "name": "A"}, {"id": "b", "name": "B"}],
        "utterances": [{"text": "hello", "label": "a"}, {"text": "bye", "label": "b"}],
        "utterancesFrom": [
            {"configMapKeyRef": {"name": "data", "key": "u.jsonl"}, "format": "jsonl"},
            {"configMapKeyRef": {"name": "more.data", "key": "u.csv"}, "format": "csv"}
        ],
        "artifacts": {"secretName": "urls"}
    }))
    .unwrap()
}

#[test]
fn valid_names_pass() {
    assert_eq!(spec().check_names(), Vec::<String>::new());
    assert_eq!(spec().check_parameters(), Vec::<String>::new());
}

#[test]
fn every_field_naming_an_object_or_key_is_checked_and_named() {
    let mut s = spec();
    let r = &mut s.connection.credentials_secret_ref;
    r.name = "creds?watch=true".into();
    r.client_id_key = Some("../id".into());
    r.client_secret_key = Some("..".into());
    s.utterances_from[1].config_map_key_ref.name = "../x".into();
    s.utterances_from[1].config_map_key_ref.key = "a/b".into();
    s.artifacts = Some(ArtifactsSpec {
        secret_name: Some("../../ns/secrets/stolen".into()),
        ..ArtifactsSpec::default()
    });
    let problems = s.check_parameters();
    let fields: Vec<&str> = problems
        .iter()
        .map(|p| p.split(':').next().unwrap_or(""))
        .collect();
    assert_eq!(
        fields,
        [
            "spec.connection.credentialsSecretRef.name",
            "spec.connection.credentialsSecretRef.clientIdKey",
            "spec.connection.credentialsSecretRef.clientSecretKey",
            "spec.utterancesFrom[1].configMapKeyRef.name",
            "spec.utterancesFrom[1].configMapKeyRef.key",
            "spec.artifacts.secretName",
        ],
        "{problems:#?}"
    );
}

#[test]
fn a_threshold_sweep_the_analysis_would_refuse_is_reported_before_training() {
    let mut s = spec();
    s.evaluation = Some(EvaluationSpec {
        threshold_sweep: Some(ThresholdSweepSpec {
            start: 0.0,
            end: 1.0,
            step: 0.001,
        }),
        min_precision: None,
    });
    let problems = s.check_parameters();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("spec.evaluation.thresholdSweep: invalid threshold sweep")
            && problems[0].contains("more than the maximum of 1000"),
        "{problems:?}"
    );
    // 1000 thresholds are fine.
    if let Some(e) = &mut s.evaluation
        && let Some(t) = &mut e.threshold_sweep
    {
        t.end = 0.999;
    }
    assert_eq!(s.check_parameters(), Vec::<String>::new());
}
