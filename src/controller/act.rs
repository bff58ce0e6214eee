//! The effects of reconciliation: the one [`Effect`] a decision asked for (a CXone call through
//! the shared rate limiter, the audit ConfigMap, the artifact Secret, a registration through
//! `registration.rs`), performed and returned as the next [`Observation`]. No decisions and no
//! reads of its own: the data and credentials a call needs come from `observe.rs`. Imports
//! `job.rs`, `effect.rs`, `memory.rs`, `observe.rs`, `registration.rs` and `mod.rs`'s `Context`.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;
use kube::api::{Api, ObjectMeta, PostParams};
use tracing::{info, warn};

use super::effect::{Effect, Observation, RunTarget};
use super::job::{Error, JobRef};
use super::memory::DataOutcome;
use super::observe::{credentials, dataset_of, resolve_data};
use super::{Context, FIELD_MANAGER, REPORT_LABEL};
use crate::crd::SkillTrainingJob;
use crate::cxone::model::ExportResponse;
use crate::cxone::{Credentials, CxoneError, Endpoint, Target, Transient};
use crate::training::build_payload;

/// One CXone call of `job`: credentials and a rate-limit slot first (returning the observation
/// of why not, if so), then the call, then what its answer teaches the shared limiter.
macro_rules! cxone {
    ($job:expr, $ctx:expr, $target:expr, $cached_ok:expr, |$t:ident| $call:expr) => {{
        let (endpoint, creds) = match prepare($job, $ctx, $target, $cached_ok).await? {
            Ok(ready) => ready,
            Err(blocked) => return Ok(blocked),
        };
        let $t = Target {
            endpoint: &endpoint,
            credentials: &creds,
        };
        let result = $call.await;
        learn($job, $ctx, &endpoint, &creds, &result);
        result
    }};
}

/// Performs `effect` and returns its outcome as the next observation. `observed`: the job's data
/// as read for this reconciliation (with the parsed dataset when it was parsed now), so a
/// submission does not read and parse it again.
pub(super) async fn act(
    effect: Effect,
    job: &JobRef<'_>,
    ctx: &Context,
    observed: &DataOutcome,
) -> Result<Observation, Error> {
    Ok(match effect {
        Effect::Submit { key, target } => submit(job, ctx, observed, &key, &target).await?,
        Effect::Poll { job_id, target } => {
            Observation::Polled(cxone!(job, ctx, &target, false, |t| ctx
                .cxone
                .status(t, &job_id)))
        }
        Effect::FetchEvaluation { job_id, target } => Observation::Evaluated(
            cxone!(job, ctx, &target, false, |t| ctx
                .cxone
                .evaluation(t, &job_id))
            .map(Arc::new),
        ),
        Effect::Export { job_id, target } => {
            Observation::Exported(cxone!(job, ctx, &target, false, |t| ctx
                .cxone
                .export(t, &job_id)))
        }
        Effect::Cancel {
            job_id,
            target,
            purpose,
        } => {
            // A Secret already gone (a namespace being deleted removes it before the job) falls
            // back to the last credentials the operator read from it.
            let result = cxone!(job, ctx, &target, true, |t| ctx.cxone.cancel(t, &job_id));
            Observation::Cancelled {
                job_id,
                purpose,
                result,
            }
        }
        Effect::Lookup {
            key,
            target,
            purpose,
        } => {
            let result = cxone!(job, ctx, &target, true, |t| ctx.cxone.lookup(t, &key));
            Observation::LookedUp { purpose, result }
        }
        Effect::WriteReport { name, data } => {
            Observation::Written(write_report(job, ctx, &name, data).await?)
        }
        Effect::WriteArtifactSecret { name, export } => {
            Observation::Written(write_artifact_secret(job, ctx, &name, &export).await?)
        }
        Effect::Register(request) => super::registration::register(job, ctx, *request).await?,
        Effect::Promote {
            target,
            secret,
            version,
            alias,
        } => {
            super::registration::promote(job, ctx, &target, secret.as_deref(), &version, &alias)
                .await?
        }
    })
}

/// POSTs the run, built from the data read for this reconciliation (or read again).
async fn submit(
    job: &JobRef<'_>,
    ctx: &Context,
    observed: &DataOutcome,
    key: &str,
    target: &RunTarget,
) -> Result<Observation, Error> {
    let resolved;
    let validated = match dataset_of(observed) {
        Some(v) => v,
        None => {
            resolved = resolve_data(job, ctx, true).await?;
            dataset_of(&resolved.outcome).ok_or(Error::MissingField("resolved dataset"))?
        }
    };
    let (payload, _) = build_payload(
        &job.obj.spec.skill_id,
        validated,
        job.obj.spec.validation_split(),
        &job.obj.spec.hyperparameters(),
    );
    let result = cxone!(job, ctx, target, false, |t| ctx
        .cxone
        .submit(t, &payload, key));
    if let Ok(resp) = &result {
        info!(job = %job.name, namespace = %job.ns, cxone_job = %resp.job_id, "submitted");
    }
    Ok(Observation::Submitted(result))
}

/// The endpoint and credentials of a call and a slot from the shared rate limiter; `Err`: the
/// observation of why the call cannot be made now.
async fn prepare(
    job: &JobRef<'_>,
    ctx: &Context,
    target: &RunTarget,
    cached_credentials_ok: bool,
) -> Result<Result<(Endpoint, Credentials), Observation>, Error> {
    let endpoint = match Endpoint::new(&target.base_url, Some(&target.token_url))
        .and_then(|e| ctx.allowed(e))
    {
        Ok(e) => e,
        Err(problem) => return Ok(Err(Observation::CannotCall(problem))),
    };
    if let Err(problem) = crate::names::check_object_name("credentials Secret", &target.secret) {
        return Ok(Err(Observation::CannotCall(problem)));
    }
    let creds = match credentials(job, ctx, &target.secret).await? {
        Ok(c) => c,
        Err(problem) => match ctx
            .cached_credentials(job.ns, &target.secret)
            .filter(|_| cached_credentials_ok)
        {
            Some(c) => c,
            None => return Ok(Err(Observation::CannotCall(problem))),
        },
    };
    if let Err(wait) = ctx.permit(job.uid, endpoint.base_url().as_str(), &creds.client_id) {
        return Ok(Err(Observation::NoSlot(wait)));
    }
    Ok(Ok((endpoint, creds)))
}

/// What an answer teaches the shared limiter: 429, everyone of that client slows down; no
/// answer, the endpoint is paused for everyone; any answer ends such a pause.
fn learn<T>(
    job: &JobRef<'_>,
    ctx: &Context,
    endpoint: &Endpoint,
    creds: &Credentials,
    result: &Result<T, CxoneError>,
) {
    let base = endpoint.base_url().as_str();
    match result {
        Ok(_) => ctx.limiter.answered(base),
        Err(CxoneError::RateLimited { retry_after, .. }) => {
            ctx.limiter.throttled(base, &creds.client_id, *retry_after);
        }
        Err(CxoneError::Retryable {
            kind: Transient::Timeout | Transient::Connection,
            ..
        }) => ctx.limiter.unanswered(base),
        Err(_) => ctx.limiter.answered(base),
    }
    if let Err(e) = result {
        warn!(job = %job.name, namespace = %job.ns, category = e.category(), error = %e, "CXone call failed");
    }
}

fn owner_reference(obj: &SkillTrainingJob) -> Result<OwnerReference, Error> {
    obj.controller_owner_ref(&())
        .ok_or(Error::MissingField("metadata.uid"))
}

/// The object's controlling owner is the job with this uid.
pub(super) fn owned_by(meta: &ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|o| o.uid == uid && o.controller == Some(true))
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

/// Creates the run's immutable report ConfigMap. An existing one is fine only if this job owns
/// it (an earlier attempt of the same run wrote it: the name is deterministic).
async fn write_report(
    job: &JobRef<'_>,
    ctx: &Context,
    name: &str,
    data: BTreeMap<String, String>,
) -> Result<Result<(), String>, Error> {
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(job.ns.to_string()),
            labels: Some(BTreeMap::from([
                (
                    "app.kubernetes.io/managed-by".to_string(),
                    FIELD_MANAGER.to_string(),
                ),
                // The uid is a valid label value whatever the job's name (up to 253
                // characters) is; the name is in the owner reference.
                (REPORT_LABEL.to_string(), job.uid.to_string()),
            ])),
            owner_references: Some(vec![owner_reference(job.obj)?]),
            ..ObjectMeta::default()
        },
        data: Some(data),
        immutable: Some(true),
        ..ConfigMap::default()
    };
    let api: Api<ConfigMap> = Api::namespaced(ctx.kube.clone(), job.ns);
    match api.create(&post_params(), &cm).await {
        Ok(_) => Ok(Ok(())),
        Err(kube::Error::Api(e)) if e.code == 409 => match api.get_metadata_opt(name).await? {
            Some(meta) if owned_by(&meta.metadata, job.uid) => Ok(Ok(())),
            Some(_) => Ok(Err(format!(
                "ConfigMap {name:?} for the audit record exists and was not created by this job; \
                 delete it so the run can be recorded"
            ))),
            None => Err(Error::Conflict(format!(
                "ConfigMap {name:?} disappeared while the audit record was written; retrying"
            ))),
        },
        Err(e) => Err(e.into()),
    }
}

/// Writes the signed URLs into the Secret `name`, which must be absent (it is created, owned by
/// the job) or already owned by this job: a Secret anybody else made is never modified. The
/// update carries the resourceVersion that was checked, so a Secret replaced in between is not
/// touched either (409).
async fn write_artifact_secret(
    job: &JobRef<'_>,
    ctx: &Context,
    name: &str,
    export: &ExportResponse,
) -> Result<Result<(), String>, Error> {
    let api: Api<Secret> = Api::namespaced(ctx.kube.clone(), job.ns);
    let existing = api.get_metadata_opt(name).await?;
    let version = match &existing {
        None => None,
        Some(meta) if owned_by(&meta.metadata, job.uid) => meta.metadata.resource_version.clone(),
        Some(_) => {
            return Ok(Err(format!(
                "Secret {name:?} (spec.artifacts.secretName) exists and was not created by this job; \
                 the operator modifies only Secrets it created for the job: choose another name or delete that Secret"
            )));
        }
    };
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(job.ns.to_string()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_string(),
                FIELD_MANAGER.to_string(),
            )])),
            owner_references: Some(vec![owner_reference(job.obj)?]),
            resource_version: version.clone(),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        string_data: Some(BTreeMap::from([
            (
                "modelWeightsUrl".to_string(),
                export.artifacts.model_weights_url.clone(),
            ),
            ("configUrl".to_string(), export.artifacts.config_url.clone()),
            ("expiresAt".to_string(), export.expires_at.to_string()),
        ])),
        ..Secret::default()
    };
    // Replace keeps exactly our keys; the resourceVersion makes it conditional.
    let result = match version {
        None => api.create(&post_params(), &secret).await.map(|_| ()),
        Some(_) => api.replace(name, &post_params(), &secret).await.map(|_| ()),
    };
    match result {
        Ok(()) => Ok(Ok(())),
        // Created or changed by someone else since we looked: look again next time.
        Err(kube::Error::Api(e)) if e.code == 409 => Err(Error::Conflict(format!(
            "Secret {name:?} changed while the artifact URLs were written; retrying"
        ))),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ownership_is_the_controlling_owner_uid() {
        let meta = |controller: Option<bool>| ObjectMeta {
            owner_references: Some(vec![OwnerReference {
                uid: "u1".into(),
                controller,
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        };
        assert!(owned_by(&meta(Some(true)), "u1"));
        assert!(!owned_by(&meta(Some(true)), "u2"), "another job's object");
        assert!(!owned_by(&meta(None), "u1"), "owned but not controlled");
        assert!(!owned_by(&ObjectMeta::default(), "u1"), "a user's object");
    }
}
