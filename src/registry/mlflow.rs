//! MLflow Model Registry over its REST API (`/api/2.0/mlflow/…`).
//!
//! [`Mlflow::register`] registers one run's model exactly once per CXone job id:
//!
//! 1. `registered-models/create` (an existing model is fine);
//! 2. `model-versions/search` for a version of the model tagged [`JOB_ID_TAG`] = the job id: if
//!    one exists, it is completed (waited for until READY, its run marked FINISHED) and returned
//!    with `created: false`;
//! 3. the experiment: `experiments/get-by-name`, else `experiments/create`;
//! 4. the run: an active run of the experiment tagged with the job id (left by an attempt that
//!    broke off), else `runs/create` with the provenance as tags;
//! 5. the files, through the tracking server's artifact proxy
//!    (`PUT /api/2.0/mlflow-artifacts/artifacts/<path>`, the server started with
//!    `--serve-artifacts`): the weights and config streamed from the signed URLs into `model/`,
//!    the documents beside it; then the sizes the server stored are checked;
//! 6. `runs/log-batch`: params, metrics and tags, in batches within the server's limits;
//! 7. `runs/update` to FINISHED;
//! 8. `model-versions/create` with the source `<run artifact URI>/model`, the run id and the
//!    job-id tag in the same request (a crash cannot leave an untagged version), then a bounded
//!    wait until the version is READY.
//!
//! Every step can be repeated: a call that broke off anywhere is finished by the next call with
//! the same job id. Errors are classified as [`RegistryError`]s; their messages never carry a
//! password, a token or a signed URL's query.
//!
//! The filter strings of the searches cannot escape a quote (the server strips the outer quotes
//! and keeps the rest verbatim), so a value holding `'` or `\` is searched with `LIKE` and those
//! characters as single-character wildcards; every result is compared exactly before use.

use std::collections::{BTreeMap, HashSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{
    AUDIT_FILE, CONFIG_FILE, Champion, Documents, EVALUATION_FILE, ModelSource, PICTURE_FILE,
    Provenance, RegistryAuth, RegistryError, WEIGHTS_FILE, redact_url,
};
use crate::text::truncate_chars;

/// The model-version and run tag holding the CXone job id: the key of "exactly once".
pub const JOB_ID_TAG: &str = "cxone.job_id";

/// The directory of the run's artifacts that becomes the model version's source.
pub const MODEL_DIR: &str = "model";

/// The param recording the training data's digest.
pub const DATASET_DIGEST_PARAM: &str = "dataset_digest";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for one read (and, while uploading, for any progress).
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest time for one JSON call, answer included (files have no total limit: they stream).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a new model version may stay PENDING_REGISTRATION before the call gives up (the
/// next call finds the version by its tag and waits again).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const READY_FIRST_POLL: Duration = Duration::from_millis(100);
const READY_MAX_POLL: Duration = Duration::from_secs(2);

/// Most bytes read of an error answer.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Most bytes read of a JSON answer.
const MAX_JSON_BODY: usize = 4 * 1024 * 1024;
/// A server message quoted in an error is cut to this many characters.
const MAX_MESSAGE_CHARS: usize = 300;

/// Results per search page, and most pages read (a search matching more is refused).
const SEARCH_PAGE: u32 = 100;
const MAX_SEARCH_PAGES: usize = 20;

/// The server's limits for one `runs/log-batch` (as MLflow 3.17 validates it).
const MAX_PARAMS_TAGS_PER_BATCH: usize = 100;
const MAX_METRICS_PER_BATCH: usize = 1000;
const MAX_ENTITIES_PER_BATCH: usize = 1000;
/// The server refuses requests over 1 MB; stay well under.
const MAX_BATCH_BYTES: usize = 900_000;
/// Longest key of a param, metric or tag, and longest param and tag values the server keeps.
const MAX_KEY_CHARS: usize = 250;
const MAX_PARAM_VALUE_CHARS: usize = 6000;
const MAX_TAG_VALUE_CHARS: usize = 8000;
/// A job id longer than this is refused: a clipped tag value could not be matched exactly.
const MAX_JOB_ID_CHARS: usize = 1000;

/// Where a model is registered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MlflowTarget {
    /// The tracking server, e.g. `http://127.0.0.1:5000` or `https://mlflow.example.com/prefix`
    /// (a path prefix is kept).
    pub tracking_uri: String,
    /// The registered model.
    pub model_name: String,
    /// The experiment holding the runs.
    pub experiment_name: String,
}

/// What [`Mlflow::register`] registered (or found registered).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MlflowRegistered {
    pub run_id: String,
    /// The model version number.
    pub version: String,
    /// The version's source URI (`<run artifact URI>/model`).
    pub source: String,
    /// False when a version for this CXone job already existed.
    pub created: bool,
}

/// A client of MLflow tracking servers and their model registries.
#[derive(Clone, Debug)]
pub struct Mlflow {
    /// Calls to MLflow: never follows a redirect (it could carry the credentials elsewhere, and
    /// a streamed upload cannot be sent twice).
    api: reqwest::Client,
    /// Downloads from the signed URLs: no credentials, redirects followed (CDNs use them).
    source: reqwest::Client,
}

impl Mlflow {
    /// A client with a 10 s connect timeout and a 60 s limit on every read (and on any pause
    /// of an upload); JSON calls are limited to 120 s in all, file transfers have no total
    /// limit.
    pub fn new() -> Result<Self, RegistryError> {
        let agent = format!("cxone-skill-operator/{}", env!("CARGO_PKG_VERSION"));
        let build = |redirects: reqwest::redirect::Policy| {
            reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(READ_TIMEOUT)
                .user_agent(agent.clone())
                .redirect(redirects)
                .build()
                .map_err(|e| {
                    RegistryError::Rejected(format!(
                        "cannot build the HTTP client: {}",
                        error_chain(e)
                    ))
                })
        };
        Ok(Self {
            api: build(reqwest::redirect::Policy::none())?,
            source: build(reqwest::redirect::Policy::limited(5))?,
        })
    }

    /// Registers this run's model exactly once per CXone job id (see the module
    /// documentation). Repeating the call with the same job id finishes what an earlier call
    /// left undone, or returns the existing version with `created: false`.
    pub async fn register(
        &self,
        target: &MlflowTarget,
        auth: &RegistryAuth,
        source: &ModelSource,
        provenance: &Provenance,
        metrics: &BTreeMap<String, f64>,
        documents: &Documents,
    ) -> Result<MlflowRegistered, RegistryError> {
        let api = Api::new(&target.tracking_uri, auth)?;
        check_target(target)?;
        let job_id = provenance.cxone_job_id.as_str();
        if job_id.is_empty() || job_id.chars().count() > MAX_JOB_ID_CHARS {
            return Err(RegistryError::Rejected(format!(
                "the CXone job id must have 1 to {MAX_JOB_ID_CHARS} characters"
            )));
        }
        let model = target.model_name.as_str();

        // 1. The registered model.
        match self
            .post(&api, "registered-models/create", &json!({ "name": model }))
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_code("RESOURCE_ALREADY_EXISTS") => {}
            Err(e) => return Err(e.classify("create the registered model")),
        }

        // 2. Exactly once: a version already registered for this job.
        if let Some(version) = self.find_version(&api, model, job_id).await? {
            let version = self.complete_version(&api, version).await?;
            return Ok(MlflowRegistered {
                run_id: version.run_id,
                version: version.version,
                source: version.source,
                created: false,
            });
        }

        // 3. The experiment.
        let experiment_id = self.experiment(&api, &target.experiment_name).await?;

        // 4. The run: one left by an earlier attempt for this job, else a new one.
        let tags = run_tags(provenance);
        let run = match self.find_run(&api, &experiment_id, job_id).await? {
            Some(run) => run,
            None => self.create_run(&api, &experiment_id, &tags).await?,
        };
        let root = ArtifactRoot::parse(&api.base, &run.artifact_uri)?;

        // 5. The files.
        let weights = format!("{MODEL_DIR}/{WEIGHTS_FILE}");
        let config = format!("{MODEL_DIR}/{CONFIG_FILE}");
        let mut sizes = BTreeMap::new();
        for (path, url) in [
            (&weights, &source.weights_url),
            (&config, &source.config_url),
        ] {
            let size = self.copy_from_source(&api, &root, path, url).await?;
            sizes.insert(path.clone(), size);
        }
        for (name, bytes, content_type) in [
            (
                EVALUATION_FILE,
                &documents.evaluation_json,
                "application/json",
            ),
            (AUDIT_FILE, &documents.audit_json, "application/json"),
            (PICTURE_FILE, &documents.picture_svg, "image/svg+xml"),
        ] {
            self.upload(&api, &root, name, bytes, content_type).await?;
            sizes.insert(name.to_string(), bytes.len() as u64);
        }
        self.check_sizes(&api, &root, &sizes).await?;

        // 6. Params, metrics and tags.
        let timestamp = provenance.created.as_millisecond().max(0);
        for batch in log_batches(&run_params(provenance), metrics, &tags, timestamp) {
            let mut body = batch;
            body["run_id"] = json!(run.run_id);
            self.post(&api, "runs/log-batch", &body)
                .await
                .map_err(|e| e.classify("log the run's params and metrics"))?;
        }

        // 7. The run is complete.
        self.finish_run(&api, &run.run_id).await?;

        // 8. The version, tagged in the same request.
        let body = json!({
            "name": model,
            "source": format!("{}/{MODEL_DIR}", run.artifact_uri.trim_end_matches('/')),
            "run_id": run.run_id,
            "tags": [{ "key": JOB_ID_TAG, "value": job_id }],
            "description": format!(
                "CXone job {} of {}/{} (run {})",
                truncate_chars(job_id, 200),
                provenance.namespace,
                provenance.name,
                provenance.run
            ),
        });
        let created: VersionAnswer = self
            .post(&api, "model-versions/create", &body)
            .await
            .map_err(|e| e.classify("create the model version"))
            .and_then(|v| parse(v, "model-versions/create"))?;
        let version = self.wait_ready(&api, created.model_version).await?;
        Ok(MlflowRegistered {
            run_id: version.run_id,
            version: version.version,
            source: version.source,
            created: true,
        })
    }

    /// Points `alias` of the model at `version` (moving it if it pointed elsewhere).
    pub async fn set_alias(
        &self,
        target: &MlflowTarget,
        auth: &RegistryAuth,
        alias: &str,
        version: &str,
    ) -> Result<(), RegistryError> {
        let api = Api::new(&target.tracking_uri, auth)?;
        check_target(target)?;
        self.post(
            &api,
            "registered-models/alias",
            &json!({ "name": target.model_name, "alias": alias, "version": version }),
        )
        .await
        .map(|_| ())
        .map_err(|e| e.classify("set the model alias"))
    }

    /// The version the alias points at and its run's metrics; `Ok(None)` when the alias (or
    /// the model) does not exist. A metric whose value is not a finite number is left out.
    pub async fn champion(
        &self,
        target: &MlflowTarget,
        auth: &RegistryAuth,
        alias: &str,
    ) -> Result<Option<Champion>, RegistryError> {
        let api = Api::new(&target.tracking_uri, auth)?;
        check_target(target)?;
        // The model's alias list, not `registered-models/alias`: that answers a missing alias
        // with a generic 400 that cannot be told apart from a malformed request.
        let model: ModelAnswer = match self
            .get(
                &api,
                "registered-models/get",
                &[("name", target.model_name.as_str())],
            )
            .await
        {
            Ok(v) => parse(v, "registered-models/get")?,
            Err(e) if e.is_code("RESOURCE_DOES_NOT_EXIST") => return Ok(None),
            Err(e) => return Err(e.classify("read the registered model")),
        };
        let Some(version) = model
            .registered_model
            .aliases
            .into_iter()
            .find(|a| a.alias == alias)
            .map(|a| a.version)
        else {
            return Ok(None);
        };
        let mv: VersionAnswer = self
            .get(
                &api,
                "model-versions/get",
                &[("name", target.model_name.as_str()), ("version", &version)],
            )
            .await
            .map_err(|e| e.classify("read the champion's model version"))
            .and_then(|v| parse(v, "model-versions/get"))?;
        let mut metrics = BTreeMap::new();
        if !mv.model_version.run_id.is_empty() {
            match self
                .get(
                    &api,
                    "runs/get",
                    &[("run_id", mv.model_version.run_id.as_str())],
                )
                .await
            {
                Ok(v) => {
                    let run: RunAnswer = parse(v, "runs/get")?;
                    for m in run.run.data.metrics {
                        if let Some(value) = metric_value(&m.value) {
                            metrics.insert(m.key, value);
                        }
                    }
                }
                // A deleted run: the champion has no metrics to compare.
                Err(e) if e.is_code("RESOURCE_DOES_NOT_EXIST") => {}
                Err(e) => return Err(e.classify("read the champion's run")),
            }
        }
        Ok(Some(Champion {
            reference: mv.model_version.version,
            metrics,
        }))
    }

    // ---- the steps of `register` ---------------------------------------------------------

    /// The oldest usable version of `model` tagged with `job_id`.
    async fn find_version(
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
    async fn complete_version(
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

    async fn experiment(&self, api: &Api<'_>, name: &str) -> Result<String, RegistryError> {
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
    async fn find_run(
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

    async fn create_run(
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

    async fn finish_run(&self, api: &Api<'_>, run_id: &str) -> Result<(), RegistryError> {
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

    /// Streams one file from a signed URL into the run's artifacts; returns its size.
    async fn copy_from_source(
        &self,
        api: &Api<'_>,
        root: &ArtifactRoot,
        path: &str,
        url: &str,
    ) -> Result<u64, RegistryError> {
        let shown = redact_url(url);
        let response =
            self.source.get(url).send().await.map_err(|e| {
                RegistryError::Source(format!("download {shown}: {}", error_chain(e)))
            })?;
        let status = response.status();
        if matches!(status.as_u16(), 401 | 403 | 404 | 410) {
            return Err(RegistryError::SourceExpired(format!(
                "download {shown}: HTTP {status}"
            )));
        }
        if !status.is_success() {
            return Err(RegistryError::Source(format!(
                "download {shown}: HTTP {status}"
            )));
        }
        let declared = response.content_length();
        let progress = Arc::new(Progress::new());
        let failure = Arc::new(Mutex::new(None));
        let stream = Metered {
            inner: Box::pin(response.bytes_stream()),
            declared,
            seen: 0,
            progress: progress.clone(),
            failure: failure.clone(),
            shown: shown.clone(),
        };
        let target = root.file_url(path);
        let mut request = self
            .api
            .put(target.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(reqwest::Body::wrap_stream(stream));
        // The server takes a chunked body too; the declared length lets any proxy in front of
        // it (and the server's own limits) see the size up front.
        if let Some(len) = declared {
            request = request.header(reqwest::header::CONTENT_LENGTH, len);
        }
        let request = api.authorize(request);
        let sent = stall_limited(request.send(), &progress, READ_TIMEOUT).await;
        // A broken download is reported as such, whatever the upload made of it.
        if let Some(e) = failure.lock().ok().and_then(|mut f| f.take()) {
            return Err(e);
        }
        let response = match sent {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                return Err(RegistryError::Unreachable(format!(
                    "upload {}: {}",
                    redact_url(target.as_str()),
                    error_chain(e)
                )));
            }
            None => {
                return Err(RegistryError::Unreachable(format!(
                    "upload {}: no progress for {} s",
                    redact_url(target.as_str()),
                    READ_TIMEOUT.as_secs()
                )));
            }
        };
        api.expect_success(response, &target, "upload an artifact")
            .await?;
        Ok(progress.bytes.load(Ordering::Relaxed))
    }

    async fn upload(
        &self,
        api: &Api<'_>,
        root: &ArtifactRoot,
        path: &str,
        bytes: &[u8],
        content_type: &str,
    ) -> Result<(), RegistryError> {
        let target = root.file_url(path);
        let request = api.authorize(
            self.api
                .put(target.clone())
                .timeout(CALL_TIMEOUT)
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(bytes.to_vec()),
        );
        let response = request.send().await.map_err(|e| {
            RegistryError::Unreachable(format!(
                "upload {}: {}",
                redact_url(target.as_str()),
                error_chain(e)
            ))
        })?;
        api.expect_success(response, &target, "upload an artifact")
            .await
    }

    /// Compares the sizes the server stored with the bytes sent (a server that dropped a
    /// body would otherwise go unnoticed).
    async fn check_sizes(
        &self,
        api: &Api<'_>,
        root: &ArtifactRoot,
        expected: &BTreeMap<String, u64>,
    ) -> Result<(), RegistryError> {
        let mut stored: BTreeMap<String, Option<u64>> = BTreeMap::new();
        let dirs: HashSet<&str> = expected
            .keys()
            .map(|p| p.rsplit_once('/').map_or("", |(d, _)| d))
            .collect();
        let mut dirs: Vec<&str> = dirs.into_iter().collect();
        dirs.sort_unstable();
        for dir in dirs {
            let listing_path = root.listing_path(dir);
            let url = api.endpoint("api/2.0/mlflow-artifacts/artifacts");
            let listing: Listing = self
                .call(api, Method::GET, url, &[("path", &listing_path)], None)
                .await
                .map_err(|e| e.classify("list the uploaded artifacts"))
                .and_then(|v| parse(v, "mlflow-artifacts/artifacts"))?;
            for f in listing.files {
                let name = f.path.rsplit('/').next().unwrap_or_default().to_string();
                let key = if dir.is_empty() {
                    name
                } else {
                    format!("{dir}/{name}")
                };
                stored.insert(key, file_size(&f.file_size));
            }
        }
        for (path, size) in expected {
            match stored.get(path) {
                Some(Some(s)) if s == size => {}
                Some(Some(s)) => {
                    return Err(RegistryError::Unreachable(format!(
                        "the server stored {s} bytes of {path}, {size} were sent; try again"
                    )));
                }
                Some(None) => {}
                None => {
                    return Err(RegistryError::Unreachable(format!(
                        "the server does not list {path} after its upload; try again"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Polls the version until it is READY (bounded; condition-based).
    async fn wait_ready(
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
                        truncate_chars(&version.status_message, MAX_MESSAGE_CHARS)
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

    // ---- HTTP ------------------------------------------------------------------------------

    async fn get(
        &self,
        api: &Api<'_>,
        method: &str,
        query: &[(&str, &str)],
    ) -> Result<Value, CallError> {
        let url = api.endpoint(&format!("api/2.0/mlflow/{method}"));
        self.call(api, Method::GET, url, query, None).await
    }

    async fn post(&self, api: &Api<'_>, method: &str, body: &Value) -> Result<Value, CallError> {
        let url = api.endpoint(&format!("api/2.0/mlflow/{method}"));
        self.call(api, Method::POST, url, &[], Some(body)).await
    }

    /// One JSON call: the answer's JSON, or the refusal with MLflow's error code.
    async fn call(
        &self,
        api: &Api<'_>,
        method: Method,
        url: Url,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, CallError> {
        let mut url = url;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut request = self
            .api
            .request(method, url.clone())
            .timeout(CALL_TIMEOUT)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        let shown = redact_url(url.as_str());
        let response = api.authorize(request).send().await.map_err(|e| {
            CallError::Other(RegistryError::Unreachable(format!(
                "{shown}: {}",
                error_chain(e)
            )))
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(api.refusal(response, &shown).await);
        }
        let bytes = read_capped(response, MAX_JSON_BODY, &shown)
            .await
            .map_err(CallError::Other)?;
        if bytes.is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            CallError::Other(RegistryError::Rejected(format!(
                "{shown}: the answer is not JSON ({e}); is the tracking URI an MLflow server?"
            )))
        })
    }
}

/// The tracking server's base URL and the credentials for it.
struct Api<'a> {
    base: Url,
    auth: &'a RegistryAuth,
}

impl<'a> Api<'a> {
    fn new(tracking_uri: &str, auth: &'a RegistryAuth) -> Result<Self, RegistryError> {
        Ok(Self {
            base: api_base(tracking_uri)?,
            auth,
        })
    }

    /// `<base>/<path>`, keeping the base's path prefix.
    fn endpoint(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        let prefix = self.base.path().trim_end_matches('/');
        url.set_path(&format!("{prefix}/{path}"));
        url
    }

    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.auth {
            RegistryAuth::Anonymous => request,
            RegistryAuth::Basic { username, password } => {
                request.basic_auth(username, Some(password))
            }
            RegistryAuth::Bearer { token } => request.bearer_auth(token),
        }
    }

    /// The secrets that must never appear in a message.
    fn secrets(&self) -> Vec<&str> {
        match self.auth {
            RegistryAuth::Anonymous => vec![],
            RegistryAuth::Basic { password, .. } => vec![password.as_str()],
            RegistryAuth::Bearer { token } => vec![token.as_str()],
        }
    }

    async fn refusal(&self, response: reqwest::Response, shown: &str) -> CallError {
        let status = response.status();
        let body = read_capped(response, MAX_ERROR_BODY, shown)
            .await
            .unwrap_or_default();
        let (code, message) = match serde_json::from_slice::<ErrorAnswer>(&body) {
            Ok(e) => (e.error_code, e.message),
            Err(_) => {
                let text = String::from_utf8_lossy(&body).into_owned();
                let html = text.trim_start().get(..5).is_some_and(|s| {
                    s.eq_ignore_ascii_case("<!doc") || s.eq_ignore_ascii_case("<html")
                });
                if html {
                    // Not MLflow's JSON: a proxy's or another server's page.
                    let hint = "an HTML page, not an MLflow answer (is the tracking URI right, \
                                path prefix included?)";
                    (String::new(), hint.to_string())
                } else {
                    (String::new(), text)
                }
            }
        };
        let mut message = truncate_chars(message.trim(), MAX_MESSAGE_CHARS);
        for secret in self.secrets() {
            if !secret.is_empty() {
                message = message.replace(secret, "<redacted>");
            }
        }
        CallError::Status {
            status,
            code,
            message,
            shown: shown.to_string(),
        }
    }

    async fn expect_success(
        &self,
        response: reqwest::Response,
        url: &Url,
        what: &str,
    ) -> Result<(), RegistryError> {
        if response.status().is_success() {
            // Drain the (small) answer so the connection can be reused.
            let _ = read_capped(response, MAX_ERROR_BODY, "").await;
            return Ok(());
        }
        Err(self
            .refusal(response, &redact_url(url.as_str()))
            .await
            .classify(what))
    }
}

/// Where a run's artifacts live on the artifact proxy.
#[derive(Debug, PartialEq)]
struct ArtifactRoot {
    /// `<base>/api/2.0/mlflow-artifacts/artifacts/<root path>`.
    url: Url,
    /// The run's artifact path under the proxy's root (`<experiment>/<run>/artifacts`).
    path: String,
}

impl ArtifactRoot {
    /// Maps a run's `mlflow-artifacts:` URI onto the tracking server's artifact proxy the way
    /// MLflow's own client does: `<tracking URI path>/api/2.0/mlflow-artifacts/artifacts/` +
    /// the URI's path, with runs of `/` collapsed. A URI naming another host is refused (the
    /// credentials would go there), and so is a path outside a conservative alphabet.
    fn parse(base: &Url, artifact_uri: &str) -> Result<Self, RegistryError> {
        let reject = |why: &str| {
            RegistryError::Rejected(format!(
                "the run's artifact URI {:?} {why}",
                truncate_chars(artifact_uri, 200)
            ))
        };
        let Some(rest) = artifact_uri.strip_prefix("mlflow-artifacts:") else {
            return Err(reject(
                "is not served by the tracking server: start it with --serve-artifacts (and no \
                 --default-artifact-root), or use an experiment whose artifact location is \
                 mlflow-artifacts:/",
            ));
        };
        let path = match rest.strip_prefix("//") {
            Some(authority_and_path) => {
                let (authority, path) = authority_and_path
                    .split_once('/')
                    .unwrap_or((authority_and_path, ""));
                let ours = match (base.host_str(), base.port_or_known_default()) {
                    (Some(host), Some(port)) => {
                        authority == host || authority == format!("{host}:{port}")
                    }
                    (Some(host), None) => authority == host,
                    _ => false,
                };
                if !authority.is_empty() && !ours {
                    return Err(reject("names another host than the tracking server"));
                }
                path
            }
            None => rest,
        };
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        if segments.is_empty() {
            return Err(reject("has no path"));
        }
        let safe = |s: &str| {
            s != "."
                && s != ".."
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if !segments.iter().all(|s| safe(s)) {
            return Err(reject(
                "has a path outside letters, digits, '-', '_' and '.'",
            ));
        }
        let path = segments.join("/");
        let mut url = base.clone();
        let prefix = base.path().trim_end_matches('/');
        url.set_path(&format!(
            "{prefix}/api/2.0/mlflow-artifacts/artifacts/{path}"
        ));
        Ok(Self { url, path })
    }

    /// The proxy URL of a file (`path` relative to the run's artifact root).
    fn file_url(&self, path: &str) -> Url {
        let mut url = self.url.clone();
        let joined = format!("{}/{}", url.path().trim_end_matches('/'), path);
        url.set_path(&joined);
        url
    }

    /// The `path` parameter that lists a directory (relative to the run's artifact root).
    fn listing_path(&self, dir: &str) -> String {
        if dir.is_empty() {
            self.path.clone()
        } else {
            format!("{}/{dir}", self.path)
        }
    }
}

/// The tracking URI as a base URL: http or https, no query or fragment, no trailing `/`.
fn api_base(tracking_uri: &str) -> Result<Url, RegistryError> {
    let reject = |why: &str| {
        RegistryError::Rejected(format!(
            "the MLflow tracking URI {} {why}",
            redact_url(tracking_uri)
        ))
    };
    let mut url = Url::parse(tracking_uri.trim()).map_err(|_| reject("is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(reject("must use http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(reject("has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(reject("must not have a query or fragment"));
    }
    let path = url.path().trim_end_matches('/').to_string();
    url.set_path(&path);
    Ok(url)
}

fn check_target(target: &MlflowTarget) -> Result<(), RegistryError> {
    if target.model_name.trim().is_empty() {
        return Err(RegistryError::Rejected("the model name is empty".into()));
    }
    if target.experiment_name.trim().is_empty() {
        return Err(RegistryError::Rejected(
            "the experiment name is empty".into(),
        ));
    }
    Ok(())
}

// ---- filters, keys and batches (pure) -------------------------------------------------------

/// A filter value: `= '<value>'` when the value can be quoted as is; otherwise `LIKE` with each
/// `'` and `\` (which the server's parser cannot take inside quotes) as the single-character
/// wildcard `_`. The `LIKE` form may match more than the value: compare results exactly.
fn filter_value(value: &str) -> String {
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
fn tag_filter(key: &str, value: &str) -> String {
    format!("tags.`{key}` {}", filter_value(value))
}

/// `<attribute> = '<value>'` (see [`filter_value`]).
fn attribute_filter(attribute: &str, value: &str) -> String {
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
fn unique_keys<'a, V>(entries: impl IntoIterator<Item = (&'a str, V)>) -> Vec<(String, V)> {
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
fn run_tags(p: &Provenance) -> Vec<(String, String)> {
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
fn run_params(p: &Provenance) -> Vec<(String, String)> {
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
fn log_batches(
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

fn metric_json(v: f64) -> Value {
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
fn metric_value(v: &Value) -> Option<f64> {
    let x = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse::<f64>().ok(),
        _ => None,
    }?;
    x.is_finite().then_some(x)
}

fn file_size(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Version numbers sort numerically; anything else last.
fn version_number(v: &str) -> u64 {
    v.parse().unwrap_or(u64::MAX)
}

fn non_empty(value: String, field: &str) -> Result<String, RegistryError> {
    if value.is_empty() {
        Err(RegistryError::Rejected(format!(
            "the MLflow answer lacks {field}"
        )))
    } else {
        Ok(value)
    }
}

// ---- errors ---------------------------------------------------------------------------------

/// A failed call: refused with an HTTP status (and MLflow's error code, if it sent one), or
/// already classified.
#[derive(Debug)]
enum CallError {
    Status {
        status: StatusCode,
        code: String,
        message: String,
        /// The redacted URL.
        shown: String,
    },
    Other(RegistryError),
}

impl CallError {
    fn is_code(&self, code: &str) -> bool {
        matches!(self, Self::Status { code: c, .. } if c == code)
    }

    /// The registry error for a failed attempt to do `what`.
    fn classify(self, what: &str) -> RegistryError {
        let (status, code, message, shown) = match self {
            Self::Other(e) => return e,
            Self::Status {
                status,
                code,
                message,
                shown,
            } => (status, code, message, shown),
        };
        let code = if code.is_empty() {
            String::new()
        } else {
            format!(" {code}")
        };
        let text = format!(
            "{what} ({shown}): HTTP {}{code}: {message}",
            status.as_u16()
        );
        match status.as_u16() {
            401 | 403 => RegistryError::Auth(text),
            429 | 500..=599 => RegistryError::Unreachable(text),
            300..=399 => RegistryError::Rejected(format!(
                "{text} (redirected: set the tracking URI to the server's final address)"
            )),
            _ => RegistryError::Rejected(text),
        }
    }
}

/// A transport error with its causes, without any URL (a signed URL's query must not leak).
fn error_chain(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out: "
    } else if e.is_connect() {
        "cannot connect: "
    } else {
        ""
    };
    let e = e.without_url();
    let mut message = format!("{kind}{e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    truncate_chars(&message, MAX_MESSAGE_CHARS)
}

/// At most `cap` bytes of the answer; a longer answer is an error.
async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
    shown: &str,
) -> Result<Vec<u8>, RegistryError> {
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Err(RegistryError::Rejected(format!(
            "{shown}: the answer is larger than {cap} bytes"
        )));
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > cap {
                    return Err(RegistryError::Rejected(format!(
                        "{shown}: the answer is larger than {cap} bytes"
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => {
                return Err(RegistryError::Unreachable(format!(
                    "{shown}: reading the answer: {}",
                    error_chain(e)
                )));
            }
        }
    }
}

fn parse<T: for<'de> Deserialize<'de>>(value: Value, what: &str) -> Result<T, RegistryError> {
    serde_json::from_value(value).map_err(|e| {
        RegistryError::Rejected(format!(
            "unexpected answer from {what}: {}",
            truncate_chars(&e.to_string(), MAX_MESSAGE_CHARS)
        ))
    })
}

// ---- streaming --------------------------------------------------------------------------------

/// When an upload last made progress, and how many bytes it passed on.
struct Progress {
    start: Instant,
    last_ms: AtomicU64,
    bytes: AtomicU64,
}

impl Progress {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    fn touch(&self, bytes: u64) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(now, Ordering::Relaxed);
        self.bytes.store(bytes, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// Runs `fut` while it keeps making progress: `None` once nothing moved for `limit`.
async fn stall_limited<F: std::future::Future>(
    fut: F,
    progress: &Progress,
    limit: Duration,
) -> Option<F::Output> {
    tokio::pin!(fut);
    let check = (limit / 4).max(Duration::from_millis(50));
    loop {
        tokio::select! {
            out = &mut fut => return Some(out),
            _ = tokio::time::sleep(check) => {
                if progress.idle() > limit {
                    return None;
                }
            }
        }
    }
}

/// The source's bytes on their way to the upload: counted against the declared length (more
/// or fewer bytes fail the upload), with progress recorded and any failure kept for the
/// caller (the upload itself only sees "the body failed").
struct Metered<S> {
    inner: Pin<Box<S>>,
    declared: Option<u64>,
    seen: u64,
    progress: Arc<Progress>,
    failure: Arc<Mutex<Option<RegistryError>>>,
    shown: String,
}

impl<S> Metered<S> {
    fn fail(&self, e: RegistryError) -> std::io::Error {
        let message = e.to_string();
        if let Ok(mut slot) = self.failure.lock() {
            slot.get_or_insert(e);
        }
        std::io::Error::other(message)
    }
}

impl<S, B> Stream for Metered<S>
where
    S: Stream<Item = reqwest::Result<B>>,
    B: AsRef<[u8]>,
{
    type Item = Result<B, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                let seen = self.seen.saturating_add(chunk.as_ref().len() as u64);
                self.seen = seen;
                self.progress.touch(seen);
                if let Some(declared) = self.declared
                    && seen > declared
                {
                    let e = RegistryError::Source(format!(
                        "download {}: more than the declared {declared} bytes",
                        self.shown
                    ));
                    return Poll::Ready(Some(Err(self.fail(e))));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                let e = RegistryError::Source(format!(
                    "download {} broke off after {} bytes: {}",
                    self.shown,
                    self.seen,
                    error_chain(e)
                ));
                Poll::Ready(Some(Err(self.fail(e))))
            }
            Poll::Ready(None) => match self.declared {
                Some(declared) if self.seen != declared => {
                    let e = RegistryError::Source(format!(
                        "download {} ended after {} of the declared {declared} bytes",
                        self.shown, self.seen
                    ));
                    Poll::Ready(Some(Err(self.fail(e))))
                }
                _ => Poll::Ready(None),
            },
        }
    }
}

// ---- the answers (only the fields used; everything optional) ----------------------------------

#[derive(Deserialize, Default)]
#[serde(default)]
struct ErrorAnswer {
    error_code: String,
    message: String,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
struct Tag {
    key: String,
    value: String,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
struct ModelVersion {
    name: String,
    version: String,
    source: String,
    run_id: String,
    status: String,
    status_message: String,
    tags: Vec<Tag>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct VersionAnswer {
    model_version: ModelVersion,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct VersionSearch {
    model_versions: Vec<ModelVersion>,
    next_page_token: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Alias {
    alias: String,
    version: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RegisteredModel {
    aliases: Vec<Alias>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ModelAnswer {
    registered_model: RegisteredModel,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Experiment {
    experiment_id: String,
    lifecycle_stage: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ExperimentAnswer {
    experiment: Experiment,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CreatedExperiment {
    experiment_id: String,
}

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
struct RunInfo {
    run_id: String,
    status: String,
    artifact_uri: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Metric {
    key: String,
    value: Value,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RunData {
    metrics: Vec<Metric>,
    tags: Vec<Tag>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Run {
    info: RunInfo,
    data: RunData,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RunAnswer {
    run: Run,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RunSearch {
    runs: Vec<Run>,
    next_page_token: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ListedFile {
    path: String,
    file_size: Value,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Listing {
    files: Vec<ListedFile>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(uri: &str) -> Url {
        api_base(uri).expect("valid tracking URI")
    }

    #[test]
    fn tracking_uris_keep_their_prefix() {
        let auth = RegistryAuth::Anonymous;
        for (uri, want) in [
            (
                "http://127.0.0.1:5000",
                "http://127.0.0.1:5000/api/2.0/mlflow/runs/create",
            ),
            (
                "https://mlflow.example.com/prefix/",
                "https://mlflow.example.com/prefix/api/2.0/mlflow/runs/create",
            ),
            (
                "https://mlflow.example.com/a/b//",
                "https://mlflow.example.com/a/b/api/2.0/mlflow/runs/create",
            ),
        ] {
            let api = Api::new(uri, &auth).unwrap();
            assert_eq!(api.endpoint("api/2.0/mlflow/runs/create").as_str(), want);
        }
        for bad in [
            "ftp://h/x",
            "not a url",
            "http://h/x?token=secret",
            "http://h/#frag",
            "file:///tmp",
        ] {
            let e = api_base(bad).unwrap_err();
            assert!(matches!(e, RegistryError::Rejected(_)), "{bad}: {e:?}");
            assert!(!e.to_string().contains("secret"), "{e}");
        }
        let e = api_base("https://user:hunter2@mlflow.example/x?y").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn artifact_uris_map_onto_the_proxy_like_the_mlflow_client() {
        let b = base("http://127.0.0.1:5000/prefix/");
        let root = ArtifactRoot::parse(&b, "mlflow-artifacts:/1/0a1b2c/artifacts").unwrap();
        assert_eq!(
            root.url.as_str(),
            "http://127.0.0.1:5000/prefix/api/2.0/mlflow-artifacts/artifacts/1/0a1b2c/artifacts"
        );
        assert_eq!(
            root.file_url("model/model-weights.json").as_str(),
            "http://127.0.0.1:5000/prefix/api/2.0/mlflow-artifacts/artifacts/1/0a1b2c/artifacts/model/model-weights.json"
        );
        assert_eq!(root.listing_path(""), "1/0a1b2c/artifacts");
        assert_eq!(root.listing_path("model"), "1/0a1b2c/artifacts/model");

        // Runs of `/` collapse; the tracking server's own host may be named.
        let b = base("http://127.0.0.1:5000");
        for uri in [
            "mlflow-artifacts:///1//r/artifacts/",
            "mlflow-artifacts://127.0.0.1:5000/1/r/artifacts",
            "mlflow-artifacts://127.0.0.1/1/r/artifacts",
        ] {
            let root = ArtifactRoot::parse(&b, uri).unwrap();
            assert_eq!(
                root.url.as_str(),
                "http://127.0.0.1:5000/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts",
                "{uri}"
            );
        }

        for bad in [
            "s3://bucket/1/r/artifacts",
            "file:///tmp/mlruns/1/r/artifacts",
            "mlflow-artifacts://evil.example/1/r/artifacts",
            "mlflow-artifacts://127.0.0.1:5001/1/r/artifacts",
            "mlflow-artifacts:/1/../../etc",
            "mlflow-artifacts:/1/./r",
            "mlflow-artifacts:/1/r%2F../x",
            "mlflow-artifacts:/1/r?x=1",
            "mlflow-artifacts:/",
            "mlflow-artifacts:",
        ] {
            let e = ArtifactRoot::parse(&b, bad).unwrap_err();
            assert!(matches!(e, RegistryError::Rejected(_)), "{bad}: {e:?}");
        }
    }

    #[test]
    fn metric_and_param_keys_are_what_the_server_accepts() {
        for (key, want) in [
            ("accuracy", "accuracy"),
            ("macro_f1", "macro_f1"),
            ("eval/accuracy", "eval/accuracy"),
            ("f1@0.5", "f1_0.5"),
            ("précision", "pr_cision"),
            ("a//b/./c/", "a/b/c"),
            ("/abs", "abs"),
            ("../up", "__/up"),
            ("..x", "_..x"),
            ("a/../b", "a/__/b"),
            ("", "_"),
            ("/", "_"),
            ("label 'x' <y>", "label _x_ _y_"),
        ] {
            assert_eq!(sanitize_key(key), want, "{key:?}");
        }
        let long = sanitize_key(&"k".repeat(400));
        assert_eq!(long.len(), MAX_KEY_CHARS);
        // Every result passes the checks MLflow 3.17 makes of a key.
        let accepted = |k: &str| {
            k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.: /".contains(c))
                && !k.starts_with('/')
                && !k.starts_with("..")
                && k != "."
                && !k.split('/').any(|s| s.is_empty() || s == "." || s == "..")
                && k.len() <= MAX_KEY_CHARS
        };
        for key in [
            "a/",
            "x/..",
            "./.",
            "a/.",
            &format!("{}/..", "z".repeat(248)),
        ] {
            let s = sanitize_key(key);
            assert!(accepted(&s), "{key:?} -> {s:?}");
        }

        let keys = unique_keys([("f1@x", 1), ("f1_x", 2), ("f1#x", 3)]);
        assert_eq!(
            keys,
            vec![
                ("f1_x".to_string(), 1),
                ("f1_x_2".to_string(), 2),
                ("f1_x_3".to_string(), 3)
            ]
        );
        let long = "q".repeat(300);
        let keys = unique_keys([(long.as_str(), ()), (long.as_str(), ())]);
        assert_eq!(keys[1].0.len(), MAX_KEY_CHARS);
        assert!(keys[1].0.ends_with("_2"));
    }

    #[test]
    fn filters_never_break_out_of_their_quotes() {
        assert_eq!(
            tag_filter(JOB_ID_TAG, "job-1"),
            "tags.`cxone.job_id` = 'job-1'"
        );
        assert_eq!(
            tag_filter(JOB_ID_TAG, "it's"),
            "tags.`cxone.job_id` LIKE 'it_s'"
        );
        assert_eq!(
            attribute_filter("name", r"x' OR name != 'y\"),
            "name LIKE 'x_ OR name != _y_'"
        );
        assert_eq!(
            attribute_filter("name", r#"a "b" %_"#),
            r#"name = 'a "b" %_'"#
        );
        // Whatever the value, the filter has exactly the two quotes it opened and closed.
        for value in ["'", "''", r"\", r"\'", "a'b'c", "\n'", "%'_\\"] {
            let f = filter_value(value);
            assert_eq!(f.matches('\'').count(), 2, "{value:?}: {f}");
            assert!(!f.contains('\\'), "{value:?}: {f}");
        }
    }

    fn provenance() -> Provenance {
        Provenance {
            namespace: "team-a".into(),
            name: "intents".into(),
            uid: "0000-1111".into(),
            generation: 3,
            run: 2,
            cxone_job_id: "job-42".into(),
            skill_id: "skill-abc".into(),
            dataset_digest: format!("sha256:{}", "ab".repeat(32)),
            created: jiff::Timestamp::from_second(1_700_000_000).unwrap(),
            source: "kubernetes://team-a/skilltrainingjobs/intents".into(),
            params: [
                ("epochs".to_string(), "10".to_string()),
                ("dataset_digest".to_string(), "user value".to_string()),
                ("long".to_string(), "v".repeat(7000)),
            ]
            .into_iter()
            .collect(),
        }
    }

    #[test]
    fn params_and_tags_carry_the_provenance() {
        let p = provenance();
        let params = run_params(&p);
        assert_eq!(
            params[0],
            ("dataset_digest".into(), p.dataset_digest.clone())
        );
        assert!(params.contains(&("dataset_digest_2".into(), "user value".into())));
        assert!(params.contains(&("epochs".into(), "10".into())));
        let long = params.iter().find(|(k, _)| k == "long").unwrap();
        assert_eq!(
            long.1.chars().count(),
            MAX_PARAM_VALUE_CHARS + 1,
            "cut, with an ellipsis"
        );
        let tags: BTreeMap<String, String> = run_tags(&p).into_iter().collect();
        assert_eq!(tags[JOB_ID_TAG], "job-42");
        assert_eq!(tags["mlflow.runName"], "intents-2");
        assert_eq!(tags["cxone.generation"], "3");
        assert_eq!(tags["cxone.uid"], "0000-1111");
        for k in tags.keys() {
            assert_eq!(&sanitize_key(k), k, "tag keys are valid as they are");
        }
    }

    #[test]
    fn log_batches_respect_the_server_limits() {
        let params: Vec<(String, String)> = (0..250)
            .map(|i| (format!("p{i:03}"), "x".repeat(5000)))
            .collect();
        let metrics: BTreeMap<String, f64> = (0..2500)
            .map(|i| (format!("m{i:04}"), f64::from(i) / 10.0))
            .chain([
                ("nan".to_string(), f64::NAN),
                ("inf".to_string(), f64::INFINITY),
            ])
            .collect();
        let tags: Vec<(String, String)> = (0..150)
            .map(|i| (format!("t{i:03}"), "y".repeat(100)))
            .collect();
        let batches = log_batches(&params, &metrics, &tags, 1_700_000_000_000);
        let (mut np, mut nm, mut nt) = (0, 0, 0);
        for b in &batches {
            let p = b["params"].as_array().unwrap().len();
            let m = b["metrics"].as_array().unwrap().len();
            let t = b["tags"].as_array().unwrap().len();
            assert!(
                p <= 100 && t <= 100 && m <= 1000 && p + m + t <= 1000,
                "{p} {m} {t}"
            );
            assert!(b.to_string().len() < 1_000_000);
            (np, nm, nt) = (np + p, nm + m, nt + t);
        }
        assert_eq!((np, nm, nt), (250, 2502, 150));
        let all_metrics: Vec<&Value> = batches
            .iter()
            .flat_map(|b| b["metrics"].as_array().unwrap())
            .collect();
        let nan = all_metrics.iter().find(|m| m["key"] == "nan").unwrap();
        assert_eq!(nan["value"], "NaN");
        assert_eq!(nan["timestamp"], 1_700_000_000_000i64);
        assert_eq!(nan["step"], 0);
        let inf = all_metrics.iter().find(|m| m["key"] == "inf").unwrap();
        assert_eq!(inf["value"], "Infinity");

        // Nothing to log: no request.
        assert!(log_batches(&[], &BTreeMap::new(), &[], 0).is_empty());
    }

    #[test]
    fn server_values_are_read_defensively() {
        assert_eq!(metric_value(&json!(0.5)), Some(0.5));
        assert_eq!(metric_value(&json!("0.25")), Some(0.25));
        assert_eq!(metric_value(&json!("NaN")), None);
        assert_eq!(metric_value(&json!("Infinity")), None);
        assert_eq!(metric_value(&json!(null)), None);
        assert_eq!(metric_value(&json!({"x": 1})), None);
        assert_eq!(file_size(&json!(12)), Some(12));
        assert_eq!(file_size(&json!("12")), Some(12));
        assert_eq!(file_size(&json!(-1)), None);
        assert_eq!(version_number("10"), 10);
        assert_eq!(version_number("x"), u64::MAX);
        // Answers with missing or mistyped fields parse into defaults or a Rejected error.
        let v: VersionAnswer = parse(json!({}), "x").unwrap();
        assert!(v.model_version.version.is_empty());
        let Err(e) = parse::<VersionAnswer>(json!({"model_version": 5}), "x") else {
            panic!("a number is not a model version");
        };
        assert!(matches!(e, RegistryError::Rejected(_)));
    }

    /// Reads one HTTP/1.1 request head (up to the blank line) from `stream`.
    async fn read_head(stream: &mut tokio::net::TcpStream) -> (String, Vec<u8>) {
        use tokio::io::AsyncReadExt;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                return (head, buf[end + 4..].to_vec());
            }
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed inside the request head");
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// A one-shot source on loopback: answers its first request with `declared` as the
    /// Content-Length and `body` as the bytes actually sent, then closes.
    async fn source(declared: usize, body: Vec<u8>) -> String {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            read_head(&mut stream).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {declared}\r\nconnection: close\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).await.unwrap();
            stream.write_all(&body).await.unwrap();
            stream.shutdown().await.unwrap();
        });
        format!("http://{addr}/w.json?expires=1&signature=s3cr3t-sig")
    }

    /// A one-shot artifact proxy on loopback: reads the upload (by its Content-Length, else to
    /// the end of the connection), answers 200, and hands back the request head and body.
    async fn proxy() -> (Url, tokio::sync::oneshot::Receiver<(String, Vec<u8>)>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let (head, mut body) = read_head(&mut stream).await;
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse::<usize>().ok());
            let mut chunk = [0u8; 4096];
            while length.is_none_or(|n| body.len() < n) {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => body.extend_from_slice(&chunk[..n]),
                }
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                .await;
            let _ = tx.send((head, body));
        });
        (base, rx)
    }

    #[tokio::test]
    async fn uploads_stream_with_the_sources_declared_length() {
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let url = source(body.len(), body.clone()).await;
        let (base, received) = proxy().await;
        let auth = RegistryAuth::Anonymous;
        let api = Api {
            base: base.clone(),
            auth: &auth,
        };
        let root = ArtifactRoot::parse(&base, "mlflow-artifacts:/1/r/artifacts").unwrap();
        let client = Mlflow::new().unwrap();
        let size = client
            .copy_from_source(&api, &root, "model/w.json", &url)
            .await
            .unwrap();
        assert_eq!(size, body.len() as u64);
        let (head, uploaded) = received.await.unwrap();
        assert!(
            head.starts_with("put /api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/model/w.json "),
            "{head}"
        );
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        assert!(!head.contains("transfer-encoding"), "{head}");
        assert_eq!(uploaded, body);
    }

    #[tokio::test]
    async fn a_short_download_fails_the_upload_as_a_source_error() {
        let url = source(100_000, vec![b'x'; 1000]).await;
        let (base, _received) = proxy().await;
        let auth = RegistryAuth::Anonymous;
        let api = Api {
            base: base.clone(),
            auth: &auth,
        };
        let root = ArtifactRoot::parse(&base, "mlflow-artifacts:/1/r/artifacts").unwrap();
        let e = Mlflow::new()
            .unwrap()
            .copy_from_source(&api, &root, "model/w.json", &url)
            .await
            .unwrap_err();
        assert!(matches!(e, RegistryError::Source(_)), "{e:?}");
        assert!(e.retryable());
        let text = e.to_string();
        assert!(text.contains("/w.json?…"), "{text}");
        assert!(
            !text.contains("s3cr3t") && !text.contains("signature"),
            "{text}"
        );
    }

    #[test]
    fn refusals_are_classified() {
        let refusal = |status: u16, code: &str| CallError::Status {
            status: StatusCode::from_u16(status).unwrap(),
            code: code.into(),
            message: "no".into(),
            shown: "http://h/api".into(),
        };
        assert!(matches!(
            refusal(401, "").classify("x"),
            RegistryError::Auth(_)
        ));
        assert!(matches!(
            refusal(403, "PERMISSION_DENIED").classify("x"),
            RegistryError::Auth(_)
        ));
        for s in [429, 500, 502, 503] {
            assert!(matches!(
                refusal(s, "").classify("x"),
                RegistryError::Unreachable(_)
            ));
        }
        for s in [302, 400, 404, 409] {
            assert!(matches!(
                refusal(s, "").classify("x"),
                RegistryError::Rejected(_)
            ));
        }
        let text = refusal(400, "INVALID_PARAMETER_VALUE")
            .classify("create the run")
            .to_string();
        assert_eq!(
            text,
            "the registry rejected the request: create the run (http://h/api): HTTP 400 INVALID_PARAMETER_VALUE: no"
        );
        assert!(refusal(400, "RESOURCE_ALREADY_EXISTS").is_code("RESOURCE_ALREADY_EXISTS"));
        assert!(!CallError::Other(RegistryError::Rejected("x".into())).is_code(""));
    }
}
