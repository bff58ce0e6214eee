//! The offline commands: `validate` (manifests and data files) and `evaluate` (an evaluation
//! response). They use exactly the rules the operator uses: this module imports the CRD's checks,
//! the training and evaluation domains, the endpoint and registry allowlists and `crate::names`;
//! `src/main.rs` parses the flags and prints what these functions return.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::crd::{DataSources, SkillTrainingJob, SpecCheck};
use crate::cxone::EndpointAllowlist;
use crate::cxone::model::{EvaluationResponse, LabelDef};
use crate::evaluation::{
    ConfusionMatrix, EvaluationOptions, EvaluationReport, LabelMetrics, Recommendation,
    ServerComparison, ThresholdMetrics, analyze,
};
use crate::names;
use crate::training::{DataFormat, Dataset, ValidationRules, parse_utterances, validate};

/// Result of checking one file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileVerdict {
    pub path: String,
    /// One-line summary when valid.
    pub summary: Option<String>,
    /// Every problem found, each on its own line.
    pub problems: Vec<String>,
}

impl FileVerdict {
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn render(&self) -> String {
        if self.is_valid() {
            format!(
                "{}: {}",
                self.path,
                self.summary.as_deref().unwrap_or("valid")
            )
        } else {
            let mut s = format!("{}: invalid ({} problems)", self.path, self.problems.len());
            for p in &self.problems {
                let _ = write!(s, "\n  - {p}");
            }
            s
        }
    }
}

/// ConfigMap data found in the files given to `validate`, by (namespace, name).
#[derive(Default)]
struct ConfigMaps(BTreeMap<(String, String), BTreeMap<String, String>>);

struct NamespacedSources<'a> {
    maps: &'a ConfigMaps,
    namespace: &'a str,
}

impl DataSources for NamespacedSources<'_> {
    fn get(&self, name: &str, key: &str) -> Result<&str, String> {
        let data = self
            .maps
            .0
            .get(&(self.namespace.to_string(), name.to_string()))
            .ok_or_else(|| {
                format!(
                    "ConfigMap {name:?} (namespace {:?}) is not among the given files; pass its manifest too",
                    self.namespace
                )
            })?;
        data.get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("ConfigMap {name:?} has no key {key:?} in data"))
    }
}

/// A file's path, what it holds (or why it cannot be read), and its bytes.
type LoadedFile = (String, Result<Vec<Document>, String>, Vec<u8>);

enum Document {
    Job {
        index: usize,
        value: serde_json::Value,
    },
    Data(DataFormat),
}

/// The operator's allowlists to check jobs against (each optional).
#[derive(Clone, Debug, Default)]
pub struct Allowlists {
    /// `--allowed-endpoints`.
    pub endpoints: Option<EndpointAllowlist>,
    /// `--allowed-registries` (with `--allow-plain-http-registries`).
    pub registries: Option<crate::registry::allow::RegistryAllowlist>,
}

/// Validates manifests (YAML/JSON, multi-document, with the ConfigMaps they reference) and data
/// files (JSONL/CSV/JSON). Every file is checked; each gets a verdict.
pub fn validate_paths(paths: &[impl AsRef<Path>], allow: &Allowlists) -> Vec<FileVerdict> {
    let mut maps = ConfigMaps::default();
    let mut pending: Vec<LoadedFile> = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let name = path.display().to_string();
        match std::fs::read(path) {
            Err(e) => pending.push((name, Err(format!("cannot read: {e}")), Vec::new())),
            Ok(bytes) => {
                let docs = classify(&name, &bytes, &mut maps);
                pending.push((name, docs, bytes));
            }
        }
    }
    pending
        .into_iter()
        .map(|(path, docs, bytes)| match docs {
            Err(problem) => FileVerdict {
                path,
                summary: None,
                problems: vec![problem],
            },
            Ok(docs) => check_documents(path, docs, &bytes, &maps, allow),
        })
        .collect()
}

fn classify(name: &str, bytes: &[u8], maps: &mut ConfigMaps) -> Result<Vec<Document>, String> {
    let lower = name.to_ascii_lowercase();
    let is_yaml = lower.ends_with(".yaml") || lower.ends_with(".yml");
    let format = DataFormat::from_file_name(&lower);
    let text = std::str::from_utf8(bytes).map_err(|e| {
        format!(
            "not valid UTF-8 at byte {}; save the file as UTF-8",
            e.valid_up_to()
        )
    })?;
    let values: Vec<serde_json::Value> = if is_yaml {
        serde_saphyr::from_multiple::<serde_json::Value>(text)
            .map_err(|e| format!("not valid YAML: {}", clip_error(&e.to_string())))?
    } else if format == Some(DataFormat::Json) {
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v) if v.get("kind").is_some() => vec![v],
            Ok(_) => return Ok(vec![Document::Data(DataFormat::Json)]),
            Err(e) => return Err(format!("not valid JSON: {e}")),
        }
    } else if let Some(format) = format {
        return Ok(vec![Document::Data(format)]);
    } else {
        return Err(
            "unknown file type; use .yaml/.yml/.json manifests or .jsonl/.csv/.json data".into(),
        );
    };
    let mut docs = Vec::new();
    for (index, value) in values.into_iter().enumerate() {
        if value.is_null() {
            continue;
        }
        let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
        match kind {
            "SkillTrainingJob" => docs.push(Document::Job { index, value }),
            "ConfigMap" => {
                let meta = value.get("metadata");
                let ns = meta
                    .and_then(|m| m.get("namespace"))
                    .and_then(|n| n.as_str())
                    .unwrap_or("default")
                    .to_string();
                let cm_name = meta
                    .and_then(|m| m.get("name"))
                    .and_then(|n| n.as_str())
                    .unwrap_or("")
                    .to_string();
                let data: BTreeMap<String, String> = value
                    .get("data")
                    .and_then(|d| serde_json::from_value(d.clone()).ok())
                    .unwrap_or_default();
                maps.0.insert((ns, cm_name), data);
            }
            _ => {}
        }
    }
    Ok(docs)
}

fn check_documents(
    path: String,
    docs: Vec<Document>,
    bytes: &[u8],
    maps: &ConfigMaps,
    allow: &Allowlists,
) -> FileVerdict {
    let mut problems = Vec::new();
    let mut summaries = Vec::new();
    for doc in docs {
        match doc {
            Document::Data(format) => match check_data_file(&path, format, bytes) {
                Ok(s) => summaries.push(s),
                Err(p) => problems.extend(p),
            },
            Document::Job { index, value } => {
                let label = job_label(index, &value);
                match check_job(value, maps, allow) {
                    Ok(s) => summaries.push(format!("{label}: {s}")),
                    Err(p) => problems.extend(p.into_iter().map(|p| format!("{label}: {p}"))),
                }
            }
        }
    }
    if problems.is_empty() && summaries.is_empty() {
        summaries.push("no SkillTrainingJob in this file, nothing to check".to_string());
    }
    FileVerdict {
        path,
        summary: (!summaries.is_empty()).then(|| format!("valid: {}", summaries.join("; "))),
        problems,
    }
}

fn job_label(index: usize, value: &serde_json::Value) -> String {
    let meta = value.get("metadata");
    let name = meta.and_then(|m| m.get("name")).and_then(|n| n.as_str());
    let ns = meta
        .and_then(|m| m.get("namespace"))
        .and_then(|n| n.as_str());
    match (ns, name) {
        (Some(ns), Some(name)) => format!("SkillTrainingJob {ns}/{name}"),
        (None, Some(name)) => format!("SkillTrainingJob {name}"),
        _ => format!("document {}", index + 1),
    }
}

/// The job's own `metadata.name` and `metadata.namespace` (when given), checked as the API
/// server would.
fn check_metadata(value: &serde_json::Value) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(name) = value.pointer("/metadata/name").and_then(|n| n.as_str()) {
        problems.extend(names::check_object_name("metadata.name", name).err());
    }
    if let Some(ns) = value
        .pointer("/metadata/namespace")
        .and_then(|n| n.as_str())
    {
        problems.extend(names::check_namespace("metadata.namespace", ns).err());
    }
    problems
}

fn check_job(
    value: serde_json::Value,
    maps: &ConfigMaps,
    allow: &Allowlists,
) -> Result<String, Vec<String>> {
    let namespace = value
        .pointer("/metadata/namespace")
        .and_then(|n| n.as_str())
        .unwrap_or("default")
        .to_string();
    let mut problems = check_metadata(&value);
    let job: SkillTrainingJob = match serde_json::from_value(value) {
        Ok(job) => job,
        Err(e) => {
            problems.push(format!("not a valid SkillTrainingJob: {e}"));
            return Err(problems);
        }
    };
    let spec = &job.spec;
    if let Some(allowlist) = &allow.endpoints
        && let Err(problem) = allowlist.resolve(&spec.connection)
    {
        problems.push(problem);
    }
    if let Some(registry) = &spec.registry {
        problems.extend(registry.problems());
        let name = job.metadata.name.as_deref().unwrap_or_default();
        if let Some(allowlist) = &allow.registries
            && let Err(problem) = allowlist.check(registry, &namespace, name)
        {
            problems.push(problem);
        }
    }
    let sources = NamespacedSources {
        maps,
        namespace: &namespace,
    };
    match spec.check(&sources) {
        SpecCheck::Valid { summary, .. } if problems.is_empty() => Ok(summary),
        SpecCheck::Valid { .. } => Err(problems),
        SpecCheck::Invalid { problems: more } => {
            problems.extend(more);
            Err(problems)
        }
    }
}

/// A standalone data file: labels are the ones it uses, language the one it has.
fn check_data_file(path: &str, format: DataFormat, bytes: &[u8]) -> Result<String, Vec<String>> {
    let items = parse_utterances(format, path, bytes).map_err(|e| vec![e.to_string()])?;
    let mut labels: Vec<String> = items.iter().map(|(u, _)| u.label.clone()).collect();
    labels.sort();
    labels.dedup();
    let labels = labels
        .into_iter()
        .map(|id| LabelDef {
            name: id.clone(),
            id,
            description: None,
        })
        .collect();
    let mut dataset = Dataset::new(None, labels);
    dataset.extend(items);
    match validate(dataset, &ValidationRules::default()) {
        Ok(valid) => Ok(format!(
            "{} utterances, {} labels, language {}",
            valid.report().utterance_count,
            valid.dataset().labels.len(),
            valid.language()
        )),
        Err(rejected) => Err(rejected
            .report
            .violations
            .iter()
            .map(|v| v.to_string())
            .collect()),
    }
}

fn clip_error(s: &str) -> String {
    crate::text::truncate_chars(s.lines().next().unwrap_or(s), 300)
}

/// Output format of `evaluate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Json,
    Table,
}

/// Analyses an evaluation response file as the operator does.
pub fn evaluate_file(path: &Path, options: &EvaluationOptions) -> Result<EvaluationReport, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let response: EvaluationResponse = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{}: not a CXone evaluation response: {e}", path.display()))?;
    analyze(&response, options).map_err(|e| format!("{}: {e}", path.display()))
}

/// Human-readable rendering of a report: averages, per-label metrics, the confusion matrix (up
/// to 20 labels), the threshold sweep, the recommendation and the server comparison.
pub fn render_table(report: &EvaluationReport) -> String {
    let mut s = String::new();
    render_averages(&mut s, report);
    render_labels(&mut s, &report.per_label);
    render_confusion_matrix(&mut s, &report.confusion_matrix);
    render_thresholds(&mut s, &report.thresholds);
    render_recommendation(&mut s, report.recommendation.as_ref());
    render_server_summary(&mut s, &report.server_comparison);
    s
}

fn render_averages(s: &mut String, report: &EvaluationReport) {
    let _ = writeln!(s, "accuracy  {:.4}", report.accuracy);
    let _ = writeln!(
        s,
        "{:<10}{:>10}{:>10}{:>10}",
        "average", "precision", "recall", "f1"
    );
    for (name, avg) in [
        ("macro", &report.macro_average),
        ("weighted", &report.weighted_average),
    ] {
        let _ = writeln!(
            s,
            "{name:<10}{:>10.4}{:>10.4}{:>10.4}",
            avg.precision, avg.recall, avg.f1
        );
    }
}

fn render_labels(s: &mut String, per_label: &[LabelMetrics]) {
    let _ = writeln!(
        s,
        "\n{:<24}{:>10}{:>10}{:>10}{:>9}",
        "label", "precision", "recall", "f1", "support"
    );
    for l in per_label {
        let _ = writeln!(
            s,
            "{:<24}{:>10.4}{:>10.4}{:>10.4}{:>9}",
            l.label, l.precision, l.recall, l.f1, l.support
        );
    }
}

/// Only small matrices: a wide one would not fit a terminal.
fn render_confusion_matrix(s: &mut String, cm: &ConfusionMatrix) {
    if cm.labels.len() > 20 {
        return;
    }
    let _ = writeln!(s, "\nconfusion matrix (rows = actual, columns = predicted)");
    for (label, row) in cm.labels.iter().zip(&cm.matrix) {
        let cells: Vec<String> = row.iter().map(|c| format!("{c:>6}")).collect();
        let _ = writeln!(s, "{label:<24}{}", cells.join(""));
    }
}

fn render_thresholds(s: &mut String, thresholds: &[ThresholdMetrics]) {
    let _ = writeln!(
        s,
        "\n{:>9}{:>10}{:>10}{:>10}{:>10}",
        "threshold", "precision", "recall", "f1", "coverage"
    );
    for t in thresholds {
        let _ = writeln!(
            s,
            "{:>9.2}{:>10.4}{:>10.4}{:>10.4}{:>10.4}",
            t.threshold, t.precision, t.recall, t.f1, t.coverage
        );
    }
}

fn render_recommendation(s: &mut String, recommendation: Option<&Recommendation>) {
    match recommendation {
        Some(r) => {
            let _ = writeln!(
                s,
                "\nrecommended threshold {:.2} ({}): precision {:.4}, f1 {:.4}, coverage {:.4}",
                r.threshold, r.objective, r.precision, r.f1, r.coverage
            );
        }
        None => {
            let _ = writeln!(s, "\nno threshold reaches the requested minimum precision");
        }
    }
}

fn render_server_summary(s: &mut String, comparison: &ServerComparison) {
    match comparison.consistent {
        Some(false) => {
            let _ = writeln!(
                s,
                "\nserver-reported metrics disagree with the recomputed ones:"
            );
            for x in &comparison.mismatches {
                let _ = writeln!(s, "  - {x}");
            }
            if !comparison.not_reported.is_empty() {
                let _ = writeln!(
                    s,
                    "  (not reported by the server: {})",
                    comparison.not_reported.join(", ")
                );
            }
        }
        Some(true) if comparison.not_reported.is_empty() => {
            let _ = writeln!(s, "\nserver summary: agrees with the recomputed metrics");
        }
        Some(true) => {
            let _ = writeln!(
                s,
                "\nserver summary: agrees with the recomputed metrics (not reported by the server: {})",
                comparison.not_reported.join(", ")
            );
        }
        None => {
            let _ = writeln!(
                s,
                "\nserver summary: unknown, not reported by the server ({}); the metrics above are recomputed from the per-example results",
                comparison.not_reported.join(", ")
            );
        }
    }
}
