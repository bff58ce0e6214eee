//! A stateful simulator of the CXone AI training API (docs/cxone-api.md).
//!
//! It speaks the same wire types as the client ([`crate::cxone::model`]) and is held to the same
//! standards as the operator: it checks client credentials and scopes, issues expiring tokens,
//! validates payloads with the operator's own rules, runs jobs through their stages on a
//! configurable clock, really trains a small deterministic classifier on the training split and
//! evaluates it on the validation split, serves the signed artifact URLs it hands out, enforces a
//! per-client rate limit, honours `Idempotency-Key`, supports cancellation, and injects faults
//! reproducibly from a seed.
//!
//! Endpoints:
//!
//! | method, path | what |
//! |---|---|
//! | `POST /oauth/token` | client-credentials grant (form, HTTP Basic or JSON body) |
//! | `POST /api/v2/ai/skills/training/jobs` | submit a job (`Idempotency-Key` honoured) |
//! | `GET …/jobs/{jobId}` | job status |
//! | `GET …/jobs/{jobId}/evaluation` | evaluation on the validation split |
//! | `GET …/jobs/{jobId}/artifacts/export` | signed, expiring artifact URLs |
//! | `POST …/jobs/{jobId}/cancel` | cancel a running job |
//! | `GET /_sim/artifacts/{jobId}/{file}?expires=…&signature=…` | the artifacts themselves (with `--artifact-weights-bytes N`, the weights are N streamed bytes derived from the job id) |
//! | `GET /_sim/stats` | [`Stats`] (admin) |
//! | `GET`/`PUT /_sim/faults` | the [`Faults`] in force (admin) |
//! | `POST /_sim/tokens/revoke` | revoke every issued token (admin) |
//! | `GET /healthz` | liveness |
//!
//! The admin endpoints (everything under `/_sim/` but the signed artifact downloads) are off
//! unless [`SimulatorConfig::admin`] enables them: with a bearer token (`--admin-token-file`) or,
//! for loopback test setups, without authentication (`--admin-open`). `/healthz` is open.
//!
//! Memory is bounded so the simulator can run in a small pod: at most `max_jobs` jobs taking
//! about `max_job_memory` and `max_tokens` tokens are kept, and request bodies are read against
//! `max_request_bytes`.
//!
//! Layout: this file starts and stops a simulator ([`spawn`], [`run`]); `server/` holds the HTTP
//! side (state, router, one file per route family); `config/` the configuration and flags;
//! `auth` tokens and client authentication, `jobs` the job store and its clock, `train` the
//! classifier, `faults`, `ratelimit`, `rng`, `signing` and `stats` what their names say. It
//! imports the CXone wire types and scopes (`crate::cxone`), the training rules
//! (`crate::training`) and the helpers `crate::duration` and `crate::text`, never the controller
//! or the registries.

mod auth;
mod config;
mod faults;
mod jobs;
mod ratelimit;
mod rng;
mod server;
mod signing;
mod stats;
mod train;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::{
    AdminAccess, ClientCredentials, DEFAULT_MAX_JOB_MEMORY, DEFAULT_MAX_JOBS,
    DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_TOKENS, MAX_DURATION, SimulateArgs, SimulatorConfig,
};
pub use faults::{Faults, MAX_SLOW_DELAY_MS, RetryAfterFormat};
pub use stats::Stats;

use server::Simulator;

/// How long [`SimulatorHandle::shutdown`] lets in-flight requests finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// When a job was created and when it completes (none for jobs that fail or were cancelled).
#[derive(Clone, Debug, PartialEq)]
pub struct JobTimeline {
    pub job_id: String,
    pub state: crate::cxone::model::JobState,
    pub created_at: jiff::Timestamp,
    pub completes_at: Option<jiff::Timestamp>,
}

/// A running simulator. Dropping the handle stops the server (as [`Self::shutdown`] does, without
/// waiting).
pub struct SimulatorHandle {
    addr: SocketAddr,
    sim: Arc<Simulator>,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
}

impl SimulatorHandle {
    /// The address the simulator listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`, with a loopback IP when listening on all interfaces.
    pub fn base_url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// Counters since startup (the same as `GET /_sim/stats`).
    pub fn stats(&self) -> Stats {
        self.sim.stats()
    }

    /// Creation and completion time of every job, for latency measurements.
    pub fn job_timelines(&self) -> Vec<JobTimeline> {
        self.sim.timelines()
    }

    /// Replaces the fault settings (the same as `PUT /_sim/faults`, which also validates them).
    /// Settings are taken as given: rates outside `[0, 1]` act as 0 or 1, and a rate limit that
    /// is not a positive number is ignored; check them with [`Faults::validate`] first.
    pub fn set_faults(&self, faults: Faults) {
        self.sim.set_faults(faults);
    }

    pub fn faults(&self) -> Faults {
        self.sim.faults()
    }

    /// Revokes every token issued so far: their next use is answered 401.
    pub fn revoke_tokens(&self) {
        self.sim.revoke_tokens();
    }

    /// Stops accepting connections and waits (up to a few seconds) for in-flight requests.
    pub async fn shutdown(self) {
        let Self {
            shutdown, mut task, ..
        } = self;
        let _ = shutdown.send(());
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "simulator server failed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "simulator server task failed"),
            Err(_) => {
                tracing::warn!("simulator requests still running after the grace period; aborting");
                task.abort();
            }
        }
    }
}

/// Starts a simulator on `listener`.
///
/// Fails with `InvalidInput` when `config` is invalid (see [`SimulatorConfig::validate`]).
pub async fn spawn(
    config: SimulatorConfig,
    listener: TcpListener,
) -> std::io::Result<SimulatorHandle> {
    config
        .validate()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let addr = listener.local_addr()?;
    let sim = Arc::new(Simulator::new(config, addr));
    let app = server::router(sim.clone());
    let (shutdown, signal) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                // A dropped handle stops the server too.
                let _ = signal.await;
            })
            .await
    });
    Ok(SimulatorHandle {
        addr,
        sim,
        shutdown,
        task,
    })
}

/// `cxone-skill-operator simulate`: binds `--listen`, logs the address, serves until SIGINT or
/// SIGTERM.
pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let listen = args.listen;
    let config = args.into_config()?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let admin = match &config.admin {
        AdminAccess::Disabled => "admin endpoints off",
        AdminAccess::Token(_) => "admin endpoints with a bearer token",
        AdminAccess::Open => {
            tracing::warn!("the /_sim/* admin endpoints have no authentication (--admin-open)");
            "admin endpoints open"
        }
    };
    let clients: Vec<&str> = config
        .clients
        .iter()
        .map(|c| c.client_id.as_str())
        .collect();
    let summary = format!(
        "clients {}, job duration {:?}, token TTL {:?}, seed {}, {admin}, at most {} jobs in {} bytes, {} tokens, {} bytes per request",
        clients.join(","),
        config.job_duration,
        config.token_ttl,
        config.seed,
        config.max_jobs,
        config.max_job_memory,
        config.max_tokens,
        config.max_request_bytes
    );
    let handle = spawn(config, listener)
        .await
        .context("cannot start the simulator")?;
    tracing::info!(url = %handle.base_url(), "CXone simulator listening ({summary})");
    shutdown_signal().await;
    tracing::info!("shutting down the CXone simulator");
    handle.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the simulator");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
