//! Training datasets and their loaders (inline, JSONL, CSV, JSON).

use std::fmt;

use serde::Deserialize;

use crate::cxone::model::{LabelDef, Utterance};

/// Largest document a loader accepts. ConfigMaps are limited to 1 MiB by Kubernetes; files
/// given to `validate` may be larger, but not unboundedly so.
pub const MAX_SOURCE_BYTES: usize = 64 * 1024 * 1024;

/// At most this many per-line problems are reported for one document.
const MAX_REPORTED_LOAD_PROBLEMS: usize = 50;

/// Where an utterance came from, for error messages that say where to look.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `spec.utterances[index]` or `trainingData.utterances[index]`.
    Inline { field: &'static str, index: usize },
    /// A line (1-based) of a JSONL or CSV document.
    Line { source: String, line: u64 },
    /// An element (0-based) of a JSON document's utterance array.
    Item { source: String, index: usize },
    /// A field of the spec itself, such as `language`.
    Field(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Inline { field, index } => write!(f, "{field}[{index}]"),
            Origin::Line { source, line } => write!(f, "{source} line {line}"),
            Origin::Item { source, index } => write!(f, "{source} item {index}"),
            Origin::Field(field) => f.write_str(field),
        }
    }
}

/// A dataset as resolved from the spec and its data sources, before validation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Dataset {
    /// The declared language (e.g. `spec.language`); utterances without one inherit it.
    pub language: Option<String>,
    pub labels: Vec<LabelDef>,
    pub utterances: Vec<Utterance>,
    /// Parallel to `utterances`.
    pub origins: Vec<Origin>,
}

impl Dataset {
    pub fn new(language: Option<String>, labels: Vec<LabelDef>) -> Self {
        Self {
            language,
            labels,
            ..Self::default()
        }
    }

    pub fn push(&mut self, utterance: Utterance, origin: Origin) {
        self.utterances.push(utterance);
        self.origins.push(origin);
    }

    pub fn extend(&mut self, items: impl IntoIterator<Item = (Utterance, Origin)>) {
        for (u, o) in items {
            self.push(u, o);
        }
    }

    /// Adds inline utterances, numbering them as elements of `field`.
    pub fn extend_inline(
        &mut self,
        field: &'static str,
        items: impl IntoIterator<Item = Utterance>,
    ) {
        for (index, u) in items.into_iter().enumerate() {
            self.push(u, Origin::Inline { field, index });
        }
    }

    pub fn origin(&self, index: usize) -> Origin {
        self.origins.get(index).cloned().unwrap_or(Origin::Inline {
            field: "utterances",
            index,
        })
    }
}

/// Format of an utterance document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataFormat {
    /// One JSON object per line: `{"text": "...", "label": "...", "language": "en"}`.
    Jsonl,
    /// Rows of `text,label[,language]`, optionally with a header row naming those columns.
    Csv,
    /// A JSON array of utterance objects, or an object with an `utterances` array.
    Json,
}

impl DataFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DataFormat::Jsonl => "jsonl",
            DataFormat::Csv => "csv",
            DataFormat::Json => "json",
        }
    }

    /// Guesses the format from a file name's extension.
    pub fn from_file_name(name: &str) -> Option<Self> {
        let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "jsonl" | "ndjson" => Some(Self::Jsonl),
            "csv" => Some(Self::Csv),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

impl std::str::FromStr for DataFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "jsonl" | "ndjson" => Ok(Self::Jsonl),
            "csv" => Ok(Self::Csv),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "unknown data format {other:?}; use jsonl, csv or json"
            )),
        }
    }
}

/// A document could not be read as utterances.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoadError {
    #[error(
        "{document}: {size} bytes is larger than the limit of {limit} bytes; split the data into several sources"
    )]
    TooLarge {
        document: String,
        size: usize,
        limit: usize,
    },
    #[error("{document}: not valid UTF-8 at byte {offset}; save the file as UTF-8")]
    InvalidUtf8 { document: String, offset: usize },
    #[error("{document}: {}", join_problems(.problems, *.more))]
    Malformed {
        document: String,
        /// Individual problems, each naming its line or item.
        problems: Vec<String>,
        /// Problems beyond those listed.
        more: usize,
    },
}

fn join_problems(problems: &[String], more: usize) -> String {
    let mut s = problems.join("; ");
    if more > 0 {
        s.push_str(&format!("; and {more} more problems"));
    }
    s
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUtterance {
    text: String,
    label: String,
    #[serde(default)]
    language: Option<String>,
}

impl From<RawUtterance> for Utterance {
    fn from(r: RawUtterance) -> Self {
        Utterance {
            text: r.text,
            label: r.label,
            language: r.language,
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JsonDocument {
    List(Vec<serde_json::Value>),
    Object { utterances: Vec<serde_json::Value> },
}

struct Problems {
    source: String,
    list: Vec<String>,
    more: usize,
}

impl Problems {
    fn new(source: &str) -> Self {
        Self {
            source: source.to_string(),
            list: Vec::new(),
            more: 0,
        }
    }
    fn add(&mut self, p: String) {
        if self.list.len() < MAX_REPORTED_LOAD_PROBLEMS {
            self.list.push(p);
        } else {
            self.more += 1;
        }
    }
    fn finish<T>(self, value: T) -> Result<T, LoadError> {
        if self.list.is_empty() {
            Ok(value)
        } else {
            Err(LoadError::Malformed {
                document: self.source,
                problems: self.list,
                more: self.more,
            })
        }
    }
}

/// Parses a document of utterances. `source` names the document in messages (for example
/// `configmap/faq key utterances.jsonl`). Every problem in the document is reported, not only the
/// first; nothing is returned unless the whole document is well-formed.
pub fn parse_utterances(
    format: DataFormat,
    source: &str,
    bytes: &[u8],
) -> Result<Vec<(Utterance, Origin)>, LoadError> {
    if bytes.len() > MAX_SOURCE_BYTES {
        return Err(LoadError::TooLarge {
            document: source.to_string(),
            size: bytes.len(),
            limit: MAX_SOURCE_BYTES,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| LoadError::InvalidUtf8 {
        document: source.to_string(),
        offset: e.valid_up_to(),
    })?;
    // A UTF-8 byte-order mark is common in files saved by spreadsheet tools.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match format {
        DataFormat::Jsonl => parse_jsonl(source, text),
        DataFormat::Csv => parse_csv(source, text),
        DataFormat::Json => parse_json(source, text),
    }
}

fn parse_jsonl(source: &str, text: &str) -> Result<Vec<(Utterance, Origin)>, LoadError> {
    let mut out = Vec::new();
    let mut problems = Problems::new(source);
    for (i, line) in text.lines().enumerate() {
        let line_no = i as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<RawUtterance>(line) {
            Ok(raw) => out.push((
                raw.into(),
                Origin::Line {
                    source: source.to_string(),
                    line: line_no,
                },
            )),
            Err(e) => problems.add(format!(
                "line {line_no}: {}; each line must be an object like {{\"text\": \"...\", \"label\": \"...\"}}",
                json_error_text(&e)
            )),
        }
    }
    problems.finish(out)
}

fn parse_json(source: &str, text: &str) -> Result<Vec<(Utterance, Origin)>, LoadError> {
    let mut problems = Problems::new(source);
    let doc: JsonDocument = match serde_json::from_str(text) {
        Ok(doc) => doc,
        Err(e) => {
            problems.add(format!(
                "{}; expected an array of {{\"text\", \"label\", \"language\"}} objects or an object with an \"utterances\" array",
                json_error_text(&e)
            ));
            return problems.finish(Vec::new());
        }
    };
    let items = match doc {
        JsonDocument::List(items) | JsonDocument::Object { utterances: items } => items,
    };
    let mut out = Vec::with_capacity(items.len());
    for (index, value) in items.into_iter().enumerate() {
        match serde_json::from_value::<RawUtterance>(value) {
            Ok(raw) => out.push((
                raw.into(),
                Origin::Item {
                    source: source.to_string(),
                    index,
                },
            )),
            Err(e) => problems.add(format!("item {index}: {e}")),
        }
    }
    problems.finish(out)
}

fn json_error_text(e: &serde_json::Error) -> String {
    // serde_json appends "at line L column C"; for JSONL the line is always 1, so say only the
    // column there. Messages never include the document's content beyond serde's own excerpt.
    let msg = e.to_string();
    match msg.rfind(" at line ") {
        Some(pos) => format!("{} (column {})", &msg[..pos], e.column()),
        None => msg,
    }
}

fn parse_csv(source: &str, text: &str) -> Result<Vec<(Utterance, Origin)>, LoadError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::None)
        .from_reader(text.as_bytes());
    let mut out = Vec::new();
    let mut problems = Problems::new(source);
    // Column positions of text, label and (optional) language, and the widest row allowed.
    let mut columns: (usize, usize, Option<usize>, usize) = (0, 1, Some(2), 3);
    let mut first = true;
    let mut record = csv::StringRecord::new();
    loop {
        let line = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                problems.add(format!("line {line}: {e}"));
                // The csv reader cannot resynchronise reliably after a syntax error.
                break;
            }
        }
        let line = record.position().map(|p| p.line()).unwrap_or(line);
        if first {
            first = false;
            if let Some(header) = csv_header(&record) {
                columns = header;
                continue;
            }
        }
        if record.len() == 1 && record.get(0).is_some_and(|f| f.trim().is_empty()) {
            continue; // blank line
        }
        let (ti, li, lang, width) = columns;
        if record.len() < 2 || record.len() > width {
            problems.add(format!(
                "line {line}: expected 2 to {width} columns (text,label[,language]), found {}",
                record.len()
            ));
            continue;
        }
        let (Some(text), Some(label)) = (record.get(ti), record.get(li)) else {
            problems.add(format!(
                "line {line}: missing the text or label column (text,label[,language])"
            ));
            continue;
        };
        let language = lang
            .and_then(|i| record.get(i))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        out.push((
            Utterance {
                text: text.to_string(),
                label: label.trim().to_string(),
                language,
            },
            Origin::Line {
                source: source.to_string(),
                line,
            },
        ));
    }
    problems.finish(out)
}

/// Recognises a header row naming the columns (any order, case-insensitive).
fn csv_header(record: &csv::StringRecord) -> Option<(usize, usize, Option<usize>, usize)> {
    let names: Vec<String> = record
        .iter()
        .map(|f| f.trim().to_ascii_lowercase())
        .collect();
    let find = |n: &str| names.iter().position(|x| x == n);
    let text = find("text")?;
    let label = find("label")?;
    Some((text, label, find("language"), names.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_reports_every_bad_line_with_its_number() {
        let doc = b"{\"text\":\"hi\",\"label\":\"a\"}\n\nnot json\n{\"text\":1,\"label\":\"a\"}\n{\"text\":\"x\",\"label\":\"b\",\"language\":\"en\"}\n";
        let err = parse_utterances(DataFormat::Jsonl, "cm/x key u.jsonl", doc).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("cm/x key u.jsonl: line 3:"), "{msg}");
        assert!(msg.contains("line 4:"), "{msg}");
        assert!(!msg.contains("line 5"), "{msg}");
    }

    #[test]
    fn jsonl_keeps_line_numbers() {
        let doc = b"\n{\"text\":\"hi\",\"label\":\"a\"}\n{\"text\":\"yo\",\"label\":\"b\",\"language\":\"de\"}";
        let items = parse_utterances(DataFormat::Jsonl, "f", doc).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(
            items[0].1,
            Origin::Line {
                source: "f".into(),
                line: 2
            }
        );
        assert_eq!(items[1].0.language.as_deref(), Some("de"));
    }

    #[test]
    fn csv_with_and_without_header() {
        let with = "label,text,language\nbilling,\"Where is my bill, please?\",en\nrefund,I want my money back,en\n";
        let items = parse_utterances(DataFormat::Csv, "f.csv", with.as_bytes()).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].0.text, "Where is my bill, please?");
        assert_eq!(items[0].0.label, "billing");
        assert_eq!(
            items[1].1,
            Origin::Line {
                source: "f.csv".into(),
                line: 3
            }
        );

        let without = "hello there,greet\nbye now,farewell,en\n";
        let items = parse_utterances(DataFormat::Csv, "f.csv", without.as_bytes()).unwrap();
        assert_eq!(items[0].0.language, None);
        assert_eq!(items[1].0.language.as_deref(), Some("en"));
    }

    #[test]
    fn csv_wrong_column_count_is_reported_per_line() {
        let doc = "a,b\nonly-one\nx,y,en,extra\n";
        let msg = parse_utterances(DataFormat::Csv, "f.csv", doc.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("line 2: expected 2 to 3 columns"), "{msg}");
        assert!(msg.contains("line 3: expected 2 to 3 columns"), "{msg}");
    }

    #[test]
    fn json_array_and_object_forms() {
        let arr = br#"[{"text":"a","label":"x"},{"text":"b","label":"y"}]"#;
        assert_eq!(
            parse_utterances(DataFormat::Json, "f", arr).unwrap().len(),
            2
        );
        let obj = br#"{"utterances":[{"text":"a","label":"x"}]}"#;
        assert_eq!(
            parse_utterances(DataFormat::Json, "f", obj).unwrap().len(),
            1
        );
        let bad = br#"[{"text":"a","label":"x"},{"text":"b"}]"#;
        let msg = parse_utterances(DataFormat::Json, "f", bad)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("item 1: missing field `label`"), "{msg}");
        let syntax = br#"[{"text":"a","#;
        assert!(parse_utterances(DataFormat::Json, "f", syntax).is_err());
    }

    #[test]
    fn invalid_utf8_and_oversize_are_clear_errors() {
        let err = parse_utterances(DataFormat::Jsonl, "f", b"ok\xff\xfe").unwrap_err();
        assert_eq!(
            err,
            LoadError::InvalidUtf8 {
                document: "f".into(),
                offset: 2
            }
        );
        let big = vec![b' '; MAX_SOURCE_BYTES + 1];
        assert!(matches!(
            parse_utterances(DataFormat::Csv, "f", &big),
            Err(LoadError::TooLarge { .. })
        ));
    }

    #[test]
    fn bom_is_ignored() {
        let doc = "\u{feff}text,label\nhi,greet\n";
        let items = parse_utterances(DataFormat::Csv, "f", doc.as_bytes()).unwrap();
        assert_eq!(items.len(), 1);
    }
}
