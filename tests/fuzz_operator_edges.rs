//! Property tests of the operator's edges: the names a tenant can put in a job, the objects the
//! operator derives from them, and whatever bytes a remote end sends back. Nothing may panic, no
//! accepted name may leave the job's own namespace path, and everything written stays inside the
//! API server's limits.

use cxone_skill_operator::controller::decide::identity::{
    reference_problems, report_config_map_name,
};
use cxone_skill_operator::controller::decide::status_fields::{MAX_STAGE_CHARS, clip_remote_text};
use cxone_skill_operator::crd::SkillTrainingJobSpec;
use cxone_skill_operator::cxone::model::{
    EvaluationResponse, ExportResponse, JobStatus, SubmitResponse, TokenResponse,
};
use cxone_skill_operator::evaluation::{EvaluationOptions, analyze};
use cxone_skill_operator::names::{is_dns_subdomain, is_label_value};
use cxone_skill_operator::text::truncate_bytes;
use proptest::prelude::*;
use serde_json::json;

fn spec_with(
    secret: &str,
    config_map: &str,
    artifact_secret: Option<&str>,
) -> SkillTrainingJobSpec {
    let mut spec = json!({
        "skillId": "s", "language": "en", "labels": [{"id": "a", "name": "A"}],
        "connection": {"region": "r", "credentialsSecretRef": {"name": secret}},
        "utterancesFrom": [{"configMapKeyRef": {"name": config_map, "key": "k"}, "format": "jsonl"}],
    });
    if let Some(name) = artifact_secret {
        spec["artifacts"] = json!({"secretName": name});
    }
    serde_json::from_value(spec).expect("a spec")
}

/// Names as a tenant might write them: valid ones, path tricks, query strings, odd characters.
fn any_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9]([-a-z0-9.]{0,60}[a-z0-9])?",
        "[a-z0-9]{1,10}(\\.[a-z0-9]{1,10}){0,4}",
        "(\\.\\./){1,3}[a-z]{1,8}(/secrets/[a-z]{1,8})?",
        "[a-z-]{0,20}\\?watch=true",
        "[ -~]{0,40}",
        "\\PC{0,30}",
        "[a-z]{250,260}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// A reference is used only if it is a valid object name, and a valid name can never change
    /// the API path it is put into.
    #[test]
    fn only_plain_object_names_reach_an_api_path(
        secret in any_name(), cm in any_name(), artifacts in proptest::option::of(any_name()),
    ) {
        let spec = spec_with(&secret, &cm, artifacts.as_deref());
        let problems = reference_problems(&spec, true);
        let names: Vec<&str> = [Some(secret.as_str()), Some(cm.as_str()), artifacts.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        let invalid = names.iter().filter(|n| !is_dns_subdomain(n)).count();
        prop_assert_eq!(problems.len(), invalid, "{:?}", problems);
        for name in names.iter().filter(|n| is_dns_subdomain(n)) {
            prop_assert!(!name.contains(['/', '?', '%', '#', '&', ' ']) && !name.contains(".."));
        }
        for p in &problems {
            prop_assert!(p.starts_with("spec."), "says where: {}", p);
        }
    }

    /// The audit ConfigMap of any valid job name is itself a valid name, distinct per run.
    #[test]
    fn derived_object_names_are_valid_for_every_job_name(
        name in "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?){0,3}",
        generation in 1i64..1_000_000,
        job in "[a-z0-9-]{1,40}",
    ) {
        prop_assume!(name.len() <= 253);
        let uid = "0f0e0d0c-1111-2222-3333-444455556666";
        let cm = report_config_map_name(&name, uid, generation, &job);
        prop_assert!(is_dns_subdomain(&cm), "{}", cm);
        prop_assert_ne!(cm, report_config_map_name(&name, uid, generation + 1, &job));
        prop_assert!(is_label_value(uid));
    }

    /// Whatever a CXone endpoint answers, parsing it is an error or a value, never a panic; and
    /// what reaches status from it is clipped.
    #[test]
    fn remote_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = serde_json::from_slice::<TokenResponse>(&body);
        let _ = serde_json::from_slice::<SubmitResponse>(&body);
        let _ = serde_json::from_slice::<ExportResponse>(&body);
        if let Ok(status) = serde_json::from_slice::<JobStatus>(&body) {
            prop_assert!(clip_remote_text(&status.stage, MAX_STAGE_CHARS).chars().count() <= MAX_STAGE_CHARS + 1);
        }
        if let Ok(eval) = serde_json::from_slice::<EvaluationResponse>(&body) {
            let _ = analyze(&eval, &EvaluationOptions::default());
        }
    }

    /// Evaluations of the right shape with hostile contents (unknown labels, mismatched lengths,
    /// scores outside [0, 1] or not numbers) are analysed or refused, never a panic.
    #[test]
    fn hostile_evaluations_are_analysed_or_refused(
        labels in proptest::collection::vec("[a-c]{1,2}", 0..5),
        actuals in proptest::collection::vec("[a-d]{1,2}", 0..20),
        predictions in proptest::collection::vec("[a-d]{1,2}", 0..20),
        scores in proptest::collection::vec(prop_oneof![-2.0f64..3.0, Just(f64::NAN), Just(f64::INFINITY)], 0..20),
        summary in any::<bool>(),
    ) {
        let scores: Vec<serde_json::Value> = scores
            .iter()
            .map(|s| if s.is_finite() { json!(s) } else { json!(null) })
            .collect();
        let mut body = json!({
            "labels": labels.iter().map(|l| json!({"id": l, "name": l})).collect::<Vec<_>>(),
            "actuals": actuals, "predictions": predictions, "scores": scores,
        });
        if summary {
            body["precision"] = json!(0.5);
            body["recall"] = json!(0.5);
            body["confusionMatrix"] = json!([[1, 0], [0, 1]]);
        }
        if let Ok(eval) = serde_json::from_value::<EvaluationResponse>(body)
            && let Ok(report) = analyze(&eval, &EvaluationOptions::default())
        {
            prop_assert!(report.accuracy.is_nan() || (0.0..=1.0).contains(&report.accuracy));
        }
    }

    /// Event notes stay within the API server's 1024 bytes whatever the message's characters.
    #[test]
    fn event_notes_fit_the_api_limit(note in "\\PC{0,2000}") {
        let cut = truncate_bytes(&note, 1024);
        prop_assert!(cut.len() <= 1024);
        prop_assert!(note.starts_with(cut.trim_end_matches('…')));
    }
}
