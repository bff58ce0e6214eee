//! The model card (pure): a `README.md` that says what a registered model was trained on, how
//! it did, whether the promotion gate passed, and where it came from. It travels with the model:
//! a ModelPack doc layer in OCI registries, a file of the MLflow LoggedModel and the model
//! version's description, and a signed file when signing is on.
//!
//! Every text that comes from a user (skill, names, labels, reasons) is escaped, so a label
//! cannot inject markdown, HTML or table cells. Numbers are fixed to four decimals and every
//! input comes from stored state, so the card of a run is the same bytes whenever it is made.
//!
//! Imports: the audit record, the evaluation report, the gate and [`super::Provenance`].

use std::fmt::Write as _;

use super::Provenance;
use super::gate::GateOutcome;
use crate::audit::AuditRecord;
use crate::evaluation::EvaluationReport;

/// File name of the card inside the model.
pub const CARD_FILE: &str = "README.md";

/// One file of the model, as the card lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardFile {
    pub name: String,
    pub bytes: u64,
    /// Hex sha256.
    pub sha256: String,
}

/// Everything a card is made from.
pub struct CardInput<'a> {
    pub provenance: &'a Provenance,
    pub audit: &'a AuditRecord,
    pub report: &'a EvaluationReport,
    /// The gate's outcome in this registry; `None`: no gate declared.
    pub gate: Option<&'a GateOutcome>,
    /// The model's files other than the card (weights, configuration).
    pub files: &'a [CardFile],
    /// Hex sha256 of the signing key's public PEM, when the model is signed.
    pub signing_key: Option<&'a str>,
}

/// Markdown text from a user: inline characters that markdown or HTML would read are escaped,
/// line breaks and other control characters become spaces.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '~' | '#' | '!' | '$' => {
                out.push('\\');
                out.push(c);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn num(v: f64) -> String {
    format!("{v:.4}")
}

/// The card, markdown.
pub fn render(input: &CardInput) -> String {
    let mut md = String::new();
    heading(&mut md, input);
    training_data(&mut md, input);
    evaluation(&mut md, input.report);
    gate(&mut md, input.gate);
    provenance(&mut md, input);
    files(&mut md, input);
    md
}

fn heading(md: &mut String, input: &CardInput) {
    let p = input.provenance;
    let _ = writeln!(md, "# {}", escape(&p.skill_id));
    let _ = writeln!(
        md,
        "\nA NICE CXone AI skill model trained by cxone-skill-operator for the SkillTrainingJob \
         {}/{} (run {}). Accuracy {} and macro F1 {} on {} held-out utterances.",
        escape(&p.namespace),
        escape(&p.name),
        p.run,
        num(input.report.accuracy),
        num(input.report.macro_average.f1),
        input.report.total
    );
}

fn training_data(md: &mut String, input: &CardInput) {
    let d = &input.audit.dataset;
    md.push_str("\n## Training data\n\n| | |\n|---|---|\n");
    let language = d.language.as_deref().unwrap_or("unknown");
    let _ = writeln!(md, "| Language | {} |", escape(language));
    let _ = writeln!(md, "| Utterances | {} |", d.utterances);
    let _ = writeln!(md, "| Labels | {} |", d.labels);
    let _ = writeln!(
        md,
        "| Validation split | {} |",
        num(input.audit.validation_split)
    );
    let digest = d
        .digest
        .as_ref()
        .map(|d| d.to_string())
        .unwrap_or_else(|| input.provenance.dataset_digest.clone());
    let _ = writeln!(md, "| Dataset digest | {} |", escape(&digest));
    md.push_str("\n| Label | Utterances | Precision | Recall | F1 | Held out |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|\n");
    for l in &input.report.per_label {
        let count = d.label_counts.get(&l.label).copied().unwrap_or(0);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            escape(&l.label),
            count,
            num(l.precision),
            num(l.recall),
            num(l.f1),
            l.support
        );
    }
}

fn evaluation(md: &mut String, r: &EvaluationReport) {
    md.push_str("\n## Evaluation\n\n");
    let _ = writeln!(
        md,
        "Recomputed by the operator from CXone's predictions on {} held-out utterances; \
         accuracy {}.\n",
        r.total,
        num(r.accuracy)
    );
    md.push_str("| Average | Precision | Recall | F1 |\n|---|---:|---:|---:|\n");
    for (name, a) in [
        ("macro", &r.macro_average),
        ("weighted", &r.weighted_average),
    ] {
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} |",
            num(a.precision),
            num(a.recall),
            num(a.f1)
        );
    }
    match &r.recommendation {
        Some(rec) => {
            let _ = writeln!(
                md,
                "\nRecommended confidence threshold: **{}** ({}): precision {}, coverage {} \
                 (answers {:.1} % of utterances, the rest go to a fallback).",
                num(rec.threshold),
                rec.objective.as_str(),
                num(rec.precision),
                num(rec.coverage),
                rec.coverage * 100.0
            );
        }
        None => md.push_str("\nNo confidence threshold could be recommended.\n"),
    }
}

fn gate(md: &mut String, gate: Option<&GateOutcome>) {
    md.push_str("\n## Promotion gate\n\n");
    let Some(g) = gate else {
        md.push_str("No gate declared: the model is registered and not promoted.\n");
        return;
    };
    let verdict = if g.passed {
        "**passed**: the model is promoted."
    } else {
        "**not met**: the model is registered and not promoted."
    };
    let _ = writeln!(md, "The gate {verdict}");
    if let Some(c) = &g.champion {
        let _ = writeln!(md, "\nCompared with the champion {}.", escape(c));
    }
    if !g.checks.is_empty() {
        md.push_str("\n| Check | Value | Needs | Result |\n|---|---:|---:|---|\n");
        for c in &g.checks {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                escape(&c.name),
                num(c.value),
                num(c.threshold),
                if c.passed { "passed" } else { "FAILED" }
            );
        }
    }
    for n in &g.notes {
        let _ = writeln!(md, "\n{}", escape(n));
    }
}

fn provenance(md: &mut String, input: &CardInput) {
    let p = input.provenance;
    md.push_str("\n## Provenance\n\n| | |\n|---|---|\n");
    let rows = [
        ("SkillTrainingJob", format!("{}/{}", p.namespace, p.name)),
        ("UID", p.uid.clone()),
        ("Generation", p.generation.to_string()),
        ("Run", p.run.to_string()),
        ("CXone skill", p.skill_id.clone()),
        ("CXone training job", p.cxone_job_id.clone()),
        ("Completed", p.created.to_string()),
        ("Source", p.source.clone()),
        ("Operator", input.audit.operator_version.clone()),
    ];
    for (k, v) in rows {
        let _ = writeln!(md, "| {k} | {} |", escape(&v));
    }
    for (k, v) in &p.params {
        let _ = writeln!(md, "| {} | {} |", escape(k), escape(v));
    }
}

fn files(md: &mut String, input: &CardInput) {
    md.push_str("\n## Files\n\n| File | Bytes | sha256 |\n|---|---:|---|\n");
    for f in input.files {
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            escape(&f.name),
            f.bytes,
            escape(&f.sha256)
        );
    }
    match input.signing_key {
        Some(key) => {
            let _ = writeln!(
                md,
                "\nThe files and this card are signed (OpenSSF model signing, `model.sig`) with \
                 the key whose public PEM has sha256 {}. Verify with \
                 `model_signing verify key --public_key KEY.pem --signature model.sig DIR`.",
                escape(key)
            );
        }
        None => md.push_str("\nThe model is not signed.\n"),
    }
}

#[cfg(test)]
mod tests;
