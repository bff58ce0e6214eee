//! The steps of [`super::Mlflow::register`] against the tracking server, each repeatable: find
//! the version or run an earlier call left, the experiment, the run created and finished, the
//! bounded wait for a version to be READY. Imports the sibling client, keys and wire modules.

use serde_json::json;
use tokio::time::Instant;

use super::api::{Api, parse};
use super::keys::{attribute_filter, non_empty, tag_filter, version_number};
use super::wire::{
    CreatedExperiment, ExperimentAnswer, ModelVersion, RunAnswer, RunInfo, RunSearch,
    VersionAnswer, VersionSearch,
};
use super::{
    JOB_ID_TAG, MAX_SEARCH_PAGES, Mlflow, READY_FIRST_POLL, READY_MAX_POLL, READY_TIMEOUT,
    SEARCH_PAGE,
};
use crate::http::MAX_DETAIL_CHARS;
use crate::registry::RegistryError;
use crate::text::truncate_chars;

impl Mlflow {
    /// The oldest usable version of `model` tagged with `job_id`.
    pub(super) async fn find_version(
        &self,
        api: &Api<'_>,
        model: &str,
        job_id: &str,
    ) -> Result<Option<ModelVersion>, RegistryError> {
        let filter = format!(
            "{} AND {}",
            attribute_filter("name", model),
            tag_filter(JOB_ID_TAG, job_id)
        );
        let mut found: Vec<ModelVersion> = Vec::new();
        let mut token = String::new();
        for _ in 0..MAX_SEARCH_PAGES {
            let page_size = SEARCH_PAGE.to_string();
            let mut query = vec![("filter", filter.as_str()), ("max_results", &page_size)];
            if !token.is_empty() {
                query.push(("page_token", &token));
            }
            let page: VersionSearch = self
                .get(api, "model-versions/search", &query)
                .await
                .map_err(|e| e.classify("search the model versions"))
                .and_then(|v| parse(v, "model-versions/search"))?;
            found.extend(page.model_versions.into_iter().filter(|v| {
                v.name == model
                    && v.status != "FAILED_REGISTRATION"
                    && v.tags
                        .iter()
                        .any(|t| t.key == JOB_ID_TAG && t.value == job_id)
            }));
            if page.next_page_token.is_empty() {
                return Ok(found.into_iter().min_by_key(|v| version_number(&v.version)));
            }
            token = page.next_page_token;
        }
        Err(RegistryError::Rejected(format!(
            "the search for versions of model {:?} matched more than {} pages",
            truncate_chars(model, 100),
            MAX_SEARCH_PAGES
        )))
    }

    /// Makes an existing version's state complete: READY, and its run FINISHED.
    pub(super) async fn complete_version(
        &self,
        api: &Api<'_>,
        version: ModelVersion,
    ) -> Result<ModelVersion, RegistryError> {
        let version = self.wait_ready(api, version).await?;
        if !version.run_id.is_empty() {
            let run: RunAnswer = match self
                .get(api, "runs/get", &[("run_id", version.run_id.as_str())])
                .await
            {
                Ok(v) => parse(v, "runs/get")?,
                // Deleted by someone since: the version stands on its own.
                Err(e) if e.is_code("RESOURCE_DOES_NOT_EXIST") => return Ok(version),
                Err(e) => return Err(e.classify("read the registered version's run")),
            };
            if run.run.info.status != "FINISHED" {
                self.finish_run(api, &version.run_id).await?;
            }
        }
        Ok(version)
    }

    pub(super) async fn experiment(
        &self,
        api: &Api<'_>,
        name: &str,
    ) -> Result<String, RegistryError> {
        for _ in 0..2 {
            match self
                .get(api, "experiments/get-by-name", &[("experiment_name", name)])
                .await
            {
                Ok(v) => {
                    let e: ExperimentAnswer = parse(v, "experiments/get-by-name")?;
                    if e.experiment.lifecycle_stage == "deleted" {
                        return Err(RegistryError::Rejected(format!(
                            "the experiment {:?} is deleted: restore it or choose another name",
                            truncate_chars(name, 100)
                        )));
                    }
                    return non_empty(e.experiment.experiment_id, "experiment_id");
                }
                Err(e) if e.is_code("RESOURCE_DOES_NOT_EXIST") => {}
                Err(e) => return Err(e.classify("read the experiment")),
            }
            match self
                .post(api, "experiments/create", &json!({ "name": name }))
                .await
            {
                Ok(v) => {
                    let created: CreatedExperiment = parse(v, "experiments/create")?;
                    return non_empty(created.experiment_id, "experiment_id");
                }
                // Created by someone else in between: read it again.
                Err(e) if e.is_code("RESOURCE_ALREADY_EXISTS") => {}
                Err(e) => return Err(e.classify("create the experiment")),
            }
        }
        Err(RegistryError::Unreachable(format!(
            "the experiment {:?} is neither readable nor creatable; try again",
            truncate_chars(name, 100)
        )))
    }

    /// The oldest active run of the experiment tagged with `job_id`.
    pub(super) async fn find_run(
        &self,
        api: &Api<'_>,
        experiment_id: &str,
        job_id: &str,
    ) -> Result<Option<RunInfo>, RegistryError> {
        let filter = tag_filter(JOB_ID_TAG, job_id);
        let mut token = String::new();
        for _ in 0..MAX_SEARCH_PAGES {
            let mut body = json!({
                "experiment_ids": [experiment_id],
                "filter": filter,
                "run_view_type": "ACTIVE_ONLY",
                "max_results": SEARCH_PAGE,
                "order_by": ["attributes.start_time ASC"],
            });
            if !token.is_empty() {
                body["page_token"] = json!(token);
            }
            let page: RunSearch = self
                .post(api, "runs/search", &body)
                .await
                .map_err(|e| e.classify("search the runs"))
                .and_then(|v| parse(v, "runs/search"))?;
            let mut matching = page.runs.into_iter().filter(|r| {
                r.data
                    .tags
                    .iter()
                    .any(|t| t.key == JOB_ID_TAG && t.value == job_id)
            });
            if let Some(run) = matching.next() {
                return Ok(Some(run.info));
            }
            if page.next_page_token.is_empty() {
                return Ok(None);
            }
            token = page.next_page_token;
        }
        Ok(None)
    }

    pub(super) async fn create_run(
        &self,
        api: &Api<'_>,
        experiment_id: &str,
        tags: &[(String, String)],
    ) -> Result<RunInfo, RegistryError> {
        let run_name = tags
            .iter()
            .find(|(k, _)| k == "mlflow.runName")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let body = json!({
            "experiment_id": experiment_id,
            "run_name": run_name,
            "start_time": jiff::Timestamp::now().as_millisecond(),
            "tags": tags.iter().map(|(k, v)| json!({ "key": k, "value": v })).collect::<Vec<_>>(),
        });
        let run: RunAnswer = self
            .post(api, "runs/create", &body)
            .await
            .map_err(|e| e.classify("create the run"))
            .and_then(|v| parse(v, "runs/create"))?;
        non_empty(run.run.info.run_id.clone(), "run_id")?;
        Ok(run.run.info)
    }

    pub(super) async fn finish_run(
        &self,
        api: &Api<'_>,
        run_id: &str,
    ) -> Result<(), RegistryError> {
        self.post(
            api,
            "runs/update",
            &json!({
                "run_id": run_id,
                "status": "FINISHED",
                "end_time": jiff::Timestamp::now().as_millisecond(),
            }),
        )
        .await
        .map(|_| ())
        .map_err(|e| e.classify("mark the run finished"))
    }

    /// Polls the version until it is READY (bounded; condition-based).
    pub(super) async fn wait_ready(
        &self,
        api: &Api<'_>,
        mut version: ModelVersion,
    ) -> Result<ModelVersion, RegistryError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut pause = READY_FIRST_POLL;
        loop {
            match version.status.as_str() {
                "READY" | "" => return Ok(version),
                "FAILED_REGISTRATION" => {
                    return Err(RegistryError::Rejected(format!(
                        "model version {} failed to register: {}",
                        version.version,
                        truncate_chars(&version.status_message, MAX_DETAIL_CHARS)
                    )));
                }
                _ => {}
            }
            if Instant::now() + pause > deadline {
                return Err(RegistryError::Unreachable(format!(
                    "model version {} is still {} after {} s",
                    version.version,
                    version.status,
                    READY_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(READY_MAX_POLL);
            let name = version.name.clone();
            let number = version.version.clone();
            let answer: VersionAnswer = self
                .get(
                    api,
                    "model-versions/get",
                    &[("name", name.as_str()), ("version", number.as_str())],
                )
                .await
                .map_err(|e| e.classify("read the model version"))
                .and_then(|v| parse(v, "model-versions/get"))?;
            version = answer.model_version;
        }
    }
}
