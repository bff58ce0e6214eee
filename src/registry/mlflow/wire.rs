//! MLflow's answers as read: only the fields used, everything optional (a missing or mistyped
//! field becomes its default). Imports only serde.

use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct ErrorAnswer {
    pub(super) error_code: String,
    pub(super) message: String,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(super) struct Tag {
    pub(super) key: String,
    pub(super) value: String,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(super) struct ModelVersion {
    pub(super) name: String,
    pub(super) version: String,
    pub(super) source: String,
    pub(super) run_id: String,
    pub(super) status: String,
    pub(super) status_message: String,
    pub(super) tags: Vec<Tag>,
    /// MLflow 3: the LoggedModel the version was made from.
    pub(super) model_id: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct VersionAnswer {
    pub(super) model_version: ModelVersion,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct VersionSearch {
    pub(super) model_versions: Vec<ModelVersion>,
    pub(super) next_page_token: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Alias {
    pub(super) alias: String,
    pub(super) version: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RegisteredModel {
    pub(super) aliases: Vec<Alias>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct ModelAnswer {
    pub(super) registered_model: RegisteredModel,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Experiment {
    pub(super) experiment_id: String,
    pub(super) lifecycle_stage: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct ExperimentAnswer {
    pub(super) experiment: Experiment,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct CreatedExperiment {
    pub(super) experiment_id: String,
}

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub(super) struct RunInfo {
    pub(super) run_id: String,
    pub(super) status: String,
    pub(super) artifact_uri: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Metric {
    pub(super) key: String,
    pub(super) value: Value,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RunData {
    pub(super) metrics: Vec<Metric>,
    pub(super) tags: Vec<Tag>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Run {
    pub(super) info: RunInfo,
    pub(super) data: RunData,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RunAnswer {
    pub(super) run: Run,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct RunSearch {
    pub(super) runs: Vec<Run>,
    pub(super) next_page_token: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct ListedFile {
    pub(super) path: String,
    pub(super) file_size: Value,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Listing {
    pub(super) files: Vec<ListedFile>,
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(default)]
pub(super) struct LoggedModelInfo {
    pub(super) model_id: String,
    pub(super) name: String,
    pub(super) artifact_uri: String,
    pub(super) status: Value,
    pub(super) source_run_id: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct LoggedModel {
    pub(super) info: LoggedModelInfo,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct LoggedModelAnswer {
    pub(super) model: LoggedModel,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct LoggedModelSearch {
    pub(super) models: Vec<LoggedModel>,
    pub(super) next_page_token: String,
}
