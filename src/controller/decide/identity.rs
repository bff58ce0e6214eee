//! What a run derives from stored state and the spec's names: the idempotency key, the run's
//! fingerprint, the report ConfigMap's name, and the check of every name the spec puts into an
//! API path. Pure.

use sha2::{Digest, Sha256};

use crate::crd::SkillTrainingJobSpec;

/// `Idempotency-Key` of a run: a function of stored state only — the object's uid (another
/// object can never produce it), the run's number (so a later run of the same data gets its own
/// CXone job) and the run's fingerprint. Any replica reconciling any cached copy of the object
/// computes the same key for the same run, so CXone answers a repeated submission with the job it
/// already created.
pub fn idempotency_key(uid: &str, run: i64, fingerprint: &str) -> String {
    let mut h = Sha256::new();
    h.update(uid.as_bytes());
    h.update([0]);
    h.update(run.to_le_bytes());
    h.update([0]);
    h.update(fingerprint.as_bytes());
    format!("stj-{}", &hex::encode(h.finalize())[..40])
}

/// What a run trains: data, skill, endpoint, hyperparameters and split. Two specs with the same
/// fingerprint train the same model.
pub fn run_fingerprint(spec: &SkillTrainingJobSpec, base_url: &str, digest: &str) -> String {
    let h = spec.hyperparameters();
    let mut s = Sha256::new();
    for part in [
        digest,
        spec.skill_id.as_str(),
        base_url,
        &h.max_epochs.to_string(),
        &h.early_stopping.to_string(),
        &h.patience.to_string(),
        &spec.validation_split().to_string(),
    ] {
        s.update((part.len() as u64).to_le_bytes());
        s.update(part.as_bytes());
    }
    format!("sha256:{}", hex::encode(s.finalize()))
}

/// Object names the job refers to that cannot be used, and features it asks for that this
/// operator was installed without.
pub fn reference_problems(spec: &SkillTrainingJobSpec, artifact_secrets: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let mut check = |field: String, name: &str| {
        if let Err(e) = crate::names::check_object_name(&field, name) {
            problems.push(e);
        }
    };
    check(
        "spec.connection.credentialsSecretRef.name".into(),
        &spec.connection.credentials_secret_ref.name,
    );
    for (i, src) in spec.utterances_from.iter().enumerate() {
        check(
            format!("spec.utterancesFrom[{i}].configMapKeyRef.name"),
            &src.config_map_key_ref.name,
        );
    }
    if let Some(registry) = &spec.registry {
        for (field, name) in registry.secret_names() {
            check(field.to_string(), name);
        }
    }
    if let Some(name) = spec
        .artifacts
        .as_ref()
        .and_then(|a| a.secret_name.as_deref())
    {
        check("spec.artifacts.secretName".into(), name);
        if !artifact_secrets {
            problems.push(
                "spec.artifacts.secretName: this operator is installed without permission to write \
                 Secrets (Helm value artifactSecrets.enabled, flag --enable-artifact-secrets); \
                 remove the field to get the URLs in status, or ask its administrators"
                    .to_string(),
            );
        }
    }
    if let Some(registry) = &spec.registry {
        problems.extend(registry.problems());
    }
    problems
}

/// Name of the ConfigMap holding a run's report and audit record. Deterministic, so a retried
/// create finds the one already made; at most 253 characters.
pub fn report_config_map_name(job_name: &str, uid: &str, generation: i64, job_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(uid.as_bytes());
    h.update(generation.to_le_bytes());
    h.update(job_id.as_bytes());
    let suffix = &hex::encode(h.finalize())[..10];
    let base: String = job_name.chars().take(253 - 1 - 6 - 10 - 1).collect();
    format!("{}-audit-{suffix}", base.trim_end_matches(['-', '.']))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_a_function_of_stored_state() {
        let k = idempotency_key("uid-1", 1, "sha256:a");
        // The same snapshot, reconciled twice (or by two replicas, or at another time): one key.
        assert_eq!(k, idempotency_key("uid-1", 1, "sha256:a"));
        assert_ne!(k, idempotency_key("uid-2", 1, "sha256:a"));
        assert_ne!(k, idempotency_key("uid-1", 2, "sha256:a"));
        assert_ne!(k, idempotency_key("uid-1", 1, "sha256:b"));
        assert_eq!(k.len(), 44);
    }

    #[test]
    fn fingerprint_ignores_operational_fields() {
        let mut spec: SkillTrainingJobSpec = serde_json::from_value(serde_json::json!({
            "skillId": "s", "connection": {"region": "r", "credentialsSecretRef": {"name": "c"}},
            "language": "en", "labels": [{"id": "a", "name": "A"}]
        }))
        .unwrap();
        let f = run_fingerprint(&spec, "https://x/", "sha256:d");
        spec.suspend = Some(true);
        spec.polling = Some(Default::default());
        spec.deletion_policy = Some(crate::crd::DeletionPolicy::Orphan);
        assert_eq!(run_fingerprint(&spec, "https://x/", "sha256:d"), f);
        assert_ne!(run_fingerprint(&spec, "https://x/", "sha256:e"), f);
        spec.hyperparameters = Some(crate::crd::HyperparametersSpec {
            max_epochs: Some(10),
            ..Default::default()
        });
        assert_ne!(run_fingerprint(&spec, "https://x/", "sha256:d"), f);
    }

    #[test]
    fn report_names_are_valid_and_stable() {
        let long = "a".repeat(253);
        let n = report_config_map_name(&long, "uid", 1, "job-1");
        assert!(n.len() <= 253, "{}", n.len());
        assert_eq!(n, report_config_map_name(&long, "uid", 1, "job-1"));
        assert_ne!(n, report_config_map_name(&long, "uid", 2, "job-1"));
        assert!(report_config_map_name("faq", "u", 1, "j").starts_with("faq-audit-"));
    }

    fn spec(extra: serde_json::Value) -> SkillTrainingJobSpec {
        let mut spec = serde_json::json!({
            "skillId": "s", "language": "en", "labels": [{"id": "a", "name": "A"}],
            "connection": {"region": "r", "credentialsSecretRef": {"name": "cxone-credentials"}},
        });
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        serde_json::from_value(spec).unwrap()
    }

    #[test]
    fn names_that_would_change_an_api_path_are_refused_before_any_read() {
        assert!(reference_problems(&spec(serde_json::json!({})), false).is_empty());
        for bad in [
            "cxone-credentials?watch=true",
            "../x",
            "../../ns/secrets/stolen",
            "?watch=true",
            "A",
        ] {
            let s = spec(serde_json::json!({
                "connection": {"region": "r", "credentialsSecretRef": {"name": bad}},
                "utterancesFrom": [{"configMapKeyRef": {"name": bad, "key": "k"}, "format": "jsonl"}],
            }));
            let problems = reference_problems(&s, false);
            assert_eq!(problems.len(), 2, "{bad}: {problems:?}");
            assert!(problems[0].starts_with("spec.connection.credentialsSecretRef.name"));
            assert!(problems[1].starts_with("spec.utterancesFrom[0].configMapKeyRef.name"));
        }
    }

    #[test]
    fn an_artifact_secret_needs_the_feature_and_a_valid_name() {
        let s = spec(serde_json::json!({"artifacts": {"secretName": "urls"}}));
        let problems = reference_problems(&s, false);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("--enable-artifact-secrets"));
        assert!(reference_problems(&s, true).is_empty());
        let s = spec(serde_json::json!({"artifacts": {"secretName": "../urls"}}));
        assert_eq!(reference_problems(&s, true).len(), 1);
    }
}
