//! The rules a training set must pass before it is submitted.
//!
//! Every rule of the CXone guide (empty set, one language, class balance, defined labels) plus what
//! real data needs. All violations are collected, not only the first, and every check that ran is
//! recorded with its outcome so audit records can state what was verified.
//!
//! Here: the limits ([`ValidationRules`]), the checks and violations, the report, and the two
//! entry points ([`validate`] for a dataset, [`validate_request`] for a submission as the API
//! receives it); `rules` holds the dataset rules themselves. Pure; imports the dataset types,
//! the CXone wire types and `crate::text`.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::dataset::{Dataset, Origin};
use crate::cxone::model::TrainingJobRequest;

mod rules;

use rules::check_dataset;

/// Language assumed for utterances when neither they nor the dataset name one (as the guide does).
pub const DEFAULT_LANGUAGE: &str = "en";
/// Longest label id accepted.
pub const MAX_LABEL_ID_CHARS: usize = 128;
/// At most this many violations are spelled out by `Display` (all remain in `violations`).
const MAX_DISPLAYED: usize = 50;

/// Tunable limits of validation.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidationRules {
    /// Largest allowed ratio between the biggest and the smallest class (guide: 3.0).
    pub max_class_imbalance_ratio: f64,
    /// Each defined label needs at least this many utterances.
    pub min_utterances_per_label: usize,
    /// Longest utterance text, in characters.
    pub max_text_chars: usize,
    /// Most utterances in one training set.
    pub max_utterances: usize,
}

impl Default for ValidationRules {
    fn default() -> Self {
        Self {
            max_class_imbalance_ratio: 3.0,
            min_utterances_per_label: 2,
            max_text_chars: 1000,
            max_utterances: 250_000,
        }
    }
}

/// The checks validation runs; audit records list each with its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Check {
    /// The set has utterances and labels, and not more utterances than allowed.
    NonEmpty,
    /// Label ids are well-formed and unique.
    LabelsUnique,
    /// Every utterance's label is defined.
    LabelsDefined,
    /// Every defined label has enough utterances.
    LabelsCovered,
    /// No utterance is empty or longer than allowed.
    TextWellFormed,
    /// No text appears under two different labels.
    NoConflictingLabels,
    /// Every language is an ISO 639-1 code.
    LanguageCodes,
    /// All utterances share one language.
    SingleLanguage,
    /// Class balance is within the configured ratio.
    ClassBalance,
    /// Request parameters (split, hyperparameters, skill id) are in range.
    Parameters,
}

impl Check {
    pub const ALL: [Check; 10] = [
        Check::NonEmpty,
        Check::LabelsUnique,
        Check::LabelsDefined,
        Check::LabelsCovered,
        Check::TextWellFormed,
        Check::NoConflictingLabels,
        Check::LanguageCodes,
        Check::SingleLanguage,
        Check::ClassBalance,
        Check::Parameters,
    ];
}

/// One problem with a training set. The `Display` text says what is wrong, where, and how to fix it.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Violation {
    #[error("the training set has no utterances; add utterances inline or reference a ConfigMap")]
    EmptyDataset,
    #[error("no labels are defined; define each label (id, name) the utterances use")]
    NoLabels,
    #[error(
        "the training set has {count} utterances, more than the limit of {max}; split the skill or sample the data"
    )]
    TooManyUtterances { count: usize, max: usize },
    #[error(
        "labels[{index}]: label id {id:?} is {problem}; use 1-{MAX_LABEL_ID_CHARS} letters, digits, '_', '-', '.' or ':'"
    )]
    InvalidLabelId {
        index: usize,
        id: String,
        problem: &'static str,
    },
    #[error(
        "labels[{index}]: label id {id:?} is already defined at labels[{first}]; give each label a unique id"
    )]
    DuplicateLabelId {
        index: usize,
        id: String,
        first: usize,
    },
    #[error(
        "{first}: label {label:?} is not defined ({count} utterances use it); add it to labels or correct the utterances"
    )]
    UndefinedLabel {
        label: String,
        count: usize,
        first: Origin,
    },
    #[error("label {label:?} has {count} utterances, fewer than the minimum of {min}; add utterances for it{}", if *.count == 0 { " or remove the label" } else { "" })]
    TooFewUtterances {
        label: String,
        count: usize,
        min: usize,
    },
    #[error("{origin}: text is empty or only whitespace; give the utterance text or remove it")]
    EmptyText { origin: Origin },
    #[error("{origin}: text is {chars} characters long, more than the limit of {max}; shorten it")]
    TextTooLong {
        origin: Origin,
        chars: usize,
        max: usize,
    },
    #[error(
        "{origin}: text {text:?} is also labelled {other_label:?} at {other_origin}, here {label:?}; an utterance must have one label"
    )]
    ConflictingLabels {
        origin: Origin,
        text: String,
        label: String,
        other_origin: Origin,
        other_label: String,
    },
    #[error("{field}: {value:?} is not an ISO 639-1 language code; {}", match .suggestion { Some(s) => format!("use {s:?}"), None => "use a two-letter lowercase code such as \"en\"".to_string() })]
    InvalidLanguage {
        field: String,
        value: String,
        suggestion: Option<String>,
    },
    #[error("mixed languages: {}; CXone trains one language per skill, so split the data into one job per language", describe_languages(.languages))]
    MixedLanguages {
        /// (language, utterance count, first place it appears)
        languages: Vec<(String, usize, Origin)>,
    },
    #[error(
        "class imbalance {ratio:.2}:1 exceeds the limit of {limit}:1 (label {largest:?} has {largest_count} utterances, {smallest:?} has {smallest_count}); add utterances to the smaller classes or sample the larger ones"
    )]
    ClassImbalance {
        ratio: f64,
        limit: f64,
        largest: String,
        largest_count: usize,
        smallest: String,
        smallest_count: usize,
    },
    #[error("{field}: {message}")]
    InvalidParameter {
        field: &'static str,
        message: String,
    },
}

impl Violation {
    /// The check this violation fails.
    pub fn check(&self) -> Check {
        match self {
            Violation::EmptyDataset | Violation::NoLabels | Violation::TooManyUtterances { .. } => {
                Check::NonEmpty
            }
            Violation::InvalidLabelId { .. } | Violation::DuplicateLabelId { .. } => {
                Check::LabelsUnique
            }
            Violation::UndefinedLabel { .. } => Check::LabelsDefined,
            Violation::TooFewUtterances { .. } => Check::LabelsCovered,
            Violation::EmptyText { .. } | Violation::TextTooLong { .. } => Check::TextWellFormed,
            Violation::ConflictingLabels { .. } => Check::NoConflictingLabels,
            Violation::InvalidLanguage { .. } => Check::LanguageCodes,
            Violation::MixedLanguages { .. } => Check::SingleLanguage,
            Violation::ClassImbalance { .. } => Check::ClassBalance,
            Violation::InvalidParameter { .. } => Check::Parameters,
        }
    }
}

fn describe_languages(languages: &[(String, usize, Origin)]) -> String {
    languages
        .iter()
        .map(|(lang, count, first)| format!("{lang:?} ({count} utterances, first at {first})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Outcome of one check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckOutcome {
    pub check: Check,
    pub passed: bool,
    /// Number of violations of this check.
    pub violations: usize,
}

/// What validation found: the checks that ran, the violations, and the dataset's shape.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidationReport {
    pub checks: Vec<CheckOutcome>,
    pub violations: Vec<Violation>,
    /// Utterances per label id (including undefined labels).
    pub label_counts: BTreeMap<String, usize>,
    /// The one language of the set, when there is one.
    pub language: Option<String>,
    pub utterance_count: usize,
}

impl ValidationReport {
    pub fn is_valid(&self) -> bool {
        self.violations.is_empty()
    }

    /// Whether `check` ran and passed.
    pub fn passed(&self, check: Check) -> bool {
        self.checks.iter().any(|c| c.check == check && c.passed)
    }

    fn from_violations(
        ran: &[Check],
        violations: Vec<Violation>,
        label_counts: BTreeMap<String, usize>,
        language: Option<String>,
        utterance_count: usize,
    ) -> Self {
        let checks = ran
            .iter()
            .map(|&check| {
                let n = violations.iter().filter(|v| v.check() == check).count();
                CheckOutcome {
                    check,
                    passed: n == 0,
                    violations: n,
                }
            })
            .collect();
        Self {
            checks,
            violations,
            label_counts,
            language,
            utterance_count,
        }
    }
}

impl fmt::Display for ValidationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.violations.is_empty() {
            return write!(
                f,
                "valid: {} utterances, {} labels, language {}",
                self.utterance_count,
                self.label_counts.len(),
                self.language.as_deref().unwrap_or("-")
            );
        }
        write!(f, "{} validation errors:", self.violations.len())?;
        for v in self.violations.iter().take(MAX_DISPLAYED) {
            write!(f, "\n- {v}")?;
        }
        if self.violations.len() > MAX_DISPLAYED {
            write!(f, "\n- and {} more", self.violations.len() - MAX_DISPLAYED)?;
        }
        Ok(())
    }
}

/// A dataset that passed validation; only this can be turned into a payload.
#[derive(Clone, Debug)]
pub struct Validated {
    dataset: Dataset,
    language: String,
    report: ValidationReport,
}

impl Validated {
    pub fn dataset(&self) -> &Dataset {
        &self.dataset
    }
    /// The single language of the set.
    pub fn language(&self) -> &str {
        &self.language
    }
    pub fn report(&self) -> &ValidationReport {
        &self.report
    }
}

/// A dataset that failed validation.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{report}")]
pub struct Rejected {
    pub report: ValidationReport,
}

/// The checks a dataset gets: all of them but the request's parameters (the last of
/// [`Check::ALL`]).
const DATASET_CHECKS: &[Check] = Check::ALL.split_at(Check::ALL.len() - 1).0;

/// Validates a dataset against `rules`.
pub fn validate(dataset: Dataset, rules: &ValidationRules) -> Result<Validated, Rejected> {
    let (report, language) = check_dataset(&dataset, rules, DATASET_CHECKS, Vec::new());
    if report.is_valid() {
        Ok(Validated {
            dataset,
            language: language.unwrap_or_else(|| DEFAULT_LANGUAGE.to_string()),
            report,
        })
    } else {
        Err(Rejected { report })
    }
}

/// Validates a submission as the API receives it: the dataset rules plus the request's parameters.
pub fn validate_request(request: &TrainingJobRequest, rules: &ValidationRules) -> ValidationReport {
    let mut params = Vec::new();
    let split = request.training_data.validation_split;
    if !(split > 0.0 && split < 1.0) {
        params.push(Violation::InvalidParameter {
            field: "trainingData.validationSplit",
            message: format!("{split} is outside (0, 1); use a fraction such as 0.2"),
        });
    }
    if request.skill_id.trim().is_empty() {
        params.push(Violation::InvalidParameter {
            field: "skillId",
            message: "must not be empty".into(),
        });
    }
    let h = &request.hyperparameters;
    if h.max_epochs == 0 || h.max_epochs > 1000 {
        params.push(Violation::InvalidParameter {
            field: "hyperparameters.maxEpochs",
            message: format!("{} is outside 1-1000", h.max_epochs),
        });
    }
    if h.patience > h.max_epochs {
        params.push(Violation::InvalidParameter {
            field: "hyperparameters.patience",
            message: format!(
                "{} is larger than maxEpochs ({}); early stopping could never trigger",
                h.patience, h.max_epochs
            ),
        });
    }
    let mut dataset = Dataset::new(
        Some(request.training_data.language.clone()),
        request.labels.clone(),
    );
    dataset.extend_inline(
        "trainingData.utterances",
        request.training_data.utterances.iter().cloned(),
    );
    check_dataset(&dataset, rules, &Check::ALL, params).0
}

/// Kept for modules that still call it by its old name; new code uses
/// [`crate::text::truncate_chars`].
pub(crate) use crate::text::truncate_chars as truncate;

#[cfg(test)]
mod tests;
