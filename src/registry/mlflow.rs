//! MLflow Model Registry over its REST API (`/api/2.0/mlflow/…`).
