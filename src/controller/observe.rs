//! The reads of reconciliation: everything a decision needs to know before deciding (the job's
//! data through its ConfigMaps, its credentials Secret, the allowlisted CXone endpoint and
//! registries), with the driver's caches that keep those reads few. Imports `job.rs`,
//! `effect.rs`, `memory.rs` and the `Context` of `mod.rs`; nothing here writes.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;

use super::Context;
use super::effect::RunTarget;
use super::job::{Error, JobRef};
use super::memory::{DataOutcome, ResolvedData};
use crate::crd::{
    CredentialsSecretRef, DataSources, Phase, SkillTrainingJob, SkillTrainingJobStatus, SpecCheck,
};
use crate::cxone::{Credentials, SecretString};
use crate::registry::allow::Targets;

/// What was read for this reconciliation.
pub(super) struct Observed {
    pub data: Arc<DataOutcome>,
    /// What the data was read from (`status.dataSourceKey`).
    pub source_key: Option<String>,
    pub endpoint: Result<RunTarget, String>,
    pub credentials: Result<(), String>,
    pub registry: Option<Result<Targets, String>>,
}

/// The job's data was resolved for its current generation and ConfigMaps (and is cached), so
/// the cached copy without the data will do.
pub(super) async fn data_known(job: &SkillTrainingJob, ctx: &Context) -> bool {
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
    run_over(job.status.as_ref())
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
fn run_over(status: Option<&SkillTrainingJobStatus>) -> bool {
    matches!(
        status.and_then(|s| s.phase),
        Some(Phase::Succeeded | Phase::Failed | Phase::Cancelled)
    )
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
    if !run_over(Some(status))
        || status.data_source_key.as_deref() != Some(source_key)
        || ctx.memory(job.uid).read_data
    {
        return None;
    }
    let digest = status.dataset_digest.clone()?;
    ctx.forget_data(job.uid);
    Some(Arc::new(DataOutcome::Unchanged { digest }))
}

/// What a job that exists is decided on.
pub(super) async fn observe(job: &JobRef<'_>, ctx: &Context) -> Result<Observed, Error> {
    let spec = &job.obj.spec;
    let endpoint = spec_endpoint(job, ctx);
    // Names go into API paths: nothing is read for a spec whose names are unusable (objects
    // stored before the CRD enforced the patterns can carry anything).
    if !super::decide::identity::reference_problems(spec, ctx.config.policy.artifact_secrets)
        .is_empty()
    {
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

/// Whether the spec's credentials Secret can be used (read at most once per resourceVersion).
async fn check_credentials(job: &JobRef<'_>, ctx: &Context) -> Result<Result<(), String>, Error> {
    let name = &job.obj.spec.connection.credentials_secret_ref.name;
    Ok(credentials(job, ctx, name).await?.map(|_| ()))
}

/// Reads the credentials from Secret `name` (same namespace), with the spec's key names.
/// `Ok(Err(problem))` is a user-fixable problem.
pub(super) async fn credentials(
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

pub(super) fn dataset_of(data: &DataOutcome) -> Option<&crate::training::Validated> {
    match data {
        DataOutcome::Valid {
            validated: Some(v), ..
        } => Some(v),
        _ => None,
    }
}

/// What the job's data is computed from: the generation and every source ConfigMap's
/// resourceVersion (from the metadata cache: no read).
fn data_key(job: &SkillTrainingJob, ns: &str, ctx: &Context) -> String {
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
    // At most `--max-concurrent-data-reads` jobs read and parse data at once: what a burst of
    // large datasets can take at its peak.
    let _turn = ctx.data_read_turn().await;
    // The job cache holds the object without its training data (no labels, which every job
    // has at least one of): read the whole object.
    let full;
    let job = match job.obj.spec.labels.is_empty() {
        true => {
            let api: Api<SkillTrainingJob> = Api::namespaced(ctx.kube.clone(), job.ns);
            ctx.metrics.job_read("data");
            full = api.get(job.name).await?;
            &JobRef {
                obj: &full,
                projected: false,
                ..*job
            }
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
        ctx.metrics.lifecycle.config_map_reads.inc();
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

/// What a job being deleted is decided on: only where its run was submitted (nothing else is
/// read, so a deletion never waits for data or a Secret).
pub(super) fn observe_deletion(job: &JobRef<'_>, ctx: &Context) -> Observed {
    Observed {
        data: Arc::new(DataOutcome::NotRead),
        source_key: None,
        endpoint: spec_endpoint(job, ctx),
        credentials: Ok(()),
        registry: None,
    }
}
