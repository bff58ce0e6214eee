//! Property tests ("fuzzing") of the parsers and the validation entry point: arbitrary input
//! never panics, every problem is reported as an error, and results are consistent. The files in
//! `tests/fuzz-seeds/` are kept inputs that once needed care; every one is run on each format.

use std::collections::BTreeMap;

use cxone_skill_operator::cxone::model::{LabelDef, Utterance};
use cxone_skill_operator::training::{
    Check, DataFormat, Dataset, DatasetDigest, Origin, ValidationRules, parse_utterances, validate,
};
use proptest::prelude::*;

const FORMATS: [DataFormat; 3] = [DataFormat::Jsonl, DataFormat::Csv, DataFormat::Json];

#[test]
fn kept_seeds_never_panic_and_errors_name_the_document() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fuzz-seeds");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).expect("seed dir") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("seed");
        for format in FORMATS {
            seen += 1;
            if let Err(e) = parse_utterances(format, "seed-doc", &bytes) {
                assert!(
                    e.to_string().starts_with("seed-doc: "),
                    "{}: {e}",
                    path.display()
                );
            }
        }
    }
    assert!(seen >= 27, "expected the kept seeds, found {seen} runs");
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let doc = "[".repeat(100_000);
    assert!(parse_utterances(DataFormat::Json, "deep", doc.as_bytes()).is_err());
    let line = format!("{}\n", "{\"text\":".repeat(50_000));
    assert!(parse_utterances(DataFormat::Jsonl, "deep", line.as_bytes()).is_err());
}

fn utterance_strategy() -> impl Strategy<Value = Utterance> {
    (
        prop_oneof![Just(String::new()), "[ a-zA-Z]{0,12}", any::<String>()],
        prop_oneof!["[a-d]", "[a-z_]{0,3}", any::<String>()],
        proptest::option::of(prop_oneof![
            Just("en".to_string()),
            Just("de".to_string()),
            "[a-zA-Z-]{0,5}"
        ]),
    )
        .prop_map(|(text, label, language)| Utterance {
            text,
            label,
            language,
        })
}

fn dataset_strategy() -> impl Strategy<Value = Dataset> {
    (
        proptest::option::of(prop_oneof![Just("en".to_string()), "[a-z]{0,3}"]),
        proptest::collection::vec(prop_oneof!["[a-d]", any::<String>()], 0..6),
        proptest::collection::vec(utterance_strategy(), 0..40),
    )
        .prop_map(|(language, label_ids, utterances)| {
            let labels = label_ids
                .into_iter()
                .map(|id| LabelDef {
                    name: id.clone(),
                    id,
                    description: None,
                })
                .collect();
            let mut d = Dataset::new(language, labels);
            d.extend_inline("utterances", utterances);
            d
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parsers_never_panic_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        for format in FORMATS {
            let _ = parse_utterances(format, "doc", &bytes);
        }
    }

    #[test]
    fn parsers_never_panic_on_text(text in "[\\[\\]{}\",:a-z0-9\\\\\n\r ]{0,400}") {
        for format in FORMATS {
            if let Ok(items) = parse_utterances(format, "doc", text.as_bytes()) {
                for (_, origin) in items {
                    let is_doc = match origin {
                        Origin::Line { source, .. } | Origin::Item { source, .. } => source == "doc",
                        _ => false,
                    };
                    prop_assert!(is_doc);
                }
            }
        }
    }

    #[test]
    fn jsonl_round_trips(utterances in proptest::collection::vec(utterance_strategy(), 0..30)) {
        let doc: String = utterances
            .iter()
            .map(|u| serde_json::to_string(u).unwrap() + "\n")
            .collect();
        let parsed = parse_utterances(DataFormat::Jsonl, "doc", doc.as_bytes()).unwrap();
        let back: Vec<Utterance> = parsed.into_iter().map(|(u, _)| u).collect();
        prop_assert_eq!(back, utterances);
    }

    #[test]
    fn validation_never_panics_and_checks_match_violations(d in dataset_strategy()) {
        let n = d.utterances.len();
        let report = match validate(d, &ValidationRules::default()) {
            Ok(v) => v.report().clone(),
            Err(r) => r.report,
        };
        prop_assert_eq!(report.utterance_count, n);
        let mut failed: BTreeMap<Check, usize> = BTreeMap::new();
        for v in &report.violations {
            *failed.entry(v.check()).or_default() += 1;
            prop_assert!(!v.to_string().is_empty());
        }
        for c in &report.checks {
            prop_assert_eq!(c.passed, !failed.contains_key(&c.check));
            prop_assert_eq!(c.violations, failed.get(&c.check).copied().unwrap_or(0));
        }
        prop_assert_eq!(report.is_valid(), report.violations.is_empty());
    }

    #[test]
    fn digest_ignores_order_but_not_content(d in dataset_strategy(), seed in any::<u64>()) {
        let mut shuffled = d.clone();
        let len = shuffled.utterances.len();
        if len > 1 {
            let k = (seed as usize) % len;
            shuffled.utterances.rotate_left(k);
            shuffled.origins.rotate_left(k);
        }
        prop_assert_eq!(DatasetDigest::of(&d, "en"), DatasetDigest::of(&shuffled, "en"));
        if let Some(first) = shuffled.utterances.first_mut() {
            first.text.push('!');
            prop_assert_ne!(DatasetDigest::of(&d, "en"), DatasetDigest::of(&shuffled, "en"));
        }
    }
}
