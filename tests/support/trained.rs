//! "Train and export on the simulator": a CXone job trained to completion over plain HTTP
//! against a running simulator (in-process or the project's binary), and the signed URLs of
//! its exported model files, for tests and benches that need a model to register.
//!
//! ```ignore
//! mod support {
//!     pub mod trained;
//! }
//! let (job_id, source) =
//!     support::trained::train_and_export(&base, "test-client", "test-secret", &payload).await;
//! ```

use std::time::{Duration, Instant};

use cxone_skill_operator::cxone::model::{ExportResponse, JobState, JobStatus, SubmitResponse};
use cxone_skill_operator::registry::ModelSource;
use serde_json::{Value, json};

const JOBS: &str = "/api/v2/ai/skills/training/jobs";
/// Longest a job may take to complete.
const DEADLINE: Duration = Duration::from_secs(30);

/// Three intents with disjoint vocabularies, ten utterances each.
pub fn disjoint_intents_payload() -> Value {
    let mut utterances = Vec::new();
    for i in 0..10 {
        for (text, label) in [
            (
                format!("my invoice number {i} has a wrong charge"),
                "billing",
            ),
            (
                format!("will it rain or snow tomorrow morning {i}"),
                "weather",
            ),
            (
                format!("book a table for {i} people tonight please"),
                "booking",
            ),
        ] {
            utterances.push(json!({"text": text, "label": label, "language": "en"}));
        }
    }
    let labels: Vec<Value> = ["billing", "weather", "booking"]
        .iter()
        .map(|id| json!({"id": id, "name": id, "description": "test"}))
        .collect();
    json!({
        "skillId": "skill-abc-123",
        "trainingData": {"utterances": utterances, "validationSplit": 0.2, "language": "en"},
        "labels": labels,
        "hyperparameters": {"maxEpochs": 5, "earlyStopping": true, "patience": 2}
    })
}

/// Takes a token for `client_id`, submits `payload`, polls until the job completes and exports
/// its artifacts: the job id and the signed URLs of its model files.
pub async fn train_and_export(
    base: &str,
    client_id: &str,
    client_secret: &str,
    payload: &Value,
) -> (String, ModelSource) {
    let http = reqwest::Client::new();
    let token: Value = http
        .post(format!("{base}/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", client_secret),
            (
                "scope",
                "ai:skills:read ai:skills:write ai:training:read ai:training:write",
            ),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_string();
    let submitted: SubmitResponse = http
        .post(format!("{base}{JOBS}"))
        .bearer_auth(&token)
        .json(payload)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job_id = submitted.job_id;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let status: JobStatus = get_json(&http, &format!("{base}{JOBS}/{job_id}"), &token).await;
        if status.status == JobState::Completed {
            break;
        }
        assert!(
            !status.status.is_terminal(),
            "job {job_id} ended {:?}",
            status.status
        );
        assert!(Instant::now() < deadline, "job {job_id} never completed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let export: ExportResponse = get_json(
        &http,
        &format!("{base}{JOBS}/{job_id}/artifacts/export"),
        &token,
    )
    .await;
    let source = ModelSource {
        weights_url: export.artifacts.model_weights_url,
        config_url: export.artifacts.config_url,
    };
    (job_id, source)
}

/// `GET url` with the bearer token, its JSON answer.
async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
    token: &str,
) -> T {
    http.get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
