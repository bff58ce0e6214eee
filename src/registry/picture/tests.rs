use std::io::Write as _;
use std::process::{Command, Stdio};

use super::*;
use crate::cxone::model::{EvaluationLabel, EvaluationResponse};
use crate::evaluation::{
    AverageMetrics, ConfusionMatrix, EvaluationOptions, ServerComparison, analyze,
};

fn response(ids: &[&str], examples: &[(usize, usize, f64)]) -> EvaluationResponse {
    EvaluationResponse {
        labels: ids
            .iter()
            .map(|id| EvaluationLabel {
                id: id.to_string(),
                name: String::new(),
            })
            .collect(),
        actuals: examples.iter().map(|e| ids[e.0].to_string()).collect(),
        predictions: examples.iter().map(|e| ids[e.1].to_string()).collect(),
        scores: examples.iter().map(|e| e.2).collect(),
        precision: None,
        recall: None,
        confusion_matrix: None,
        training_duration_seconds: 0.0,
    }
}

/// A report over `ids` with a deterministic mix of right and wrong predictions.
fn report(ids: &[&str], opts: &EvaluationOptions) -> EvaluationReport {
    let n = ids.len();
    let examples: Vec<(usize, usize, f64)> = (0..n * 6)
        .map(|i| {
            let a = i % n;
            let p = if i % 4 == 0 { (a + 1) % n } else { a };
            (a, p, 0.2 + 0.8 * ((i * 37 % 100) as f64 / 100.0))
        })
        .collect();
    analyze(&response(ids, &examples), opts).expect("valid evaluation")
}

/// What a real XML parser (Python's ElementTree) makes of the document: it fails on a
/// document that is not well-formed.
fn parse(svg: &str) -> serde_json::Value {
    const SCRIPT: &str = r#"
import json, sys
import xml.etree.ElementTree as ET
root = ET.fromstring(sys.stdin.buffer.read())
ns = "{http://www.w3.org/2000/svg}"
tags = {}
refs = []
for el in root.iter():
    tag = el.tag.replace(ns, "")
    tags[tag] = tags.get(tag, 0) + 1
    for k, v in el.attrib.items():
        if "href" in k or "url(" in v or k.startswith("on"):
            refs.append(k)
print(json.dumps({
    "root": root.tag,
    "tags": tags,
    "refs": refs,
    "titles": [t.text or "" for t in root.iter(ns + "title")],
    "texts": ["".join(t.itertext()) for t in root.iter(ns + "text")],
    "polylines": [p.get("class") for p in root.iter(ns + "polyline")],
}))
"#;
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(svg.as_bytes())
        .expect("write the SVG");
    let out = child.wait_with_output().expect("python3 finishes");
    assert!(
        out.status.success(),
        "not well-formed XML: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("checker prints JSON")
}

fn texts(v: &serde_json::Value) -> Vec<String> {
    v["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

fn assert_self_contained(svg: &str, parsed: &serde_json::Value) {
    assert_eq!(parsed["root"], "{http://www.w3.org/2000/svg}svg");
    assert_eq!(parsed["refs"], serde_json::json!([]), "no references");
    assert!(parsed["tags"].get("script").is_none());
    assert!(parsed["tags"].get("foreignObject").is_none());
    assert!(!svg.contains("<!"), "no DOCTYPE, entities or CDATA");
}

#[test]
fn a_normal_report_draws_both_panels() {
    let ids = ["cancel_sub", "upgrade_plan", "reset_pwd"];
    let r = report(&ids, &EvaluationOptions::default());
    let svg = render(&r);
    let parsed = parse(&svg);
    assert_self_contained(&svg, &parsed);
    assert_eq!(
        parsed["polylines"],
        serde_json::json!(["precision", "recall", "coverage"])
    );
    // 9 cells plus the frame and the background.
    assert_eq!(parsed["tags"]["rect"], 11);
    let texts = texts(&parsed);
    for a in 0..3 {
        for p in 0..3 {
            let count = r.confusion_matrix.matrix[a][p].to_string();
            assert!(texts.contains(&count), "count {count} drawn");
        }
    }
    for id in ids {
        // Row and column label, each with the id as title and as text.
        let with_title = format!("{id}{id}");
        assert_eq!(texts.iter().filter(|t| **t == with_title).count(), 2);
    }
    let rec = r.recommendation.expect("maxF1 recommends");
    assert!(svg.contains(r#"class="recommended""#));
    assert!(texts.iter().any(|t| t.starts_with(&format!(
        "recommended threshold {:.3} (maxF1)",
        rec.threshold
    ))));
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("Evaluation on 18 examples"))
    );
    assert_eq!(render(&r), svg, "deterministic");
}

#[test]
fn hostile_label_ids_stay_text() {
    let long = "x".repeat(400);
    let ids = [
        "<script>alert(1)</script>",
        "a&b; &amp; ]]>",
        "\"quoted\" 'single'",
        "nul\u{0}bell\u{7}esc\u{1b}[31m\nnewline\u{85}",
        "\u{202E}evil\u{2066}",
        "not\u{FFFF}char\u{FFFE}",
        long.as_str(),
        "",
        "<title>x</title><a href=\"http://e\">",
    ];
    let r = report(&ids, &EvaluationOptions::default());
    let svg = render(&r);
    let parsed = parse(&svg);
    assert_self_contained(&svg, &parsed);
    assert!(!svg.contains("<script"));
    assert!(!svg.contains("<a "));
    let titles: Vec<&str> = parsed["titles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(titles.contains(&"<script>alert(1)</script>"));
    assert!(titles.contains(&"a&b; &amp; ]]>"));
    assert!(titles.contains(&"\"quoted\" 'single'"));
    assert!(titles.contains(&"nul\u{FFFD}bell\u{FFFD}esc\u{FFFD}[31m\u{FFFD}newline\u{FFFD}"));
    assert!(titles.contains(&"\u{FFFD}evil\u{FFFD}"));
    assert!(titles.contains(&"not\u{FFFD}char\u{FFFD}"));
    let clipped_title = format!("{}…", "x".repeat(MAX_TITLE_CHARS));
    assert!(titles.contains(&clipped_title.as_str()));
    let texts = texts(&parsed);
    let axis = format!("{clipped_title}{}…", "x".repeat(MAX_AXIS_LABEL_CHARS));
    assert_eq!(texts.iter().filter(|t| **t == axis).count(), 2);
    assert_eq!(texts.iter().filter(|t| **t == "(empty)").count(), 2);
}

#[test]
fn many_labels_are_capped_and_said_so() {
    let ids: Vec<String> = (0..73).map(|i| format!("intent-{i:03}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let r = report(&refs, &EvaluationOptions::default());
    let svg = render(&r);
    let parsed = parse(&svg);
    assert_self_contained(&svg, &parsed);
    assert_eq!(
        parsed["tags"]["rect"],
        MAX_DRAWN_LABELS * MAX_DRAWN_LABELS + 2
    );
    let texts = texts(&parsed);
    assert!(texts.iter().any(|t| {
        t.starts_with("Showing the first 50 of 73 labels; shares are of each whole row.")
    }));
    assert!(texts.iter().any(|t| t == "intent-049intent-049"));
    assert!(!texts.iter().any(|t| t.contains("intent-050")));
    assert!(svg.len() < 1024 * 1024, "{} bytes", svg.len());

    // The largest report analyze accepts stays bounded too.
    let ids: Vec<String> = (0..crate::evaluation::MAX_LABELS)
        .map(|i| format!("{i}-{}", "y".repeat(200)))
        .collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let opts = EvaluationOptions {
        sweep: crate::evaluation::ThresholdSweep {
            start: 0.0,
            end: 0.999,
            step: 0.001,
        },
        min_precision: None,
    };
    let svg = render(&report(&refs, &opts));
    parse(&svg);
    assert!(svg.len() < 2 * 1024 * 1024, "{} bytes", svg.len());
}

#[test]
fn no_recommendation_is_said() {
    let ids = ["a", "b", "c"];
    let opts = EvaluationOptions {
        min_precision: Some(1.0),
        ..EvaluationOptions::default()
    };
    let mut r = report(&ids, &opts);
    // Whether a minimum precision of 1 is reachable depends on the scores; the picture only
    // cares that there is no recommendation.
    r.recommendation = None;
    let svg = render(&r);
    let parsed = parse(&svg);
    assert!(!svg.contains(r#"class="recommended""#));
    assert!(texts(&parsed).contains(&"No recommended threshold.".to_string()));
}

fn empty_report(labels: Vec<String>, matrix: Vec<Vec<u64>>) -> EvaluationReport {
    let zero = AverageMetrics {
        precision: 0.0,
        recall: 0.0,
        f1: 0.0,
    };
    EvaluationReport {
        total: 0,
        accuracy: 0.0,
        macro_average: zero,
        weighted_average: zero,
        per_label: vec![],
        confusion_matrix: ConfusionMatrix { labels, matrix },
        thresholds: vec![],
        recommendation: None,
        server_comparison: ServerComparison {
            consistent: None,
            mismatches: vec![],
            not_reported: vec![],
        },
    }
}

#[test]
fn empty_and_malformed_reports_do_not_panic() {
    // No labels, no examples, no sweep.
    let svg = render(&empty_report(vec![], vec![]));
    let t = texts(&parse(&svg));
    assert!(t.contains(&"No labels: nothing to draw.".to_string()));
    assert!(t.contains(&"No thresholds in the sweep.".to_string()));
    assert!(t.contains(&"No recommended threshold.".to_string()));

    // Labels but zero examples: every share is 0.
    let svg = render(&empty_report(
        vec!["a".into(), "b".into()],
        vec![vec![0, 0], vec![0, 0]],
    ));
    parse(&svg);
    assert!(svg.contains(&heat(0.0)));

    // A ragged matrix, huge counts, non-finite numbers and thresholds out of range.
    let mut r = empty_report(
        vec!["a".into(), "b".into(), "c".into()],
        vec![vec![u64::MAX, u64::MAX], vec![]],
    );
    r.accuracy = f64::NAN;
    r.macro_average.f1 = f64::INFINITY;
    let point = |threshold: f64, v: f64| ThresholdMetrics {
        threshold,
        precision: v,
        recall: v,
        f1: v,
        coverage: v,
    };
    r.thresholds = vec![
        point(f64::NAN, 0.5),
        point(-3.0, 2.0),
        point(0.5, f64::NAN),
        point(7.0, -1.0),
    ];
    r.recommendation = Some(crate::evaluation::Recommendation {
        threshold: f64::NAN,
        f1: 0.0,
        precision: 0.0,
        coverage: 0.0,
        objective: crate::evaluation::Objective::MaxF1,
    });
    let svg = render(&r);
    let parsed = parse(&svg);
    assert!(!svg.contains("NaN") && !svg.contains("inf"));
    assert!(texts(&parsed).iter().any(|t| t.contains("accuracy n/a")));

    // One threshold only: a dot per curve, a tenth-wide axis.
    let mut r = empty_report(vec!["a".into()], vec![vec![3]]);
    r.thresholds = vec![point(1.0, 0.5)];
    let svg = render(&r);
    let parsed = parse(&svg);
    assert_eq!(parsed["tags"]["circle"], 3);
    assert!(texts(&parsed).contains(&"0.90".to_string()));
}

#[test]
fn escape_covers_markup_and_forbidden_characters() {
    assert_eq!(
        escape("<a href='x'>&\"</a>"),
        "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
    );
    assert_eq!(
        escape("a\u{0}\u{1f}\u{7f}\u{9f}\t\r\nb"),
        "a\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}b"
    );
    assert_eq!(escape("é中😀"), "é中😀");
}

#[test]
fn numbers_are_plain() {
    assert_eq!(num(3.0), "3");
    assert_eq!(num(-0.01), "0");
    assert_eq!(num(12.34), "12.3");
    assert_eq!(num(f64::NAN), "0");
    assert_eq!(num(1e300), "10000000");
    assert_eq!(x_domain(&[]), (0.0, 1.0));
    let p = |t| ThresholdMetrics {
        threshold: t,
        precision: 0.0,
        recall: 0.0,
        f1: 0.0,
        coverage: 0.0,
    };
    let (a, b) = (p(0.30000000000000004), p(0.9));
    assert_eq!(x_domain(&[&a, &b]), (0.3, 0.9));
    let c = p(0.55);
    assert_eq!(x_domain(&[&c]), (0.5, 0.6));
}
