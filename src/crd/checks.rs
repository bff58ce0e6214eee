//! How a spec becomes something to train: its data resolved from inline utterances and
//! ConfigMaps ([`DataSources`]), the derived rules, hyperparameters and evaluation options, and
//! every check run before a job trains ([`SkillTrainingJobSpec::check`]). Pure; imports the
//! training and evaluation domains and `crate::names`.

use std::collections::BTreeMap;

use super::{MAX_INLINE_UTTERANCES, SkillTrainingJobSpec};
use crate::cxone::model::{Hyperparameters, LabelDef, Utterance};
use crate::evaluation::{EvaluationOptions, ThresholdSweep};
use crate::training::{Dataset, LoadError, ValidationRules, parse_utterances};

/// Where `utterancesFrom` data comes from: ConfigMap data by (name, key).
pub trait DataSources {
    /// The value of `key` in ConfigMap `name`, or why it cannot be had.
    fn get(&self, config_map: &str, key: &str) -> Result<&str, String>;
}

/// ConfigMap data held in memory: name → key → value.
impl DataSources for BTreeMap<String, BTreeMap<String, String>> {
    fn get(&self, config_map: &str, key: &str) -> Result<&str, String> {
        let data = self
            .get(config_map)
            .ok_or_else(|| format!("ConfigMap {config_map:?} not found"))?;
        data.get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("ConfigMap {config_map:?} has no key {key:?}"))
    }
}

/// The outcome of [`SkillTrainingJobSpec::check`].
pub enum SpecCheck {
    Valid {
        validated: Box<crate::training::Validated>,
        digest: crate::training::DatasetDigest,
        summary: String,
    },
    Invalid {
        problems: Vec<String>,
    },
}

/// A data source could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SourceError {
    #[error("utterancesFrom[{index}]: {message}")]
    Missing { index: usize, message: String },
    #[error("utterancesFrom[{index}]: {error}")]
    Load { index: usize, error: LoadError },
}

impl SkillTrainingJobSpec {
    /// Resolves inline utterances and `utterancesFrom` into one dataset. Every source problem is
    /// reported; no partial dataset is returned.
    pub fn dataset(&self, sources: &impl DataSources) -> Result<Dataset, Vec<SourceError>> {
        let labels = self
            .labels
            .iter()
            .map(|l| LabelDef {
                id: l.id.clone(),
                name: l.name.clone(),
                description: l.description.clone(),
            })
            .collect();
        let mut dataset = Dataset::new(Some(self.language.clone()), labels);
        dataset.extend_inline(
            "spec.utterances",
            self.utterances.iter().map(|u| Utterance {
                text: u.text.clone(),
                label: u.label.clone(),
                language: u.language.clone(),
            }),
        );
        let mut errors = Vec::new();
        for (index, src) in self.utterances_from.iter().enumerate() {
            let r = &src.config_map_key_ref;
            match sources.get(&r.name, &r.key) {
                Err(message) => errors.push(SourceError::Missing { index, message }),
                Ok(text) => {
                    let name = format!("configmap/{} key {}", r.name, r.key);
                    match parse_utterances(src.format.into(), &name, text.as_bytes()) {
                        Ok(items) => dataset.extend(items),
                        Err(error) => errors.push(SourceError::Load { index, error }),
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(dataset)
        } else {
            Err(errors)
        }
    }

    pub fn validation_rules(&self) -> ValidationRules {
        let mut rules = ValidationRules::default();
        if let Some(v) = &self.validation {
            if let Some(r) = v.max_class_imbalance_ratio {
                rules.max_class_imbalance_ratio = r;
            }
            if let Some(m) = v.min_utterances_per_label {
                rules.min_utterances_per_label = m as usize;
            }
        }
        rules
    }

    pub fn hyperparameters(&self) -> Hyperparameters {
        let d = Hyperparameters::default();
        match &self.hyperparameters {
            None => d,
            Some(h) => Hyperparameters {
                max_epochs: h.max_epochs.unwrap_or(d.max_epochs),
                early_stopping: h.early_stopping.unwrap_or(d.early_stopping),
                patience: h.patience.unwrap_or(d.patience),
            },
        }
    }

    pub fn validation_split(&self) -> f64 {
        self.hyperparameters
            .as_ref()
            .and_then(|h| h.validation_split)
            .unwrap_or(0.2)
    }

    pub fn evaluation_options(&self) -> EvaluationOptions {
        let mut opts = EvaluationOptions::default();
        if let Some(e) = &self.evaluation {
            if let Some(s) = &e.threshold_sweep {
                opts.sweep = ThresholdSweep {
                    start: s.start,
                    end: s.end,
                    step: s.step,
                };
            }
            opts.min_precision = e.min_precision;
        }
        opts
    }

    /// Every field that names a Kubernetes object (the credentials Secret, the utterance
    /// ConfigMaps, the artifacts Secret) or a key in one, checked with the API server's rules
    /// ([`crate::names`]). The CRD's schema enforces the same patterns; this catches objects
    /// stored before it did, and manifests checked offline. One message per bad field, naming it.
    pub fn check_names(&self) -> Vec<String> {
        use crate::names::{check_data_key, check_object_name};
        let r = &self.connection.credentials_secret_ref;
        let path = "spec.connection.credentialsSecretRef";
        let mut results = vec![check_object_name(&format!("{path}.name"), &r.name)];
        if let Some(k) = &r.client_id_key {
            results.push(check_data_key(&format!("{path}.clientIdKey"), k));
        }
        if let Some(k) = &r.client_secret_key {
            results.push(check_data_key(&format!("{path}.clientSecretKey"), k));
        }
        for (i, src) in self.utterances_from.iter().enumerate() {
            let path = format!("spec.utterancesFrom[{i}].configMapKeyRef");
            let r = &src.config_map_key_ref;
            results.push(check_object_name(&format!("{path}.name"), &r.name));
            results.push(check_data_key(&format!("{path}.key"), &r.key));
        }
        if let Some(name) = self.artifacts.as_ref().and_then(|a| a.secret_name.as_ref()) {
            results.push(check_object_name("spec.artifacts.secretName", name));
        }
        results.into_iter().filter_map(Result::err).collect()
    }

    /// Everything checked before a job trains, offline (`validate`) and in the operator alike:
    /// the parameters and names, the data from `sources`, and the dataset rules. Valid: the
    /// validated dataset, its digest and a one-line summary.
    pub fn check(&self, sources: &impl DataSources) -> SpecCheck {
        let mut problems = self.check_parameters();
        match self.dataset(sources) {
            Err(errors) => problems.extend(errors.iter().map(ToString::to_string)),
            Ok(dataset) => match crate::training::validate(dataset, &self.validation_rules()) {
                Err(rejected) => {
                    problems.extend(rejected.report.violations.iter().map(ToString::to_string))
                }
                Ok(validated) if problems.is_empty() => {
                    let digest = crate::training::DatasetDigest::of(
                        validated.dataset(),
                        validated.language(),
                    );
                    let summary = format!(
                        "{} utterances, {} labels, language {}, digest {}",
                        validated.report().utterance_count,
                        validated.dataset().labels.len(),
                        validated.language(),
                        digest
                    );
                    return SpecCheck::Valid {
                        validated: Box::new(validated),
                        digest,
                        summary,
                    };
                }
                Ok(_) => {}
            },
        }
        SpecCheck::Invalid { problems }
    }

    /// Checks of the spec that the dataset rules do not cover (they are also schema patterns and
    /// CEL rules in the CRD, but `validate` runs offline and old API servers may skip CEL),
    /// [`Self::check_names`] included.
    pub fn check_parameters(&self) -> Vec<String> {
        let mut problems = self.check_names();
        let c = &self.connection;
        match (&c.region, &c.base_url) {
            (Some(_), Some(_)) => {
                problems.push("spec.connection: set either region or baseUrl, not both".to_string())
            }
            (None, None) => {
                problems.push("spec.connection: set region (e.g. us2-01) or baseUrl".to_string())
            }
            _ => {}
        }
        if self.utterances.len() > MAX_INLINE_UTTERANCES {
            problems.push(format!(
                "spec.utterances: {} inline utterances, more than {MAX_INLINE_UTTERANCES}; move them to a ConfigMap and use utterancesFrom",
                self.utterances.len()
            ));
        }
        let h = self.hyperparameters();
        if h.patience > h.max_epochs {
            problems.push(format!(
                "spec.hyperparameters.patience ({}) must not exceed maxEpochs ({})",
                h.patience, h.max_epochs
            ));
        }
        let split = self.validation_split();
        if !(0.05..=0.5).contains(&split) {
            problems.push(format!(
                "spec.hyperparameters.validationSplit {split} is outside 0.05-0.5"
            ));
        }
        let rules = self.validation_rules();
        if rules.max_class_imbalance_ratio.is_nan() || rules.max_class_imbalance_ratio < 1.0 {
            problems.push(format!(
                "spec.validation.maxClassImbalanceRatio {} must be at least 1",
                rules.max_class_imbalance_ratio
            ));
        }
        if self.evaluation.is_some()
            && let Err(e) = self.evaluation_options().sweep.points()
        {
            problems.push(format!("spec.evaluation.thresholdSweep: {e}"));
        }
        if let Some(p) = &self.polling
            && let (Some(i), Some(m)) = (p.initial_interval_seconds, p.max_interval_seconds)
            && i > m
        {
            problems.push(format!(
                "spec.polling.initialIntervalSeconds ({i}) must not exceed maxIntervalSeconds ({m})"
            ));
        }
        problems
    }
}
