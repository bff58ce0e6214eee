use super::server_comparison::MAX_MATRIX_MISMATCHES;
use super::*;
use crate::cxone::model::EvaluationLabel;
use proptest::prelude::*;

const EPS: f64 = 1e-12;

fn labels(ids: &[&str]) -> Vec<EvaluationLabel> {
    ids.iter()
        .map(|id| EvaluationLabel {
            id: (*id).to_owned(),
            name: format!("Label {id}"),
        })
        .collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// An evaluation whose server summary is filled in from our own analysis (so it is
/// consistent unless a test changes it).
fn eval(
    ids: &[&str],
    actuals: &[&str],
    predictions: &[&str],
    scores: &[f64],
) -> EvaluationResponse {
    let mut resp = EvaluationResponse {
        labels: labels(ids),
        actuals: strings(actuals),
        predictions: strings(predictions),
        scores: scores.to_vec(),
        precision: None,
        recall: None,
        confusion_matrix: None,
        training_duration_seconds: 12.5,
    };
    if let Ok(r) = analyze(&resp, &EvaluationOptions::default()) {
        resp.precision = Some(r.macro_average.precision);
        resp.recall = Some(r.macro_average.recall);
        resp.confusion_matrix = Some(r.confusion_matrix.matrix);
    }
    resp
}

fn run(resp: &EvaluationResponse) -> EvaluationReport {
    analyze(resp, &EvaluationOptions::default()).expect("analysis succeeds")
}

fn with_min_precision(p: f64) -> EvaluationOptions {
    EvaluationOptions {
        min_precision: Some(p),
        ..EvaluationOptions::default()
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < EPS
}

#[test]
fn default_sweep_has_13_points() {
    let points = ThresholdSweep::default().points().unwrap();
    assert_eq!(points.len(), 13);
    assert_eq!(points[0], 0.30);
    assert_eq!(points[4], 0.5);
    assert_eq!(points[12], 0.90);
    for (i, t) in points.iter().enumerate() {
        assert_eq!(
            *t,
            format!("{:.2}", 0.30 + i as f64 * 0.05)
                .parse::<f64>()
                .unwrap()
        );
    }
}

#[test]
fn sweep_never_passes_end() {
    let s = ThresholdSweep {
        start: 0.0,
        end: 1.0,
        step: 0.4,
    };
    assert_eq!(s.points().unwrap(), vec![0.0, 0.4, 0.8]);
    let single = ThresholdSweep {
        start: 0.5,
        end: 0.5,
        step: 0.1,
    };
    assert_eq!(single.points().unwrap(), vec![0.5]);
    let full = ThresholdSweep {
        start: 0.0,
        end: 1.0,
        step: 0.01,
    };
    let points = full.points().unwrap();
    assert_eq!(points.len(), 101);
    assert_eq!(*points.last().unwrap(), 1.0);
}

#[test]
fn perfect_classifier() {
    let resp = eval(
        &["a", "b", "c"],
        &["a", "b", "c", "a", "b"],
        &["a", "b", "c", "a", "b"],
        &[0.9, 0.8, 0.7, 0.95, 0.99],
    );
    let r = run(&resp);
    assert_eq!(r.total, 5);
    assert_eq!(r.accuracy, 1.0);
    assert_eq!(
        r.macro_average,
        AverageMetrics {
            precision: 1.0,
            recall: 1.0,
            f1: 1.0
        }
    );
    assert_eq!(r.weighted_average, r.macro_average);
    assert_eq!(
        r.per_label.iter().map(|m| m.support).collect::<Vec<_>>(),
        vec![2, 2, 1]
    );
    assert_eq!(
        r.confusion_matrix.matrix,
        vec![vec![2, 0, 0], vec![0, 2, 0], vec![0, 0, 1]]
    );
    assert_eq!(r.confusion_matrix.get("a", "a"), Some(2));
    assert_eq!(r.confusion_matrix.get("a", "zz"), None);
    // Every threshold up to 0.70 answers everything.
    let at_07 = r.thresholds.iter().find(|t| t.threshold == 0.7).unwrap();
    assert_eq!(
        (at_07.precision, at_07.recall, at_07.coverage),
        (1.0, 1.0, 1.0)
    );
    let rec = r.recommendation.unwrap();
    assert_eq!(rec.threshold, 0.30);
    assert_eq!(rec.objective, Objective::MaxF1);
    assert_eq!(r.server_comparison.consistent, Some(true));
    assert!(r.server_comparison.mismatches.is_empty());
    assert!(r.server_comparison.not_reported.is_empty());
}

#[test]
fn all_wrong() {
    let resp = eval(&["a", "b"], &["a", "b", "a"], &["b", "a", "b"], &[]);
    let r = run(&resp);
    assert_eq!(r.accuracy, 0.0);
    for m in &r.per_label {
        assert_eq!((m.precision, m.recall, m.f1), (0.0, 0.0, 0.0));
    }
    assert_eq!(r.macro_average.f1, 0.0);
    assert_eq!(r.confusion_matrix.matrix, vec![vec![0, 2], vec![1, 0]]);
    // No scores: everything is answered at every threshold.
    assert_eq!(r.thresholds.len(), 13);
    for t in &r.thresholds {
        assert_eq!(
            (t.precision, t.recall, t.f1, t.coverage),
            (0.0, 0.0, 0.0, 1.0)
        );
    }
    // All F1s tie at 0 with equal coverage: the lowest threshold wins.
    assert_eq!(r.recommendation.unwrap().threshold, 0.30);
}

#[test]
fn label_never_predicted_has_zero_precision() {
    // c occurs twice but is never predicted.
    let resp = eval(
        &["a", "b", "c"],
        &["a", "a", "b", "c", "c"],
        &["a", "a", "b", "a", "b"],
        &[],
    );
    let r = run(&resp);
    let c = r.label_metrics("c").unwrap();
    assert_eq!((c.precision, c.recall, c.f1, c.support), (0.0, 0.0, 0.0, 2));
    let a = r.label_metrics("a").unwrap();
    assert!(close(a.precision, 2.0 / 3.0));
    assert_eq!(a.recall, 1.0);
    assert!(close(a.f1, 0.8));
    let b = r.label_metrics("b").unwrap();
    assert!(close(b.precision, 0.5));
    assert_eq!(b.recall, 1.0);
    assert!(close(b.f1, 2.0 / 3.0));
    // All three labels occur, so the macro average is over three.
    assert!(close(r.macro_average.precision, (2.0 / 3.0 + 0.5) / 3.0));
    assert!(close(r.macro_average.recall, 2.0 / 3.0));
    assert!(close(r.macro_average.f1, (0.8 + 2.0 / 3.0) / 3.0));
    // Weighted by support 2, 1, 2 out of 5.
    assert!(close(
        r.weighted_average.precision,
        (2.0 / 3.0 * 2.0 + 0.5) / 5.0
    ));
    assert!(close(r.weighted_average.recall, 3.0 / 5.0));
    assert!(close(r.accuracy, 0.6));
}

#[test]
fn label_with_zero_support_is_reported_but_not_averaged() {
    // d is a label but never occurs; c is predicted once but never actual.
    let resp = eval(
        &["a", "b", "c", "d"],
        &["a", "a", "b", "b"],
        &["a", "c", "b", "b"],
        &[],
    );
    let r = run(&resp);
    assert_eq!(r.per_label.len(), 4);
    let d = r.label_metrics("d").unwrap();
    assert_eq!((d.precision, d.recall, d.f1, d.support), (0.0, 0.0, 0.0, 0));
    let c = r.label_metrics("c").unwrap();
    assert_eq!((c.precision, c.recall, c.f1, c.support), (0.0, 0.0, 0.0, 0));
    // Macro over a, b, c (present in actuals ∪ predictions), not d.
    // a: p=1, r=0.5, f1=2/3; b: p=1, r=1, f1=1; c: 0.
    assert!(close(r.macro_average.precision, 2.0 / 3.0));
    assert!(close(r.macro_average.recall, 0.5));
    assert!(close(r.macro_average.f1, (2.0 / 3.0 + 1.0) / 3.0));
    // Weighted: a and b have support 2 each.
    assert!(close(r.weighted_average.precision, 1.0));
    assert!(close(r.weighted_average.recall, 0.75));
    assert!(close(r.weighted_average.f1, (2.0 / 3.0 + 1.0) / 2.0));
    assert_eq!(r.confusion_matrix.matrix[3], vec![0, 0, 0, 0]);
    assert!(r.server_comparison.agrees());
}

#[test]
fn threshold_tuning_finds_best_f1() {
    // Correct examples are confident, wrong ones are not: dropping the wrong ones at 0.6
    // raises precision without losing recall.
    let resp = eval(
        &["a", "b"],
        &["a", "a", "b", "b", "a", "b"],
        &["a", "a", "b", "b", "b", "a"],
        &[0.9, 0.8, 0.7, 0.65, 0.55, 0.4],
    );
    let r = run(&resp);
    let at = |t: f64| *r.thresholds.iter().find(|m| m.threshold == t).unwrap();
    // 0.30: all 6 answered, 4 correct.
    let t = at(0.30);
    assert!(close(t.precision, 4.0 / 6.0));
    assert!(close(t.recall, 4.0 / 6.0));
    assert!(close(t.f1, 4.0 / 6.0));
    assert_eq!(t.coverage, 1.0);
    // 0.45: 0.4 abstains -> 5 answered, 4 correct.
    let t = at(0.45);
    assert!(close(t.precision, 0.8));
    assert!(close(t.coverage, 5.0 / 6.0));
    // 0.60: 4 answered, 4 correct: precision 1, recall 4/6, f1 0.8.
    let t = at(0.60);
    assert_eq!(t.precision, 1.0);
    assert!(close(t.recall, 4.0 / 6.0));
    assert!(close(t.f1, 0.8));
    // 0.65 (score exactly on the threshold is answered) has the same counts as 0.60.
    assert_eq!(at(0.65).coverage, at(0.60).coverage);
    // 0.70: 3 answered, all correct: f1 = 2*3/(3+6).
    assert!(close(at(0.70).f1, 6.0 / 9.0));
    // 0.90: 1 answered.
    assert!(close(at(0.90).coverage, 1.0 / 6.0));

    let rec = r.recommendation.unwrap();
    // F1 0.8 at 0.60 and 0.65 (same coverage): the lower threshold wins.
    assert_eq!(rec.threshold, 0.60);
    assert!(close(rec.f1, 0.8));
    assert_eq!(rec.precision, 1.0);
    assert_eq!(rec.objective, Objective::MaxF1);
}

#[test]
fn min_precision_picks_highest_coverage() {
    let resp = eval(
        &["a", "b"],
        &["a", "a", "b", "b", "a", "b"],
        &["a", "a", "b", "b", "b", "a"],
        &[0.9, 0.8, 0.7, 0.65, 0.55, 0.4],
    );
    // Precision >= 0.75 first reached at 0.45 (0.8 with coverage 5/6).
    let r = analyze(&resp, &with_min_precision(0.75)).unwrap();
    let rec = r.recommendation.unwrap();
    assert_eq!(rec.threshold, 0.45);
    assert!(close(rec.precision, 0.8));
    assert!(close(rec.coverage, 5.0 / 6.0));
    assert_eq!(rec.objective, Objective::MinPrecision);
    // Precision 1 needs threshold >= 0.6; 0.60 and 0.65 tie on coverage and F1.
    let r = analyze(&resp, &with_min_precision(1.0)).unwrap();
    let rec = r.recommendation.unwrap();
    assert_eq!(rec.threshold, 0.60);
    assert_eq!(rec.precision, 1.0);
    // A minimum precision of 0 qualifies every threshold: the lowest has full coverage.
    let r = analyze(&resp, &with_min_precision(0.0)).unwrap();
    assert_eq!(r.recommendation.unwrap().threshold, 0.30);
}

#[test]
fn min_precision_unattainable_gives_none() {
    let resp = eval(&["a", "b"], &["a", "b"], &["b", "b"], &[0.95, 0.95]);
    let r = analyze(&resp, &with_min_precision(0.9)).unwrap();
    assert_eq!(r.recommendation, None);
    let json = serde_json::to_value(&r).unwrap();
    assert!(json["recommendation"].is_null());
}

#[test]
fn nothing_answered_has_zero_precision() {
    let resp = eval(&["a"], &["a", "a"], &["a", "a"], &[0.1, 0.2]);
    let r = run(&resp);
    for t in &r.thresholds {
        assert_eq!(
            (t.precision, t.recall, t.f1, t.coverage),
            (0.0, 0.0, 0.0, 0.0)
        );
    }
    assert_eq!(r.accuracy, 1.0);
    assert_eq!(r.recommendation.unwrap().threshold, 0.30);
}

#[test]
fn report_serializes_to_the_documented_shape() {
    let resp = eval(&["a", "b"], &["a", "b"], &["a", "a"], &[0.5, 0.6]);
    let r = run(&resp);
    let json = serde_json::to_value(&r).unwrap();
    let mut keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "accuracy",
            "confusionMatrix",
            "macro",
            "perLabel",
            "recommendation",
            "serverComparison",
            "thresholds",
            "total",
            "weighted"
        ]
    );
    assert_eq!(json["total"], 2);
    assert!(json["macro"]["f1"].is_number());
    assert_eq!(json["weighted"].as_object().unwrap().len(), 3);
    assert_eq!(json["perLabel"][1]["label"], "b");
    assert_eq!(json["perLabel"][0]["support"], 1);
    assert_eq!(
        json["confusionMatrix"]["labels"],
        serde_json::json!(["a", "b"])
    );
    assert_eq!(
        json["confusionMatrix"]["matrix"],
        serde_json::json!([[1, 0], [1, 0]])
    );
    let t = json["thresholds"][0].as_object().unwrap();
    for key in ["threshold", "precision", "recall", "f1", "coverage"] {
        assert!(t[key].is_number(), "{key}");
    }
    let rec = json["recommendation"].as_object().unwrap();
    assert_eq!(rec["objective"], "maxF1");
    for key in ["threshold", "f1", "precision", "coverage"] {
        assert!(rec[key].is_number(), "{key}");
    }
    assert_eq!(json["serverComparison"]["consistent"], true);
    assert_eq!(
        json["serverComparison"]["mismatches"],
        serde_json::json!([])
    );
    let back: EvaluationReport = serde_json::from_value(json).unwrap();
    assert_eq!(back, r);
    assert_eq!(
        serde_json::to_value(Objective::MinPrecision).unwrap(),
        "minPrecision"
    );
}

#[test]
fn server_mismatches_are_reported() {
    let mut resp = eval(&["a", "b"], &["a", "b", "a"], &["a", "b", "b"], &[]);
    let r = run(&resp);
    let ours_p = r.macro_average.precision;
    resp.precision = Some(0.8123);
    resp.recall = resp.recall.map(|r| r + 5e-7); // within tolerance
    if let Some(m) = resp.confusion_matrix.as_mut() {
        m[0][1] = 7;
    }
    let r = run(&resp);
    assert_eq!(r.server_comparison.consistent, Some(false));
    assert_eq!(
        r.server_comparison.mismatches,
        vec![
            format!("server-reported macro precision 0.8123 differs from recomputed {ours_p:.4}"),
            "server-reported confusion matrix cell [actual \"a\", predicted \"b\"] (row 0, \
             column 1) is 7, recomputed 1"
                .to_owned(),
        ]
    );

    // Differences finer than 4 decimals are shown at full precision.
    resp.confusion_matrix = None;
    resp.precision = Some(ours_p + 1e-5);
    let r = run(&resp);
    assert_eq!(r.server_comparison.mismatches.len(), 1);
    assert!(
        r.server_comparison.mismatches[0].ends_with(&format!("recomputed {ours_p}")),
        "{:?}",
        r.server_comparison.mismatches
    );
    assert!(!r.server_comparison.mismatches[0].contains("0.7500 "));

    // NaN never compares equal.
    resp.precision = Some(ours_p);
    resp.recall = Some(f64::NAN);
    let r = run(&resp);
    assert_eq!(r.server_comparison.mismatches.len(), 1);
    assert!(r.server_comparison.mismatches[0].contains("macro recall NaN"));
}

#[test]
fn server_matrix_shape_mismatches() {
    let mut resp = eval(&["a", "b"], &["a", "b"], &["a", "b"], &[]);
    resp.confusion_matrix = Some(vec![vec![1, 0]]);
    let r = run(&resp);
    assert_eq!(
        r.server_comparison.mismatches,
        vec!["server-reported confusion matrix has 1 rows, expected 2 (one per label)"]
    );
    resp.confusion_matrix = Some(vec![vec![1, 0], vec![1]]);
    let r = run(&resp);
    assert_eq!(
        r.server_comparison.mismatches,
        vec![
            "server-reported confusion matrix row 1 (actual \"b\") has 1 columns, expected 2 \
             (one per label)"
        ]
    );
    // Empty means "not reported": the rest is still compared.
    resp.confusion_matrix = Some(vec![]);
    let c = run(&resp).server_comparison;
    assert_eq!(c.consistent, Some(true));
    assert_eq!(c.not_reported, vec!["confusionMatrix"]);
}

#[test]
fn an_unreported_server_summary_is_unknown() {
    let mut resp = eval(
        &["a", "b"],
        &["a", "b", "a"],
        &["a", "b", "b"],
        &[0.9, 0.8, 0.4],
    );
    let with_summary = run(&resp);
    resp.precision = None;
    resp.recall = None;
    resp.confusion_matrix = None;
    let r = run(&resp);
    // Everything is still recomputed from the per-example arrays...
    assert_eq!(r.macro_average, with_summary.macro_average);
    assert_eq!(r.confusion_matrix, with_summary.confusion_matrix);
    assert_eq!(r.thresholds, with_summary.thresholds);
    // ...but agreement is unknown, neither claimed nor denied.
    let c = &r.server_comparison;
    assert_eq!(c.consistent, None);
    assert!(!c.agrees());
    assert!(c.mismatches.is_empty());
    assert_eq!(
        c.not_reported,
        vec!["precision", "recall", "confusionMatrix"]
    );
    assert!(
        c.describe().starts_with(
            "unknown: not reported by the server (precision, recall, confusionMatrix)"
        ),
        "{}",
        c.describe()
    );
    let json = serde_json::to_value(&r).unwrap();
    assert!(json["serverComparison"]["consistent"].is_null());
    assert_eq!(
        json["serverComparison"]["notReported"],
        serde_json::json!(["precision", "recall", "confusionMatrix"])
    );
    let back: EvaluationReport = serde_json::from_value(json).unwrap();
    assert_eq!(back, r);

    // Part of the summary: the reported part is compared, the rest named.
    resp.recall = Some(r.macro_average.recall);
    let c = run(&resp).server_comparison;
    assert_eq!(c.consistent, Some(true));
    assert_eq!(c.not_reported, vec!["precision", "confusionMatrix"]);
    assert!(
        c.describe()
            .contains("(precision, confusionMatrix not reported by the server)")
    );
    resp.recall = Some(0.1);
    let c = run(&resp).server_comparison;
    assert_eq!(c.consistent, Some(false));
    assert!(
        c.describe().contains("macro recall 0.1000 differs"),
        "{}",
        c.describe()
    );
}

#[test]
fn many_matrix_differences_are_summarised() {
    let ids: Vec<String> = (0..10).map(|i| format!("l{i}")).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut resp = eval(&id_refs, &id_refs, &id_refs, &[]);
    resp.confusion_matrix = Some(vec![vec![5; 10]; 10]);
    let r = run(&resp);
    let m = &r.server_comparison.mismatches;
    assert_eq!(m.len(), MAX_MATRIX_MISMATCHES + 1);
    assert_eq!(
        m.last().unwrap(),
        &format!(
            "… and {} more confusion matrix differences",
            100 - MAX_MATRIX_MISMATCHES
        )
    );
}

fn err(resp: &EvaluationResponse) -> EvaluationError {
    analyze(resp, &EvaluationOptions::default()).unwrap_err()
}

#[test]
fn error_no_labels() {
    let resp = eval(&[], &["a"], &["a"], &[]);
    assert_eq!(err(&resp), EvaluationError::NoLabels);
}

#[test]
fn error_too_many_labels() {
    let ids: Vec<String> = (0..=MAX_LABELS).map(|i| i.to_string()).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let resp = eval(&id_refs, &["0"], &["0"], &[]);
    assert_eq!(
        err(&resp),
        EvaluationError::TooManyLabels {
            count: MAX_LABELS + 1,
            max: MAX_LABELS
        }
    );
}

#[test]
fn error_duplicate_label() {
    let resp = eval(&["a", "b", "a"], &["a"], &["a"], &[]);
    let e = err(&resp);
    assert_eq!(
        e,
        EvaluationError::DuplicateLabel {
            index: 2,
            first: 0,
            id: "a".into()
        }
    );
    assert_eq!(
        e.to_string(),
        "duplicate label id \"a\" at labels[2] (already defined at labels[0])"
    );
}

#[test]
fn error_length_mismatch() {
    let resp = eval(&["a"], &["a", "a"], &["a"], &[]);
    let e = err(&resp);
    assert_eq!(
        e,
        EvaluationError::LengthMismatch {
            actuals: 2,
            predictions: 1
        }
    );
    assert!(e.to_string().contains("2 actuals but 1 predictions"));
}

#[test]
fn error_scores_length_mismatch() {
    let resp = eval(&["a"], &["a", "a"], &["a", "a"], &[0.5]);
    assert_eq!(
        err(&resp),
        EvaluationError::ScoresLengthMismatch {
            scores: 1,
            examples: 2
        }
    );
}

#[test]
fn error_empty() {
    let resp = eval(&["a"], &[], &[], &[]);
    assert_eq!(err(&resp), EvaluationError::Empty);
}

#[test]
fn error_unknown_label() {
    let resp = eval(&["a", "b"], &["a", "x"], &["a", "b"], &[]);
    let e = err(&resp);
    assert_eq!(
        e,
        EvaluationError::UnknownLabel {
            field: "actuals",
            index: 1,
            id: "x".into()
        }
    );
    assert_eq!(
        e.to_string(),
        "unknown label id \"x\" at actuals[1]: not one of `labels`"
    );

    let long = "é".repeat(100);
    let resp = eval(&["a", "b"], &["a", "b"], &["a", &long], &[]);
    let EvaluationError::UnknownLabel { field, index, id } = err(&resp) else {
        panic!("expected UnknownLabel");
    };
    assert_eq!((field, index), ("predictions", 1));
    assert_eq!(id, format!("{}…", "é".repeat(64)));
}

#[test]
fn error_invalid_score() {
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.01, 1.01] {
        let resp = eval(&["a"], &["a", "a"], &["a", "a"], &[0.5, bad]);
        match err(&resp) {
            EvaluationError::InvalidScore { index: 1, score } => {
                assert!(score.is_nan() || score == bad)
            }
            other => panic!("expected InvalidScore for {bad}, got {other:?}"),
        }
    }
    // The bounds themselves are valid.
    let resp = eval(&["a"], &["a", "a"], &["a", "a"], &[0.0, 1.0]);
    assert!(analyze(&resp, &EvaluationOptions::default()).is_ok());
}

#[test]
fn error_invalid_sweep() {
    let resp = eval(&["a"], &["a"], &["a"], &[]);
    let cases = [
        (0.3, 0.9, 0.0, "step must be greater than 0"),
        (0.3, 0.9, -0.1, "step must be greater than 0"),
        (0.3, 0.9, 1e-7, "step must be at least"),
        (0.9, 0.3, 0.05, "start must not be greater than end"),
        (-0.1, 0.9, 0.05, "must lie in [0, 1]"),
        (0.1, 1.5, 0.05, "must lie in [0, 1]"),
        (f64::NAN, 0.9, 0.05, "finite"),
        (0.3, 0.9, f64::INFINITY, "finite"),
        (0.0, 1.0, 0.0005, "more than the maximum of 1000"),
    ];
    for (start, end, step, reason) in cases {
        let opts = EvaluationOptions {
            sweep: ThresholdSweep { start, end, step },
            min_precision: None,
        };
        match analyze(&resp, &opts) {
            Err(e @ EvaluationError::InvalidSweep { .. }) => {
                assert!(
                    e.to_string().contains(reason),
                    "{e} should mention {reason:?}"
                )
            }
            other => panic!("({start}, {end}, {step}): expected InvalidSweep, got {other:?}"),
        }
    }
    // Exactly 1000 points is fine.
    let opts = EvaluationOptions {
        sweep: ThresholdSweep {
            start: 0.0,
            end: 0.999,
            step: 0.001,
        },
        min_precision: None,
    };
    assert_eq!(analyze(&resp, &opts).unwrap().thresholds.len(), 1000);
}

#[test]
fn error_invalid_min_precision() {
    let resp = eval(&["a"], &["a"], &["a"], &[]);
    for bad in [-0.1, 1.1, f64::NAN, f64::INFINITY] {
        match analyze(&resp, &with_min_precision(bad)) {
            Err(EvaluationError::InvalidMinPrecision { .. }) => {}
            other => panic!("expected InvalidMinPrecision for {bad}, got {other:?}"),
        }
    }
}

#[test]
fn large_input() {
    let n_labels = 100;
    let total = 100_000;
    let ids: Vec<String> = (0..n_labels).map(|i| format!("intent-{i:03}")).collect();
    let mut actuals = Vec::with_capacity(total);
    let mut predictions = Vec::with_capacity(total);
    let mut scores = Vec::with_capacity(total);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..total {
        // xorshift64
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let a = (x % n_labels as u64) as usize;
        let p = if x.is_multiple_of(5) {
            (a + 1) % n_labels
        } else {
            a
        };
        actuals.push(ids[a].clone());
        predictions.push(ids[p].clone());
        scores.push((x >> 11) as f64 / (1u64 << 53) as f64);
    }
    let resp = EvaluationResponse {
        labels: ids
            .iter()
            .map(|id| EvaluationLabel {
                id: id.clone(),
                name: String::new(),
            })
            .collect(),
        actuals,
        predictions,
        scores,
        precision: None,
        recall: None,
        confusion_matrix: None,
        training_duration_seconds: 0.0,
    };
    let r = run(&resp);
    let sum: u64 = r.confusion_matrix.matrix.iter().flatten().sum();
    assert_eq!(sum, total as u64);
    assert!(r.accuracy > 0.7 && r.accuracy < 0.9, "{}", r.accuracy);
    assert_eq!(r.thresholds.len(), 13);
}

fn check_invariants(resp: &EvaluationResponse, r: &EvaluationReport) {
    let unit = |x: f64| (0.0..=1.0).contains(&x);
    assert_eq!(r.total, resp.actuals.len() as u64);
    assert!(unit(r.accuracy));
    for avg in [r.macro_average, r.weighted_average] {
        assert!(
            unit(avg.precision) && unit(avg.recall) && unit(avg.f1),
            "{avg:?}"
        );
    }
    assert_eq!(r.per_label.len(), resp.labels.len());
    for m in &r.per_label {
        assert!(unit(m.precision) && unit(m.recall) && unit(m.f1), "{m:?}");
    }
    let support: u64 = r.per_label.iter().map(|m| m.support).sum();
    assert_eq!(support, r.total);
    let sum: u64 = r.confusion_matrix.matrix.iter().flatten().sum();
    assert_eq!(sum, r.total);
    assert_eq!(r.confusion_matrix.matrix.len(), resp.labels.len());
    for t in &r.thresholds {
        assert!(unit(t.precision) && unit(t.recall) && unit(t.f1) && unit(t.coverage));
        assert!(t.recall <= t.coverage);
    }
    assert!(
        r.thresholds
            .windows(2)
            .all(|w| w[0].threshold < w[1].threshold)
    );
    let c = &r.server_comparison;
    match c.consistent {
        Some(consistent) => assert_eq!(consistent, c.mismatches.is_empty()),
        None => assert!(c.mismatches.is_empty() && c.not_reported.len() == 3),
    }
}

/// Label ids drawn from a small pool so that duplicates and unknown ids both happen.
fn any_id() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-e]",
        1 => ".{0,80}",
    ]
}

fn any_score() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => 0.0..=1.0f64,
        1 => any::<f64>(),
        1 => Just(0.5),
    ]
}

fn any_sweep_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => 0.0..=1.0f64,
        1 => any::<f64>(),
        1 => 0.0..1e-5f64,
    ]
}

proptest! {
    #[test]
    fn arbitrary_input_never_panics(
        ids in prop::collection::vec(any_id(), 0..6),
        examples in prop::collection::vec((any_id(), any_id(), any_score()), 0..40),
        drop_scores in any::<bool>(),
        extra_score in prop::option::of(any_score()),
        precision in prop::option::of(any::<f64>()),
        recall in prop::option::of(any::<f64>()),
        matrix in prop::option::of(prop::collection::vec(prop::collection::vec(0u64..5, 0..6), 0..6)),
        sweep in (any_sweep_value(), any_sweep_value(), any_sweep_value()),
        min_precision in prop::option::of(any_sweep_value()),
    ) {
        let mut scores: Vec<f64> = if drop_scores {
            vec![]
        } else {
            examples.iter().map(|e| e.2).collect()
        };
        scores.extend(extra_score);
        let resp = EvaluationResponse {
            labels: ids.iter().map(|id| EvaluationLabel { id: id.clone(), name: String::new() }).collect(),
            actuals: examples.iter().map(|e| e.0.clone()).collect(),
            predictions: examples.iter().map(|e| e.1.clone()).collect(),
            scores,
            precision,
            recall,
            confusion_matrix: matrix,
            training_duration_seconds: 0.0,
        };
        let opts = EvaluationOptions {
            sweep: ThresholdSweep { start: sweep.0, end: sweep.1, step: sweep.2 },
            min_precision,
        };
        if let Ok(r) = analyze(&resp, &opts) {
            check_invariants(&resp, &r);
        }
    }

    #[test]
    fn valid_input_is_analysed(
        n_labels in 1usize..8,
        examples in prop::collection::vec((0usize..8, 0usize..8, 0.0..=1.0f64), 1..200),
        with_scores in any::<bool>(),
        min_precision in prop::option::of(0.0..=1.0f64),
    ) {
        let ids: Vec<String> = (0..n_labels).map(|i| format!("label-{i}")).collect();
        let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let actuals: Vec<&str> = examples.iter().map(|e| id_refs[e.0 % n_labels]).collect();
        let predictions: Vec<&str> = examples.iter().map(|e| id_refs[e.1 % n_labels]).collect();
        let scores: Vec<f64> = if with_scores { examples.iter().map(|e| e.2).collect() } else { vec![] };
        let resp = eval(&id_refs, &actuals, &predictions, &scores);
        let opts = EvaluationOptions { min_precision, ..EvaluationOptions::default() };
        let r = analyze(&resp, &opts);
        prop_assert!(r.is_ok(), "{r:?}");
        let r = r.unwrap();
        check_invariants(&resp, &r);
        prop_assert_eq!(r.server_comparison.consistent, Some(true));
        prop_assert_eq!(r.thresholds.len(), 13);
        match (min_precision, r.recommendation) {
            (None, rec) => {
                let rec = rec.expect("maxF1 always recommends");
                prop_assert_eq!(rec.objective, Objective::MaxF1);
                prop_assert!(r.thresholds.iter().all(|t| t.f1 <= rec.f1));
            }
            (Some(p), Some(rec)) => {
                prop_assert_eq!(rec.objective, Objective::MinPrecision);
                prop_assert!(rec.precision >= p);
                prop_assert!(r.thresholds.iter().filter(|t| t.precision >= p).all(|t| t.coverage <= rec.coverage));
            }
            (Some(p), None) => {
                prop_assert!(r.thresholds.iter().all(|t| t.precision < p));
            }
        }
        if !with_scores {
            prop_assert!(r.thresholds.iter().all(|t| t.coverage == 1.0));
        }
    }
}
