//! Prometheus metrics. Labels are low-cardinality: never an object name or error text.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::crd::Phase;
use crate::cxone::{Call, CallObserver};

pub const CONTROLLER: &str = "skilltrainingjob";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub controller: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: &'static str,
    pub category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: &'static str,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RegistrationLabels {
    pub target: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// All metrics of the operator.
pub struct Metrics {
    registry: Registry,
    pub reconcile_total: Family<ResultLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_time: Family<ControllerLabels, Histogram, fn() -> Histogram>,
    pub cxone_requests: Family<RequestLabels, Counter>,
    pub cxone_duration: Family<EndpointLabels, Histogram, fn() -> Histogram>,
    pub token_refreshes: Counter,
    pub rate_limited: Counter,
    pub local_rate_limit_waits: Counter,
    pub rate_limit_wait_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    pub lifecycle: Lifecycle,
    phases: Mutex<HashMap<String, Phase>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers `metric` and returns it (a handle sharing the registered value).
fn register<M: prometheus_client::registry::Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// What happens to jobs: how many are in each phase, the phases they entered, their model
/// registrations, and what reconciliation read from the API server beyond its caches.
pub struct Lifecycle {
    pub jobs: Family<PhaseLabels, Gauge>,
    pub phase_transitions: Family<PhaseLabels, Counter>,
    pub registrations: Family<RegistrationLabels, Counter>,
    pub config_map_reads: Counter,
    pub job_reads: Family<ReadLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadLabels {
    pub reason: &'static str,
}

impl Lifecycle {
    fn new(registry: &mut Registry) -> Self {
        Self {
            jobs: register(
                registry,
                "cxone_skill_training_jobs",
                "SkillTrainingJobs by phase",
                Family::default(),
            ),
            phase_transitions: register(
                registry,
                "cxone_skill_phase_transitions",
                "Phases entered by jobs, counted from the operator's own status writes",
                Family::default(),
            ),
            registrations: register(
                registry,
                "cxone_skill_model_registrations",
                "Model registrations (spec.registry) by target and outcome",
                Family::default(),
            ),
            config_map_reads: register(
                registry,
                "cxone_skill_configmap_reads",
                "ConfigMaps read from the API server for training data (spec.utterancesFrom)",
                Counter::default(),
            ),
            job_reads: register(
                registry,
                "cxone_skill_job_reads",
                "Whole SkillTrainingJobs read from the API server because the job cache's \
                 projection left out what a step needed (reason: data, status)",
                Family::default(),
            ),
        }
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let reconcile_total = register(
            &mut registry,
            "controller_runtime_reconcile",
            "Reconciliations by result (success, requeue, error)",
            Family::<ResultLabels, Counter>::default(),
        );
        let reconcile_errors = register(
            &mut registry,
            "controller_runtime_reconcile_errors",
            "Reconciliations that failed, by error category",
            Family::<ErrorLabels, Counter>::default(),
        );
        let reconcile_time = register(
            &mut registry,
            "controller_runtime_reconcile_time_seconds",
            "Time spent in one reconciliation",
            Family::<ControllerLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            ),
        );
        let cxone_requests = register(
            &mut registry,
            "cxone_api_requests",
            "Requests to the CXone API by endpoint and HTTP status (\"error\": no response)",
            Family::<RequestLabels, Counter>::default(),
        );
        let cxone_duration = register(
            &mut registry,
            "cxone_api_request_duration_seconds",
            "Duration of CXone API requests",
            Family::<EndpointLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            ),
        );
        let token_refreshes = register(
            &mut registry,
            "cxone_token_refreshes",
            "OAuth2 tokens obtained from CXone",
            Counter::default(),
        );
        let rate_limited = register(
            &mut registry,
            "cxone_rate_limited",
            "429 answers received from CXone",
            Counter::default(),
        );
        let local_rate_limit_waits = register(
            &mut registry,
            "cxone_local_rate_limit_waits",
            "Calls deferred by the operator's own CXone rate limiter",
            Counter::default(),
        );
        let rate_limit_wait_seconds = register(
            &mut registry,
            "cxone_rate_limit_wait_seconds",
            "Time jobs were deferred by rate limits (CXone 429s and the operator's own limiter)",
            Counter::<f64, std::sync::atomic::AtomicU64>::default(),
        );
        let lifecycle = Lifecycle::new(&mut registry);
        Self {
            registry,
            reconcile_total,
            reconcile_errors,
            reconcile_time,
            cxone_requests,
            cxone_duration,
            token_refreshes,
            rate_limited,
            local_rate_limit_waits,
            rate_limit_wait_seconds,
            lifecycle,
            phases: Mutex::new(HashMap::new()),
        }
    }

    /// One finished model registration in a registry (`oci`, `mlflow`), by outcome.
    pub fn registration(&self, target: &'static str, outcome: &'static str) {
        self.lifecycle
            .registrations
            .get_or_create(&RegistrationLabels { target, outcome })
            .inc();
    }

    pub fn reconciled(&self, result: &'static str, elapsed: Duration) {
        self.reconcile_total
            .get_or_create(&ResultLabels {
                controller: CONTROLLER,
                result,
            })
            .inc();
        self.reconcile_time
            .get_or_create(&ControllerLabels {
                controller: CONTROLLER,
            })
            .observe(elapsed.as_secs_f64());
    }

    /// A job was deferred `wait` by a rate limit; `local`: by the operator's own limiter.
    pub fn rate_limit_wait(&self, wait: Duration, local: bool) {
        if local {
            self.local_rate_limit_waits.inc();
        }
        self.rate_limit_wait_seconds.inc_by(wait.as_secs_f64());
    }

    pub fn reconcile_failed(&self, category: &'static str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                controller: CONTROLLER,
                category,
            })
            .inc();
    }

    /// A status write moved a job into `phase`.
    pub fn phase_entered(&self, phase: Phase) {
        self.lifecycle
            .phase_transitions
            .get_or_create(&PhaseLabels {
                phase: phase.as_str(),
            })
            .inc();
    }

    /// A whole job was read from the API server: its data was needed (`data`), or a step would
    /// write over what the cache leaves out (`status`).
    pub fn job_read(&self, reason: &'static str) {
        self.lifecycle
            .job_reads
            .get_or_create(&ReadLabels { reason })
            .inc();
    }

    /// Records the phase of a job (by uid) for the jobs-by-phase gauge.
    pub fn set_phase(&self, uid: &str, phase: Option<Phase>) {
        let mut phases = self.phases.lock().unwrap_or_else(|p| p.into_inner());
        match phase {
            Some(p) => {
                phases.insert(uid.to_string(), p);
            }
            None => {
                phases.remove(uid);
            }
        }
    }

    /// Text exposition (OpenMetrics).
    pub fn encode(&self) -> String {
        {
            let phases = self.phases.lock().unwrap_or_else(|p| p.into_inner());
            let mut counts: HashMap<Phase, i64> = HashMap::new();
            for p in phases.values() {
                *counts.entry(*p).or_default() += 1;
            }
            for p in Phase::ALL {
                self.lifecycle
                    .jobs
                    .get_or_create(&PhaseLabels { phase: p.as_str() })
                    .set(counts.get(&p).copied().unwrap_or(0));
            }
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl CallObserver for Metrics {
    fn observe(&self, call: Call, status: Option<u16>, elapsed: Duration) {
        let code = status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "error".into());
        self.cxone_requests
            .get_or_create(&RequestLabels {
                endpoint: call.as_str(),
                code,
            })
            .inc();
        self.cxone_duration
            .get_or_create(&EndpointLabels {
                endpoint: call.as_str(),
            })
            .observe(elapsed.as_secs_f64());
        if call == Call::Token && status == Some(200) {
            self.token_refreshes.inc();
        }
        if status == Some(429) {
            self.rate_limited.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_the_documented_names() {
        let m = Metrics::new();
        m.reconciled("success", Duration::from_millis(3));
        m.reconcile_failed("cxone");
        m.observe(Call::Status, Some(200), Duration::from_millis(5));
        m.observe(Call::Token, Some(200), Duration::from_millis(5));
        m.observe(Call::Status, Some(429), Duration::from_millis(5));
        m.set_phase("u1", Some(Phase::Training));
        m.phase_entered(Phase::Training);
        m.job_read("status");
        let text = m.encode();
        for needle in [
            "controller_runtime_reconcile_total{controller=\"skilltrainingjob\",result=\"success\"} 1",
            "controller_runtime_reconcile_errors_total{controller=\"skilltrainingjob\",category=\"cxone\"} 1",
            "controller_runtime_reconcile_time_seconds_count{controller=\"skilltrainingjob\"} 1",
            "cxone_api_requests_total{endpoint=\"status\",code=\"200\"} 1",
            "cxone_api_request_duration_seconds_count{endpoint=\"status\"} 2",
            "cxone_token_refreshes_total 1",
            "cxone_rate_limited_total 1",
            "cxone_skill_training_jobs{phase=\"Training\"} 1",
            "cxone_skill_training_jobs{phase=\"Succeeded\"} 0",
            "cxone_skill_phase_transitions_total{phase=\"Training\"} 1",
            "cxone_skill_job_reads_total{reason=\"status\"} 1",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
