//! The simulator's real (small) training: a deterministic stratified split, a multinomial naive
//! Bayes classifier over lowercased word unigrams and bigrams, and its evaluation on the
//! validation split.
//!
//! The summary metrics are computed here independently of [`crate::evaluation`], so the
//! operator's recomputation of them is checked against a second implementation rather than
//! against itself.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::cxone::model::{EvaluationLabel, EvaluationResponse, LabelDef, Utterance};

/// Laplace smoothing.
const ALPHA: f64 = 1.0;

/// Indices of the training and of the validation utterances, each in payload order.
///
/// Stratified and deterministic: within each label, utterances are ordered by a hash of their
/// text and the first `round(n × fraction)` (clamped to `[1, n − 1]` when `n ≥ 2`, 0 when
/// `n = 1`) go to validation. The same payload always splits the same way, whatever its order.
pub(crate) fn split(utterances: &[Utterance], fraction: f64) -> (Vec<usize>, Vec<usize>) {
    let mut by_label: BTreeMap<&str, Vec<(u64, usize)>> = BTreeMap::new();
    for (i, u) in utterances.iter().enumerate() {
        by_label
            .entry(u.label.as_str())
            .or_default()
            .push((text_hash(&u.text), i));
    }
    let mut train = Vec::with_capacity(utterances.len());
    let mut validation = Vec::new();
    for mut group in by_label.into_values() {
        group.sort_unstable();
        let n = group.len();
        let held_out = if n >= 2 {
            // A non-finite or negative fraction cannot reach here (validation rejects it), but
            // the clamp keeps the split well-defined regardless.
            ((n as f64 * fraction).round() as usize).clamp(1, n - 1)
        } else {
            0
        };
        validation.extend(group[..held_out].iter().map(|&(_, i)| i));
        train.extend(group[held_out..].iter().map(|&(_, i)| i));
    }
    train.sort_unstable();
    validation.sort_unstable();
    (train, validation)
}

fn text_hash(text: &str) -> u64 {
    let digest = Sha256::digest(text.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Lowercased runs of letters and digits, then the bigrams of adjacent words.
fn tokenize(text: &str) -> Vec<String> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let bigrams: Vec<String> = words
        .windows(2)
        .map(|w| format!("{} {}", w[0], w[1]))
        .collect();
    let mut all = words;
    all.extend(bigrams);
    all
}

/// A fitted multinomial naive Bayes model.
#[derive(Debug)]
pub(crate) struct NaiveBayes {
    labels: Vec<String>,
    /// Training examples per label.
    class_counts: Vec<u64>,
    /// Feature occurrences per label.
    feature_totals: Vec<u64>,
    /// Feature → (label index, occurrences), sparse.
    features: HashMap<String, Vec<(usize, u64)>>,
}

impl NaiveBayes {
    /// Fits on `(text, label index)` pairs; `labels` fixes the label order.
    fn fit<'a>(labels: &[LabelDef], examples: impl IntoIterator<Item = (&'a str, usize)>) -> Self {
        let k = labels.len();
        let mut class_counts = vec![0u64; k];
        let mut feature_totals = vec![0u64; k];
        let mut features: HashMap<String, Vec<(usize, u64)>> = HashMap::new();
        for (text, label) in examples {
            class_counts[label] += 1;
            for feature in tokenize(text) {
                feature_totals[label] += 1;
                let counts = features.entry(feature).or_default();
                match counts.iter_mut().find(|(l, _)| *l == label) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((label, 1)),
                }
            }
        }
        Self {
            labels: labels.iter().map(|l| l.id.clone()).collect(),
            class_counts,
            feature_totals,
            features,
        }
    }

    fn class_log_prior(&self) -> Vec<f64> {
        let total: u64 = self.class_counts.iter().sum();
        self.class_counts
            .iter()
            .map(|&n| {
                if total == 0 {
                    0.0
                } else {
                    (n as f64 / total as f64).ln()
                }
            })
            .collect()
    }

    /// The most probable label index (ties: the first label) and its posterior probability.
    fn predict(&self, text: &str, log_prior: &[f64]) -> (usize, f64) {
        let vocabulary = self.features.len() as f64;
        let log_denominator: Vec<f64> = self
            .feature_totals
            .iter()
            .map(|&t| (t as f64 + ALPHA * vocabulary).ln())
            .collect();
        let mut joint = log_prior.to_vec();
        for feature in tokenize(text) {
            // Features never seen in training carry no evidence (as in scikit-learn).
            let Some(counts) = self.features.get(&feature) else {
                continue;
            };
            for (c, score) in joint.iter_mut().enumerate() {
                *score += ALPHA.ln() - log_denominator[c];
            }
            for &(c, n) in counts {
                joint[c] += (n as f64 + ALPHA).ln() - ALPHA.ln();
            }
        }
        let mut best = 0;
        for (c, &score) in joint.iter().enumerate() {
            if score > joint[best] {
                best = c;
            }
        }
        let top = joint[best];
        if !top.is_finite() {
            return (best, 0.0);
        }
        let normaliser: f64 = joint.iter().map(|&s| (s - top).exp()).sum();
        (best, (1.0 / normaliser).clamp(0.0, 1.0))
    }

    /// The model parameters as served by the model-weights artifact.
    pub(crate) fn to_json(&self) -> Value {
        let features: BTreeMap<&str, BTreeMap<&str, u64>> = self
            .features
            .iter()
            .map(|(feature, counts)| {
                let by_label = counts
                    .iter()
                    .map(|&(c, n)| (self.labels[c].as_str(), n))
                    .collect();
                (feature.as_str(), by_label)
            })
            .collect();
        json!({
            "format": "cxone-simulator/multinomial-naive-bayes/v1",
            "features": "lowercased word unigrams and bigrams",
            "alpha": ALPHA,
            "labels": self.labels,
            "classLogPrior": self.class_log_prior(),
            "classExampleCounts": self.class_counts,
            "featureTotals": self.feature_totals,
            "vocabularySize": self.features.len(),
            "featureCounts": features,
        })
    }
}

/// A trained model and its evaluation on the validation split.
#[derive(Debug)]
pub(crate) struct Training {
    pub(crate) model: NaiveBayes,
    pub(crate) evaluation: EvaluationResponse,
    pub(crate) training_examples: usize,
    pub(crate) validation_examples: usize,
    /// About how much memory the model and the evaluation take (see [`approx_bytes`]).
    pub(crate) approx_bytes: usize,
}

/// About how much memory a heap allocation of `n` bytes takes: the allocator's header, rounding
/// to 16 bytes, and its smallest chunk of 32 bytes.
fn allocation(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        ((n + 8).div_ceil(16) * 16).max(32)
    }
}

/// About how much memory a string takes: the `String` and its buffer.
fn string_bytes(s: &str) -> usize {
    std::mem::size_of::<String>() + allocation(s.len())
}

/// About how much memory a trained model and its evaluation take: every string, vector and
/// hash map slot they hold. Used to keep the jobs the simulator remembers within a budget.
pub(crate) fn approx_bytes(model: &NaiveBayes, evaluation: &EvaluationResponse) -> usize {
    // A hash map slot holds key and value inline plus a control byte; there are more slots than
    // entries.
    let slot = std::mem::size_of::<String>() + std::mem::size_of::<Vec<(usize, u64)>>() + 1;
    let table = allocation(model.features.capacity() * 8 / 7 * slot);
    let features: usize = model
        .features
        .iter()
        .map(|(feature, counts)| {
            allocation(feature.capacity())
                + allocation(counts.capacity() * std::mem::size_of::<(usize, u64)>())
        })
        .sum();
    let labels: usize = model.labels.iter().map(|l| string_bytes(l)).sum::<usize>()
        + evaluation
            .labels
            .iter()
            .map(|l| string_bytes(&l.id) + string_bytes(&l.name))
            .sum::<usize>();
    let examples: usize = evaluation
        .actuals
        .iter()
        .chain(&evaluation.predictions)
        .map(|s| string_bytes(s))
        .sum::<usize>()
        + allocation(evaluation.scores.len() * std::mem::size_of::<f64>());
    let k = evaluation.labels.len();
    let matrix = k * (allocation(k * std::mem::size_of::<u64>()) + std::mem::size_of::<Vec<u64>>());
    table + features + labels + examples + matrix + 4 * model.labels.len() * 8
}

/// Splits, trains and evaluates. `training_seconds` is reported as `trainingDurationSeconds`.
///
/// Utterances whose label is not in `labels` are ignored (validation rejects them beforehand).
pub(crate) fn train(
    labels: &[LabelDef],
    utterances: &[Utterance],
    validation_split: f64,
    training_seconds: f64,
) -> Training {
    let index: HashMap<&str, usize> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.id.as_str(), i))
        .collect();
    let labelled = |i: &usize| {
        let u = &utterances[*i];
        index.get(u.label.as_str()).map(|&l| (u.text.as_str(), l))
    };
    let (train_idx, validation_idx) = split(utterances, validation_split);
    let model = NaiveBayes::fit(labels, train_idx.iter().filter_map(labelled));

    let log_prior = model.class_log_prior();
    let k = labels.len();
    let mut actual = Vec::with_capacity(validation_idx.len());
    let mut predicted = Vec::with_capacity(validation_idx.len());
    let mut scores = Vec::with_capacity(validation_idx.len());
    for (text, label) in validation_idx.iter().filter_map(labelled) {
        let (p, score) = model.predict(text, &log_prior);
        actual.push(label);
        predicted.push(p);
        scores.push(score);
    }
    let mut confusion = vec![vec![0u64; k]; k];
    for (&a, &p) in actual.iter().zip(&predicted) {
        confusion[a][p] += 1;
    }
    let (precision, recall) = macro_precision_recall(&confusion);
    let ids = |v: &[usize]| v.iter().map(|&i| labels[i].id.clone()).collect();
    let evaluation = EvaluationResponse {
        labels: labels
            .iter()
            .map(|l| EvaluationLabel {
                id: l.id.clone(),
                name: l.name.clone(),
            })
            .collect(),
        actuals: ids(&actual),
        predictions: ids(&predicted),
        scores,
        precision: Some(precision),
        recall: Some(recall),
        confusion_matrix: Some(confusion),
        training_duration_seconds: training_seconds,
    };
    Training {
        approx_bytes: approx_bytes(&model, &evaluation),
        model,
        training_examples: train_idx.len(),
        validation_examples: evaluation.actuals.len(),
        evaluation,
    }
}

/// Macro precision and recall over the labels that occur as actual or predicted, with 0 for a
/// label never predicted (precision) — scikit-learn's `average="macro"`, `zero_division=0`.
fn macro_precision_recall(confusion: &[Vec<u64>]) -> (f64, f64) {
    let k = confusion.len();
    let (mut precision, mut recall, mut present) = (0.0, 0.0, 0usize);
    for c in 0..k {
        let tp = confusion[c][c];
        let support: u64 = confusion[c].iter().sum();
        let predicted: u64 = confusion.iter().map(|row| row[c]).sum();
        if support == 0 && predicted == 0 {
            continue;
        }
        present += 1;
        if predicted > 0 {
            precision += tp as f64 / predicted as f64;
        }
        if support > 0 {
            recall += tp as f64 / support as f64;
        }
    }
    if present == 0 {
        (0.0, 0.0)
    } else {
        (precision / present as f64, recall / present as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(text: &str, label: &str) -> Utterance {
        Utterance {
            text: text.into(),
            label: label.into(),
            language: Some("en".into()),
        }
    }

    fn label(id: &str) -> LabelDef {
        LabelDef {
            id: id.into(),
            name: id.to_uppercase(),
            description: None,
        }
    }

    #[test]
    fn split_is_stratified_clamped_and_order_independent() {
        let mut data: Vec<Utterance> = (0..10).map(|i| u(&format!("a {i}"), "a")).collect();
        data.extend((0..3).map(|i| u(&format!("b {i}"), "b")));
        data.push(u("c only", "c"));
        let (train, validation) = split(&data, 0.2);
        let count = |idx: &[usize], l: &str| idx.iter().filter(|&&i| data[i].label == l).count();
        assert_eq!((count(&validation, "a"), count(&train, "a")), (2, 8));
        assert_eq!((count(&validation, "b"), count(&train, "b")), (1, 2)); // round(0.6) = 1
        assert_eq!((count(&validation, "c"), count(&train, "c")), (0, 1));
        // Shuffling the payload selects the same texts.
        let mut reversed = data.clone();
        reversed.reverse();
        let (_, v2) = split(&reversed, 0.2);
        let mut a: Vec<&str> = validation.iter().map(|&i| data[i].text.as_str()).collect();
        let mut b: Vec<&str> = v2.iter().map(|&i| reversed[i].text.as_str()).collect();
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b);
        // A huge fraction still leaves one training example per label.
        let (train, _) = split(&data, 0.99);
        assert_eq!(count(&train, "a"), 1);
    }

    #[test]
    fn the_guide_example_evaluates_three_examples() {
        let labels = crate::testkit::guide_labels();
        let data = crate::testkit::guide_utterances();
        let t = train(&labels, &data, 0.2, 1.5);
        let e = &t.evaluation;
        assert_eq!((t.training_examples, t.validation_examples), (3, 3));
        assert_eq!(e.actuals.len(), 3);
        assert_eq!(e.predictions.len(), 3);
        assert_eq!(e.scores.len(), 3);
        assert!(e.scores.iter().all(|s| (0.0..=1.0).contains(s)));
        let total: u64 = e.confusion_matrix.iter().flatten().flatten().sum();
        assert_eq!(total, 3);
        assert_eq!(e.training_duration_seconds, 1.5);
    }

    #[test]
    fn separable_data_is_learned() {
        let labels = [label("billing"), label("weather")];
        let mut data = Vec::new();
        for i in 0..20 {
            data.push(u(
                &format!("my invoice {i} shows a wrong charge"),
                "billing",
            ));
            data.push(u(
                &format!("will it rain {i} tomorrow in the city"),
                "weather",
            ));
        }
        let t = train(&labels, &data, 0.25, 0.0);
        assert_eq!(t.evaluation.actuals, t.evaluation.predictions);
        assert_eq!(t.evaluation.precision, Some(1.0));
        assert_eq!(t.evaluation.recall, Some(1.0));
        assert!(t.evaluation.scores.iter().all(|&s| s > 0.9));
    }

    #[test]
    fn ties_go_to_the_first_label() {
        let labels = [label("x"), label("y")];
        let model = NaiveBayes::fit(&labels, [("alpha", 0), ("beta", 1)]);
        let (best, p) = model.predict("unseen words only", &model.class_log_prior());
        assert_eq!(best, 0);
        assert!((p - 0.5).abs() < 1e-12);
    }

    #[test]
    fn macro_metrics_follow_scikit_learn() {
        // y_true = [0,0,1,2], y_pred = [0,1,1,1]; label 2 never predicted.
        // sklearn: precision_macro = (1 + 1/3 + 0)/3, recall_macro = (0.5 + 1 + 0)/3.
        let cm = vec![vec![1, 1, 0], vec![0, 1, 0], vec![0, 1, 0]];
        let (p, r) = macro_precision_recall(&cm);
        assert!((p - (1.0 + 1.0 / 3.0) / 3.0).abs() < 1e-12);
        assert!((r - 0.5).abs() < 1e-12);
        // A label absent from both actuals and predictions does not count.
        let cm = vec![vec![2, 0, 0], vec![0, 0, 0], vec![0, 0, 1]];
        assert_eq!(macro_precision_recall(&cm), (1.0, 1.0));
        assert_eq!(macro_precision_recall(&[vec![0]]), (0.0, 0.0));
    }
}
