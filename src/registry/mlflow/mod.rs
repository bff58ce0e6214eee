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
//! 5. the run's model as an MLflow 3 LoggedModel (`logged-models/search` by the run, else
//!    `logged-models` with the provenance as params and tags; `logged_model.rs`);
//! 6. the files, through the tracking server's artifact proxy
//!    (`PUT /api/2.0/mlflow-artifacts/artifacts/<path>`, the server started with
//!    `--serve-artifacts`): the weights and config streamed from the signed URLs into the
//!    LoggedModel's artifacts with the model card `README.md` (and `model.sig`, the signature of
//!    the three, when a signing key is given) beside them; evaluation, audit record and picture
//!    into the run's artifacts; then the sizes the server stored are checked. A failed copy
//!    finalizes the LoggedModel `UPLOAD_FAILED` (the next attempt reuses it);
//! 7. `runs/log-batch`: params, metrics and tags, in batches within the server's limits; the
//!    metrics carry the LoggedModel's id, so they are the model's metrics too;
//! 8. `runs/update` to FINISHED, the LoggedModel finalized READY;
//! 9. `model-versions/create` from the LoggedModel (`model_id`, source `models:/<model id>`),
//!    with the run id, the job-id tag in the same request (a crash cannot leave an untagged
//!    version) and the model card as description, then a bounded wait until it is READY.
//!
//! Every step can be repeated: a call that broke off anywhere is finished by the next call with
//! the same job id. Errors are classified as [`RegistryError`]s; their messages never carry a
//! password, a token or a signed URL's query.
//!
//! The filter strings of the searches cannot escape a quote (the server strips the outer quotes
//! and keeps the rest verbatim), so a value holding `'` or `\` is searched with `LIKE` and those
//! characters as single-character wildcards; every result is compared exactly before use.
//!
//! The folder: this file holds the client ([`Mlflow`]: register, set_alias, champion) and the
//! server's limits; `steps.rs` the repeatable steps of a registration, `logged_model.rs` the LoggedModel's, `api.rs` one JSON call and
//! the refusals, `streaming.rs` the files moved into a run's artifacts, `keys.rs` the filters,
//! keys and batches built without I/O, `wire.rs` the answers as read. The pure parts are tested
//! in `tests.rs` without a server. It imports `crate::http` and the registry's shared types.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use super::card::{CARD_FILE, CardFile};
use super::signing::{self, BUNDLE_MEDIA_TYPE, SIGNATURE_FILE, SignedFile};
use super::{
    AUDIT_FILE, CONFIG_FILE, Champion, Documents, EVALUATION_FILE, ModelSource, PICTURE_FILE,
    Provenance, RegistryAuth, RegistryError, WEIGHTS_FILE,
};
use crate::http::Redirects;
use crate::text::truncate_chars;
use api::{Api, ArtifactRoot, check_target, parse};
use keys::{log_batches, metric_value, run_params, run_tags};
use logged_model::{Finalized, model_tags};
use sha2::{Digest as _, Sha256};
use wire::{LoggedModelInfo, ModelAnswer, RunAnswer, RunInfo, VersionAnswer};

mod api;
mod keys;
mod logged_model;
mod steps;
mod streaming;
mod wire;

pub use keys::sanitize_key;

/// The model-version and run tag holding the CXone job id: the key of "exactly once".
pub const JOB_ID_TAG: &str = "cxone.job_id";

/// The param recording the training data's digest.
pub const DATASET_DIGEST_PARAM: &str = "dataset_digest";

/// How long a new model version may stay PENDING_REGISTRATION before the call gives up (the
/// next call finds the version by its tag and waits again).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const READY_FIRST_POLL: Duration = Duration::from_millis(100);
const READY_MAX_POLL: Duration = Duration::from_secs(2);

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
    /// The version's source URI (`models:/<model id>`; `<run artifact URI>/model` for a version
    /// registered before LoggedModels).
    pub source: String,
    /// The MLflow 3 LoggedModel the version was made from (empty for an older version).
    pub model_id: String,
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
    /// limit (`crate::http`).
    pub fn new() -> Result<Self, RegistryError> {
        Ok(Self {
            api: crate::http::registry_client(Redirects::Never).map_err(RegistryError::Rejected)?,
            source: super::source::client()?,
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
        self.ensure_model(&api, model).await?;
        // 2. Exactly once: a version already registered for this job.
        if let Some(version) = self.find_version(&api, model, job_id).await? {
            let version = self.complete_version(&api, version).await?;
            return Ok(MlflowRegistered {
                run_id: version.run_id,
                version: version.version,
                source: version.source,
                model_id: version.model_id,
                created: false,
            });
        }
        // 3-5. The experiment, the run and its LoggedModel (found again after a broken attempt).
        let tags = run_tags(provenance);
        let (run, model_info) = self.run_and_model(&api, target, provenance, &tags).await?;
        // 6. The files: the model's into the LoggedModel, the documents into the run.
        let card = self
            .store_files(&api, &run, &model_info, source, provenance, documents)
            .await?;
        // 7. Params, metrics (on the run and on the model) and tags.
        self.log_run(
            &api,
            &run.run_id,
            &model_info.model_id,
            provenance,
            metrics,
            &tags,
        )
        .await?;
        // 8. The run is complete, the model READY.
        self.finish_run(&api, &run.run_id).await?;
        self.finalize_logged_model(&api, &model_info.model_id, Finalized::Ready)
            .await?;
        // 9. The version, from the model, tagged in the same request.
        let version = self
            .create_version(&api, model, &run, &model_info, provenance, card.as_deref())
            .await?;
        Ok(MlflowRegistered {
            run_id: version.run_id,
            version: version.version,
            source: version.source,
            model_id: model_info.model_id,
            created: true,
        })
    }

    /// Steps 3 to 5 of [`Self::register`]: the experiment, the run (one left by an earlier
    /// attempt for this job, else a new one) and the run's LoggedModel (likewise).
    async fn run_and_model(
        &self,
        api: &Api<'_>,
        target: &MlflowTarget,
        provenance: &Provenance,
        tags: &[(String, String)],
    ) -> Result<(RunInfo, LoggedModelInfo), RegistryError> {
        let job_id = provenance.cxone_job_id.as_str();
        let experiment_id = self.experiment(api, &target.experiment_name).await?;
        let run = match self.find_run(api, &experiment_id, job_id).await? {
            Some(run) => run,
            None => self.create_run(api, &experiment_id, tags).await?,
        };
        let model = match self
            .find_logged_model(api, &experiment_id, &run.run_id)
            .await?
        {
            Some(m) => m,
            None => {
                self.create_logged_model(
                    api,
                    &experiment_id,
                    &target.model_name,
                    &run.run_id,
                    &run_params(provenance),
                    &model_tags(tags),
                )
                .await?
            }
        };
        Ok((run, model))
    }

    /// Step 6 of [`Self::register`]: the model's files into the LoggedModel (a failed copy
    /// finalizes it UPLOAD_FAILED; the next attempt reuses it), the documents into the run.
    /// Returns the model card.
    async fn store_files(
        &self,
        api: &Api<'_>,
        run: &RunInfo,
        model: &LoggedModelInfo,
        source: &ModelSource,
        provenance: &Provenance,
        documents: &Documents,
    ) -> Result<Option<String>, RegistryError> {
        let card = match self
            .store_model_files(api, model, source, provenance, documents)
            .await
        {
            Ok(card) => card,
            Err(e) => {
                // Best effort: the model says its upload failed.
                let _ = self
                    .finalize_logged_model(api, &model.model_id, Finalized::UploadFailed)
                    .await;
                return Err(e);
            }
        };
        self.store_documents(api, run, documents).await?;
        Ok(card)
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

    // ---- the steps of `register` that move data (the others: `steps.rs`) -------------------

    /// The registered model exists (created, or there already).
    async fn ensure_model(&self, api: &Api<'_>, model: &str) -> Result<(), RegistryError> {
        match self
            .post(api, "registered-models/create", &json!({ "name": model }))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_code("RESOURCE_ALREADY_EXISTS") => Ok(()),
            Err(e) => Err(e.classify("create the registered model")),
        }
    }

    /// The weights and config streamed from the signed URLs into the LoggedModel's artifacts,
    /// the model card beside them (it lists their digests) and, with a signing key, the
    /// signature of the three; then the sizes the server stored checked. Returns the card.
    async fn store_model_files(
        &self,
        api: &Api<'_>,
        model: &LoggedModelInfo,
        source: &ModelSource,
        provenance: &Provenance,
        documents: &Documents,
    ) -> Result<Option<String>, RegistryError> {
        let root = ArtifactRoot::parse(&api.base, &model.artifact_uri)?;
        let mut sizes = BTreeMap::new();
        let mut files = Vec::new();
        for (name, url) in [
            (WEIGHTS_FILE, &source.weights_url),
            (CONFIG_FILE, &source.config_url),
        ] {
            let (bytes, sha256) = self.copy_from_source(api, &root, name, url).await?;
            sizes.insert(name.to_string(), bytes);
            files.push(CardFile {
                name: name.to_string(),
                bytes,
                sha256,
            });
        }
        let card = documents.card(provenance, &files);
        let mut signed: Vec<SignedFile> = files
            .iter()
            .map(|f| SignedFile {
                path: f.name.clone(),
                sha256: f.sha256.clone(),
            })
            .collect();
        if let Some(card) = &card {
            self.upload(api, &root, CARD_FILE, card.as_bytes(), "text/markdown")
                .await?;
            sizes.insert(CARD_FILE.to_string(), card.len() as u64);
            signed.push(SignedFile {
                path: CARD_FILE.to_string(),
                sha256: hex::encode(Sha256::digest(card.as_bytes())),
            });
        }
        if let Some(key) = &documents.signing {
            let bundle = signing::sign(key, &provenance.name, &signed);
            self.upload(api, &root, SIGNATURE_FILE, &bundle, BUNDLE_MEDIA_TYPE)
                .await?;
            sizes.insert(SIGNATURE_FILE.to_string(), bundle.len() as u64);
        }
        self.check_sizes(api, &root, &sizes).await?;
        Ok(card)
    }

    /// The evaluation, the audit record and the picture into the run's artifacts.
    async fn store_documents(
        &self,
        api: &Api<'_>,
        run: &RunInfo,
        documents: &Documents,
    ) -> Result<(), RegistryError> {
        let root = ArtifactRoot::parse(&api.base, &run.artifact_uri)?;
        let mut sizes = BTreeMap::new();
        for (name, bytes, content_type) in [
            (
                EVALUATION_FILE,
                &documents.evaluation_json,
                "application/json",
            ),
            (AUDIT_FILE, &documents.audit_json, "application/json"),
            (PICTURE_FILE, &documents.picture_svg, "image/svg+xml"),
        ] {
            self.upload(api, &root, name, bytes, content_type).await?;
            sizes.insert(name.to_string(), bytes.len() as u64);
        }
        self.check_sizes(api, &root, &sizes).await
    }

    /// The run's params, metrics and tags, in batches within the server's limits.
    async fn log_run(
        &self,
        api: &Api<'_>,
        run_id: &str,
        model_id: &str,
        provenance: &Provenance,
        metrics: &BTreeMap<String, f64>,
        tags: &[(String, String)],
    ) -> Result<(), RegistryError> {
        let timestamp = provenance.created.as_millisecond().max(0);
        for batch in log_batches(&run_params(provenance), metrics, tags, timestamp) {
            let mut body = batch;
            body["run_id"] = json!(run_id);
            // Metrics with the model's id are the model's metrics too (MLflow 3).
            if let Some(list) = body.get_mut("metrics").and_then(|m| m.as_array_mut()) {
                for m in list {
                    m["model_id"] = json!(model_id);
                }
            }
            self.post(api, "runs/log-batch", &body)
                .await
                .map_err(|e| e.classify("log the run's params and metrics"))?;
        }
        Ok(())
    }

    /// The model version of the LoggedModel `model` (source `models:/<model id>`), tagged with
    /// the job id in the same request (a crash cannot leave an untagged version), its
    /// description the model card, once READY.
    async fn create_version(
        &self,
        api: &Api<'_>,
        name: &str,
        run: &RunInfo,
        model: &LoggedModelInfo,
        provenance: &Provenance,
        card: Option<&str>,
    ) -> Result<wire::ModelVersion, RegistryError> {
        let job_id = provenance.cxone_job_id.as_str();
        let description = match card {
            Some(card) => version_description(card),
            None => format!(
                "CXone job {} of {}/{} (run {})",
                truncate_chars(job_id, 200),
                provenance.namespace,
                provenance.name,
                provenance.run
            ),
        };
        let body = json!({
            "name": name,
            "source": format!("models:/{}", model.model_id),
            "model_id": model.model_id,
            "run_id": run.run_id,
            "tags": [{ "key": JOB_ID_TAG, "value": job_id }],
            "description": description,
        });
        let created: VersionAnswer = self
            .post(api, "model-versions/create", &body)
            .await
            .map_err(|e| e.classify("create the model version"))
            .and_then(|v| parse(v, "model-versions/create"))?;
        self.wait_ready(api, created.model_version).await
    }
}

/// Longest model-version description MLflow's database schema holds.
const MAX_DESCRIPTION_CHARS: usize = 5000;

/// The card as a version description: whole when it fits, else cut at a line and pointed at
/// the model's `README.md`, which always has all of it.
fn version_description(card: &str) -> String {
    if card.chars().count() <= MAX_DESCRIPTION_CHARS {
        return card.to_string();
    }
    let note = "\n\n… (cut here: the whole card is the model's README.md)\n";
    let budget = MAX_DESCRIPTION_CHARS - note.chars().count();
    let head = truncate_chars(card, budget);
    let head = head.rsplit_once('\n').map_or(head.as_str(), |(h, _)| h);
    format!("{head}{note}")
}

#[cfg(test)]
mod tests;
