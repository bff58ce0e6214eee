//! cxone-skill-operator: trains NICE CXone AI skills from Kubernetes.
//!
//! The crate is one library plus one binary. The library holds a pure core (training-data
//! validation, payload building, evaluation, audit records) and thin I/O edges (the CXone client,
//! the CXone simulator). `testkit` holds the fixtures the unit tests, `tests/` and `benches/`
//! share; it is not part of the API.
#![forbid(unsafe_code)]

pub mod audit;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod cxone;
pub mod duration;
pub mod evaluation;
pub mod http;
pub mod names;
pub mod registry;
pub mod simulator;
#[doc(hidden)]
pub mod testkit;
pub mod text;
pub mod training;
