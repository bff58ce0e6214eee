//! The I/O of registration (`spec.registry`): the registry clients, the allowlist, and the
//! registration tasks.
//!
//! Copying a model can take longer than one reconciliation may (`reconcile.rs` bounds each at
//! 90 s), so a registration runs as a task of its own: the reconciliation that asks for it starts
//! it and waits a little; a reconciliation that finds it still running requeues shortly; the one
//! that finds it finished takes its outcome as the observation. At most `--max-concurrent-
//! registrations` run at once; each is bounded by [`TASK_TIMEOUT`]. A task lost with the process
//! is harmless: registration is idempotent, and status says what is left to do.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::info;

use super::Context;
use super::effect::{Observation, RegisterRequest, Registration, RegistryTarget, TargetKind};
use super::job::{Error, JobRef};
use crate::crd::SigningKeyRef;
use crate::evaluation::EvaluationReport;
use crate::registry::allow::{RegistryAllowlist, credentials};
use crate::registry::mlflow::Mlflow;
use crate::registry::oci::OciRegistry;
use crate::registry::signing::{ModelSigningKey, SIGNATURE_FILE};
use crate::registry::{
    CardFacts, Champion, Documents, RegistryAuth, RegistryError, gate, key_metrics, picture,
};

/// Longest a registration task may run (a multi-GiB model over a slow link).
pub const TASK_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long the reconciliation that starts a task waits for it (small models finish within).
const FIRST_WAIT: Duration = Duration::from_secs(5);
/// How soon a job whose registration is still running looks again.
const RUNNING_WAIT: Duration = Duration::from_secs(5);
/// Longest wait for a promotion (one small request).
const PROMOTE_TIMEOUT: Duration = Duration::from_secs(120);

type Outcome = Result<Registration, RegistryError>;

struct Task {
    /// CXone job id and target: a task for another run or target is stale.
    key: String,
    handle: JoinHandle<Outcome>,
}

/// Registry clients, the allowlist, and the running registrations.
pub struct Registries {
    pub allowlist: RegistryAllowlist,
    oci: OnceLock<Result<Arc<OciRegistry>, RegistryError>>,
    mlflow: OnceLock<Result<Arc<Mlflow>, RegistryError>>,
    permits: Arc<Semaphore>,
    tasks: Mutex<HashMap<String, Task>>,
}

impl Default for Registries {
    fn default() -> Self {
        Self::new(RegistryAllowlist::default(), 4)
    }
}

impl Registries {
    pub fn new(allowlist: RegistryAllowlist, max_concurrent: usize) -> Self {
        Self {
            allowlist,
            oci: OnceLock::new(),
            mlflow: OnceLock::new(),
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
            tasks: Mutex::new(HashMap::new()),
        }
    }

    fn oci(&self) -> Result<Arc<OciRegistry>, RegistryError> {
        self.oci
            .get_or_init(|| OciRegistry::new().map(Arc::new))
            .clone()
    }

    fn mlflow(&self) -> Result<Arc<Mlflow>, RegistryError> {
        self.mlflow
            .get_or_init(|| Mlflow::new().map(Arc::new))
            .clone()
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, HashMap<String, Task>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops the registration of a job that is gone.
    pub(crate) fn forget(&self, uid: &str) {
        if let Some(t) = self.tasks().remove(uid) {
            t.handle.abort();
        }
    }

    /// Registrations running now.
    pub fn running(&self) -> usize {
        self.tasks()
            .values()
            .filter(|t| !t.handle.is_finished())
            .count()
    }
}

/// The registration of `req`: its outcome if its task finished, a short wait while it runs, or
/// a new task.
pub(super) async fn register(
    job: &JobRef<'_>,
    ctx: &Context,
    req: RegisterRequest,
) -> Result<Observation, Error> {
    let kind = req.target.kind();
    let key = format!("{}/{}", req.provenance.cxone_job_id, kind.as_str());
    let registries = &ctx.registries;
    let running = {
        let mut tasks = registries.tasks();
        match tasks.remove(job.uid) {
            Some(t) if t.key == key && t.handle.is_finished() => Some(t.handle),
            Some(t) if t.key == key => {
                tasks.insert(job.uid.to_string(), t);
                return Ok(Observation::NoSlot(RUNNING_WAIT));
            }
            Some(stale) => {
                stale.handle.abort();
                None
            }
            None => None,
        }
    };
    let mut handle = match running {
        Some(h) => h,
        None => {
            let auth = match read_auth(job, ctx, req.secret.as_deref(), &req.target).await? {
                Ok(a) => a,
                Err(problem) => {
                    let result = Err(RegistryError::Auth(problem));
                    return Ok(Observation::Registered { kind, result });
                }
            };
            let signing = match read_signing_key(job, ctx, req.signing.as_ref()).await? {
                Ok(k) => k,
                Err(problem) => {
                    let result = Err(RegistryError::Auth(problem));
                    return Ok(Observation::Registered { kind, result });
                }
            };
            info!(job = %job.name, namespace = %job.ns, target = kind.as_str(), location = %req.target.location(), signed = signing.is_some(), "registering the model");
            spawn(registries, req, auth, signing)
        }
    };
    let outcome = match tokio::time::timeout(FIRST_WAIT, &mut handle).await {
        Err(_) => {
            registries
                .tasks()
                .insert(job.uid.to_string(), Task { key, handle });
            return Ok(Observation::NoSlot(RUNNING_WAIT));
        }
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => Err(RegistryError::Unreachable(format!(
            "the registration task ended abnormally: {e}"
        ))),
    };
    ctx.metrics
        .registration(kind.as_str(), outcome_label(&outcome));
    Ok(Observation::Registered {
        kind,
        result: outcome,
    })
}

/// A registration task: one of the permits, bounded by [`TASK_TIMEOUT`].
fn spawn(
    registries: &Registries,
    req: RegisterRequest,
    auth: RegistryAuth,
    signing: Option<Arc<ModelSigningKey>>,
) -> JoinHandle<Outcome> {
    let kind = req.target.kind();
    let clients = Clients {
        oci: (kind == TargetKind::Oci).then(|| registries.oci()),
        mlflow: (kind == TargetKind::Mlflow).then(|| registries.mlflow()),
    };
    let permits = registries.permits.clone();
    tokio::spawn(async move {
        let Ok(_permit) = permits.acquire_owned().await else {
            return Err(RegistryError::Unreachable(
                "the operator is stopping".into(),
            ));
        };
        match tokio::time::timeout(TASK_TIMEOUT, run(clients, req, auth, signing)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(RegistryError::Unreachable(format!(
                "the registration did not finish within {} minutes",
                TASK_TIMEOUT.as_secs() / 60
            ))),
        }
    })
}

fn outcome_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Ok(_) => "registered",
        Err(RegistryError::Auth(_)) => "auth_failed",
        Err(RegistryError::Rejected(_)) => "rejected",
        Err(RegistryError::SourceExpired(_)) => "source_expired",
        Err(_) => "unreachable",
    }
}

struct Clients {
    oci: Option<Result<Arc<OciRegistry>, RegistryError>>,
    mlflow: Option<Result<Arc<Mlflow>, RegistryError>>,
}

fn missing() -> RegistryError {
    RegistryError::Rejected("no client for this registry".into())
}

/// One registration, in its task: the champion first (the model card states the gate's
/// outcome against it), then the model with its card and signature.
async fn run(
    clients: Clients,
    req: RegisterRequest,
    auth: RegistryAuth,
    signing: Option<Arc<ModelSigningKey>>,
) -> Outcome {
    let fingerprint = signing
        .as_deref()
        .map(|k| format!("sha256:{}", k.fingerprint()));
    match &req.target {
        RegistryTarget::Oci { target, tag } => {
            let oci = clients.oci.ok_or_else(missing)??;
            let champion = match &req.champion_at {
                Some(at) => oci.champion(target, &auth, at).await?,
                None => None,
            };
            let documents = documents(&req, champion.as_ref(), signing);
            let metrics = key_metrics(&req.analysis);
            let pushed = oci
                .push(
                    target,
                    &auth,
                    tag,
                    &req.source,
                    &req.provenance,
                    &metrics,
                    &documents,
                )
                .await?;
            Ok(Registration {
                reference: pushed.reference,
                version: pushed.manifest_digest,
                run_id: None,
                champion,
                signing_key: fingerprint,
                signature: pushed.signature_digest,
            })
        }
        RegistryTarget::Mlflow(target) => {
            let mlflow = clients.mlflow.ok_or_else(missing)??;
            let champion = match &req.champion_at {
                Some(alias) => mlflow.champion(target, &auth, alias).await?,
                None => None,
            };
            let signed = signing.is_some();
            let documents = documents(&req, champion.as_ref(), signing);
            let metrics = all_metrics(&req.analysis);
            let registered = mlflow
                .register(
                    target,
                    &auth,
                    &req.source,
                    &req.provenance,
                    &metrics,
                    &documents,
                )
                .await?;
            Ok(Registration {
                reference: format!("models:/{}/{}", target.model_name, registered.version),
                version: registered.version,
                run_id: Some(registered.run_id),
                champion,
                signing_key: fingerprint,
                signature: signed.then(|| SIGNATURE_FILE.to_string()),
            })
        }
    }
}

/// What travels with the model: evaluation, audit record, picture, and what its card says
/// (the gate's outcome against `champion`, computed as the decision will compute it).
fn documents(
    req: &RegisterRequest,
    champion: Option<&Champion>,
    signing: Option<Arc<ModelSigningKey>>,
) -> Documents {
    let gate = gate::evaluate(req.promotion.as_ref(), &req.analysis, champion);
    Documents {
        evaluation_json: serde_json::to_vec(&*req.analysis).unwrap_or_default(),
        audit_json: req.audit.to_json().into_bytes(),
        picture_svg: picture::render(&req.analysis).into_bytes(),
        card: Some(CardFacts {
            audit: req.audit.clone(),
            report: req.analysis.clone(),
            gate,
        }),
        signing,
    }
}

/// The key metrics, each label's precision, recall and F1, and the recommended threshold.
fn all_metrics(report: &EvaluationReport) -> BTreeMap<String, f64> {
    let mut metrics = key_metrics(report);
    for l in &report.per_label {
        metrics.insert(format!("label.{}.precision", l.label), l.precision);
        metrics.insert(format!("label.{}.recall", l.label), l.recall);
        metrics.insert(format!("label.{}.f1", l.label), l.f1);
    }
    if let Some(r) = &report.recommendation {
        metrics.insert("recommended_threshold".into(), r.threshold);
    }
    metrics
}

/// Promotes a registered model.
pub(super) async fn promote(
    job: &JobRef<'_>,
    ctx: &Context,
    target: &RegistryTarget,
    secret: Option<&str>,
    version: &str,
    alias: &str,
) -> Result<Observation, Error> {
    let kind = target.kind();
    let auth = match read_auth(job, ctx, secret, target).await? {
        Ok(a) => a,
        Err(problem) => {
            let result = Err(RegistryError::Auth(problem));
            return Ok(Observation::Promoted { kind, result });
        }
    };
    let registries = &ctx.registries;
    let call = async {
        match target {
            RegistryTarget::Oci { target, .. } => {
                registries.oci()?.tag(target, &auth, version, alias).await
            }
            RegistryTarget::Mlflow(target) => {
                registries
                    .mlflow()?
                    .set_alias(target, &auth, alias, version)
                    .await
            }
        }
    };
    let result = match tokio::time::timeout(PROMOTE_TIMEOUT, call).await {
        Ok(r) => r,
        Err(_) => Err(RegistryError::Unreachable(format!(
            "no answer within {} s",
            PROMOTE_TIMEOUT.as_secs()
        ))),
    };
    if result.is_ok() {
        info!(job = %job.name, namespace = %job.ns, target = kind.as_str(), alias, "promoted");
    }
    Ok(Observation::Promoted { kind, result })
}

/// The model signing key of the job (none without `spec.registry.signing`); `Ok(Err)`: what is
/// wrong, naming the Secret and never its content.
async fn read_signing_key(
    job: &JobRef<'_>,
    ctx: &Context,
    key_ref: Option<&SigningKeyRef>,
) -> Result<Result<Option<Arc<ModelSigningKey>>, String>, Error> {
    let Some(key_ref) = key_ref else {
        return Ok(Ok(None));
    };
    let name = key_ref.name.as_str();
    let api: Api<Secret> = Api::namespaced(ctx.kube.clone(), job.ns);
    let Some(secret) = api.get_opt(name).await? else {
        return Ok(Err(format!(
            "the model signing key Secret {name} does not exist in namespace {}",
            job.ns
        )));
    };
    let key = key_ref.key();
    let Some(pem) = secret.data.as_ref().and_then(|d| d.get(key)) else {
        return Ok(Err(format!(
            "the model signing key Secret {name} has no key {key:?}"
        )));
    };
    let Ok(pem) = std::str::from_utf8(&pem.0) else {
        return Ok(Err(format!(
            "the model signing key Secret {name}: key {key:?} is not PEM text"
        )));
    };
    Ok(ModelSigningKey::from_pem(pem)
        .map(|k| Some(Arc::new(k)))
        .map_err(|e| format!("the model signing key Secret {name}: key {key:?}: {e}")))
}

/// The registry credentials of the job (anonymous without a Secret); `Ok(Err)`: what is wrong.
async fn read_auth(
    job: &JobRef<'_>,
    ctx: &Context,
    secret: Option<&str>,
    target: &RegistryTarget,
) -> Result<Result<RegistryAuth, String>, Error> {
    let Some(name) = secret else {
        return Ok(Ok(RegistryAuth::Anonymous));
    };
    let api: Api<Secret> = Api::namespaced(ctx.kube.clone(), job.ns);
    let Some(secret) = api.get_opt(name).await? else {
        return Ok(Err(format!(
            "the registry credentials Secret {name} does not exist in namespace {}",
            job.ns
        )));
    };
    let data: BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    let host = match target {
        RegistryTarget::Oci { target, .. } => target.registry.clone(),
        RegistryTarget::Mlflow(_) => String::new(),
    };
    Ok(credentials(secret.type_.as_deref(), &data, &host)
        .map_err(|e| format!("registry credentials Secret {name}: {e}")))
}
