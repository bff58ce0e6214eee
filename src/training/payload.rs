//! Building the submission payload and the dataset digest.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::dataset::Dataset;
use super::validation::Validated;
use crate::cxone::model::{Hyperparameters, TrainingData, TrainingJobRequest, Utterance};

/// SHA-256 of a dataset's canonical form, written `sha256:<hex>`.
///
/// The canonical form is independent of utterance order and of where the utterances came from
/// (inline or a ConfigMap), so reformatting a data source does not start a new training run, while
/// any change to a text, label or language does.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DatasetDigest(String);

impl DatasetDigest {
    pub fn of(dataset: &Dataset, language: &str) -> Self {
        let mut hasher = Sha256::new();
        let mut field = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        field(b"cxone-dataset/v1");
        field(language.as_bytes());
        let mut labels: Vec<_> = dataset.labels.iter().collect();
        labels.sort_by(|a, b| a.id.cmp(&b.id));
        field(&(labels.len() as u64).to_le_bytes());
        for l in labels {
            field(l.id.as_bytes());
            field(l.name.as_bytes());
            field(l.description.as_deref().unwrap_or("").as_bytes());
        }
        let utterances = canonical_utterances(&dataset.utterances, language);
        field(&(utterances.len() as u64).to_le_bytes());
        for u in &utterances {
            field(u.label.as_bytes());
            field(u.language.as_deref().unwrap_or(language).as_bytes());
            field(u.text.as_bytes());
        }
        Self(format!("sha256:{}", hex::encode(hasher.finalize())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DatasetDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Utterances in canonical order (label, text, language), each with its language made explicit.
fn canonical_utterances(utterances: &[Utterance], language: &str) -> Vec<Utterance> {
    let mut out: Vec<Utterance> = utterances
        .iter()
        .map(|u| Utterance {
            text: u.text.clone(),
            label: u.label.clone(),
            language: Some(u.language.clone().unwrap_or_else(|| language.to_string())),
        })
        .collect();
    out.sort_unstable_by(|a, b| {
        (a.label.as_str(), a.text.as_str(), a.language.as_deref()).cmp(&(
            b.label.as_str(),
            b.text.as_str(),
            b.language.as_deref(),
        ))
    });
    out
}

/// Builds the submission for a validated dataset (docs/cxone-api.md). Utterances are sent in canonical
/// order with an explicit language each, so the payload is a function of the digest's content.
pub fn build_payload(
    skill_id: &str,
    validated: &Validated,
    validation_split: f64,
    hyperparameters: &Hyperparameters,
) -> (TrainingJobRequest, DatasetDigest) {
    let dataset = validated.dataset();
    let language = validated.language();
    let digest = DatasetDigest::of(dataset, language);
    let request = TrainingJobRequest {
        skill_id: skill_id.to_string(),
        training_data: TrainingData {
            utterances: canonical_utterances(&dataset.utterances, language),
            validation_split,
            language: language.to_string(),
        },
        labels: dataset.labels.clone(),
        hyperparameters: hyperparameters.clone(),
    };
    (request, digest)
}
