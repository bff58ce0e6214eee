//! Counters the simulator keeps for tests and benchmarks (`GET /_sim/stats`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What the simulator has seen and done since it started.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Stats {
    /// Responses by endpoint (`token`, `submit`, `status`, `evaluation`, `export`, `cancel`,
    /// `artifact`, and `other` for paths that are none of these) and HTTP status code.
    pub calls: BTreeMap<String, BTreeMap<String, u64>>,
    /// Jobs by their current state (every state is listed, with 0 when none is in it).
    pub jobs: BTreeMap<String, u64>,
    pub jobs_created: u64,
    /// Submissions answered with an existing job because of their `Idempotency-Key`.
    pub idempotent_replays: u64,
    pub tokens_issued: u64,
    /// Responses answered 429.
    pub rate_limited: u64,
    /// Responses changed by fault injection (all kinds).
    pub faults_injected: u64,
    /// `faultsInjected` by kind: `error500`, `error503`, `postCommit503`, `slow`, `malformed`.
    pub faults_by_kind: BTreeMap<String, u64>,
    /// Finished jobs forgotten to stay within `--max-jobs` and `--max-job-memory`.
    pub jobs_evicted: u64,
    /// About how much memory the kept jobs' models and evaluations take.
    pub jobs_memory_bytes: u64,
    /// Access tokens kept now (valid, expired or revoked), at most `--max-tokens`.
    pub tokens_stored: u64,
    /// Valid access tokens forgotten to stay within `--max-tokens`.
    pub tokens_evicted: u64,
    /// `Idempotency-Key`s remembered now.
    pub idempotency_keys: u64,
}

impl Stats {
    /// Responses of `endpoint` with `status`.
    pub fn count(&self, endpoint: &str, status: u16) -> u64 {
        self.calls
            .get(endpoint)
            .and_then(|by_status| by_status.get(&status.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// All responses of `endpoint`.
    pub fn total(&self, endpoint: &str) -> u64 {
        self.calls
            .get(endpoint)
            .map_or(0, |by_status| by_status.values().sum())
    }

    /// Jobs currently in `state` (e.g. `"COMPLETED"`).
    pub fn jobs_in(&self, state: &str) -> u64 {
        self.jobs.get(state).copied().unwrap_or(0)
    }

    pub(crate) fn record_call(&mut self, endpoint: &str, status: u16) {
        *self
            .calls
            .entry(endpoint.to_string())
            .or_default()
            .entry(status.to_string())
            .or_default() += 1;
    }

    pub(crate) fn record_fault(&mut self, kind: &str) {
        self.faults_injected += 1;
        *self.faults_by_kind.entry(kind.to_string()).or_default() += 1;
    }
}
