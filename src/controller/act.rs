//! The I/O of reconciliation: what is read before deciding (the job's data, its credentials) and
//! the effects a decision asks for (CXone calls through the shared rate limiter, the audit
//! ConfigMap, the artifact Secret). No decisions here: every outcome goes back to
//! [`super::decide`] as an [`Observation`].

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;
use kube::api::{Api, ObjectMeta, PostParams};
use tracing::{info, warn};

use super::decide::{Effect, Observation, RunTarget};
use super::memory::{DataOutcome, ResolvedData};
use super::reconcile::{Error, JobRef};
use super::{Context, FIELD_MANAGER, REPORT_LABEL};
use crate::crd::{CredentialsSecretRef, DataSources, SkillTrainingJob, SpecCheck};
use crate::cxone::model::ExportResponse;
use crate::cxone::{Credentials, CxoneError, Endpoint, SecretString, Target, Transient};
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
        Effect::Register(request) => super::registering::register(job, ctx, *request).await?,
        Effect::Promote {
            target,
            secret,
            version,
            alias,
        } => {
            super::registering::promote(job, ctx, &target, secret.as_deref(), &version, &alias)
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

/// Whether the spec's credentials Secret can be used (read at most once per resourceVersion).
pub(super) async fn check_credentials(
    job: &JobRef<'_>,
    ctx: &Context,
) -> Result<Result<(), String>, Error> {
    let name = &job.obj.spec.connection.credentials_secret_ref.name;
    Ok(credentials(job, ctx, name).await?.map(|_| ()))
}

/// Reads the credentials from Secret `name` (same namespace), with the spec's key names.
/// `Ok(Err(problem))` is a user-fixable problem.
async fn credentials(
    job: &JobRef<'_>,
    ctx: &Context,
    name: &str,
) -> Result<Result<Credentials, String>, Error> {
    let r = &CredentialsSecretRef {
        name: name.to_string(),
        ..job.obj.spec.connection.credentials_secret_ref.clone()
    };
    let version = ctx.stores.secret_version(job.ns, &r.name);
    if let (Some(v), Some(cached)) = (&version, ctx.cached_credentials(job.ns, &r.name))
        && &cached.version == v
    {
        return Ok(Ok(cached));
    }
    let api: Api<Secret> = Api::namespaced(ctx.kube.clone(), job.ns);
    let Some(secret) = api.get_opt(&r.name).await? else {
        return Ok(Err(format!(
            "Secret {:?} (spec.connection.credentialsSecretRef) does not exist in namespace {:?}; create it with keys {:?} and {:?}",
            r.name,
            job.ns,
            r.client_id_key(),
            r.client_secret_key()
        )));
    };
    let read = |key: &str| -> Result<String, String> {
        let data = secret.data.as_ref().and_then(|d| d.get(key));
        let Some(bytes) = data else {
            return Err(format!("Secret {:?} has no key {key:?}", r.name));
        };
        let s = String::from_utf8(bytes.0.clone())
            .map_err(|_| format!("Secret {:?} key {key:?} is not UTF-8", r.name))?;
        let s = s.trim().to_string();
        if s.is_empty() {
            return Err(format!("Secret {:?} key {key:?} is empty", r.name));
        }
        Ok(s)
    };
    let creds = match (read(r.client_id_key()), read(r.client_secret_key())) {
        (Ok(id), Ok(secret_value)) => Credentials {
            client_id: id,
            client_secret: SecretString::new(secret_value),
            version: secret.metadata.resource_version.clone().unwrap_or_default(),
        },
        (Err(e), _) | (_, Err(e)) => return Ok(Err(e)),
    };
    ctx.cache_credentials(job.ns, &r.name, creds.clone());
    Ok(Ok(creds))
}

/// ConfigMap data fetched for one reconciliation.
struct FetchedSources(BTreeMap<String, Result<BTreeMap<String, String>, String>>);

impl DataSources for FetchedSources {
    fn get(&self, config_map: &str, key: &str) -> Result<&str, String> {
        match self.0.get(config_map) {
            None => Err(format!("ConfigMap {config_map:?} was not read")),
            Some(Err(e)) => Err(e.clone()),
            Some(Ok(data)) => data
                .get(key)
                .map(String::as_str)
                .ok_or_else(|| format!("ConfigMap {config_map:?} has no key {key:?}")),
        }
    }
}

fn dataset_of(data: &DataOutcome) -> Option<&crate::training::Validated> {
    match data {
        DataOutcome::Valid {
            validated: Some(v), ..
        } => Some(v),
        _ => None,
    }
}

/// What the job's data is computed from: the generation and every source ConfigMap's
/// resourceVersion (from the metadata cache: no read).
pub(super) fn data_key(job: &SkillTrainingJob, ns: &str, ctx: &Context) -> String {
    let mut key = format!("{}", job.metadata.generation.unwrap_or(0));
    for src in &job.spec.utterances_from {
        let name = &src.config_map_key_ref.name;
        let version = ctx.stores.config_map_version(ns, name).unwrap_or_default();
        key.push_str(&format!("|{name}@{version}"));
    }
    key
}

/// Resolves and validates the job's data, reusing the last result while neither the generation
/// nor any source ConfigMap changed (and, with `need_dataset`, while it still holds the dataset).
pub(super) async fn resolve_data(
    job: &JobRef<'_>,
    ctx: &Context,
    need_dataset: bool,
) -> Result<ResolvedData, Error> {
    let key = data_key(job.obj, job.ns, ctx);
    if let Some(cached) = ctx.data.get(job.uid)
        && cached.key == key
        && (!need_dataset || dataset_of(&cached.outcome).is_some())
    {
        return Ok(cached);
    }
    // The job cache holds the object without its training data (no labels, which every job
    // has at least one of): read the whole object.
    let full;
    let job = match job.obj.spec.labels.is_empty() {
        true => {
            let api: Api<SkillTrainingJob> = Api::namespaced(ctx.kube.clone(), job.ns);
            full = api.get(job.name).await?;
            &JobRef { obj: &full, ..*job }
        }
        false => job,
    };
    let spec = &job.obj.spec;
    let fetched = fetch_config_maps(job, ctx).await?;
    let outcome = match spec.check(&fetched) {
        SpecCheck::Invalid { problems } => DataOutcome::Invalid { problems },
        SpecCheck::Valid {
            validated,
            digest,
            summary,
        } => DataOutcome::Valid {
            report: validated.report().clone(),
            label_count: validated.dataset().labels.len(),
            validated: Some(validated),
            summary,
            digest,
        },
    };
    let resolved = ResolvedData {
        key,
        outcome: Arc::new(outcome),
    };
    // The parsed dataset is kept only for a submission about to be sent (and dropped once it is
    // accepted): a finished, invalid or waiting job keeps its digest and report, not its data.
    if need_dataset {
        ctx.data.set(job.uid, resolved.clone());
    } else {
        ctx.data.set(job.uid, resolved.without_dataset());
    }
    Ok(resolved)
}

/// Reads every ConfigMap the job's data comes from (each once).
async fn fetch_config_maps(job: &JobRef<'_>, ctx: &Context) -> Result<FetchedSources, Error> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.kube.clone(), job.ns);
    let mut fetched = BTreeMap::new();
    for src in &job.obj.spec.utterances_from {
        let name = src.config_map_key_ref.name.clone();
        if fetched.contains_key(&name) {
            continue;
        }
        ctx.metrics.config_map_reads.inc();
        let entry = match api.get_opt(&name).await? {
            None => Err(format!(
                "ConfigMap {name:?} does not exist in namespace {:?}",
                job.ns
            )),
            Some(cm) => Ok(cm.data.unwrap_or_default()),
        };
        fetched.insert(name, entry);
    }
    Ok(FetchedSources(fetched))
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
