//! Running the operator binary against the test control plane and the simulator, and waiting on
//! what it does.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use cxone_skill_operator::crd::SkillTrainingJob;
use cxone_skill_operator::simulator::{self, SimulatorConfig, SimulatorHandle};
use cxone_skill_operator::testkit::{GUIDE_SKILL_ID, guide_labels_json, guide_utterances_json};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};

use super::envtest::{ControlPlane, TestNamespace};

static OPERATOR_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// One operator process (the built binary) under the harness supervisor, so it dies with the
/// test process even on panic.
#[allow(
    dead_code,
    reason = "shared by every test binary and bench that runs the operator; each uses part of it"
)]
pub struct OperatorProcess {
    dir: PathBuf,
    name: String,
    supervisor: std::process::Child,
    stopped: bool,
    pub metrics_port: u16,
    pub probe_port: u16,
}

/// How an operator process is launched: which binary, with which extra environment.
#[derive(Clone, Debug, Default)]
pub struct Launch {
    /// The operator binary; `None`: the one Cargo built for this test or bench.
    pub binary: Option<PathBuf>,
    /// Environment variables added to the operator's (e.g. `MALLOC_ARENA_MAX`).
    pub env: Vec<(String, String)>,
}

#[allow(
    dead_code,
    reason = "shared by every test binary and bench that runs the operator; each uses part of it"
)]
impl OperatorProcess {
    /// Starts `cxone-skill-operator run` with `kubeconfig` and extra flags.
    pub fn start(cp: &ControlPlane, kubeconfig: &Path, args: &[String]) -> Self {
        Self::start_with(cp, kubeconfig, args, &Launch::default())
    }

    /// As [`Self::start`], with another binary or extra environment.
    pub fn start_with(
        cp: &ControlPlane,
        kubeconfig: &Path,
        args: &[String],
        launch: &Launch,
    ) -> Self {
        let n = OPERATOR_COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("operator-{}-{n}", std::process::id());
        let dir = cp.dir().join("operators");
        std::fs::create_dir_all(&dir).expect("operator dir");
        let metrics_port = free_port();
        let probe_port = free_port();
        let supervisor = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/envtest/supervise.sh"))
            .arg(std::process::id().to_string())
            .arg(&dir)
            .arg(&name)
            .arg("--")
            .arg(
                launch
                    .binary
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_cxone-skill-operator"))),
            )
            .arg("run")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--log-format", "text"])
            .arg(format!("--metrics-bind-address=127.0.0.1:{metrics_port}"))
            .arg(format!(
                "--health-probe-bind-address=127.0.0.1:{probe_port}"
            ))
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("OPERATOR_LOG").unwrap_or_else(|_| "info,kube=warn".into()),
            )
            .envs(launch.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the operator under the supervisor");
        Self {
            dir,
            name,
            supervisor,
            stopped: false,
            metrics_port,
            probe_port,
        }
    }

    /// The operator's pid (waits briefly for the supervisor to start it).
    pub fn pid(&self) -> Option<u32> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(s) = std::fs::read_to_string(self.dir.join(format!("{}.pid", self.name))) {
                return s.trim().parse().ok();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The operator's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.log", self.name))).unwrap_or_default()
    }

    /// SIGKILL: no graceful shutdown, as in a node failure.
    pub fn kill(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                // A killed child stays a zombie until the supervisor reaps it.
                let state =
                    std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                if state.contains(") Z") {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.supervisor.kill();
        let _ = self.supervisor.wait();
    }

    /// SIGTERM and wait for the process to exit (graceful shutdown).
    pub fn terminate(&mut self) -> bool {
        let Some(pid) = self.pid() else { return false };
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if state.is_empty() || state.contains(") Z") {
                self.stopped = true;
                let _ = self.supervisor.kill();
                let _ = self.supervisor.wait();
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// GET on the operator's metrics or probe port.
    pub async fn http_get(&self, port: u16, path: &str) -> Option<(u16, String)> {
        let resp = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
            .await
            .ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.text().await.unwrap_or_default()))
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A test's world: its namespace, a simulator, credentials, and (usually) an operator.
#[allow(
    dead_code,
    reason = "shared by every test binary and bench that runs the operator; each uses part of it"
)]
pub struct World {
    pub cp: &'static ControlPlane,
    pub ns: TestNamespace,
    pub sim: SimulatorHandle,
    pub operator: Option<OperatorProcess>,
    pub jobs: Api<SkillTrainingJob>,
}

pub const CLIENT_ID: &str = "ops-client";
pub const CLIENT_SECRET: &str = "ops-secret-1";

#[allow(
    dead_code,
    reason = "shared by every test binary and bench that runs the operator; each uses part of it"
)]
impl World {
    /// Namespace + simulator (with `config`, its first client replaced by ours) + credentials
    /// Secret `cxone-credentials`; no operator yet.
    pub async fn new(prefix: &str, mut config: SimulatorConfig) -> Self {
        let cp = super::envtest::control_plane().await;
        let ns = cp.namespace(prefix).await;
        if config.clients.is_empty() {
            config
                .clients
                .push(simulator::ClientCredentials::new(CLIENT_ID, CLIENT_SECRET));
        } else {
            config.clients[0] = simulator::ClientCredentials::new(CLIENT_ID, CLIENT_SECRET);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sim = simulator::spawn(config, listener).await.unwrap();
        let jobs = Api::namespaced(ns.client(), ns.name());
        Self {
            cp,
            ns,
            sim,
            operator: None,
            jobs,
        }
    }

    pub fn sim_url(&self) -> String {
        self.sim.base_url()
    }

    /// Creates or replaces the credentials Secret.
    pub async fn put_secret(&self, name: &str, client_id: &str, client_secret: &str) {
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name},
            "stringData": {"clientId": client_id, "clientSecret": client_secret}
        }))
        .unwrap();
        Api::<Secret>::namespaced(self.ns.client(), self.ns.name())
            .patch(
                name,
                &PatchParams::apply("e2e-test").force(),
                &Patch::Apply(&secret),
            )
            .await
            .unwrap();
    }

    /// Flags every test operator gets: its namespace, the simulator allowed.
    pub fn operator_args(&self) -> Vec<String> {
        vec![
            format!("--watch-namespaces={}", self.ns.name()),
            format!("--allowed-endpoints={}", self.sim_url()),
        ]
    }

    pub fn start_operator(&mut self, extra: &[&str]) {
        let mut args = self.operator_args();
        args.extend(extra.iter().map(|s| s.to_string()));
        self.operator = Some(OperatorProcess::start(
            self.cp,
            self.cp.kubeconfig_path(),
            &args,
        ));
    }

    /// As [`Self::start_operator`], with another binary or extra environment.
    pub fn start_operator_with(&mut self, extra: &[&str], launch: &Launch) {
        let mut args = self.operator_args();
        args.extend(extra.iter().map(|s| s.to_string()));
        self.operator = Some(OperatorProcess::start_with(
            self.cp,
            self.cp.kubeconfig_path(),
            &args,
            launch,
        ));
    }

    pub fn operator_log(&self) -> String {
        self.operator.as_ref().map(|o| o.log()).unwrap_or_default()
    }

    /// Creates a job from JSON (`metadata.name` required).
    pub async fn create_job(&self, job: serde_json::Value) -> SkillTrainingJob {
        let job: SkillTrainingJob = serde_json::from_value(job).expect("a SkillTrainingJob");
        self.jobs
            .create(&PostParams::default(), &job)
            .await
            .expect("create job")
    }

    /// Polls the job until `pred` holds; panics with the job's status and the operator log.
    pub async fn wait_job(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&SkillTrainingJob) -> bool,
    ) -> SkillTrainingJob {
        let deadline = Instant::now() + timeout;
        loop {
            let job = self.jobs.get_opt(name).await.expect("get job");
            if let Some(job) = &job
                && pred(job)
            {
                return job.clone();
            }
            if Instant::now() > deadline {
                let status = job
                    .and_then(|j| j.status)
                    .map(|s| serde_json::to_string_pretty(&s).unwrap_or_default())
                    .unwrap_or_else(|| "(no status)".into());
                let log = self.operator_log();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                panic!(
                    "job {name}: timed out after {timeout:?} waiting for {what}\nstatus: {status}\noperator log (last lines, newest first):\n{}",
                    tail.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the job is gone.
    pub async fn wait_gone(&self, name: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.jobs.get_opt(name).await.expect("get job").is_some() {
            assert!(
                Instant::now() < deadline,
                "job {name} still exists after {timeout:?}\n{}",
                self.operator_log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A valid job: the guide's six utterances plus `extra` fields merged into the spec.
pub fn guide_job(name: &str, base_url: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut spec = serde_json::json!({
        "skillId": GUIDE_SKILL_ID,
        "connection": {"baseUrl": base_url, "credentialsSecretRef": {"name": "cxone-credentials"}},
        "language": "en",
        "labels": guide_labels_json(),
        "utterances": guide_utterances_json()
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    serde_json::json!({
        "apiVersion": "ai.cxone.io/v1alpha1",
        "kind": "SkillTrainingJob",
        "metadata": {"name": name},
        "spec": spec,
    })
}

#[allow(dead_code, reason = "read by the tests' waits, not by the scale bench")]
pub fn phase(job: &SkillTrainingJob) -> Option<cxone_skill_operator::crd::Phase> {
    job.status.as_ref().and_then(|s| s.phase)
}

#[allow(
    dead_code,
    reason = "read by the tests that assert on conditions, not by all"
)]
pub fn condition<'a>(
    job: &'a SkillTrainingJob,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
}
