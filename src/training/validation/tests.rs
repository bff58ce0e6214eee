use super::*;
use crate::cxone::model::{LabelDef, Utterance};
use crate::testkit::guide_dataset;
use crate::training::dataset::Dataset;

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
    assert!(msgs.iter().any(|m| {
        m.starts_with("utterances[2]: text is 1001 characters long, more than the limit of 1000")
    }));
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
