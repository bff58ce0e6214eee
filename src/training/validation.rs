//! The rules a training set must pass before it is submitted.
//!
//! Every rule of the CXone guide (empty set, one language, class balance, defined labels) plus what
//! real data needs. All violations are collected, not only the first, and every check that ran is
//! recorded with its outcome so audit records can state what was verified.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use serde::Serialize;

use super::dataset::{Dataset, Origin};
use super::iso639;
use crate::cxone::model::{LabelDef, TrainingJobRequest, Utterance};
use crate::text::truncate_chars;

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

const DATASET_CHECKS: [Check; 9] = [
    Check::NonEmpty,
    Check::LabelsUnique,
    Check::LabelsDefined,
    Check::LabelsCovered,
    Check::TextWellFormed,
    Check::NoConflictingLabels,
    Check::LanguageCodes,
    Check::SingleLanguage,
    Check::ClassBalance,
];

/// Validates a dataset against `rules`.
pub fn validate(dataset: Dataset, rules: &ValidationRules) -> Result<Validated, Rejected> {
    let (report, language) = check_dataset(&dataset, rules, &DATASET_CHECKS, Vec::new());
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
    let mut ran = DATASET_CHECKS.to_vec();
    ran.push(Check::Parameters);
    check_dataset(&dataset, rules, &ran, params).0
}

fn check_dataset(
    dataset: &Dataset,
    rules: &ValidationRules,
    ran: &[Check],
    mut violations: Vec<Violation>,
) -> (ValidationReport, Option<String>) {
    let utterances = &dataset.utterances;

    // Non-empty and bounded.
    if utterances.is_empty() {
        violations.push(Violation::EmptyDataset);
    }
    if dataset.labels.is_empty() {
        violations.push(Violation::NoLabels);
    }
    if utterances.len() > rules.max_utterances {
        violations.push(Violation::TooManyUtterances {
            count: utterances.len(),
            max: rules.max_utterances,
        });
    }

    // Label ids.
    let mut label_index: HashMap<&str, usize> = HashMap::with_capacity(dataset.labels.len());
    for (index, LabelDef { id, .. }) in dataset.labels.iter().enumerate() {
        if let Some(problem) = label_id_problem(id) {
            violations.push(Violation::InvalidLabelId {
                index,
                id: truncate_chars(id, 80),
                problem,
            });
        }
        if let Some(&first) = label_index.get(id.as_str()) {
            violations.push(Violation::DuplicateLabelId {
                index,
                id: truncate_chars(id, 80),
                first,
            });
        } else {
            label_index.insert(id, index);
        }
    }

    // Declared language.
    let declared = dataset.language.as_deref();
    if let Some(lang) = declared
        && !iso639::is_iso639_1(lang)
    {
        violations.push(invalid_language("language".to_string(), lang));
    }

    // One pass over utterances: counts, text, languages, conflicts.
    let mut label_counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut undefined: BTreeMap<&str, (usize, usize)> = BTreeMap::new(); // label -> (count, first index)
    let mut languages: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut invalid_languages: HashSet<&str> = HashSet::new();
    let mut seen_text: HashMap<String, usize> = HashMap::with_capacity(utterances.len());
    let default_lang = declared.unwrap_or(DEFAULT_LANGUAGE);

    for (
        i,
        Utterance {
            text,
            label,
            language,
        },
    ) in utterances.iter().enumerate()
    {
        *label_counts.entry(label.clone()).or_default() += 1;
        if !label_index.contains_key(label.as_str()) {
            undefined.entry(label).or_insert((0, i)).0 += 1;
        }
        let trimmed = text.trim();
        if trimmed.is_empty() {
            violations.push(Violation::EmptyText {
                origin: dataset.origin(i),
            });
        } else {
            let chars = text.chars().count();
            if chars > rules.max_text_chars {
                violations.push(Violation::TextTooLong {
                    origin: dataset.origin(i),
                    chars,
                    max: rules.max_text_chars,
                });
            }
            let key = normalize_text(trimmed);
            match seen_text.get(&key) {
                Some(&j) if utterances[j].label != *label => {
                    violations.push(Violation::ConflictingLabels {
                        origin: dataset.origin(i),
                        text: truncate_chars(trimmed, 80),
                        label: label.clone(),
                        other_origin: dataset.origin(j),
                        other_label: utterances[j].label.clone(),
                    });
                }
                Some(_) => {}
                None => {
                    seen_text.insert(key, i);
                }
            }
        }
        let lang = language.as_deref().unwrap_or(default_lang);
        if iso639::is_iso639_1(lang) {
            languages.entry(lang).or_insert((0, i)).0 += 1;
        } else if language.is_some() && invalid_languages.insert(lang) {
            // Reported once per distinct value, at its first use.
            violations.push(invalid_language(
                format!("{} language", dataset.origin(i)),
                lang,
            ));
        }
    }

    for (label, (count, first)) in &undefined {
        violations.push(Violation::UndefinedLabel {
            label: truncate_chars(label, 80),
            count: *count,
            first: dataset.origin(*first),
        });
    }
    for (id, _) in label_index.iter().collect::<BTreeMap<_, _>>() {
        let count = label_counts.get(*id).copied().unwrap_or(0);
        if count < rules.min_utterances_per_label.max(1) {
            violations.push(Violation::TooFewUtterances {
                label: id.to_string(),
                count,
                min: rules.min_utterances_per_label.max(1),
            });
        }
    }

    // Language: the declared one counts as a language in the mix when utterances disagree with it.
    let mut language = None;
    let declared_unused =
        declared.is_some_and(|d| !languages.is_empty() && !languages.contains_key(d));
    if languages.len() > 1 || declared_unused {
        let mut listed: Vec<(String, usize, Origin)> = languages
            .iter()
            .map(|(l, (n, first))| (l.to_string(), *n, dataset.origin(*first)))
            .collect();
        listed.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        if let Some(declared) = declared.filter(|_| declared_unused) {
            listed.push((declared.to_string(), 0, Origin::Field("language")));
        }
        violations.push(Violation::MixedLanguages { languages: listed });
    } else if let Some((lang, _)) = languages.iter().next() {
        language = Some(lang.to_string());
    } else {
        language = declared.map(str::to_string);
    }

    // Class balance over the labels that have utterances (as the guide computes it).
    if let (Some((max_label, &max)), Some((min_label, &min))) = (
        label_counts.iter().max_by_key(|(_, n)| **n),
        label_counts.iter().min_by_key(|(_, n)| **n),
    ) {
        let ratio = max as f64 / min as f64;
        if ratio > rules.max_class_imbalance_ratio {
            violations.push(Violation::ClassImbalance {
                ratio,
                limit: rules.max_class_imbalance_ratio,
                largest: truncate_chars(max_label, 80),
                largest_count: max,
                smallest: truncate_chars(min_label, 80),
                smallest_count: min,
            });
        }
    }

    let report = ValidationReport::from_violations(
        ran,
        violations,
        label_counts,
        language.clone(),
        utterances.len(),
    );
    (report, language)
}

fn invalid_language(field: String, value: &str) -> Violation {
    Violation::InvalidLanguage {
        field,
        value: truncate_chars(value, 32),
        suggestion: iso639::suggest(value),
    }
}

fn label_id_problem(id: &str) -> Option<&'static str> {
    if id.trim().is_empty() {
        Some("empty")
    } else if id.chars().count() > MAX_LABEL_ID_CHARS {
        Some("too long")
    } else if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
    {
        Some("not made of allowed characters")
    } else {
        None
    }
}

/// Case- and whitespace-insensitive form used to find the same text under two labels.
fn normalize_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().flat_map(char::to_lowercase));
    }
    out
}

/// Kept for modules that still call it by its old name; new code uses
/// [`crate::text::truncate_chars`].
pub(crate) use crate::text::truncate_chars as truncate;

#[cfg(test)]
mod tests {
    use super::*;

    fn label(id: &str) -> LabelDef {
        LabelDef {
            id: id.into(),
            name: id.to_uppercase(),
            description: None,
        }
    }

    fn utt(text: &str, label: &str, language: Option<&str>) -> Utterance {
        Utterance {
            text: text.into(),
            label: label.into(),
            language: language.map(str::to_string),
        }
    }

    /// The guide's own six-utterance example.
    fn guide_dataset() -> Dataset {
        let mut d = Dataset::new(
            None,
            vec![
                label("cancel_sub"),
                label("upgrade_plan"),
                label("reset_pwd"),
            ],
        );
        d.extend_inline(
            "utterances",
            [
                utt("I want to cancel my subscription", "cancel_sub", Some("en")),
                utt("Please terminate my account", "cancel_sub", Some("en")),
                utt("How do I upgrade my plan", "upgrade_plan", Some("en")),
                utt("I need a higher tier", "upgrade_plan", Some("en")),
                utt("Reset my password", "reset_pwd", Some("en")),
                utt("I forgot my login details", "reset_pwd", Some("en")),
            ],
        );
        d
    }

    fn violations(d: Dataset, rules: &ValidationRules) -> Vec<Violation> {
        match validate(d, rules) {
            Ok(_) => Vec::new(),
            Err(r) => r.report.violations,
        }
    }

    #[test]
    fn guide_example_is_valid_and_every_check_ran() {
        let v = validate(guide_dataset(), &ValidationRules::default()).unwrap();
        assert_eq!(v.language(), "en");
        assert_eq!(v.report().utterance_count, 6);
        assert_eq!(v.report().checks.len(), DATASET_CHECKS.len());
        assert!(v.report().checks.iter().all(|c| c.passed));
        assert!(
            !v.report().passed(Check::Parameters),
            "parameters are not checked for datasets"
        );
    }

    #[test]
    fn empty_set_and_no_labels() {
        let v = violations(Dataset::default(), &ValidationRules::default());
        assert!(v.contains(&Violation::EmptyDataset));
        assert!(v.contains(&Violation::NoLabels));
        assert!(v[0].to_string().contains("add utterances"));
    }

    #[test]
    fn mixed_languages_name_each_language_and_where_it_first_appears() {
        let mut d = guide_dataset();
        d.utterances[3].language = Some("de".into());
        let v = violations(d, &ValidationRules::default());
        assert_eq!(v.len(), 1, "{v:?}");
        let msg = v[0].to_string();
        assert!(
            msg.contains("\"en\" (5 utterances, first at utterances[0])"),
            "{msg}"
        );
        assert!(
            msg.contains("\"de\" (1 utterances, first at utterances[3])"),
            "{msg}"
        );
        assert_eq!(v[0].check(), Check::SingleLanguage);
    }

    #[test]
    fn declared_language_disagreeing_with_every_utterance_is_mixed() {
        let mut d = guide_dataset();
        d.language = Some("fr".into());
        let v = violations(d, &ValidationRules::default());
        assert!(
            matches!(&v[0], Violation::MixedLanguages { languages } if languages.len() == 2),
            "{v:?}"
        );
    }

    #[test]
    fn utterances_inherit_the_declared_language() {
        let mut d = guide_dataset();
        d.language = Some("de".into());
        for u in &mut d.utterances {
            u.language = None;
        }
        let v = validate(d, &ValidationRules::default()).unwrap();
        assert_eq!(v.language(), "de");
    }

    #[test]
    fn class_imbalance_over_the_ratio() {
        let mut d = guide_dataset();
        for i in 0..5 {
            d.push(
                utt(&format!("cancel it now {i}"), "cancel_sub", None),
                Origin::Inline {
                    field: "utterances",
                    index: 6 + i,
                },
            );
        }
        // cancel_sub: 7, others 2 → 3.5:1
        let v = violations(d.clone(), &ValidationRules::default());
        assert_eq!(v.len(), 1, "{v:?}");
        let msg = v[0].to_string();
        assert!(msg.contains("3.50:1 exceeds the limit of 3:1"), "{msg}");
        assert!(msg.contains("\"cancel_sub\" has 7"), "{msg}");
        let relaxed = ValidationRules {
            max_class_imbalance_ratio: 4.0,
            ..Default::default()
        };
        assert!(validate(d, &relaxed).is_ok());
    }

    #[test]
    fn exactly_three_to_one_is_allowed() {
        let mut d = guide_dataset();
        for i in 0..4 {
            d.push(
                utt(&format!("stop billing me {i}"), "cancel_sub", None),
                Origin::Inline {
                    field: "utterances",
                    index: 6 + i,
                },
            );
        }
        assert!(validate(d, &ValidationRules::default()).is_ok());
    }

    #[test]
    fn undefined_labels_report_count_and_first_place() {
        let mut d = guide_dataset();
        d.utterances[1].label = "refund".into();
        d.utterances[2].label = "refund".into();
        let v = violations(d, &ValidationRules::default());
        let undefined: Vec<_> = v
            .iter()
            .filter(|x| x.check() == Check::LabelsDefined)
            .collect();
        assert_eq!(undefined.len(), 1);
        assert_eq!(
            undefined[0].to_string(),
            "utterances[1]: label \"refund\" is not defined (2 utterances use it); add it to labels or correct the utterances"
        );
        // cancel_sub and upgrade_plan now have one utterance each.
        assert_eq!(
            v.iter()
                .filter(|x| x.check() == Check::LabelsCovered)
                .count(),
            2
        );
    }

    #[test]
    fn duplicate_and_malformed_label_ids() {
        let mut d = guide_dataset();
        d.labels.push(label("reset_pwd"));
        d.labels.push(label("bad id!"));
        d.labels.push(label(""));
        let v = violations(d, &ValidationRules::default());
        assert!(
            v.iter().any(|x| x
                .to_string()
                .starts_with("labels[3]: label id \"reset_pwd\" is already defined at labels[2]")),
            "{v:?}"
        );
        assert!(v.iter().any(|x| matches!(
            x,
            Violation::InvalidLabelId {
                index: 4,
                problem: "not made of allowed characters",
                ..
            }
        )));
        assert!(v.iter().any(|x| matches!(
            x,
            Violation::InvalidLabelId {
                index: 5,
                problem: "empty",
                ..
            }
        )));
    }

    #[test]
    fn label_without_utterances() {
        let mut d = guide_dataset();
        d.labels.push(label("billing"));
        let v = violations(d, &ValidationRules::default());
        assert_eq!(v.len(), 1);
        assert_eq!(
            v[0].to_string(),
            "label \"billing\" has 0 utterances, fewer than the minimum of 2; add utterances for it or remove the label"
        );
    }

    #[test]
    fn empty_long_and_conflicting_texts() {
        let mut d = guide_dataset();
        d.utterances[0].text = "   ".into();
        d.utterances[2].text = "x".repeat(1001);
        d.utterances[4].text = "  i NEED a   higher tier ".into(); // same as utterances[3], other label
        let v = violations(d, &ValidationRules::default());
        let msgs: Vec<String> = v.iter().map(ToString::to_string).collect();
        assert!(msgs.contains(&"utterances[0]: text is empty or only whitespace; give the utterance text or remove it".to_string()), "{msgs:?}");
        assert!(msgs.iter().any(|m| m.starts_with(
            "utterances[2]: text is 1001 characters long, more than the limit of 1000"
        )));
        assert!(msgs.iter().any(|m| m.starts_with("utterances[4]: text \"i NEED a   higher tier\" is also labelled \"upgrade_plan\" at utterances[3], here \"reset_pwd\"")), "{msgs:?}");
    }

    #[test]
    fn invalid_language_codes_suggest_a_fix_once_per_value() {
        let mut d = guide_dataset();
        for u in &mut d.utterances {
            u.language = Some("en-US".into());
        }
        let v = violations(d, &ValidationRules::default());
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(
            v[0].to_string(),
            "utterances[0] language: \"en-US\" is not an ISO 639-1 language code; use \"en\""
        );
        let mut d = guide_dataset();
        d.language = Some("klingon".into());
        let v = violations(d, &ValidationRules::default());
        assert!(
            v[0].to_string().starts_with(
                "language: \"klingon\" is not an ISO 639-1 language code; use a two-letter"
            ),
            "{v:?}"
        );
    }

    #[test]
    fn all_violations_are_reported_together() {
        let mut d = guide_dataset();
        d.utterances[0].text = String::new();
        d.utterances[1].language = Some("fr".into());
        d.utterances[5].label = "ghost".into();
        d.labels.push(label("cancel_sub"));
        let r = validate(d, &ValidationRules::default()).unwrap_err().report;
        let failed: Vec<Check> = r
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.check)
            .collect();
        assert_eq!(
            failed,
            vec![
                Check::LabelsUnique,
                Check::LabelsDefined,
                Check::LabelsCovered,
                Check::TextWellFormed,
                Check::SingleLanguage
            ]
        );
        let text = r.to_string();
        assert!(text.starts_with(&format!("{} validation errors:", r.violations.len())));
    }

    #[test]
    fn too_many_utterances() {
        let rules = ValidationRules {
            max_utterances: 5,
            ..Default::default()
        };
        let v = violations(guide_dataset(), &rules);
        assert_eq!(v, vec![Violation::TooManyUtterances { count: 6, max: 5 }]);
    }

    #[test]
    fn request_parameters_are_checked() {
        let v = validate(guide_dataset(), &ValidationRules::default()).unwrap();
        let (mut req, _) = crate::training::build_payload(
            "skill-1",
            &v,
            0.2,
            &crate::cxone::model::Hyperparameters::default(),
        );
        assert!(validate_request(&req, &ValidationRules::default()).is_valid());
        req.training_data.validation_split = 1.0;
        req.hyperparameters.patience = 60;
        req.skill_id = " ".into();
        let r = validate_request(&req, &ValidationRules::default());
        assert_eq!(r.violations.len(), 3, "{r}");
        assert!(!r.passed(Check::Parameters));
        assert!(r.passed(Check::ClassBalance));
        assert!(
            r.to_string().contains("trainingData.utterances")
                || r.to_string().contains("validationSplit")
        );
    }

    #[test]
    fn display_caps_long_lists() {
        let mut d = guide_dataset();
        for i in 0..120 {
            d.push(
                utt("", "cancel_sub", None),
                Origin::Line {
                    source: "cm/x key a.csv".into(),
                    line: i + 1,
                },
            );
        }
        let r = validate(
            d,
            &ValidationRules {
                max_class_imbalance_ratio: 1000.0,
                ..Default::default()
            },
        )
        .unwrap_err()
        .report;
        assert_eq!(r.violations.len(), 120);
        let text = r.to_string();
        assert!(text.ends_with("- and 70 more"), "{text}");
        assert!(text.contains("cm/x key a.csv line 1: text is empty"));
    }
}
