//! The reconcile loop: observe (`observe.rs`) → decide (pure, `decide/`) → act (`act.rs`) → feed
//! the outcome back, until a decision has nothing more to do. It writes the status each decision
//! returns (by server-side apply, only when it changed), publishes its Events and keeps its
//! memory. Deletion runs the same loop with `decide_cleanup` inside the finalizer helper. Imports
//! every layer below it (`job.rs`, `effect.rs`, `observe.rs`, `act.rs`, `decide/`, `memory.rs`,
//! `events.rs`, `projection.rs`);
//! nothing imports it but `mod.rs` and `run.rs`.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use super::act::act;
use super::decide::{self, Event, Next, Step, View};
use super::effect::Observation;
use super::job::{Error, JobRef};
use super::observe::{Observed, data_known, observe, observe_deletion};
use super::{Context, FIELD_MANAGER, FINALIZER, projection};
use crate::crd::{SkillTrainingJob, SkillTrainingJobStatus};

/// How a finalizer pass that did not finish ended. The finalizer helper removes the finalizer on
/// any `Ok`, so a cleanup that must come back later leaves it through the error side; everything
/// else about it is an ordinary requeue (see [`reconcile`]).
#[derive(Debug, thiserror::Error)]
enum Unfinished {
    #[error("waiting {0:?} before cancelling")]
    ComeBackAfter(Duration),
    #[error(transparent)]
    Failed(#[from] Error),
}

/// Longest one reconciliation of one job may take.
const RECONCILE_TIMEOUT: Duration = Duration::from_secs(90);
/// Decisions one reconciliation follows at most (a run's end is the longest chain: poll,
/// evaluation, export, report, Secret, status).
const MAX_STEPS: usize = 10;

/// Entry point for the controller: runs apply or cleanup inside the finalizer helper, on the
/// cached job (a projection without its training data, see `projection.rs`) or, when its data
/// must be resolved or a step would write over what the projection leaves out, on the whole
/// object read from the API server.
pub async fn reconcile(cached: Arc<SkillTrainingJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let ns = cached.namespace().ok_or(Error::MissingField("namespace"))?;
    let api: Api<SkillTrainingJob> = Api::namespaced(ctx.kube.clone(), &ns);
    // A job without the finalizer yet only gets it in this pass (the finalizer helper adds it and
    // returns; the change brings the job back), so nothing is read for it.
    let adding_finalizer = !cached.finalizers().iter().any(|f| f == FINALIZER)
        && cached.metadata.deletion_timestamp.is_none();
    let result = if adding_finalizer || data_known(&cached, &ctx).await {
        let projected = projection::is_projected(&cached);
        match attempt(&api, cached.clone(), projected, &ctx).await {
            Err(Error::Projected) => {
                ctx.metrics.job_read("status");
                on_whole(&api, &cached, false, &ctx).await
            }
            other => other,
        }
    } else {
        ctx.metrics.job_read("data");
        on_whole(&api, &cached, true, &ctx).await
    };
    let outcome = match &result {
        Ok(a) if *a == Action::await_change() => "success",
        Ok(_) => "requeue",
        Err(_) => "error",
    };
    ctx.metrics.reconciled(outcome, started.elapsed());
    result
}

/// Reads the whole job (in a data-read turn when its data is what is needed) and reconciles it.
async fn on_whole(
    api: &Api<SkillTrainingJob>,
    cached: &SkillTrainingJob,
    for_data: bool,
    ctx: &Arc<Context>,
) -> Result<Action, Error> {
    let turn = match for_data {
        true => Some(ctx.data_read_turn().await),
        false => None,
    };
    let Some(job) = api.get_opt(&cached.name_any()).await? else {
        // Gone (its finalizer removed by someone else, or never added): forget it.
        ctx.forget(&cached.uid().unwrap_or_default());
        return Ok(Action::await_change());
    };
    drop(turn);
    if job.uid() != cached.uid() {
        return Ok(Action::await_change()); // a new object of that name has its own turn
    }
    attempt(api, Arc::new(job), false, ctx).await
}

/// One pass of the finalizer helper over `job`, bounded in time.
async fn attempt(
    api: &Api<SkillTrainingJob>,
    job: Arc<SkillTrainingJob>,
    projected: bool,
    ctx: &Arc<Context>,
) -> Result<Action, Error> {
    let work = finalizer(api, FINALIZER, job, |event| async {
        match event {
            Finalizer::Apply(job) => apply(&job, projected, ctx)
                .await
                .map_err(Unfinished::Failed),
            Finalizer::Cleanup(job) => cleanup(&job, projected, ctx).await,
        }
    });
    // Every call inside has its own timeout; this bounds their sum, so no worker is held by one
    // job for long whatever its remote ends do. Stopping here is like a crash between two
    // writes, which every step survives (idempotent writes, idempotency key).
    let Ok(result) = tokio::time::timeout(RECONCILE_TIMEOUT, work).await else {
        return Err(Error::Timeout(RECONCILE_TIMEOUT));
    };
    use kube::runtime::finalizer::Error as Helper;
    match result {
        Ok(action) => Ok(action),
        Err(Helper::ApplyFailed(Unfinished::ComeBackAfter(wait)))
        | Err(Helper::CleanupFailed(Unfinished::ComeBackAfter(wait))) => Ok(Action::requeue(wait)),
        Err(Helper::ApplyFailed(Unfinished::Failed(e)))
        | Err(Helper::CleanupFailed(Unfinished::Failed(e))) => Err(e),
        Err(Helper::AddFinalizer(e) | Helper::RemoveFinalizer(e)) => Err(Error::Kube(e)),
        Err(other) => Err(Error::Finalizer(other.to_string())),
    }
}

/// Backoff for errors that escaped the decisions (Kubernetes API failures, mostly).
pub fn error_policy(job: Arc<SkillTrainingJob>, error: &Error, ctx: Arc<Context>) -> Action {
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

async fn apply(obj: &SkillTrainingJob, projected: bool, ctx: &Context) -> Result<Action, Error> {
    let job = JobRef {
        projected,
        ..JobRef::new(obj)?
    };
    let observed = observe(&job, ctx).await?;
    Ok(match drive(&job, ctx, observed, false).await? {
        Next::AwaitChange => Action::await_change(),
        Next::Requeue(wait) => Action::requeue(wait),
    })
}

/// Deletion: cancel an in-flight CXone job unless the policy says to orphan it. An `Ok` removes
/// the finalizer, so a step that must come back later is [`Unfinished::ComeBackAfter`].
async fn cleanup(
    obj: &SkillTrainingJob,
    projected: bool,
    ctx: &Context,
) -> Result<Action, Unfinished> {
    let job = JobRef {
        projected,
        ..JobRef::new(obj)?
    };
    let observed = observe_deletion(&job, ctx);
    match drive(&job, ctx, observed, true).await? {
        Next::AwaitChange => {
            ctx.forget(job.uid);
            Ok(Action::await_change())
        }
        Next::Requeue(wait) => Err(Unfinished::ComeBackAfter(wait)),
    }
}

/// The decide → act loop.
async fn drive(
    job: &JobRef<'_>,
    ctx: &Context,
    observed: Observed,
    deleting: bool,
) -> Result<Next, Error> {
    let policy = &ctx.config.policy;
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
            decide::decide_cleanup(&view, &memory, observation, policy)
        } else {
            decide::decide(&view, &memory, observation, policy)
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
        if job.projected && (effect.is_some() || next != status || !events.is_empty()) {
            return Err(Error::Projected);
        }
        memory = next_memory;
        ctx.set_memory(job.uid, memory.clone());
        if drop_dataset && let Some(d) = ctx.data.get(job.uid) {
            ctx.data.set(job.uid, d.without_dataset());
        }
        if next != status {
            let precondition = conditional.then_some(version.as_deref()).flatten();
            version = write_status(job, ctx, &next, precondition).await?;
            if let Some(phase) = next.phase.filter(|p| Some(*p) != status.phase) {
                ctx.metrics.phase_entered(phase);
            }
            status = next;
        }
        ctx.metrics.set_phase(job.uid, status.phase);
        for event in events {
            publish(ctx, job, &event).await;
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
async fn publish(ctx: &Context, job: &JobRef<'_>, event: &Event) {
    if event.warning {
        warn!(job = %job.name, namespace = %job.ns, reason = %event.reason, "{}", event.message);
    } else {
        info!(job = %job.name, namespace = %job.ns, reason = %event.reason, "{}", event.message);
    }
    // The API server refuses notes over 1024 bytes; cut at a character boundary.
    let note = crate::text::truncate_bytes(&event.message, 1024);
    let note = super::events::Note {
        warning: event.warning,
        reason: event.reason.as_str(),
        action: event.action,
        note: &note,
    };
    if let Err(e) = ctx.recorder.publish(&note, &job.obj.object_ref(&())).await {
        warn!(job = %job.name, error = %e, "cannot publish event");
    }
}
