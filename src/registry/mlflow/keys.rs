//! Filters, keys and batches for MLflow, built without I/O: search filters that cannot break
//! out of their quotes, metric and param keys the server accepts, the provenance as tags and
//! params, `runs/log-batch` bodies within the server's limits, and values read defensively.
//! Pure; imports only the registry's shared types.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Value, json};

use super::{
    DATASET_DIGEST_PARAM, JOB_ID_TAG, MAX_BATCH_BYTES, MAX_ENTITIES_PER_BATCH, MAX_KEY_CHARS,
    MAX_METRICS_PER_BATCH, MAX_PARAM_VALUE_CHARS, MAX_PARAMS_TAGS_PER_BATCH, MAX_TAG_VALUE_CHARS,
};
use crate::registry::{Provenance, RegistryError};
use crate::text::truncate_chars;

/// A filter value: `= '<value>'` when the value can be quoted as is; otherwise `LIKE` with each
/// `'` and `\` (which the server's parser cannot take inside quotes) as the single-character
/// wildcard `_`. The `LIKE` form may match more than the value: compare results exactly.
pub(super) fn filter_value(value: &str) -> String {
    if value.contains(['\'', '\\']) {
        let pattern: String = value
            .chars()
            .map(|c| if matches!(c, '\'' | '\\') { '_' } else { c })
            .collect();
        format!("LIKE '{pattern}'")
    } else {
        format!("= '{value}'")
    }
}

/// `tags.\`<key>\` = '<value>'` (see [`filter_value`]); `key` is one of this module's constants.
pub(super) fn tag_filter(key: &str, value: &str) -> String {
    format!("tags.`{key}` {}", filter_value(value))
}

/// `<attribute> = '<value>'` (see [`filter_value`]).
pub(super) fn attribute_filter(attribute: &str, value: &str) -> String {
    format!("{attribute} {}", filter_value(value))
}

/// A param, metric or tag key the server accepts: letters, digits, `_ - . : /` and spaces,
/// no empty, `.` or `..` path segments, not starting with `..` or `/`, at most 250 characters.
/// Other characters become `_`.
pub fn sanitize_key(key: &str) -> String {
    let cleaned: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '/' | ' ') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let segments: Vec<String> = cleaned
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .map(|s| {
            if s == ".." {
                "__".to_string()
            } else {
                s.to_string()
            }
        })
        .collect();
    let mut key = segments.join("/");
    if key.starts_with("..") {
        key.insert(0, '_');
    }
    // ASCII only here, so characters are bytes.
    key.truncate(MAX_KEY_CHARS);
    while key.ends_with('/') || key.ends_with("/.") {
        key.pop();
    }
    if key.ends_with("/..") {
        key.truncate(key.len() - 3);
    }
    if key.is_empty() { "_".to_string() } else { key }
}

/// Sanitized keys made unique: a later key that collides with an earlier one gets `_2`, `_3`…
pub(super) fn unique_keys<'a, V>(
    entries: impl IntoIterator<Item = (&'a str, V)>,
) -> Vec<(String, V)> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (key, value) in entries {
        let base = sanitize_key(key);
        let mut candidate = base.clone();
        let mut n = 2;
        while !seen.insert(candidate.clone()) {
            let suffix = format!("_{n}");
            let mut stem = base.clone();
            stem.truncate(MAX_KEY_CHARS - suffix.len());
            candidate = format!("{stem}{suffix}");
            n += 1;
        }
        out.push((candidate, value));
    }
    out
}

/// The run's tags: the provenance (`cxone.*`), the run name and the source.
pub(super) fn run_tags(p: &Provenance) -> Vec<(String, String)> {
    let tags = [
        ("mlflow.runName", format!("{}-{}", p.name, p.run)),
        ("mlflow.source.name", p.source.clone()),
        ("mlflow.source.type", "JOB".to_string()),
        ("cxone.namespace", p.namespace.clone()),
        ("cxone.name", p.name.clone()),
        ("cxone.uid", p.uid.clone()),
        ("cxone.generation", p.generation.to_string()),
        ("cxone.run", p.run.to_string()),
        (JOB_ID_TAG, p.cxone_job_id.clone()),
        ("cxone.skill_id", p.skill_id.clone()),
        ("cxone.dataset_digest", p.dataset_digest.clone()),
        ("cxone.source", p.source.clone()),
    ];
    tags.into_iter()
        .map(|(k, v)| (k.to_string(), truncate_chars(&v, MAX_TAG_VALUE_CHARS)))
        .collect()
}

/// The run's params: the dataset digest, then the provenance's params (keys sanitized; a key
/// that collides gets a suffix). Values are cut as the server would cut them, so a repeated
/// call logs the same values (the server refuses a changed param).
pub(super) fn run_params(p: &Provenance) -> Vec<(String, String)> {
    let entries = std::iter::once((DATASET_DIGEST_PARAM, &p.dataset_digest))
        .chain(p.params.iter().map(|(k, v)| (k.as_str(), v)));
    unique_keys(entries)
        .into_iter()
        .map(|(k, v)| (k, truncate_chars(v, MAX_PARAM_VALUE_CHARS)))
        .collect()
}

/// `runs/log-batch` bodies (without `run_id`) within the server's limits: at most 100 params,
/// 100 tags, 1000 metrics and 1000 entries, under 1 MB each. Metric keys are sanitized; a value
/// that is not a finite number is sent as MLflow's `"NaN"`/`"Infinity"`/`"-Infinity"`.
pub(super) fn log_batches(
    params: &[(String, String)],
    metrics: &BTreeMap<String, f64>,
    tags: &[(String, String)],
    timestamp: i64,
) -> Vec<Value> {
    #[derive(Clone, Copy, PartialEq)]
    enum Kind {
        Param,
        Metric,
        Tag,
    }
    let mut entries: Vec<(Kind, Value)> = Vec::new();
    for (k, v) in params {
        entries.push((Kind::Param, json!({ "key": k, "value": v })));
    }
    for (k, v) in unique_keys(metrics.iter().map(|(k, v)| (k.as_str(), *v))) {
        entries.push((
            Kind::Metric,
            json!({ "key": k, "value": metric_json(v), "timestamp": timestamp, "step": 0 }),
        ));
    }
    for (k, v) in tags {
        entries.push((Kind::Tag, json!({ "key": k, "value": v })));
    }

    let mut batches = Vec::new();
    let mut current: Vec<(Kind, Value)> = Vec::new();
    let mut bytes = 0;
    let flush = |current: &mut Vec<(Kind, Value)>, batches: &mut Vec<Value>| {
        if current.is_empty() {
            return;
        }
        let pick = |kind: Kind, items: &[(Kind, Value)]| -> Vec<Value> {
            items
                .iter()
                .filter(|(k, _)| *k == kind)
                .map(|(_, v)| v.clone())
                .collect()
        };
        batches.push(json!({
            "params": pick(Kind::Param, current),
            "metrics": pick(Kind::Metric, current),
            "tags": pick(Kind::Tag, current),
        }));
        current.clear();
    };
    for (kind, entry) in entries {
        let size = entry.to_string().len() + 1;
        let count = |k: Kind| current.iter().filter(|(c, _)| *c == k).count();
        let full = match kind {
            Kind::Param | Kind::Tag => count(kind) >= MAX_PARAMS_TAGS_PER_BATCH,
            Kind::Metric => count(kind) >= MAX_METRICS_PER_BATCH,
        } || current.len() >= MAX_ENTITIES_PER_BATCH
            || bytes + size > MAX_BATCH_BYTES;
        if full {
            flush(&mut current, &mut batches);
            bytes = 0;
        }
        bytes += size;
        current.push((kind, entry));
    }
    flush(&mut current, &mut batches);
    batches
}

pub(super) fn metric_json(v: f64) -> Value {
    if v.is_nan() {
        json!("NaN")
    } else if v == f64::INFINITY {
        json!("Infinity")
    } else if v == f64::NEG_INFINITY {
        json!("-Infinity")
    } else {
        json!(v)
    }
}

/// A metric value from the server: a finite number (possibly written as a string).
pub(super) fn metric_value(v: &Value) -> Option<f64> {
    let x = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse::<f64>().ok(),
        _ => None,
    }?;
    x.is_finite().then_some(x)
}

pub(super) fn file_size(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Version numbers sort numerically; anything else last.
pub(super) fn version_number(v: &str) -> u64 {
    v.parse().unwrap_or(u64::MAX)
}

pub(super) fn non_empty(value: String, field: &str) -> Result<String, RegistryError> {
    if value.is_empty() {
        Err(RegistryError::Rejected(format!(
            "the MLflow answer lacks {field}"
        )))
    } else {
        Ok(value)
    }
}
