//! Fixtures shared by the unit tests, the integration tests (`tests/`) and the benches
//! (`benches/`): the CXone guide's example (its three labels and six utterances, as a dataset, a
//! submission or CRD/JSON pieces) and a registration provenance. Pure data, no I/O; fixtures that
//! start processes (simulator, registries, control plane) live in `tests/support`.
//!
//! Not part of the operator's API (hidden from the docs); it is public only so that `tests/` and
//! `benches/` can use it. Imports the training domain, the CXone wire types and the registry's
//! `Provenance`.

use std::collections::BTreeMap;

use crate::cxone::model::{Hyperparameters, LabelDef, TrainingJobRequest, Utterance};
use crate::registry::Provenance;
use crate::training::{Dataset, ValidationRules, build_payload, validate};

/// The skill the guide trains.
pub const GUIDE_SKILL_ID: &str = "skill-abc-123";

/// The guide's labels: id, name, description.
pub const GUIDE_LABELS: [(&str, &str, &str); 3] = [
    (
        "cancel_sub",
        "Cancel Subscription",
        "User requests cancellation",
    ),
    ("upgrade_plan", "Upgrade Plan", "User wants higher tier"),
    (
        "reset_pwd",
        "Reset Password",
        "User needs credential recovery",
    ),
];

/// The guide's six utterances: text, label id (two per label, in the guide's order).
pub const GUIDE_UTTERANCES: [(&str, &str); 6] = [
    ("I want to cancel my subscription", "cancel_sub"),
    ("Please terminate my account", "cancel_sub"),
    ("How do I upgrade my plan", "upgrade_plan"),
    ("I need a higher tier", "upgrade_plan"),
    ("Reset my password", "reset_pwd"),
    ("I forgot my login details", "reset_pwd"),
];

/// The guide's label ids, in order.
pub fn guide_label_ids() -> [&'static str; 3] {
    GUIDE_LABELS.map(|(id, _, _)| id)
}

/// The guide's labels with their names and descriptions.
pub fn guide_labels() -> Vec<LabelDef> {
    GUIDE_LABELS
        .iter()
        .map(|(id, name, description)| LabelDef {
            id: id.to_string(),
            name: name.to_string(),
            description: Some(description.to_string()),
        })
        .collect()
}

/// The guide's utterances, each tagged `en` as the guide's payload does.
pub fn guide_utterances() -> Vec<Utterance> {
    GUIDE_UTTERANCES
        .iter()
        .map(|(text, label)| Utterance {
            text: text.to_string(),
            label: label.to_string(),
            language: Some("en".to_string()),
        })
        .collect()
}

/// The guide's example as a dataset: its labels, and its utterances inline at `utterances[i]`;
/// no declared language (the utterances carry it).
pub fn guide_dataset() -> Dataset {
    let mut dataset = Dataset::new(None, guide_labels());
    dataset.extend_inline("utterances", guide_utterances());
    dataset
}

/// The guide's example as the operator submits it: validated with the default rules, 20 %
/// validation split, default hyperparameters.
pub fn guide_request() -> TrainingJobRequest {
    let valid = validate(guide_dataset(), &ValidationRules::default())
        .expect("the guide's example passes validation");
    build_payload(GUIDE_SKILL_ID, &valid, 0.2, &Hyperparameters::default()).0
}

/// The guide's labels as CRD `spec.labels` entries (`{id, name, description}`).
pub fn guide_labels_json() -> serde_json::Value {
    GUIDE_LABELS
        .iter()
        .map(|(id, name, description)| {
            serde_json::json!({"id": id, "name": name, "description": description})
        })
        .collect()
}

/// The guide's utterances as CRD `spec.utterances` entries (`{text, label}`, language from the
/// spec).
pub fn guide_utterances_json() -> serde_json::Value {
    GUIDE_UTTERANCES
        .iter()
        .map(|(text, label)| serde_json::json!({"text": text, "label": label}))
        .collect()
}

/// The provenance of run 2 of `team-a/billing-support` (generation 4) that trained CXone job
/// `job_id`; override fields with struct update syntax where a test needs other values.
pub fn provenance(job_id: &str) -> Provenance {
    Provenance {
        namespace: "team-a".into(),
        name: "billing-support".into(),
        uid: "6b1f0c2e-uid".into(),
        generation: 4,
        run: 2,
        cxone_job_id: job_id.into(),
        skill_id: GUIDE_SKILL_ID.into(),
        dataset_digest: format!("sha256:{}", "cd".repeat(32)),
        // 2025-06-01T12:00:00Z
        created: jiff::Timestamp::from_second(1_748_779_200).expect("a valid timestamp"),
        source: "kubernetes://team-a/skilltrainingjobs/billing-support".into(),
        params: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guide_example_is_valid_and_its_provenance_is_fixed() {
        assert_eq!(guide_request().training_data.utterances.len(), 6);
        assert_eq!(
            guide_label_ids(),
            ["cancel_sub", "upgrade_plan", "reset_pwd"]
        );
        assert_eq!(
            provenance("job-1").created.to_string(),
            "2025-06-01T12:00:00Z"
        );
    }
}
