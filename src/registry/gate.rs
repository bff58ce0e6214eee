//! The promotion gate (pure): whether a registered run is promoted, from its recomputed metrics,
//! the declared thresholds and the model promoted now (the champion) in the same registry.

use serde::{Deserialize, Serialize};

use super::{Champion, key_metrics};
use crate::crd::PromotionSpec;
use crate::evaluation::EvaluationReport;

/// One check the gate ran.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GateCheck {
    /// e.g. `accuracy >= 0.9`, `label billing f1 >= 0.8`, `macro_f1 >= champion 3 - 0.01`.
    pub name: String,
    pub value: f64,
    pub threshold: f64,
    pub passed: bool,
}

/// What the gate decided for one registry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GateOutcome {
    pub passed: bool,
    /// Every check with its input and threshold, in a fixed order.
    pub checks: Vec<GateCheck>,
    /// The champion compared against (its reference), if there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub champion: Option<String>,
    /// Notes on what could not be compared.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl GateOutcome {
    /// "passed: accuracy 0.93 >= 0.90; …" or "not met: …" (failed checks first).
    pub fn describe(&self) -> String {
        let verdict = if self.passed { "passed" } else { "not met" };
        let mut checks: Vec<&GateCheck> = self.checks.iter().collect();
        checks.sort_by_key(|c| c.passed);
        let mut parts: Vec<String> = checks
            .iter()
            .map(|c| {
                format!(
                    "{} {:.4} (needs {:.4}){}",
                    c.name,
                    c.value,
                    c.threshold,
                    if c.passed { "" } else { " FAILED" }
                )
            })
            .collect();
        parts.extend(self.notes.iter().cloned());
        if parts.is_empty() {
            parts.push("no thresholds declared".to_string());
        }
        format!("{verdict}: {}", parts.join("; "))
    }
}

/// Applies `spec` to `report`, and compares with `champion` when `spec.compareMetric` is set.
/// `None` when no gate is declared: nothing is promoted.
pub fn evaluate(
    spec: Option<&PromotionSpec>,
    report: &EvaluationReport,
    champion: Option<&Champion>,
) -> Option<GateOutcome> {
    let spec = spec?;
    let metrics = key_metrics(report);
    let mut checks = Vec::new();
    let mut at_least = |name: String, value: f64, threshold: Option<f64>| {
        if let Some(t) = threshold {
            checks.push(GateCheck {
                passed: value >= t,
                name,
                value,
                threshold: t,
            });
        }
    };
    at_least("accuracy".into(), report.accuracy, spec.min_accuracy);
    at_least(
        "macro_f1".into(),
        report.macro_average.f1,
        spec.min_macro_f1,
    );
    at_least(
        "macro_precision".into(),
        report.macro_average.precision,
        spec.min_macro_precision,
    );
    at_least(
        "macro_recall".into(),
        report.macro_average.recall,
        spec.min_macro_recall,
    );
    for label in &report.per_label {
        at_least(
            format!("label {} f1", label.label),
            label.f1,
            spec.min_label_f1,
        );
    }
    let mut notes = Vec::new();
    let mut compared = None;
    if let (Some(metric), Some(champion)) = (spec.compare_metric, champion) {
        let key = metric.key();
        let ours = metrics.get(key).copied().unwrap_or_default();
        match champion.metrics.get(key).copied().filter(|v| v.is_finite()) {
            Some(theirs) => {
                let margin = spec.max_regression.unwrap_or(0.0);
                let threshold = theirs - margin;
                checks.push(GateCheck {
                    name: format!("{key} against champion {}", champion.reference),
                    value: ours,
                    threshold,
                    // A tiny tolerance so that the champion itself, re-read, always passes.
                    passed: ours >= threshold - 1e-12,
                });
            }
            None => notes.push(format!(
                "champion {} has no {key} metric: not compared",
                champion.reference
            )),
        }
        compared = Some(champion.reference.clone());
    } else if spec.compare_metric.is_some() {
        notes.push("no champion yet: nothing to compare against".to_string());
    }
    Some(GateOutcome {
        passed: checks.iter().all(|c| c.passed),
        checks,
        champion: compared,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::GateMetric;
    use crate::evaluation::{EvaluationOptions, analyze};
    use std::collections::BTreeMap;

    fn report(correct: usize, total: usize) -> EvaluationReport {
        let mut actuals = Vec::new();
        let mut predictions = Vec::new();
        for i in 0..total {
            let a = if i % 2 == 0 { "a" } else { "b" };
            actuals.push(a.to_string());
            let p = if i < correct {
                a
            } else if a == "a" {
                "b"
            } else {
                "a"
            };
            predictions.push(p.to_string());
        }
        let evaluation = crate::cxone::model::EvaluationResponse {
            labels: vec![
                crate::cxone::model::EvaluationLabel {
                    id: "a".into(),
                    name: "A".into(),
                },
                crate::cxone::model::EvaluationLabel {
                    id: "b".into(),
                    name: "B".into(),
                },
            ],
            scores: vec![0.9; total],
            actuals,
            predictions,
            precision: None,
            recall: None,
            confusion_matrix: None,
            training_duration_seconds: 0.0,
        };
        analyze(&evaluation, &EvaluationOptions::default()).unwrap()
    }

    fn champion(accuracy: f64) -> Champion {
        Champion {
            reference: "3".into(),
            metrics: BTreeMap::from([("accuracy".to_string(), accuracy)]),
        }
    }

    #[test]
    fn no_gate_promotes_nothing() {
        assert_eq!(evaluate(None, &report(9, 10), None), None);
    }

    #[test]
    fn thresholds_are_at_least() {
        let spec = PromotionSpec {
            min_accuracy: Some(0.9),
            ..Default::default()
        };
        let pass = evaluate(Some(&spec), &report(9, 10), None).unwrap();
        assert!(pass.passed, "{}", pass.describe());
        let fail = evaluate(Some(&spec), &report(8, 10), None).unwrap();
        assert!(!fail.passed);
        assert!(
            fail.describe()
                .starts_with("not met: accuracy 0.8000 (needs 0.9000) FAILED")
        );
    }

    #[test]
    fn per_label_minimums_name_the_label() {
        let spec = PromotionSpec {
            min_label_f1: Some(0.99),
            ..Default::default()
        };
        let out = evaluate(Some(&spec), &report(9, 10), None).unwrap();
        assert!(!out.passed);
        assert_eq!(out.checks.len(), 2);
        assert!(out.checks.iter().any(|c| c.name == "label a f1"));
    }

    #[test]
    fn a_challenger_may_not_be_worse_than_the_margin() {
        let spec = PromotionSpec {
            compare_metric: Some(GateMetric::Accuracy),
            max_regression: Some(0.05),
            ..Default::default()
        };
        let r = report(8, 10); // accuracy 0.8
        assert!(
            evaluate(Some(&spec), &r, Some(&champion(0.84)))
                .unwrap()
                .passed
        );
        let worse = evaluate(Some(&spec), &r, Some(&champion(0.9))).unwrap();
        assert!(!worse.passed);
        assert_eq!(worse.champion.as_deref(), Some("3"));
        // The same model read back as champion passes (restart after promotion).
        let strict = PromotionSpec {
            compare_metric: Some(GateMetric::Accuracy),
            ..Default::default()
        };
        assert!(
            evaluate(Some(&strict), &r, Some(&champion(0.8)))
                .unwrap()
                .passed
        );
    }

    #[test]
    fn no_or_incomplete_champion_is_said_not_silently_passed() {
        let spec = PromotionSpec {
            compare_metric: Some(GateMetric::MacroF1),
            ..Default::default()
        };
        let r = report(8, 10);
        let first = evaluate(Some(&spec), &r, None).unwrap();
        assert!(first.passed);
        assert!(first.describe().contains("no champion yet"));
        let blind = evaluate(Some(&spec), &r, Some(&champion(0.99))).unwrap();
        assert!(blind.passed);
        assert!(blind.describe().contains("has no macro_f1 metric"));
    }
}
