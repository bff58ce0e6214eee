//! The larger jobs of the scale benchmark (`benches/scale.rs`): inline jobs and ConfigMap-backed
//! jobs over eight labels with many distinct utterances, and the utterance documents they read.

use super::operator::guide_job;

/// The eight labels of the larger example jobs ([`inline_job`], [`config_map_job`]): id, name
/// and the words every utterance of the label starts with.
pub const EIGHT_LABELS: [(&str, &str, &str); 8] = [
    (
        "cancel_sub",
        "Cancel Subscription",
        "please cancel my subscription",
    ),
    ("upgrade_plan", "Upgrade Plan", "i want to upgrade my plan"),
    ("reset_pwd", "Reset Password", "help me reset my password"),
    (
        "billing_question",
        "Billing Question",
        "i have a question about my bill",
    ),
    (
        "update_address",
        "Update Address",
        "change the address on my account",
    ),
    ("order_status", "Order Status", "where is my order"),
    (
        "refund_request",
        "Refund Request",
        "i would like a refund for",
    ),
    (
        "talk_to_agent",
        "Talk to Agent",
        "let me speak to a person about",
    ),
];

/// Words that make utterance texts distinct while the vocabulary stays small (32 words).
const FILLER: [&str; 32] = [
    "today",
    "again",
    "please",
    "now",
    "quickly",
    "online",
    "by phone",
    "this week",
    "for me",
    "for my family",
    "at home",
    "at work",
    "on the app",
    "on the website",
    "right away",
    "if possible",
    "as soon as you can",
    "before friday",
    "this month",
    "thanks",
    "my friend said",
    "last time",
    "from abroad",
    "for the second line",
    "on my tablet",
    "with my card",
    "kindly",
    "urgently",
    "soon",
    "tomorrow",
    "tonight",
    "later",
];

/// Utterance text number `n` of label `label` (0-7): distinct for every `n` below 32^4 within a
/// label, and never equal across labels.
pub fn utterance_text(label: usize, n: usize) -> String {
    let start = EIGHT_LABELS[label % 8].2;
    let w = |d: usize| FILLER[(n / 32usize.pow(d as u32)) % 32];
    format!("{start} {} {} {} {}", w(0), w(1), w(2), w(3))
}

fn eight_labels_json() -> serde_json::Value {
    serde_json::Value::Array(
        EIGHT_LABELS
            .iter()
            .map(|(id, name, start)| {
                serde_json::json!({"id": id, "name": name, "description": format!("The customer says \"{start} ...\"")})
            })
            .collect(),
    )
}

/// A valid job with `count` inline utterances spread evenly over [`EIGHT_LABELS`] (the CRD
/// allows at most 500 inline), all distinct, in one language.
pub fn inline_job(name: &str, base_url: &str, count: usize) -> serde_json::Value {
    let utterances: Vec<serde_json::Value> = (0..count)
        .map(|i| serde_json::json!({"text": utterance_text(i % 8, i / 8), "label": EIGHT_LABELS[i % 8].0}))
        .collect();
    guide_job(
        name,
        base_url,
        serde_json::json!({"labels": eight_labels_json(), "utterances": utterances}),
    )
}

/// A valid job with no inline utterances: its data is in `sources`, each a ConfigMap name, a
/// key and a format (`jsonl`, `csv` or `json`), holding [`utterance_document`]s.
pub fn config_map_job(
    name: &str,
    base_url: &str,
    sources: &[(String, String, &str)],
) -> serde_json::Value {
    let mut job = guide_job(
        name,
        base_url,
        serde_json::json!({
            "labels": eight_labels_json(),
            "utterancesFrom": sources
                .iter()
                .map(|(cm, key, format)| serde_json::json!({"configMapKeyRef": {"name": cm, "key": key}, "format": format}))
                .collect::<Vec<_>>(),
        }),
    );
    if let Some(spec) = job.get_mut("spec").and_then(|s| s.as_object_mut()) {
        spec.remove("utterances");
    }
    job
}

/// An utterance document of at most `bytes` bytes in `format` (`jsonl`, `csv` with a header, or
/// `json`), its lines going round [`EIGHT_LABELS`] so classes differ by at most one. Texts are
/// numbered from `first` in each label: documents of one job need ranges that do not overlap.
pub fn utterance_document(format: &str, bytes: usize, first: usize) -> String {
    let mut out = String::with_capacity(bytes);
    let (open, close) = match format {
        "csv" => ("text,label\n", ""),
        "json" => ("[", "]"),
        _ => ("", ""),
    };
    out.push_str(open);
    for i in 0.. {
        let (label, n) = (i % 8, first + i / 8);
        let text = utterance_text(label, n);
        let id = EIGHT_LABELS[label].0;
        let item = match format {
            "csv" => format!("{text},{id}\n"),
            "json" => {
                let sep = if i == 0 { "" } else { "," };
                format!("{sep}{}", serde_json::json!({"text": text, "label": id}))
            }
            _ => format!("{}\n", serde_json::json!({"text": text, "label": id})),
        };
        if out.len() + item.len() + close.len() > bytes {
            break;
        }
        out.push_str(&item);
    }
    out.push_str(close);
    out
}
