//! Benchmarks of the pure core on large inputs (release build): `make bench`.
//!
//! Prints, for each case, the median and the fastest of several runs. Inputs are generated
//! deterministically so runs are comparable.

use std::hint::black_box;
use std::time::{Duration, Instant};

use cxone_skill_operator::cxone::model::{
    EvaluationLabel, EvaluationResponse, Hyperparameters, LabelDef, Utterance,
};
use cxone_skill_operator::evaluation::{EvaluationOptions, analyze};
use cxone_skill_operator::training::{
    DataFormat, Dataset, DatasetDigest, ValidationRules, build_payload, parse_utterances, validate,
};

const UTTERANCES: usize = 100_000;
const LABELS: usize = 100;

/// xorshift64*: deterministic input generation without extra dependencies.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const WORDS: &[&str] = &[
    "account", "bill", "cancel", "change", "card", "charge", "plan", "refund", "password", "login",
    "upgrade", "order", "delivery", "address", "payment", "late", "help", "agent", "status",
    "number",
];

fn dataset() -> Dataset {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let labels: Vec<LabelDef> = (0..LABELS)
        .map(|i| LabelDef {
            id: format!("intent_{i:03}"),
            name: format!("Intent {i}"),
            description: Some(format!("Customer intent number {i}")),
        })
        .collect();
    let mut d = Dataset::new(Some("en".into()), labels);
    d.extend_inline(
        "utterances",
        (0..UTTERANCES).map(|i| {
            let words: Vec<&str> = (0..8).map(|_| WORDS[rng.below(WORDS.len())]).collect();
            Utterance {
                text: format!("{} {i}", words.join(" ")),
                label: format!("intent_{:03}", i % LABELS),
                language: Some("en".into()),
            }
        }),
    );
    d
}

fn evaluation() -> EvaluationResponse {
    let mut rng = Rng(42);
    let labels: Vec<EvaluationLabel> = (0..LABELS)
        .map(|i| EvaluationLabel {
            id: format!("intent_{i:03}"),
            name: format!("Intent {i}"),
        })
        .collect();
    let mut actuals = Vec::with_capacity(UTTERANCES);
    let mut predictions = Vec::with_capacity(UTTERANCES);
    let mut scores = Vec::with_capacity(UTTERANCES);
    for _ in 0..UTTERANCES {
        let a = rng.below(LABELS);
        let p = if rng.below(10) < 8 {
            a
        } else {
            rng.below(LABELS)
        };
        actuals.push(labels[a].id.clone());
        predictions.push(labels[p].id.clone());
        scores.push((rng.below(1000) as f64) / 1000.0);
    }
    EvaluationResponse {
        labels,
        actuals,
        predictions,
        scores,
        precision: Some(0.0),
        recall: Some(0.0),
        confusion_matrix: None,
        training_duration_seconds: 0.0,
    }
}

fn bench(name: &str, runs: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    f(); // warm-up
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    let (median, min) = (times[times.len() / 2], times[0]);
    println!(
        "{name:<58} median {:>9.2} ms   min {:>9.2} ms",
        median.as_secs_f64() * 1e3,
        min.as_secs_f64() * 1e3
    );
    (median, min)
}

fn main() {
    // `cargo bench` passes --bench. Under `cargo test` (no --bench) one quick run proves the
    // benchmark still works without spending CI time on measurements.
    let quick = !std::env::args().any(|a| a == "--bench");
    let runs = if quick { 1 } else { 7 };
    println!("cxone-skill-operator domain benchmarks ({UTTERANCES} utterances, {LABELS} labels)");
    let data = dataset();
    let rules = ValidationRules::default();

    bench(
        "validate 100k utterances (incl. dataset clone)",
        runs,
        || {
            black_box(validate(black_box(data.clone()), &rules).is_ok());
        },
    );
    let valid = validate(data.clone(), &rules).expect("benchmark data is valid");
    bench("build payload + digest, 100k utterances", runs, || {
        black_box(build_payload(
            "skill-bench",
            &valid,
            0.2,
            &Hyperparameters::default(),
        ));
    });
    bench("dataset digest only, 100k utterances", runs, || {
        black_box(DatasetDigest::of(valid.dataset(), "en"));
    });
    bench(
        "validate + build payload, 100k (the submit path)",
        runs,
        || {
            let v = validate(data.clone(), &rules).expect("valid");
            black_box(build_payload(
                "skill-bench",
                &v,
                0.2,
                &Hyperparameters::default(),
            ));
        },
    );

    let jsonl: String = data
        .utterances
        .iter()
        .map(|u| serde_json::to_string(u).expect("encodes") + "\n")
        .collect();
    let label = format!(
        "parse JSONL, 100k lines ({:.1} MB)",
        jsonl.len() as f64 / 1e6
    );
    bench(&label, runs, || {
        black_box(parse_utterances(DataFormat::Jsonl, "bench", jsonl.as_bytes()).expect("parses"));
    });
    let csv: String = data
        .utterances
        .iter()
        .map(|u| format!("{},{},en\n", u.text, u.label))
        .collect();
    bench("parse CSV, 100k lines", runs, || {
        black_box(parse_utterances(DataFormat::Csv, "bench", csv.as_bytes()).expect("parses"));
    });

    let eval = evaluation();
    let opts = EvaluationOptions::default();
    bench(
        "evaluate 100k predictions, 100 labels, 13 thresholds",
        runs,
        || {
            black_box(analyze(&eval, &opts).expect("analyses"));
        },
    );
}
