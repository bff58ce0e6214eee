//! Shared support for integration test binaries: `mod support;` at the top of a file in `tests/`.
//!
//! [`control_plane()`] starts one real etcd + kube-apiserver per test binary (binaries from
//! `hack/envtest.sh`) and hands out namespaces and clients:
//!
//! ```ignore
//! mod support;
//!
//! #[tokio::test]
//! async fn reconciles() {
//!     let cp = support::control_plane().await;
//!     let ns = cp.namespace("reconcile").await;
//!     let admin: kube::Client = ns.client();
//!     let sa: kube::Client = cp.service_account_client(ns.name(), "operator").await;
//!     let out = cp.kubectl().args(["get", "ns"]).output().unwrap();
//! }
//! ```
#![allow(dead_code)]

mod envtest;

#[allow(unused_imports)]
pub use envtest::{ControlPlane, TestNamespace, control_plane, control_plane_blocking};

#[allow(dead_code)]
pub mod operator;

#[allow(dead_code)]
pub mod mlflow;

#[allow(dead_code)]
pub mod oci_registry;
