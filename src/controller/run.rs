//! `cxone-skill-operator run`: wires the Kubernetes client, watches, controllers, the metrics and
//! probe servers, leader election and shutdown together.

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::utils::{PredicateConfig, predicates};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tracing::{error, info, warn};

use super::decide::Policy;
use super::metrics::Metrics;
use super::registration::Registries;
use super::server::{self, Readiness};
use super::{Context, MetaStores, OperatorConfig, error_policy, reconcile};
use crate::crd::SkillTrainingJob;
use crate::cxone::{ClientConfig, CxoneClient};
use crate::cxone::{CxoneRateLimiter, EndpointAllowlist};
use crate::registry::allow::RegistryAllowlist;

/// Flags of `cxone-skill-operator run` (kubebuilder-style names).
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Path to a kubeconfig; default: in-cluster config, then $KUBECONFIG / ~/.kube/config.
    #[arg(long, env = "KUBECONFIG_PATH")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// Namespaces to watch, comma-separated; empty: all namespaces.
    #[arg(long, value_delimiter = ',', env = "WATCH_NAMESPACES")]
    pub watch_namespaces: Vec<String>,
    /// Address of the Prometheus metrics endpoint (`/metrics`).
    #[arg(long, default_value = ":8080", value_parser = parse_bind_address)]
    pub metrics_bind_address: SocketAddr,
    /// Address of the health probes (`/healthz`, `/readyz`).
    #[arg(long, default_value = ":8081", value_parser = parse_bind_address)]
    pub health_probe_bind_address: SocketAddr,
    /// Elect a leader through a Lease so only one replica reconciles.
    #[arg(long)]
    pub leader_elect: bool,
    /// Namespace of the leader election Lease (default: the pod's namespace, else "default").
    #[arg(long, env = "POD_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// Name of the leader election Lease.
    #[arg(long, default_value = "cxone-skill-operator")]
    pub leader_election_id: String,
    /// Seconds a leader's lease lasts without renewal.
    #[arg(long, default_value_t = 15)]
    pub leader_election_lease_seconds: u64,
    /// Jobs reconciled in parallel.
    #[arg(long, default_value_t = 8)]
    pub concurrency: u16,
    /// Most CXone calls per second per endpoint and client id, shared by all jobs (0: no limit).
    #[arg(long, default_value_t = 10.0)]
    pub cxone_rate_limit: f64,
    /// CXone base URLs jobs may use, comma-separated; `*` matches one DNS label.
    #[arg(long, value_delimiter = ',', default_value = EndpointAllowlist::DEFAULT)]
    pub allowed_endpoints: Vec<String>,
    /// Log format.
    #[arg(long, value_enum, default_value = "json")]
    pub log_format: LogFormat,
    /// 0: write progress to status only when the phase changes (bounded API server writes per
    /// job); N: also whenever it advanced N percentage points.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..=100))]
    pub progress_step: i32,
    /// Let jobs put their artifact URLs into a Secret of their own (`spec.artifacts.secretName`);
    /// needs create/patch on Secrets (Helm value `artifactSecrets.enabled`).
    #[arg(long)]
    pub enable_artifact_secrets: bool,
    /// Registries jobs may register models in (`spec.registry`), comma-separated:
    /// `host[:port][/path]` for OCI repositories under that path, `https://host[/path]` for MLflow
    /// tracking servers; `*` matches one DNS label. Empty (the default): none.
    #[arg(long, value_delimiter = ',', env = "ALLOWED_REGISTRIES")]
    pub allowed_registries: Vec<String>,
    /// Allow `http://` registry patterns for hosts that are not loopback.
    #[arg(long)]
    pub allow_plain_http_registries: bool,
    /// Model registrations that may run at once (each streams a model from CXone to a registry).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub max_concurrent_registrations: u16,
    /// Jobs whose training data (ConfigMaps of `spec.utterancesFrom`, inline utterances) is read
    /// and validated at once: what bounds the memory a burst of large datasets takes.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub max_concurrent_data_reads: u16,
    /// Objects per page when a watch lists (at start and on every relist), for the jobs and the
    /// Secret and ConfigMap metadata: a relist holds one page at a time, not the whole list.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(10..=5000))]
    pub watch_page_size: u32,
}

/// Longest wait for one answer of the API server to a reconciliation's request (watches have
/// their own idle timeout and use a client without this limit).
const KUBE_READ_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// Accepts `:8080` (all interfaces), `127.0.0.1:8080` and `[::1]:8080`.
fn parse_bind_address(s: &str) -> Result<SocketAddr, String> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.parse()
        .map_err(|_| format!("{s:?} is not an address like :8080 or 127.0.0.1:8080"))
}

/// What wakes a job: a new generation (spec change, or deletion), or finalizer changes. Status
/// writes change neither, so the operator's own patches never cause a reconcile (or CXone call).
fn trigger_hash(job: &SkillTrainingJob) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    job.metadata.generation.hash(&mut h);
    job.metadata.finalizers.hash(&mut h);
    job.metadata.deletion_timestamp.is_some().hash(&mut h);
    Some(h.finish())
}

/// Two clients on one configuration: one for watches (long-lived, idle between events) and one
/// for everything reconciliation calls, where no answer within [`KUBE_READ_TIMEOUT`] is an error
/// of that job rather than a worker stuck until the API server gives up.
async fn kube_clients(args: &RunArgs) -> anyhow::Result<(Client, Client)> {
    let config = kube_config(args).await?;
    let mut bounded = config.clone();
    bounded.read_timeout = Some(KUBE_READ_TIMEOUT);
    bounded.reset_reader_on_write = true;
    bounded.write_timeout = Some(KUBE_READ_TIMEOUT);
    bounded.connect_timeout = Some(Duration::from_secs(10));
    let watch = Client::try_from(config).context("cannot build the Kubernetes client")?;
    let calls = Client::try_from(bounded).context("cannot build the Kubernetes client")?;
    Ok((watch, calls))
}

async fn kube_config(args: &RunArgs) -> anyhow::Result<kube::Config> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("invalid kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer().await.context(
            "no Kubernetes configuration found (in-cluster, $KUBECONFIG or ~/.kube/config)",
        )?,
    };
    Ok(config)
}

/// Waits until SkillTrainingJobs can be listed (the CRD is installed and established).
async fn wait_for_crd(client: &Client, scopes: &[Option<String>]) {
    let mut logged = false;
    loop {
        let mut all_ok = true;
        for scope in scopes {
            let api: Api<SkillTrainingJob> = match scope {
                Some(ns) => Api::namespaced(client.clone(), ns),
                None => Api::all(client.clone()),
            };
            if let Err(e) = api.list(&ListParams::default().limit(1)).await {
                all_ok = false;
                if !logged {
                    warn!(error = %e, "cannot list SkillTrainingJobs yet (is the CRD installed?); waiting");
                    logged = true;
                }
            }
        }
        if all_ok {
            return;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let allowlist = EndpointAllowlist::parse(&args.allowed_endpoints)
        .map_err(|e| anyhow::anyhow!("--allowed-endpoints: {e}"))?;
    let registries =
        RegistryAllowlist::parse(&args.allowed_registries, args.allow_plain_http_registries)
            .map_err(|e| anyhow::anyhow!("--allowed-registries: {e}"))?;
    let (client, calls) = kube_clients(&args).await?;
    let scopes = scopes_of(&args.watch_namespaces);
    let metrics = Arc::new(Metrics::new());
    let readiness = Readiness::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    let servers = [
        tokio::spawn(server::serve(
            args.metrics_bind_address,
            server::metrics_router(metrics.clone()),
            stopped(),
        )),
        tokio::spawn(server::serve(
            args.health_probe_bind_address,
            server::probe_router(readiness.clone()),
            stopped(),
        )),
    ];
    stop_on_signal(stop_tx.clone());

    let identity = std::env::var("POD_NAME")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "cxone-skill-operator".into());
    if args.leader_elect && !lead(&args, &calls, &identity, &readiness, stopped()).await? {
        return Ok(());
    }

    wait_for_crd(&calls, &scopes).await;

    let (stores, secret_writers, cm_writers) = meta_stores(&scopes);
    // Ready once every scope's job watch has delivered its initial list.
    let synced = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ctx = Arc::new(
        context(&args, allowlist, calls, &identity, metrics.clone(), stores)?
            .with_registries(Registries::new(
                registries,
                usize::from(args.max_concurrent_registrations),
            ))
            .with_data_reads(usize::from(args.max_concurrent_data_reads)),
    );

    let controllers: Vec<_> = (scopes.iter().zip(secret_writers).zip(cm_writers))
        .map(|((scope, secrets), cms)| {
            let sync = Synced {
                count: synced.clone(),
                of: scopes.len(),
                readiness: readiness.clone(),
            };
            let (ctx, stopped) = (ctx.clone(), stopped());
            scope_controller(
                &client,
                scope.as_ref(),
                (secrets, cms),
                sync,
                (args.concurrency, args.watch_page_size),
                ctx,
                stopped,
            )
        })
        .collect();
    info!(namespaces = ?scopes, concurrency = args.concurrency, cxone_rate_limit = args.cxone_rate_limit, "operator running");
    futures::future::join_all(controllers).await;
    let _ = stop_tx.send(true);
    stop_servers(servers).await;
    info!("stopped");
    Ok(())
}

/// Asks everything to stop once the process is told to (SIGTERM, Ctrl-C).
fn stop_on_signal(stop_tx: tokio::sync::watch::Sender<bool>) {
    tokio::spawn(async move {
        signal().await;
        info!("shutdown signal received; finishing in-flight reconciliations");
        let _ = stop_tx.send(true);
    });
}

/// Waits for the metrics and probe servers to finish their shutdown.
async fn stop_servers(
    servers: impl IntoIterator<Item = tokio::task::JoinHandle<std::io::Result<()>>>,
) {
    for server in servers {
        match server.await {
            Ok(Err(e)) => error!(error = %e, "server failed"),
            Err(e) => error!(error = %e, "server task failed"),
            Ok(Ok(())) => {}
        }
    }
}

type MetaWriter<K> = reflector::store::Writer<PartialObjectMeta<K>>;

/// Metadata-only caches of Secrets and ConfigMaps per scope: to map their changes to jobs, and
/// to know their resourceVersions without reading them.
fn meta_stores(
    scopes: &[Option<String>],
) -> (
    MetaStores,
    Vec<MetaWriter<Secret>>,
    Vec<MetaWriter<ConfigMap>>,
) {
    let mut stores = MetaStores::default();
    let mut secret_writers = Vec::new();
    let mut cm_writers = Vec::new();
    for scope in scopes {
        let (r, w) = reflector::store::<PartialObjectMeta<Secret>>();
        stores.secrets.insert(scope.clone(), r);
        secret_writers.push(w);
        let (r, w) = reflector::store::<PartialObjectMeta<ConfigMap>>();
        stores.config_maps.insert(scope.clone(), r);
        cm_writers.push(w);
    }
    (stores, secret_writers, cm_writers)
}

/// With `--leader-elect`: waits to lead (`false`: stopped first).
async fn lead(
    args: &RunArgs,
    calls: &Client,
    identity: &str,
    readiness: &Readiness,
    stopped: impl std::future::Future<Output = ()>,
) -> anyhow::Result<bool> {
    let election = super::leader::Election {
        client: calls.clone(),
        namespace: args
            .leader_election_namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        name: &args.leader_election_id,
        identity: format!("{identity}-{}", std::process::id()),
        lease_seconds: args.leader_election_lease_seconds,
    };
    super::leader::lead(election, readiness, stopped).await
}

/// `--watch-namespaces` as watch scopes (`None`: all namespaces).
fn scopes_of(namespaces: &[String]) -> Vec<Option<String>> {
    if namespaces.iter().all(|n| n.trim().is_empty()) {
        return vec![None];
    }
    namespaces
        .iter()
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .map(Some)
        .collect()
}

/// What every reconciliation shares: clients, settings, the rate limiter, metrics, Events.
fn context(
    args: &RunArgs,
    allowlist: EndpointAllowlist,
    calls: Client,
    identity: &str,
    metrics: Arc<Metrics>,
    stores: MetaStores,
) -> anyhow::Result<Context> {
    let cxone = CxoneClient::new(ClientConfig::default())
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_observer(metrics.clone());
    let rate = (args.cxone_rate_limit > 0.0).then_some(args.cxone_rate_limit);
    let recorder = super::events::Publisher::new(calls.clone(), "cxone-skill-operator", identity);
    Ok(Context::new(
        calls,
        cxone,
        OperatorConfig {
            allowlist,
            policy: Policy {
                progress_step: args.progress_step,
                artifact_secrets: args.enable_artifact_secrets,
                ..Policy::default()
            },
        },
        CxoneRateLimiter::new(rate),
        metrics,
        recorder,
        stores,
    ))
}

/// Counts scopes whose job watch delivered its initial list; all of them: ready.
struct Synced {
    count: Arc<std::sync::atomic::AtomicUsize>,
    of: usize,
    readiness: Readiness,
}

type Meta<K> = PartialObjectMeta<K>;

/// The controller of one watched scope (a namespace, or all): the job watch, the Secret and
/// ConfigMap metadata watches that wake the jobs referencing them, and reconciliation.
fn scope_controller(
    client: &Client,
    scope: Option<&String>,
    (secret_writer, cm_writer): (
        reflector::store::Writer<Meta<Secret>>,
        reflector::store::Writer<Meta<ConfigMap>>,
    ),
    sync: Synced,
    (concurrency, page_size): (u16, u32),
    ctx: Arc<Context>,
    stopped: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> impl std::future::Future<Output = ()> {
    let (jobs_api, secrets_api, cms_api): (
        Api<SkillTrainingJob>,
        Api<Meta<Secret>>,
        Api<Meta<ConfigMap>>,
    ) = match scope {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    let (reader, writer) = reflector::store::<SkillTrainingJob>();
    let jobs = job_events(jobs_api, writer, sync, page_size);
    let secrets = watcher(secrets_api, watcher::Config::default().page_size(page_size))
        .default_backoff()
        .modify(strip_metadata)
        .reflect(secret_writer)
        .touched_objects()
        .predicate_filter(predicates::resource_version, PredicateConfig::default());
    // The operator's own audit ConfigMaps (one per run) are never data sources: leave them
    // out of the watch and the cache.
    let cms = watcher(
        cms_api,
        watcher::Config::default()
            .labels(&format!("!{}", crate::controller::REPORT_LABEL))
            .page_size(page_size),
    )
    .default_backoff()
    .modify(strip_metadata)
    .reflect(cm_writer)
    .touched_objects()
    .predicate_filter(predicates::resource_version, PredicateConfig::default());
    let by_secret = reader.clone();
    let by_cm = reader.clone();
    Controller::for_stream(jobs, reader)
        .with_config(controller::Config::default().concurrency(concurrency))
        .watches_stream(secrets, move |s: PartialObjectMeta<Secret>| {
            referencing(&by_secret, &s.namespace().unwrap_or_default(), |job| {
                let name = s.name_any();
                job.spec.connection.credentials_secret_ref.name == name
                    || job
                        .spec
                        .registry
                        .as_ref()
                        .is_some_and(|r| r.secret_names().iter().any(|(_, n)| *n == name))
            })
        })
        .watches_stream(cms, move |cm: PartialObjectMeta<ConfigMap>| {
            referencing(&by_cm, &cm.namespace().unwrap_or_default(), |job| {
                job.spec
                    .utterances_from
                    .iter()
                    .any(|src| src.config_map_key_ref.name == cm.name_any())
            })
        })
        .graceful_shutdown_on(stopped)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile loop");
            }
        })
}

/// The job watch: cached without what nothing reads, marking readiness once listed, and
/// filtered to the changes that need a reconcile.
fn job_events(
    api: Api<SkillTrainingJob>,
    writer: reflector::store::Writer<SkillTrainingJob>,
    sync: Synced,
    page_size: u32,
) -> impl futures::Stream<Item = Result<SkillTrainingJob, watcher::Error>> {
    let mut first_sync = true;
    // Each object is projected before it enters the cache (`projection.rs`).
    watcher(api, watcher::Config::default().page_size(page_size))
        .default_backoff()
        .modify(super::projection::project)
        .reflect(writer)
        .inspect(move |event| {
            if first_sync && matches!(event, Ok(watcher::Event::InitDone)) {
                first_sync = false;
                if sync.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == sync.of {
                    sync.readiness.set(true);
                    info!("caches synced; ready");
                }
            }
        })
        .applied_objects()
        .predicate_filter(
            trigger_hash,
            PredicateConfig::default().ttl(Duration::from_secs(7 * 24 * 3600)),
        )
}

/// The cached metadata of a Secret or ConfigMap (`projection.rs`).
fn strip_metadata<K>(m: &mut PartialObjectMeta<K>) {
    super::projection::strip_metadata(&mut m.metadata);
    m.types = None;
}

/// Jobs in `ns` that `matches` selects, as reconcile requests.
fn referencing(
    store: &Store<SkillTrainingJob>,
    ns: &str,
    matches: impl Fn(&SkillTrainingJob) -> bool,
) -> Vec<ObjectRef<SkillTrainingJob>> {
    store
        .state()
        .into_iter()
        .filter(|job| job.namespace().as_deref() == Some(ns) && matches(job))
        .map(|job| ObjectRef::from(&*job))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_addresses() {
        assert_eq!(
            parse_bind_address(":8080").unwrap(),
            "0.0.0.0:8080".parse().unwrap()
        );
        assert_eq!(
            parse_bind_address("127.0.0.1:9").unwrap(),
            "127.0.0.1:9".parse().unwrap()
        );
        assert!(parse_bind_address("8080").is_err());
    }

    #[test]
    fn status_changes_do_not_trigger() {
        let mut job: SkillTrainingJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "ai.cxone.io/v1alpha1", "kind": "SkillTrainingJob",
            "metadata": {"name": "a", "namespace": "n", "generation": 1},
            "spec": {"skillId": "s", "connection": {"region": "r", "credentialsSecretRef": {"name": "c"}},
                     "language": "en", "labels": [{"id": "a", "name": "A"}]}
        }))
        .unwrap();
        let before = trigger_hash(&job);
        job.status = Some(Default::default());
        job.metadata.resource_version = Some("99".into());
        assert_eq!(trigger_hash(&job), before);
        job.metadata.generation = Some(2);
        assert_ne!(trigger_hash(&job), before);
        let g2 = trigger_hash(&job);
        job.metadata.finalizers = Some(vec!["x".into()]);
        assert_ne!(trigger_hash(&job), g2);
    }
}
