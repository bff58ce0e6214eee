//! MLflow Model Registry over its REST API (`/api/2.0/mlflow/…`).

/// A registered model on an MLflow tracking server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MlflowTarget {
    pub tracking_uri: String,
    pub model_name: String,
    pub experiment_name: String,
}
