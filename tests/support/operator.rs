//! Running the operator binary against the test control plane and the simulator, and waiting on
//! what it does.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use cxone_skill_operator::crd::SkillTrainingJob;
use cxone_skill_operator::simulator::{self, SimulatorConfig, SimulatorHandle};
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
pub struct World {
    pub cp: &'static ControlPlane,
    pub ns: TestNamespace,
    pub sim: SimulatorHandle,
    pub operator: Option<OperatorProcess>,
    pub jobs: Api<SkillTrainingJob>,
}

pub const CLIENT_ID: &str = "ops-client";
pub const CLIENT_SECRET: &str = "ops-secret-1";

impl World {
    /// Namespace + simulator (with `config`, its first client replaced by ours) + credentials
    /// Secret `cxone-credentials`; no operator yet.
    pub async fn new(prefix: &str, mut config: SimulatorConfig) -> Self {
        let cp = super::control_plane().await;
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
        "skillId": "skill-abc-123",
        "connection": {"baseUrl": base_url, "credentialsSecretRef": {"name": "cxone-credentials"}},
        "language": "en",
        "labels": [
            {"id": "cancel_sub", "name": "Cancel Subscription", "description": "User requests cancellation"},
            {"id": "upgrade_plan", "name": "Upgrade Plan", "description": "User wants higher tier"},
            {"id": "reset_pwd", "name": "Reset Password", "description": "User needs credential recovery"}
        ],
        "utterances": [
            {"text": "I want to cancel my subscription", "label": "cancel_sub"},
            {"text": "Please terminate my account", "label": "cancel_sub"},
            {"text": "How do I upgrade my plan", "label": "upgrade_plan"},
            {"text": "I need a higher tier", "label": "upgrade_plan"},
            {"text": "Reset my password", "label": "reset_pwd"},
            {"text": "I forgot my login details", "label": "reset_pwd"}
        ]
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

/// The eight labels of the larger example jobs ([`inline_job`], [`config_map_job`]): id, name
/// and the words every utterance of the label starts with.
pub const EIGHT_LABELS: [(&str, &str, &str); 8] = [
    (
        "cancel_sub",
        "Cancel Subscription",
        "please cancel my subscription",
    ),
    ("upgrade_plan", "Upgrade Plan", "i want to upgrade my plan"),
    ("reset_pwd", "Reset Password", "help me reset my password"),
    (
        "billing_question",
        "Billing Question",
        "i have a question about my bill",
    ),
    (
        "update_address",
        "Update Address",
        "change the address on my account",
    ),
    ("order_status", "Order Status", "where is my order"),
    (
        "refund_request",
        "Refund Request",
        "i would like a refund for",
    ),
    (
        "talk_to_agent",
        "Talk to Agent",
        "let me speak to a person about",
    ),
];

/// Words that make utterance texts distinct while the vocabulary stays small (32 words).
const FILLER: [&str; 32] = [
    "today",
    "again",
    "please",
    "now",
    "quickly",
    "online",
    "by phone",
    "this week",
    "for me",
    "for my family",
    "at home",
    "at work",
    "on the app",
    "on the website",
    "right away",
    "if possible",
    "as soon as you can",
    "before friday",
    "this month",
    "thanks",
    "my friend said",
    "last time",
    "from abroad",
    "for the second line",
    "on my tablet",
    "with my card",
    "kindly",
    "urgently",
    "soon",
    "tomorrow",
    "tonight",
    "later",
];

/// Utterance text number `n` of label `label` (0-7): distinct for every `n` below 32^4 within a
/// label, and never equal across labels.
pub fn utterance_text(label: usize, n: usize) -> String {
    let start = EIGHT_LABELS[label % 8].2;
    let w = |d: usize| FILLER[(n / 32usize.pow(d as u32)) % 32];
    format!("{start} {} {} {} {}", w(0), w(1), w(2), w(3))
}

fn eight_labels_json() -> serde_json::Value {
    serde_json::Value::Array(
        EIGHT_LABELS
            .iter()
            .map(|(id, name, start)| {
                serde_json::json!({"id": id, "name": name, "description": format!("The customer says \"{start} ...\"")})
            })
            .collect(),
    )
}

/// A valid job with `count` inline utterances spread evenly over [`EIGHT_LABELS`] (the CRD
/// allows at most 500 inline), all distinct, in one language.
pub fn inline_job(name: &str, base_url: &str, count: usize) -> serde_json::Value {
    let utterances: Vec<serde_json::Value> = (0..count)
        .map(|i| serde_json::json!({"text": utterance_text(i % 8, i / 8), "label": EIGHT_LABELS[i % 8].0}))
        .collect();
    guide_job(
        name,
        base_url,
        serde_json::json!({"labels": eight_labels_json(), "utterances": utterances}),
    )
}

/// A valid job with no inline utterances: its data is in `sources`, each a ConfigMap name, a
/// key and a format (`jsonl`, `csv` or `json`), holding [`utterance_document`]s.
pub fn config_map_job(
    name: &str,
    base_url: &str,
    sources: &[(String, String, &str)],
) -> serde_json::Value {
    let mut job = guide_job(
        name,
        base_url,
        serde_json::json!({
            "labels": eight_labels_json(),
            "utterancesFrom": sources
                .iter()
                .map(|(cm, key, format)| serde_json::json!({"configMapKeyRef": {"name": cm, "key": key}, "format": format}))
                .collect::<Vec<_>>(),
        }),
    );
    if let Some(spec) = job.get_mut("spec").and_then(|s| s.as_object_mut()) {
        spec.remove("utterances");
    }
    job
}

/// An utterance document of at most `bytes` bytes in `format` (`jsonl`, `csv` with a header, or
/// `json`), its lines going round [`EIGHT_LABELS`] so classes differ by at most one. Texts are
/// numbered from `first` in each label: documents of one job need ranges that do not overlap.
pub fn utterance_document(format: &str, bytes: usize, first: usize) -> String {
    let mut out = String::with_capacity(bytes);
    let (open, close) = match format {
        "csv" => ("text,label\n", ""),
        "json" => ("[", "]"),
        _ => ("", ""),
    };
    out.push_str(open);
    for i in 0.. {
        let (label, n) = (i % 8, first + i / 8);
        let text = utterance_text(label, n);
        let id = EIGHT_LABELS[label].0;
        let item = match format {
            "csv" => format!("{text},{id}\n"),
            "json" => {
                let sep = if i == 0 { "" } else { "," };
                format!("{sep}{}", serde_json::json!({"text": text, "label": id}))
            }
            _ => format!("{}\n", serde_json::json!({"text": text, "label": id})),
        };
        if out.len() + item.len() + close.len() > bytes {
            break;
        }
        out.push_str(&item);
    }
    out.push_str(close);
    out
}

pub fn phase(job: &SkillTrainingJob) -> Option<cxone_skill_operator::crd::Phase> {
    job.status.as_ref().and_then(|s| s.phase)
}

pub fn condition<'a>(
    job: &'a SkillTrainingJob,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
}
