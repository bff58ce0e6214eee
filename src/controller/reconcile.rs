//! The reconcile driver: observe (the job's data and credentials) → decide (pure, `decide/`) →
//! act (`act.rs`) → feed the outcome back, until a decision has nothing more to do. It writes the
//! status each decision returns (by server-side apply, only when it changed), publishes its
//! Events and keeps its memory. Deletion runs the same loop with `decide_cleanup` inside the
//! finalizer helper.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use super::act::{act, check_credentials, data_key, resolve_data};
use super::decide::{self, Next, Note, Observation, RunTarget, Step, View};
use super::memory::DataOutcome;
use super::{Context, FIELD_MANAGER, FINALIZER};
use crate::crd::{Phase, SkillTrainingJob, SkillTrainingJobStatus};
use crate::cxone::CxoneError;
use crate::registry::allow::Targets;

/// Errors that end a reconciliation early; the controller retries them with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("CXone: {0}")]
    Cxone(#[from] CxoneError),
    #[error("object has no {0}")]
    MissingField(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("reconciliation took longer than {0:?} and was stopped")]
    Timeout(Duration),
    /// Not a failure: come back after this long (used where an Ok would end the step, as in
    /// cleanup, whose Ok removes the finalizer).
    #[error("waiting {0:?} before cancelling")]
    Wait(Duration),
}

/// Longest one reconciliation of one job may take.
const RECONCILE_TIMEOUT: Duration = Duration::from_secs(90);
/// Decisions one reconciliation follows at most (a run's end is the longest chain: poll,
/// evaluation, export, report, Secret, status).
const MAX_STEPS: usize = 10;

impl Error {
    /// Static category for metrics labels and logs.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Finalizer(_) => "finalizer",
            Error::Cxone(e) => e.category(),
            Error::MissingField(_) => "invalid_object",
            Error::Conflict(_) => "conflict",
            Error::Timeout(_) => "timeout",
            Error::Wait(_) => "rate_limited",
        }
    }
}

/// Entry point for the controller: runs apply or cleanup inside the finalizer helper, on the
/// cached job (a copy without its training data, see `run::slim`) or, when its data must be
/// resolved, on the whole object read from the API server.
pub async fn reconcile(cached: Arc<SkillTrainingJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let ns = cached.namespace().ok_or(Error::MissingField("namespace"))?;
    let api: Api<SkillTrainingJob> = Api::namespaced(ctx.kube.clone(), &ns);
    let job = if data_known(&cached, &ctx).await {
        cached
    } else {
        let Some(job) = api.get_opt(&cached.name_any()).await? else {
            // Gone (its finalizer removed by someone else, or never added): forget it.
            ctx.forget(&cached.uid().unwrap_or_default());
            return Ok(Action::await_change());
        };
        if job.uid() != cached.uid() {
            return Ok(Action::await_change()); // a new object of that name has its own turn
        }
        Arc::new(job)
    };
    let work = finalizer(&api, FINALIZER, job, |event| async {
        match event {
            Finalizer::Apply(job) => apply(&job, &ctx).await,
            Finalizer::Cleanup(job) => cleanup(&job, &ctx).await,
        }
    });
    // Every call inside has its own timeout; this bounds their sum, so no worker is held by one
    // job for long whatever its remote ends do. Stopping here is like a crash between two
    // writes, which every step survives (idempotent writes, idempotency key).
    let Ok(result) = tokio::time::timeout(RECONCILE_TIMEOUT, work).await else {
        ctx.metrics.reconciled("error", started.elapsed());
        return Err(Error::Timeout(RECONCILE_TIMEOUT));
    };
    let result = result.map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        kube::runtime::finalizer::Error::AddFinalizer(e)
        | kube::runtime::finalizer::Error::RemoveFinalizer(e) => Error::Kube(e),
        other => Error::Finalizer(other.to_string()),
    });
    let outcome = match &result {
        Ok(a) if *a == Action::await_change() => "success",
        Ok(_) | Err(Error::Wait(_)) => "requeue",
        Err(_) => "error",
    };
    ctx.metrics.reconciled(outcome, started.elapsed());
    result
}

/// The job's data was resolved for its current generation and ConfigMaps (and is cached), so
/// the cached copy without the data will do.
async fn data_known(job: &SkillTrainingJob, ctx: &Context) -> bool {
    let (Some(ns), Some(uid)) = (
        job.metadata.namespace.as_deref(),
        job.metadata.uid.as_deref(),
    ) else {
        return false;
    };
    if ctx
        .data
        .get(uid)
        .is_some_and(|d| d.key == data_key(job, ns, ctx))
    {
        return true;
    }
    // A finished run whose sources are unchanged needs none (see `recorded_data`).
    finished(job.status.as_ref())
        && !ctx.memory(uid).read_data
        && match job
            .status
            .as_ref()
            .and_then(|s| s.data_source_key.as_deref())
        {
            Some(recorded) => recorded == data_source_key(job, ns, ctx).await,
            None => false,
        }
}

/// The run in `status` is over.
fn finished(status: Option<&SkillTrainingJobStatus>) -> bool {
    matches!(
        status.and_then(|s| s.phase),
        Some(Phase::Succeeded | Phase::Failed | Phase::Cancelled)
    )
}

/// Backoff for errors that escaped the decisions (Kubernetes API failures, mostly).
pub fn error_policy(job: Arc<SkillTrainingJob>, error: &Error, ctx: Arc<Context>) -> Action {
    if let Error::Wait(wait) = error {
        return Action::requeue(*wait);
    }
    ctx.metrics.reconcile_failed(error.category());
    if matches!(error, Error::Conflict(_)) {
        // Someone wrote the object since it was read: read it again soon, no backoff.
        return Action::requeue(Duration::from_secs(1));
    }
    let wait = ctx.next_error_backoff(&job.uid().unwrap_or_default());
    warn!(job = %job.name_any(), namespace = job.namespace().as_deref().unwrap_or(""),
        category = error.category(), error = %error, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

/// The object being reconciled, with the identity every step needs.
pub(super) struct JobRef<'a> {
    pub obj: &'a SkillTrainingJob,
    pub ns: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub generation: i64,
}

impl<'a> JobRef<'a> {
    fn new(obj: &'a SkillTrainingJob) -> Result<Self, Error> {
        Ok(Self {
            obj,
            ns: obj
                .metadata
                .namespace
                .as_deref()
                .ok_or(Error::MissingField("namespace"))?,
            name: obj
                .metadata
                .name
                .as_deref()
                .ok_or(Error::MissingField("name"))?,
            uid: obj
                .metadata
                .uid
                .as_deref()
                .ok_or(Error::MissingField("uid"))?,
            generation: obj.metadata.generation.unwrap_or(0),
        })
    }
}

/// What was read for this reconciliation.
struct Observed {
    data: Arc<DataOutcome>,
    /// What the data was read from (`status.dataSourceKey`).
    source_key: Option<String>,
    endpoint: Result<RunTarget, String>,
    credentials: Result<(), String>,
    registry: Option<Result<Targets, String>>,
}

/// The registries of `spec.registry` through the registry allowlist.
fn spec_registry(job: &JobRef<'_>, ctx: &Context) -> Option<Result<Targets, String>> {
    let spec = job.obj.spec.registry.as_ref()?;
    Some(ctx.registries.allowlist.check(spec, job.ns, job.name))
}

/// The spec's CXone endpoint through the allowlist (runs recorded before their endpoint was kept
/// in status are cancelled there).
fn spec_endpoint(job: &JobRef<'_>, ctx: &Context) -> Result<RunTarget, String> {
    let connection = &job.obj.spec.connection;
    ctx.config.allowlist.resolve(connection).map(|e| RunTarget {
        base_url: e.base_url().to_string(),
        token_url: e.token_url().to_string(),
        secret: connection.credentials_secret_ref.name.clone(),
    })
}

/// A hash of what the job's data is read from: its generation and each source ConfigMap's
/// resourceVersion as the metadata watch has it (waiting for that watch's first list, so a
/// restart does not mistake "not listed yet" for a change).
async fn data_source_key(job: &SkillTrainingJob, ns: &str, ctx: &Context) -> String {
    use sha2::Digest as _;
    if !job.spec.utterances_from.is_empty() {
        ctx.stores.config_maps_ready(ns).await;
    }
    let key = data_key(job, ns, ctx);
    let hash = sha2::Sha256::digest(key.as_bytes());
    format!("v1:{}", hex::encode(&hash[..16]))
}

/// The recorded digest of a finished run whose sources did not change: nothing is read, and
/// nothing of its data is kept in memory.
fn recorded_data(job: &JobRef<'_>, ctx: &Context, source_key: &str) -> Option<Arc<DataOutcome>> {
    let status = job.obj.status.as_ref()?;
    if !finished(Some(status))
        || status.data_source_key.as_deref() != Some(source_key)
        || ctx.memory(job.uid).read_data
    {
        return None;
    }
    let digest = status.dataset_digest.clone()?;
    ctx.forget_data(job.uid);
    Some(Arc::new(DataOutcome::Unchanged { digest }))
}

async fn observe(job: &JobRef<'_>, ctx: &Context) -> Result<Observed, Error> {
    let spec = &job.obj.spec;
    let endpoint = spec_endpoint(job, ctx);
    // Names go into API paths: nothing is read for a spec whose names are unusable (objects
    // stored before the CRD enforced the patterns can carry anything).
    if !super::core::reference_problems(spec, ctx.config.artifact_secrets).is_empty() {
        return Ok(Observed {
            data: Arc::new(DataOutcome::NotRead),
            source_key: None,
            endpoint,
            credentials: Err("not read".into()),
            registry: spec_registry(job, ctx),
        });
    }
    let source_key = data_source_key(job.obj, job.ns, ctx).await;
    let data = match recorded_data(job, ctx, &source_key) {
        Some(recorded) => recorded,
        None => resolve_data(job, ctx, false).await?.outcome,
    };
    let credentials = check_credentials(job, ctx).await?;
    Ok(Observed {
        source_key: Some(source_key),
        data,
        endpoint,
        credentials,
        registry: spec_registry(job, ctx),
    })
}

async fn apply(obj: &SkillTrainingJob, ctx: &Context) -> Result<Action, Error> {
    let job = JobRef::new(obj)?;
    let observed = observe(&job, ctx).await?;
    Ok(match drive(&job, ctx, observed, false).await? {
        Next::AwaitChange => Action::await_change(),
        Next::Requeue(wait) => Action::requeue(wait),
    })
}

/// Deletion: cancel an in-flight CXone job unless the policy says to orphan it. An `Ok` removes
/// the finalizer, so a step that must come back later is an `Err(Wait)`.
async fn cleanup(obj: &SkillTrainingJob, ctx: &Context) -> Result<Action, Error> {
    let job = JobRef::new(obj)?;
    let observed = Observed {
        data: Arc::new(DataOutcome::NotRead),
        source_key: None,
        endpoint: spec_endpoint(&job, ctx),
        credentials: Ok(()),
        registry: None,
    };
    match drive(&job, ctx, observed, true).await? {
        Next::AwaitChange => {
            ctx.forget(job.uid);
            Ok(Action::await_change())
        }
        Next::Requeue(wait) => Err(Error::Wait(wait)),
    }
}

/// The decide → act loop.
async fn drive(
    job: &JobRef<'_>,
    ctx: &Context,
    observed: Observed,
    deleting: bool,
) -> Result<Next, Error> {
    let policy = ctx.policy();
    let mut status = job.obj.status.clone().unwrap_or_default();
    let mut version = job.obj.metadata.resource_version.clone();
    let mut memory = ctx.memory(job.uid);
    let mut observation = Observation::Start;
    for _ in 0..MAX_STEPS {
        let view = View {
            namespace: job.ns,
            name: job.name,
            uid: job.uid,
            generation: job.generation,
            spec: &job.obj.spec,
            status: &status,
            data: &observed.data,
            data_source_key: observed.source_key.clone(),
            endpoint: observed.endpoint.clone(),
            credentials: observed.credentials.clone(),
            registry: observed.registry.clone(),
            now: Timestamp::now(),
            jitter: ctx.jitter(),
        };
        let step = if deleting {
            decide::decide_cleanup(&view, &memory, observation, &policy)
        } else {
            decide::decide(&view, &memory, observation, &policy)
        };
        let Step {
            status: next,
            memory: next_memory,
            effect,
            events,
            next: then,
            conditional,
            drop_dataset,
        } = step;
        memory = next_memory;
        ctx.set_memory(job.uid, memory.clone());
        if drop_dataset && let Some(d) = ctx.data.get(job.uid) {
            ctx.data.set(job.uid, d.without_dataset());
        }
        if next != status {
            let precondition = conditional.then_some(version.as_deref()).flatten();
            version = write_status(job, ctx, &next, precondition).await?;
            status = next;
        }
        ctx.metrics.set_phase(job.uid, status.phase);
        for note in events {
            publish(ctx, job, &note).await;
        }
        match effect {
            None => return Ok(then),
            Some(effect) => observation = act(effect, job, ctx, &observed.data).await?,
        }
    }
    Ok(Next::Requeue(Duration::from_secs(1)))
}

/// Writes status by server-side apply; with `precondition`, only if the object is still at that
/// resourceVersion (409 otherwise: read again). Returns the new resourceVersion.
async fn write_status(
    job: &JobRef<'_>,
    ctx: &Context,
    next: &SkillTrainingJobStatus,
    precondition: Option<&str>,
) -> Result<Option<String>, Error> {
    let mut patch = json!({
        "apiVersion": "ai.cxone.io/v1alpha1",
        "kind": "SkillTrainingJob",
        "status": next,
    });
    if let Some(version) = precondition {
        patch["metadata"] = json!({"resourceVersion": version});
    }
    let api: Api<SkillTrainingJob> = Api::namespaced(ctx.kube.clone(), job.ns);
    match api
        .patch_status(
            job.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(patch),
        )
        .await
    {
        Ok(obj) => Ok(obj.metadata.resource_version),
        Err(kube::Error::Api(e)) if e.code == 409 => Err(Error::Conflict(
            "the job changed since it was read; reading it again".into(),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Publishes an Event (and logs it); failures are logged, never fatal.
async fn publish(ctx: &Context, job: &JobRef<'_>, note: &Note) {
    if note.warning {
        warn!(job = %job.name, namespace = %job.ns, reason = %note.reason, "{}", note.message);
    } else {
        info!(job = %job.name, namespace = %job.ns, reason = %note.reason, "{}", note.message);
    }
    let ev = KubeEvent {
        type_: if note.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: note.reason.as_str().to_string(),
        // The API server refuses notes over 1024 bytes; cut at a character boundary.
        note: Some(crate::text::truncate_bytes(&note.message, 1024)),
        action: note.action.to_string(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &job.obj.object_ref(&())).await {
        warn!(job = %job.name, error = %e, "cannot publish event");
    }
}
