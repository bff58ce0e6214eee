//! The run's model as an MLflow 3 LoggedModel (`/api/2.0/mlflow/logged-models`): found by its
//! source run (one per run, so one per CXone job), else created with the provenance as params
//! and tags; finalized READY once its files and metrics are in, UPLOAD_FAILED when copying its
//! files failed (the next attempt reuses it and finalizes it READY). Imports the sibling client,
//! keys and wire modules.

use reqwest::Method;
use serde_json::{Value, json};

use super::api::{Api, parse};
use super::keys::{attribute_filter, non_empty};
use super::wire::{LoggedModelAnswer, LoggedModelInfo, LoggedModelSearch};
use super::{MAX_SEARCH_PAGES, Mlflow, SEARCH_PAGE};
use crate::registry::RegistryError;

/// The LoggedModel's `model_type`.
pub const MODEL_TYPE: &str = "cxone-ai-skill";

/// `LoggedModelStatus` values of MLflow's protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Finalized {
    Ready = 2,
    UploadFailed = 3,
}

impl Mlflow {
    /// The LoggedModel of `run_id` in the experiment, if an earlier attempt created one.
    pub(super) async fn find_logged_model(
        &self,
        api: &Api<'_>,
        experiment_id: &str,
        run_id: &str,
    ) -> Result<Option<LoggedModelInfo>, RegistryError> {
        let filter = attribute_filter("source_run_id", run_id);
        let mut token = String::new();
        for _ in 0..MAX_SEARCH_PAGES {
            let mut body = json!({
                "experiment_ids": [experiment_id],
                "filter": filter,
                "max_results": SEARCH_PAGE,
                "order_by": [{"field_name": "creation_timestamp", "ascending": true}],
            });
            if !token.is_empty() {
                body["page_token"] = json!(token);
            }
            let page: LoggedModelSearch = self
                .post(api, "logged-models/search", &body)
                .await
                .map_err(|e| e.classify("search the logged models"))
                .and_then(|v| parse(v, "logged-models/search"))?;
            if let Some(m) = page
                .models
                .into_iter()
                .find(|m| m.info.source_run_id == run_id && !m.info.model_id.is_empty())
            {
                return Ok(Some(m.info));
            }
            if page.next_page_token.is_empty() {
                return Ok(None);
            }
            token = page.next_page_token;
        }
        Ok(None)
    }

    /// A new LoggedModel of `run_id`, named after the registered model.
    pub(super) async fn create_logged_model(
        &self,
        api: &Api<'_>,
        experiment_id: &str,
        name: &str,
        run_id: &str,
        params: &[(String, String)],
        tags: &[(String, String)],
    ) -> Result<LoggedModelInfo, RegistryError> {
        let pairs = |list: &[(String, String)]| -> Vec<Value> {
            list.iter()
                .map(|(k, v)| json!({ "key": k, "value": v }))
                .collect()
        };
        let body = json!({
            "experiment_id": experiment_id,
            "name": logged_model_name(name),
            "model_type": MODEL_TYPE,
            "source_run_id": run_id,
            "params": pairs(params),
            "tags": pairs(tags),
        });
        let created: LoggedModelAnswer = self
            .post(api, "logged-models", &body)
            .await
            .map_err(|e| e.classify("create the logged model"))
            .and_then(|v| parse(v, "logged-models"))?;
        non_empty(created.model.info.model_id.clone(), "model_id")?;
        non_empty(created.model.info.artifact_uri.clone(), "artifact_uri")?;
        Ok(created.model.info)
    }

    /// Sets the LoggedModel's final status.
    pub(super) async fn finalize_logged_model(
        &self,
        api: &Api<'_>,
        model_id: &str,
        status: Finalized,
    ) -> Result<(), RegistryError> {
        // The id as one path segment, encoded by `Url` (an answer is not trusted to be `m-<hex>`).
        let mut url = api.endpoint("api/2.0/mlflow/logged-models");
        url.path_segments_mut()
            .map_err(|()| RegistryError::Rejected("the tracking URI cannot hold a path".into()))?
            .push(model_id);
        let body = json!({ "model_id": model_id, "status": status as i32 });
        self.call(api, Method::PATCH, url, &[], Some(&body))
            .await
            .map(|_| ())
            .map_err(|e| e.classify("finalize the logged model"))
    }
}

/// The tags of a LoggedModel: the run's provenance tags, so the model is read like its run
/// (MLflow's own `mlflow.*` run tags stay on the run).
pub(super) fn model_tags(run_tags: &[(String, String)]) -> Vec<(String, String)> {
    run_tags
        .iter()
        .filter(|(k, _)| !k.starts_with("mlflow."))
        .cloned()
        .collect()
}

/// The LoggedModel's name: the registered model's, without the characters MLflow refuses in
/// a LoggedModel name (`/ : . % " '`), which a registered model's name may hold.
pub(super) fn logged_model_name(registered: &str) -> String {
    let name: String = registered
        .chars()
        .map(|c| match c {
            '/' | ':' | '.' | '%' | '"' | '\'' => '_',
            c if c.is_control() => '_',
            c => c,
        })
        .take(MAX_NAME_CHARS)
        .collect();
    if name.trim().is_empty() {
        "model".to_string()
    } else {
        name
    }
}

/// MLflow keeps LoggedModel names of up to 500 characters; stay within.
const MAX_NAME_CHARS: usize = 250;
