//! What the operator's caches keep of the objects they watch: a projection holding what the
//! decisions and the observe step read, not the objects.
//!
//! - A cached job has its identity, generation, finalizers and deletion mark (what wakes it), its
//!   spec without the training data, and its status without the bulky records of finished runs
//!   (the evaluation with its per-label table and confusion matrix, the run history, the artifact
//!   URLs). No annotation, label, managedField or owner reference: nothing reads them from the
//!   cache.
//! - A cached job whose status lost something is marked [`is_projected`]. A step on it that
//!   would write status, publish an Event or call anything is not taken: the whole object is read
//!   from the API server and the step decided again on it (`reconcile.rs`; counted by
//!   `cxone_skill_job_reads_total{reason="status"}`). A job in flight for the first time loses
//!   nothing, so its polls never read it.
//! - A cached Secret or ConfigMap is its name, namespace and resourceVersion.
//!
//! Imports no sibling.

use kube::api::ObjectMeta;

use crate::crd::SkillTrainingJob;

/// The annotation that marks a cached job whose status lost fields (never on the API server's
/// objects as far as the operator is concerned: a job read whole is never taken as projected).
const PROJECTED: &str = "cxone-skill-operator.internal/projected";

/// The cached copy of `job`: see the module's documentation.
pub fn project(job: &mut SkillTrainingJob) {
    let meta = &mut job.metadata;
    meta.managed_fields = None;
    meta.annotations = None;
    meta.labels = None;
    meta.owner_references = None;
    job.spec.utterances = Vec::new();
    job.spec.labels = Vec::new();
    let Some(status) = job.status.as_mut() else {
        return;
    };
    let mut left_out = status.evaluation.take().is_some();
    left_out |= !status.history.is_empty();
    status.history = Vec::new();
    if let Some(artifacts) = status.artifacts.as_mut() {
        left_out |= artifacts.model_weights_url.take().is_some();
        left_out |= artifacts.config_url.take().is_some();
    }
    if left_out {
        job.metadata.annotations = Some([(PROJECTED.to_string(), "status".to_string())].into());
    }
}

/// The cached copy left out some of the job's status.
pub fn is_projected(job: &SkillTrainingJob) -> bool {
    job.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(PROJECTED))
}

/// What the Secret and ConfigMap caches keep of an object: its name, namespace and
/// resourceVersion. Annotations go (`kubectl apply` copies a Secret's data into one), and so does
/// everything else the operator never reads from these caches.
pub fn strip_metadata(meta: &mut ObjectMeta) {
    *meta = ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        resource_version: meta.resource_version.take(),
        ..ObjectMeta::default()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

    fn job(status: serde_json::Value) -> SkillTrainingJob {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "ai.cxone.io/v1alpha1", "kind": "SkillTrainingJob",
            "metadata": {"name": "a", "namespace": "n", "generation": 3, "uid": "u",
                         "finalizers": ["ai.cxone.io/cancel-training"],
                         "annotations": {LAST_APPLIED: "{...}", "team": "x", PROJECTED: "forged"},
                         "labels": {"app": "billing"},
                         "managedFields": [{"manager": "kubectl"}]},
            "spec": {"skillId": "s", "language": "en",
                     "connection": {"region": "r", "credentialsSecretRef": {"name": "creds"}},
                     "labels": [{"id": "a", "name": "A"}],
                     "utterances": [{"text": "hello", "label": "a"}],
                     "utterancesFrom": [{"configMapKeyRef": {"name": "data", "key": "k"}, "format": "jsonl"}]},
            "status": status
        }))
        .unwrap()
    }

    #[test]
    fn a_finished_job_keeps_what_decisions_read_and_is_marked() {
        let mut j = job(serde_json::json!({
            "phase": "Succeeded", "observedGeneration": 3, "jobId": "j-1",
            "dataSourceKey": "v1:abc", "datasetDigest": "sha256:d",
            "conditions": [{"type": "Ready", "status": "True", "reason": "Succeeded", "message": "m",
                            "lastTransitionTime": "2026-01-01T00:00:00Z"}],
            "evaluation": {"examples": 2, "accuracy": "1.0", "macroPrecision": "1.0", "macroRecall": "1.0", "macroF1": "1.0", "weightedF1": "1.0",
                           "perLabel": [{"label": "a", "precision": "1", "recall": "1", "f1": "1", "support": 2}],
                           "confusionMatrixLabels": ["a"], "confusionMatrix": [[2]],
                           "reportConfigMap": "r"},
            "artifacts": {"modelWeightsUrl": "https://x/w?sig=secret", "configUrl": "https://x/c?sig=secret",
                          "expiresAt": "2026-01-02T00:00:00Z"},
            "history": [{"generation": 3, "phase": "Succeeded"}]
        }));
        project(&mut j);
        assert!(is_projected(&j));
        let s = j.status.as_ref().unwrap();
        assert_eq!(s.evaluation, None);
        assert!(s.history.is_empty());
        let a = s.artifacts.as_ref().unwrap();
        assert_eq!(
            (a.model_weights_url.as_deref(), a.config_url.as_deref()),
            (None, None)
        );
        assert_eq!(
            a.expires_at.0.to_string(),
            "2026-01-02T00:00:00Z",
            "refreshes are timed from it"
        );
        assert_eq!(s.data_source_key.as_deref(), Some("v1:abc"));
        assert_eq!(s.conditions.len(), 1);
        assert_eq!(j.spec.connection.credentials_secret_ref.name, "creds");
        assert_eq!(j.spec.utterances_from[0].config_map_key_ref.name, "data");
        assert!(j.spec.utterances.is_empty() && j.spec.labels.is_empty());
        assert_eq!(j.metadata.finalizers.as_ref().map(Vec::len), Some(1));
        assert_eq!(j.metadata.generation, Some(3));
        assert_eq!(j.metadata.labels, None);
        assert_eq!(j.metadata.managed_fields, None);
        assert_eq!(j.metadata.annotations.as_ref().map(|a| a.len()), Some(1));
        let kept = serde_json::to_string(&j).unwrap();
        assert!(!kept.contains("secret"), "{kept}");
    }

    #[test]
    fn a_first_run_in_flight_loses_nothing_of_its_status() {
        let status = serde_json::json!({"phase": "Training", "jobId": "j-1", "progress": 40});
        let mut j = job(status.clone());
        project(&mut j);
        assert!(!is_projected(&j), "a forged marker does not survive either");
        assert_eq!(serde_json::to_value(j.status.unwrap()).unwrap(), status);
        let mut none = job(serde_json::Value::Null);
        project(&mut none);
        assert!(!is_projected(&none));
    }

    #[test]
    fn cached_metadata_keeps_name_namespace_and_version_only() {
        let mut meta: ObjectMeta = serde_json::from_value(serde_json::json!({
            "name": "app-config", "namespace": "n", "resourceVersion": "7", "uid": "u",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "annotations": {LAST_APPLIED: "{\"data\":{\"password\":\"c2VjcmV0\"}}"},
            "labels": {"a": "b"},
            "managedFields": [{"manager": "kubectl"}]
        }))
        .unwrap();
        strip_metadata(&mut meta);
        assert_eq!(
            serde_json::to_value(&meta).unwrap(),
            serde_json::json!({"name": "app-config", "namespace": "n", "resourceVersion": "7"})
        );
    }
}
