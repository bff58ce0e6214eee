//! MLflow Model Registry over its REST API (`/api/2.0/mlflow/…`).

/// A registered model on an MLflow tracking server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MlflowTarget {
    pub tracking_uri: String,
    pub model_name: String,
    pub experiment_name: String,
}

use std::collections::BTreeMap;

use super::{Champion, Documents, ModelSource, Provenance, RegistryAuth, RegistryError};

/// What a registration created or found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MlflowRegistered {
    pub run_id: String,
    pub version: String,
    pub source: String,
    pub created: bool,
}

/// MLflow client (replaced by the REST implementation).
pub struct Mlflow;

impl Mlflow {
    pub fn new() -> Result<Self, RegistryError> {
        Ok(Self)
    }

    pub async fn register(
        &self,
        _target: &MlflowTarget,
        _auth: &RegistryAuth,
        _source: &ModelSource,
        _provenance: &Provenance,
        _metrics: &BTreeMap<String, f64>,
        _documents: &Documents,
    ) -> Result<MlflowRegistered, RegistryError> {
        Err(RegistryError::Rejected("MLflow is not built yet".into()))
    }

    pub async fn set_alias(
        &self,
        _target: &MlflowTarget,
        _auth: &RegistryAuth,
        _alias: &str,
        _version: &str,
    ) -> Result<(), RegistryError> {
        Err(RegistryError::Rejected("MLflow is not built yet".into()))
    }

    pub async fn champion(
        &self,
        _target: &MlflowTarget,
        _auth: &RegistryAuth,
        _alias: &str,
    ) -> Result<Option<Champion>, RegistryError> {
        Ok(None)
    }
}
