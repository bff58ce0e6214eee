//! The dataset rules, one function per rule, run in a fixed order so the violations of a set
//! always come out in the same order: size, label ids, declared language, one pass over the
//! utterances (text, conflicts, language codes), undefined labels, label coverage, the single
//! language, class balance. Pure; imports the dataset types and the parent's report types.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{
    Check, DEFAULT_LANGUAGE, MAX_LABEL_ID_CHARS, ValidationReport, ValidationRules, Violation,
};
use crate::cxone::model::{LabelDef, Utterance};
use crate::text::truncate_chars;
use crate::training::dataset::{Dataset, Origin};
use crate::training::iso639;

/// Runs the dataset rules after the `violations` found so far; returns the report (listing the
/// checks in `ran`) and the set's one language, when it has one.
pub(super) fn check_dataset(
    dataset: &Dataset,
    rules: &ValidationRules,
    ran: &[Check],
    mut violations: Vec<Violation>,
) -> (ValidationReport, Option<String>) {
    check_size(dataset, rules, &mut violations);
    let label_index = check_label_ids(&dataset.labels, &mut violations);
    let declared = dataset.language.as_deref();
    check_declared_language(declared, &mut violations);
    let census = Census::take(dataset, rules, &label_index, &mut violations);
    check_labels_defined(dataset, &census.undefined, &mut violations);
    check_labels_covered(&label_index, &census.label_counts, rules, &mut violations);
    let language = single_language(dataset, declared, &census.languages, &mut violations);
    check_class_balance(&census.label_counts, rules, &mut violations);

    let report = ValidationReport::from_violations(
        ran,
        violations,
        census.label_counts,
        language.clone(),
        dataset.utterances.len(),
    );
    (report, language)
}

/// The set has utterances and labels, and not more utterances than allowed.
fn check_size(dataset: &Dataset, rules: &ValidationRules, violations: &mut Vec<Violation>) {
    let count = dataset.utterances.len();
    if count == 0 {
        violations.push(Violation::EmptyDataset);
    }
    if dataset.labels.is_empty() {
        violations.push(Violation::NoLabels);
    }
    if count > rules.max_utterances {
        violations.push(Violation::TooManyUtterances {
            count,
            max: rules.max_utterances,
        });
    }
}

/// Label ids are well-formed and unique; returns the position of each id's first definition.
fn check_label_ids<'a>(
    labels: &'a [LabelDef],
    violations: &mut Vec<Violation>,
) -> HashMap<&'a str, usize> {
    let mut label_index: HashMap<&str, usize> = HashMap::with_capacity(labels.len());
    for (index, LabelDef { id, .. }) in labels.iter().enumerate() {
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
    label_index
}

/// The dataset's declared language, when there is one, is an ISO 639-1 code.
fn check_declared_language(declared: Option<&str>, violations: &mut Vec<Violation>) {
    if let Some(lang) = declared
        && !iso639::is_iso639_1(lang)
    {
        violations.push(invalid_language("language".to_string(), lang));
    }
}

/// What one pass over the utterances counted; the per-utterance rules (text, conflicting labels,
/// language codes) report during the pass.
struct Census<'a> {
    /// Utterances per label id (including undefined labels).
    label_counts: BTreeMap<String, usize>,
    /// Undefined label -> (utterances using it, index of the first).
    undefined: BTreeMap<&'a str, (usize, usize)>,
    /// Valid language -> (utterances in it, index of the first).
    languages: BTreeMap<&'a str, (usize, usize)>,
}

impl<'a> Census<'a> {
    fn take(
        dataset: &'a Dataset,
        rules: &ValidationRules,
        label_index: &HashMap<&str, usize>,
        violations: &mut Vec<Violation>,
    ) -> Self {
        let utterances = &dataset.utterances;
        let mut census = Census {
            label_counts: BTreeMap::new(),
            undefined: BTreeMap::new(),
            languages: BTreeMap::new(),
        };
        let mut invalid_languages: HashSet<&str> = HashSet::new();
        let mut seen_text: HashMap<String, usize> = HashMap::with_capacity(utterances.len());
        let default_lang = dataset.language.as_deref().unwrap_or(DEFAULT_LANGUAGE);

        for (
            i,
            Utterance {
                label, language, ..
            },
        ) in utterances.iter().enumerate()
        {
            *census.label_counts.entry(label.clone()).or_default() += 1;
            if !label_index.contains_key(label.as_str()) {
                census.undefined.entry(label).or_insert((0, i)).0 += 1;
            }
            check_text(dataset, i, rules, &mut seen_text, violations);
            let lang = language.as_deref().unwrap_or(default_lang);
            if iso639::is_iso639_1(lang) {
                census.languages.entry(lang).or_insert((0, i)).0 += 1;
            } else if language.is_some() && invalid_languages.insert(lang) {
                // Reported once per distinct value, at its first use.
                violations.push(invalid_language(
                    format!("{} language", dataset.origin(i)),
                    lang,
                ));
            }
        }
        census
    }
}

/// Utterance `i`'s text is not empty, not too long, and not already seen under another label
/// (`seen_text` maps each normalised text to the first utterance that had it).
fn check_text(
    dataset: &Dataset,
    i: usize,
    rules: &ValidationRules,
    seen_text: &mut HashMap<String, usize>,
    violations: &mut Vec<Violation>,
) {
    let utterances = &dataset.utterances;
    let Utterance { text, label, .. } = &utterances[i];
    let trimmed = text.trim();
    if trimmed.is_empty() {
        violations.push(Violation::EmptyText {
            origin: dataset.origin(i),
        });
        return;
    }
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

/// Every label an utterance uses is defined: one violation per undefined label, with its count
/// and first use.
fn check_labels_defined(
    dataset: &Dataset,
    undefined: &BTreeMap<&str, (usize, usize)>,
    violations: &mut Vec<Violation>,
) {
    for (label, (count, first)) in undefined {
        violations.push(Violation::UndefinedLabel {
            label: truncate_chars(label, 80),
            count: *count,
            first: dataset.origin(*first),
        });
    }
}

/// Every defined label has at least the minimum number of utterances (at least one).
fn check_labels_covered(
    label_index: &HashMap<&str, usize>,
    label_counts: &BTreeMap<String, usize>,
    rules: &ValidationRules,
    violations: &mut Vec<Violation>,
) {
    let min = rules.min_utterances_per_label.max(1);
    for (id, _) in label_index.iter().collect::<BTreeMap<_, _>>() {
        let count = label_counts.get(*id).copied().unwrap_or(0);
        if count < min {
            violations.push(Violation::TooFewUtterances {
                label: id.to_string(),
                count,
                min,
            });
        }
    }
}

/// The set's one language; a mix is a violation. The declared language counts as a language in
/// the mix when utterances disagree with it.
fn single_language(
    dataset: &Dataset,
    declared: Option<&str>,
    languages: &BTreeMap<&str, (usize, usize)>,
    violations: &mut Vec<Violation>,
) -> Option<String> {
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
        None
    } else if let Some((lang, _)) = languages.iter().next() {
        Some(lang.to_string())
    } else {
        declared.map(str::to_string)
    }
}

/// Class balance over the labels that have utterances (as the guide computes it).
fn check_class_balance(
    label_counts: &BTreeMap<String, usize>,
    rules: &ValidationRules,
    violations: &mut Vec<Violation>,
) {
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
