//! `make demo`: a real control plane (kube-apiserver + etcd), the CXone simulator and the operator,
//! the `examples/` applied with kubectl, live progress, and a summary of every job. Each trained
//! model is registered in a local OCI registry (the distribution registry of
//! `hack/oci-tools.sh`) and, when `hack/mlflow-venv.sh` has installed it, a local MLflow, behind
//! a promotion gate of macro F1 >= 0.80 that holds back a model on purpose.
//!
//! Everything runs on loopback and stops when the demo ends or is interrupted (the processes are
//! tied to this one by the test harness's supervisor).

mod support {
    mod envtest;
    pub mod mlflow;
    pub mod oci_registry;
    pub mod operator;
    pub use envtest::control_plane;
}

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use cxone_skill_operator::crd::{Phase, SkillTrainingJob};
use cxone_skill_operator::simulator::{self, ClientCredentials, SimulatorConfig};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use support::oci_registry::TestRegistry;
use support::operator::OperatorProcess;

const NAMESPACE: &str = "cxone-demo";
const DEADLINE: Duration = Duration::from_secs(300);
/// The demo's promotion gate: billing-support's small held-out set scores below it, so the demo
/// shows a model registered and held back, next to promoted ones.
const GATE_MIN_MACRO_F1: f64 = 0.8;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = runtime.block_on(demo()) {
        eprintln!("demo failed: {e}");
        std::process::exit(1);
    }
}

async fn demo() -> Result<(), String> {
    let started = Instant::now();
    let job_seconds: u64 = std::env::var("DEMO_JOB_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    println!("==> starting a local Kubernetes control plane (kube-apiserver + etcd)");
    let cp = support::control_plane().await;
    println!(
        "    API server {} (ready in {:.1}s)",
        cp.base_url(),
        cp.startup_time().as_secs_f64()
    );

    println!("==> starting the CXone simulator (jobs take {job_seconds}s)");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen for the simulator: {e}"))?;
    let sim = simulator::spawn(
        SimulatorConfig {
            clients: vec![ClientCredentials::new("demo-client", "demo-secret")],
            job_duration: Duration::from_secs(job_seconds),
            ..SimulatorConfig::default()
        },
        listener,
    )
    .await
    .map_err(|e| format!("simulator: {e}"))?;
    let sim_url = sim.base_url();
    println!("    CXone API {sim_url}");

    let registries = Registries::start().await;

    println!("==> applying examples/ (their `region: us2-01` pointed at the local simulator)");
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<_> = std::fs::read_dir(&examples)
        .map_err(|e| format!("{}: {e}", examples.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let rendered = cp.dir().join("demo-examples");
    std::fs::create_dir_all(&rendered).map_err(|e| e.to_string())?;
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
        let text = text.replace("region: us2-01", &format!("baseUrl: {sim_url}"));
        let out_path = rendered.join(file.file_name().unwrap_or_default());
        std::fs::write(&out_path, text).map_err(|e| e.to_string())?;
        let out = cp
            .kubectl()
            .args(["apply", "--server-side", "-f"])
            .arg(&out_path)
            .output()
            .map_err(|e| format!("kubectl: {e}"))?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            return Err(format!(
                "kubectl apply {}: {}",
                file.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }

    let client = cp.client().await;
    let jobs: Api<SkillTrainingJob> = Api::namespaced(client, NAMESPACE);
    registries.attach_to(&jobs).await?;

    println!("==> starting the operator");
    let mut args = vec![format!("--allowed-endpoints={sim_url}")];
    args.push(format!("--allowed-registries={}", registries.allowed()));
    let operator = OperatorProcess::start(cp, cp.kubeconfig_path(), &args);

    println!("==> progress (kubectl get stj -n {NAMESPACE})");
    let deadline = Instant::now() + DEADLINE;
    let mut last_table = String::new();
    let interactive = std::io::stdout().is_terminal();
    loop {
        let out = cp
            .kubectl()
            .args(["get", "stj", "-n", NAMESPACE])
            .output()
            .map_err(|e| format!("kubectl: {e}"))?;
        let table = String::from_utf8_lossy(&out.stdout).to_string();
        // Print when something other than the AGE column changed.
        let key: String = table
            .lines()
            .map(|l| {
                l.rsplit_once(' ')
                    .map(|(a, _)| a)
                    .unwrap_or(l)
                    .trim_end()
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join("\n");
        if key != last_table {
            if interactive {
                println!();
            } else {
                println!("--- {:>5.1}s", started.elapsed().as_secs_f64());
            }
            print!("{table}");
            last_table = key;
        }
        let list = jobs
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("list jobs: {e}"))?;
        let done = !list.items.is_empty()
            && list.items.iter().all(|j| {
                matches!(
                    j.status.as_ref().and_then(|s| s.phase),
                    Some(Phase::Succeeded | Phase::Failed | Phase::Invalid | Phase::Cancelled)
                )
            });
        if done {
            summary(&list.items);
            let stats = sim.stats();
            println!(
                "\nCXone simulator: {} jobs created, {} token requests, calls by endpoint: {}",
                stats.jobs_created,
                stats.tokens_issued,
                stats
                    .calls
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.values().sum::<u64>()))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            println!(
                "demo finished in {:.0}s; stopping everything",
                started.elapsed().as_secs_f64()
            );
            drop(operator);
            return Ok(());
        }
        if Instant::now() > deadline {
            let log = operator.log();
            return Err(format!(
                "jobs did not finish within {DEADLINE:?}; operator log tail:\n{}",
                log.lines().rev().take(30).collect::<Vec<_>>().join("\n")
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn summary(jobs: &[SkillTrainingJob]) {
    println!("\n==> summary");
    let mut rows: BTreeMap<String, String> = BTreeMap::new();
    for job in jobs {
        let name = job.metadata.name.clone().unwrap_or_default();
        let Some(st) = &job.status else { continue };
        let line = match st.phase {
            Some(Phase::Succeeded) => {
                let e = st.evaluation.clone().unwrap_or_default();
                let threshold = e
                    .recommended_threshold
                    .as_ref()
                    .map(|t| {
                        format!(
                            "threshold {} ({}, precision {}, coverage {})",
                            t.threshold, t.objective, t.precision, t.coverage
                        )
                    })
                    .unwrap_or_else(|| "no threshold reaches the requested precision".into());
                format!(
                    "Succeeded  CXone job {}: {} validation examples, accuracy {}, macro precision {}, recall {}, F1 {}; {}; compute units {}/{}; audit record in ConfigMap {}",
                    st.job_id.as_deref().unwrap_or("-"),
                    e.examples,
                    e.accuracy,
                    e.macro_precision,
                    e.macro_recall,
                    e.macro_f1,
                    threshold,
                    st.compute_units_used.as_deref().unwrap_or("-"),
                    st.compute_units_allocated.as_deref().unwrap_or("-"),
                    st.audit
                        .as_ref()
                        .map(|a| a.config_map.as_str())
                        .unwrap_or("-"),
                )
            }
            Some(phase) => format!("{phase}  {}", st.message.as_deref().unwrap_or("")),
            None => "Pending".to_string(),
        };
        rows.insert(name.clone(), line);
        if let Some(r) = &st.registry {
            for (kind, t) in [("OCI", &r.oci), ("MLflow", &r.mlflow)] {
                let Some(t) = t else { continue };
                let verdict = match (t.promoted, &t.promoted_as) {
                    (Some(true), Some(alias)) => format!("promoted as {alias}"),
                    _ => format!(
                        "registered, not promoted ({})",
                        t.gate.as_deref().unwrap_or("no gate")
                    ),
                };
                // Sorted right after the job's own row, printed without its name.
                rows.insert(
                    format!("{name}\u{1}{kind}"),
                    format!("  {kind} {}: {verdict}", t.reference),
                );
            }
        }
    }
    for (name, line) in rows {
        let name = if name.contains('\u{1}') { "" } else { &name };
        println!("{name:<20} {line}");
    }
}

/// The local registries the demo registers models in.
struct Registries {
    oci: TestRegistry,
    mlflow: Option<&'static support::mlflow::MlflowServer>,
}

impl Registries {
    async fn start() -> Self {
        println!("==> starting a local OCI registry (distribution)");
        let oci = TestRegistry::start().await;
        println!("    {}", oci.host());
        let mlflow = if mlflow_installed() {
            println!("==> starting a local MLflow tracking server");
            let server = support::mlflow::server().await;
            println!("    {}", server.url());
            Some(server)
        } else {
            println!(
                "==> MLflow is not installed (hack/mlflow-venv.sh installs it): OCI registry only"
            );
            None
        };
        Self { oci, mlflow }
    }

    /// `--allowed-registries` for the operator.
    fn allowed(&self) -> String {
        let mut allowed = vec![format!("http://{}", self.oci.host())];
        allowed.extend(self.mlflow.map(|m| m.url().to_string()));
        allowed.join(",")
    }

    /// Adds `spec.registry` (the local registries and the demo's gate) to every example job.
    async fn attach_to(&self, jobs: &Api<SkillTrainingJob>) -> Result<(), String> {
        println!(
            "==> registering every trained model: promotion gate macro F1 >= {GATE_MIN_MACRO_F1:.2}"
        );
        let list = jobs
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("list jobs: {e}"))?;
        for job in list.items {
            let name = job.metadata.name.clone().unwrap_or_default();
            let mut registry = json!({
                "oci": {"repository": self.oci.reference(&format!("cxone-demo/{name}"))},
                "promotion": {"minMacroF1": GATE_MIN_MACRO_F1},
            });
            if let Some(m) = self.mlflow {
                registry["mlflow"] =
                    json!({"trackingUri": m.url(), "modelName": format!("cxone-demo-{name}")});
            }
            let patch = json!({
                "apiVersion": "ai.cxone.io/v1alpha1", "kind": "SkillTrainingJob",
                "spec": {"registry": registry}
            });
            jobs.patch(
                &name,
                &PatchParams::apply("cxone-demo"),
                &Patch::Apply(&patch),
            )
            .await
            .map_err(|e| format!("add spec.registry to {name}: {e}"))?;
        }
        Ok(())
    }
}

/// Whether `hack/mlflow-venv.sh` finished an install (the demo does not install it: minutes).
fn mlflow_installed() -> bool {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")));
    cache.is_some_and(|c| {
        c.join("cxone-skill-operator/mlflow-3.17.2/.complete")
            .is_file()
    })
}
