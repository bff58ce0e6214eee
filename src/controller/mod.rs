//! The SkillTrainingJob controller: observe → decide → act reconciliation, and the operator's
//! runtime. One file a layer; imports point down this list (a file may import those below it,
//! never one above it), and `decide/` imports only `effect.rs`, `memory.rs` and `conditions.rs`.
//!
//! - `mod.rs`: the shared `Context` (clients, caches, rate-limit reservations), `OperatorConfig`,
//!   `MetaStores`, the operator's constants.
//! - `run.rs`: `cxone-skill-operator run`: watches, controllers, servers, leader election,
//!   shutdown. Imports `reconcile.rs`, `registration.rs`, `server.rs`, `metrics.rs`, `decide/`.
//! - `reconcile.rs`: the loop (observe → decide → act until nothing is left), status writes,
//!   Events, the finalizer. Imports `observe.rs`, `act.rs`, `decide/`, `effect.rs`, `job.rs`.
//! - `act.rs`: the effects (CXone calls, the audit ConfigMap, the artifact Secret). Imports
//!   `registration.rs`, `observe.rs`, `effect.rs`, `job.rs`, `memory.rs`.
//! - `registration.rs`: the registry clients and the registration tasks. Imports `effect.rs`,
//!   `job.rs`.
//! - `observe.rs`: every read a decision needs (data, credentials, endpoint, registries).
//!   Imports `effect.rs`, `job.rs`, `memory.rs`, `decide/` (the spec's reference checks).
//! - `decide/`: the pure decision core, one file a stage of the run (see its `mod.rs`).
//! - `effect.rs`: what a decision asks for and what comes back (`Effect`, `Observation`, the
//!   registration requests). Imports no sibling.
//! - `job.rs`: what identifies a job (`JobRef`) and the driver's `Error`. Imports no sibling.
//! - `memory.rs`: what the operator remembers per job, with its invariants. Imports
//!   `conditions.rs`.
//! - `conditions.rs`: condition types, statuses and the reasons of conditions and Events.
//! - `events.rs`: Kubernetes Events, created and not kept. Imports no sibling.
//! - `projection.rs`: what the watch caches keep of jobs, Secrets and ConfigMaps. Imports no
//!   sibling.
//! - `leader.rs`, `server.rs`, `metrics.rs`: leader election and its fence, the metrics and
//!   probe endpoints, the Prometheus metrics.

mod act;
pub mod conditions;
pub mod decide;
pub mod effect;
pub mod events;
mod job;
pub mod leader;
pub mod memory;
pub mod metrics;
mod observe;
mod projection;
mod reconcile;
pub mod registration;
mod run;
pub mod server;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::cxone::{Credentials, CxoneClient, Endpoint};
use crate::cxone::{CxoneRateLimiter, EndpointAllowlist};
use memory::{JobMemory, Memories, ResolvedData};
use metrics::Metrics;

pub use job::Error;
pub use reconcile::{error_policy, reconcile};
pub use run::{LogFormat, RunArgs, run};

/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "cxone-skill-operator";
/// Label on the ConfigMaps the operator writes (audit record and report), naming their job.
pub const REPORT_LABEL: &str = "ai.cxone.io/skilltrainingjob";
/// Finalizer that lets the operator cancel a running CXone job before the object goes.
pub const FINALIZER: &str = "ai.cxone.io/cancel-training";
/// Jobs whose data is read and parsed at once, unless `--max-concurrent-data-reads` says.
const DEFAULT_DATA_READS: usize = 2;

/// Operator settings that shape reconciliation: where jobs may send credentials, and the
/// decision policy.
#[derive(Clone, Debug)]
pub struct OperatorConfig {
    pub allowlist: EndpointAllowlist,
    pub policy: decide::Policy,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            allowlist: EndpointAllowlist::parse(&[EndpointAllowlist::DEFAULT.to_string()])
                .expect("the default allowlist parses"),
            policy: decide::Policy::default(),
        }
    }
}

/// Metadata-only caches of Secrets and ConfigMaps, one per watched namespace (`None`: all).
#[derive(Clone, Default)]
pub struct MetaStores {
    pub secrets: HashMap<Option<String>, Store<PartialObjectMeta<Secret>>>,
    pub config_maps: HashMap<Option<String>, Store<PartialObjectMeta<ConfigMap>>>,
}

impl MetaStores {
    fn lookup<K>(
        stores: &HashMap<Option<String>, Store<PartialObjectMeta<K>>>,
        ns: &str,
        name: &str,
    ) -> Option<Arc<PartialObjectMeta<K>>>
    where
        K: kube::Resource<DynamicType = ()> + Clone,
        PartialObjectMeta<K>: kube::Resource<DynamicType = ()> + Clone,
    {
        let store = stores
            .get(&Some(ns.to_string()))
            .or_else(|| stores.get(&None))?;
        store.get(&ObjectRef::new(name).within(ns))
    }

    /// resourceVersion of a Secret as the watch last saw it.
    pub fn secret_version(&self, ns: &str, name: &str) -> Option<String> {
        Self::lookup(&self.secrets, ns, name).and_then(|m| m.metadata.resource_version.clone())
    }

    /// Waits (at most 30 s) until the ConfigMap metadata watch of `ns` has listed once.
    pub async fn config_maps_ready(&self, ns: &str) {
        let store = self
            .config_maps
            .get(&Some(ns.to_string()))
            .or_else(|| self.config_maps.get(&None));
        if let Some(store) = store {
            let _ = tokio::time::timeout(Duration::from_secs(30), store.wait_until_ready()).await;
        }
    }

    /// resourceVersion of a ConfigMap as the watch last saw it.
    pub fn config_map_version(&self, ns: &str, name: &str) -> Option<String> {
        Self::lookup(&self.config_maps, ns, name).and_then(|m| m.metadata.resource_version.clone())
    }
}

/// Everything reconciliation needs, shared by all workers.
pub struct Context {
    pub kube: kube::Client,
    pub cxone: CxoneClient,
    pub config: OperatorConfig,
    pub limiter: CxoneRateLimiter,
    pub metrics: Arc<Metrics>,
    pub recorder: events::Publisher,
    pub stores: MetaStores,
    /// Registry clients, allowlist and running registrations (`spec.registry`).
    pub registries: registration::Registries,
    /// Decision memory of each job (see `memory.rs` for its invariants).
    memory: Memories<JobMemory>,
    /// Each job's resolved data (an I/O cache).
    data: Memories<ResolvedData>,
    /// A CXone call slot each job has reserved from the shared rate limiter.
    reservations: Memories<tokio::time::Instant>,
    /// Permits to read and parse a job's training data (`--max-concurrent-data-reads`).
    data_reads: tokio::sync::Semaphore,
    credentials: Mutex<HashMap<(String, String), Credentials>>,
    jitter: Mutex<u64>,
}

impl Context {
    pub fn new(
        kube: kube::Client,
        cxone: CxoneClient,
        config: OperatorConfig,
        limiter: CxoneRateLimiter,
        metrics: Arc<Metrics>,
        recorder: events::Publisher,
        stores: MetaStores,
    ) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9_7f4a_7c15);
        Self {
            kube,
            cxone,
            config,
            limiter,
            metrics,
            recorder,
            stores,
            registries: registration::Registries::default(),
            memory: Memories::new(),
            data: Memories::new(),
            reservations: Memories::new(),
            data_reads: tokio::sync::Semaphore::new(DEFAULT_DATA_READS),
            credentials: Mutex::new(HashMap::new()),
            jitter: Mutex::new(seed | 1),
        }
    }

    /// The same context reading and parsing at most `n` jobs' data at once.
    pub fn with_data_reads(mut self, n: usize) -> Self {
        self.data_reads = tokio::sync::Semaphore::new(n.max(1));
        self
    }

    /// Waits for a turn to read and parse a job's data; the turn ends when the permit is dropped.
    pub(crate) async fn data_read_turn(&self) -> tokio::sync::SemaphorePermit<'_> {
        // The semaphore is never closed, so acquiring cannot fail.
        self.data_reads
            .acquire()
            .await
            .expect("the data-read semaphore is never closed")
    }

    /// The same context with these registries (`spec.registry`).
    pub fn with_registries(mut self, registries: registration::Registries) -> Self {
        self.registries = registries;
        self
    }

    pub(crate) fn memory(&self, uid: &str) -> JobMemory {
        self.memory.get(uid).unwrap_or_default()
    }

    /// Remembers `memory` for job `uid`; an empty memory takes no room (most jobs, once settled).
    pub(crate) fn set_memory(&self, uid: &str, memory: JobMemory) {
        if memory == JobMemory::default() {
            self.memory.remove(uid);
        } else {
            self.memory.set(uid, memory);
        }
    }

    /// Counts one more consecutive error of job `uid` and returns the jittered, capped
    /// exponential backoff for it (errors that escaped the decisions: API server failures).
    pub(crate) fn next_error_backoff(&self, uid: &str) -> Duration {
        let mut memory = self.memory(uid);
        let attempt = memory.error_attempt;
        memory.error_attempt = attempt.saturating_add(1);
        self.set_memory(uid, memory);
        decide::schedule::error_backoff(
            attempt,
            self.config.policy.error_backoff_base,
            self.config.policy.error_backoff_max,
            self.jitter(),
        )
    }

    /// The endpoint, if the allowlist permits both of its URLs.
    pub(crate) fn allowed(&self, endpoint: Endpoint) -> Result<Endpoint, String> {
        self.config.allowlist.check(endpoint)
    }

    /// Permission for one CXone call of job `uid`: now, or after the returned wait (for which a
    /// slot is reserved, so the job's next reconciliation calls without asking again).
    pub(crate) fn permit(
        &self,
        uid: &str,
        endpoint: &str,
        client_id: &str,
    ) -> Result<(), Duration> {
        let now = tokio::time::Instant::now();
        self.reservations.update(uid, |reserved| {
            if let Some(at) = *reserved {
                if now >= at {
                    *reserved = None;
                    return Ok(());
                }
                return Err(at - now);
            }
            match self.limiter.reserve(endpoint, client_id) {
                None => Ok(()),
                Some(wait) => {
                    *reserved = Some(now + wait);
                    self.metrics.rate_limit_wait(wait, true);
                    Err(wait)
                }
            }
        })
    }

    /// Drops the job's cached data (a finished run keeps none).
    pub(crate) fn forget_data(&self, uid: &str) {
        self.data.remove(uid);
    }

    pub(crate) fn forget(&self, uid: &str) {
        self.memory.remove(uid);
        self.data.remove(uid);
        self.reservations.remove(uid);
        self.registries.forget(uid);
        self.metrics.set_phase(uid, None);
    }

    pub(crate) fn cached_credentials(&self, ns: &str, name: &str) -> Option<Credentials> {
        self.credentials
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    pub(crate) fn cache_credentials(&self, ns: &str, name: &str, creds: Credentials) {
        self.credentials
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((ns.to_string(), name.to_string()), creds);
    }

    /// A number in [0, 1) for jitter (xorshift; quality is irrelevant here).
    pub(crate) fn jitter(&self) -> f64 {
        let mut s = self.jitter.lock().unwrap_or_else(|p| p.into_inner());
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        (*s >> 11) as f64 / (1u64 << 53) as f64
    }
}
