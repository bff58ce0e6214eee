use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::cxone::model::EvaluationResponse;
use crate::evaluation::{EvaluationOptions, analyze};
use crate::registry::gate::GateCheck;

fn provenance(label_text: &str) -> Provenance {
    Provenance {
        namespace: "team-a".into(),
        name: "billing".into(),
        run: 2,
        skill_id: format!("skill {label_text}"),
        params: BTreeMap::from([("maxEpochs".to_string(), "50".to_string())]),
        ..crate::testkit::provenance("job-42")
    }
}

fn audit(label: &str) -> AuditRecord {
    serde_json::from_value(json!({
        "schema": "audit.ai.cxone.io/v1",
        "recordedAt": "2025-06-01T12:00:01Z",
        "operatorVersion": "0.1.0",
        "job": {"namespace": "team-a", "name": "billing", "uid": "0d6f-uid", "generation": 3,
                "skillId": "skill-abc", "endpoint": "https://api.us2-01.cxone.com"},
        "result": "Succeeded",
        "dataset": {"digest": null, "language": "en", "utterances": 12, "labels": 2,
                    "labelCounts": {"cancel": 6, label: 6}},
        "checks": [],
        "compliance": {"dataValidationPassed": true, "classBalanceChecked": true,
                       "languageConstraintEnforced": true, "metricsVerified": true,
                       "signedUrlsRedacted": true},
        "hyperparameters": {"maxEpochs": 50, "earlyStopping": true, "patience": 5},
        "validationSplit": 0.2,
        "timeline": {}
    }))
    .expect("an audit record")
}

fn report(label: &str) -> EvaluationReport {
    let resp: EvaluationResponse = serde_json::from_value(json!({
        "labels": [{"id": "cancel", "name": "Cancel"}, {"id": label, "name": "Other"}],
        "actuals": ["cancel", "cancel", label, label],
        "predictions": ["cancel", label, label, label],
        "scores": [0.9, 0.6, 0.8, 0.95]
    }))
    .expect("an evaluation");
    analyze(&resp, &EvaluationOptions::default()).expect("a report")
}

fn files() -> Vec<CardFile> {
    vec![CardFile {
        name: "model-weights.json".into(),
        bytes: 1234,
        sha256: "cd".repeat(32),
    }]
}

fn card_with(label: &str, gate: Option<&GateOutcome>, key: Option<&str>) -> String {
    let (p, a, r, f) = (provenance(label), audit(label), report(label), files());
    render(&CardInput {
        provenance: &p,
        audit: &a,
        report: &r,
        gate,
        files: &f,
        signing_key: key,
    })
}

#[test]
fn the_card_says_what_the_model_was_trained_on_how_it_did_and_where_it_came_from() {
    let card = card_with("billing", None, None);
    for needle in [
        "# skill billing",
        "| Language | en |",
        "| Utterances | 12 |",
        "| cancel | 6 | 1.0000 | 0.5000 | 0.6667 | 2 |",
        "| billing | 6 | 0.6667 | 1.0000 | 0.8000 | 2 |",
        "accuracy 0.7500",
        "| macro | 0.8333 | 0.7500 | 0.7333 |",
        "No gate declared",
        "| CXone training job | job-42 |",
        "| maxEpochs | 50 |",
        &format!("| model-weights.json | 1234 | {} |", "cd".repeat(32)),
        "The model is not signed.",
    ] {
        assert!(card.contains(needle), "{needle:?} missing from:\n{card}");
    }
    assert_eq!(
        card,
        card_with("billing", None, None),
        "same inputs, same card"
    );
}

#[test]
fn the_gate_and_the_signing_key_are_stated() {
    let gate = GateOutcome {
        passed: false,
        checks: vec![GateCheck {
            name: "accuracy >= 0.9".into(),
            value: 0.75,
            threshold: 0.9,
            passed: false,
        }],
        champion: Some("models:/billing/3".into()),
        notes: vec![],
    };
    let card = card_with("billing", Some(&gate), Some("ef01"));
    assert!(card.contains("**not met**"), "{card}");
    assert!(
        card.contains("| accuracy &gt;= 0.9 | 0.7500 | 0.9000 | FAILED |"),
        "{card}"
    );
    assert!(card.contains("champion models:/billing/3"), "{card}");
    assert!(card.contains("public PEM has sha256 ef01"), "{card}");
}

#[test]
fn user_text_cannot_inject_markdown_html_or_table_cells() {
    let hostile = "x|<script>alert(1)</script>\n# [link](http://e)*`";
    let card = card_with(hostile, None, None);
    assert!(!card.contains("<script>"), "{card}");
    assert!(!card.contains("\n# [link]"), "{card}");
    assert!(card.contains("x\\|&lt;script&gt;"), "{card}");
    // Every table row still has its six cells: the label's `|` is escaped.
    let row = card
        .lines()
        .find(|l| l.starts_with("| x\\|"))
        .expect("the hostile label's row");
    let cells = row.replace("\\|", "").matches('|').count();
    assert_eq!(cells, 7, "{row}");
    assert_eq!(escape("a\r\nb\tc"), "a  b c");
    assert_eq!(escape("a&b"), "a&amp;b");
}
