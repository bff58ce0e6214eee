//! A real Kubernetes control plane for tests: etcd and kube-apiserver as processes.
//!
//! One control plane per test binary: the first caller of [`control_plane()`] starts it, every
//! later caller (from any test, on any runtime) gets the same one. The static holds only plain
//! data (URL, token, file paths, pids); each test builds its own `kube::Client` from it, on its
//! own runtime.
//!
//! The processes run under `hack/envtest/supervise.sh`, which stops them and removes the
//! temporary directory once the test process is gone, whether it exited, panicked or was
//! killed: Rust never drops statics, so nothing in this process has to run for that.
//!
//! There is no kube-controller-manager: no garbage collection, no namespace finalization (a
//! deleted namespace stays `Terminating`), no Deployment/ReplicaSet/Pod controllers.
//!
//! Environment: `KUBEBUILDER_ASSETS` (ready binaries, else `hack/envtest.sh` builds them into
//! a cache once), `CXONE_ENVTEST_BUILD_TIMEOUT_SECS` (deadline of that build, default 5400),
//! `CXONE_ENVTEST_KEEP_DIR=1` (keep the temporary directory with the logs after the run).
//!
//! `tests/support/` has no `mod.rs`: each test binary (and bench, with
//! `#[path = "../tests/support"]`) declares the support modules it uses, so it compiles only
//! those and an unused helper is a warning, not silence:
//!
//! ```ignore
//! mod support {
//!     mod envtest;
//!     pub mod operator; // needs envtest
//!     pub use envtest::control_plane;
//! }
//!
//! #[tokio::test]
//! async fn reconciles() {
//!     let cp = support::control_plane().await;
//!     let ns = cp.namespace("reconcile").await;
//!     let admin: kube::Client = ns.client();
//! }
//! ```
//!
//! The modules: `envtest` (this one), `operator` (the operator process and a test's `World`,
//! the guide's job manifest; needs `envtest`), `scale_jobs` (the scale bench's jobs; needs
//! `operator`), `oci_registry` (a distribution registry, optionally with htpasswd credentials,
//! and `oras`), `mlflow` (an MLflow server), `trained` (a job trained and exported on a running
//! simulator). Pure fixtures (the guide's dataset, a provenance) are in the library's
//! `testkit` module (`src/testkit.rs`).

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Deadline for `hack/envtest.sh` (a cold build of kube-apiserver takes 10-30 minutes).
/// Override with `CXONE_ENVTEST_BUILD_TIMEOUT_SECS`.
const BUILD_TIMEOUT: Duration = Duration::from_secs(90 * 60);
const ETCD_READY_TIMEOUT: Duration = Duration::from_secs(30);
const APISERVER_READY_TIMEOUT: Duration = Duration::from_secs(90);
const CRD_ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(30);
const PROCESS_START_ATTEMPTS: u32 = 4;
const POLL: Duration = Duration::from_millis(100);
const LOG_TAIL_LINES: usize = 40;
/// Field manager used for the CRDs applied at start-up.
const FIELD_MANAGER: &str = "cxone-envtest";

static CONTROL_PLANE: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
static NAME_COUNTER: AtomicU32 = AtomicU32::new(0);

/// The test binary's control plane, started on first use (see the module docs).
///
/// Panics, with the reason and the tail of the failing process's log, if it cannot be started;
/// every later caller in the same binary gets the same panic message without a second attempt.
pub async fn control_plane() -> &'static ControlPlane {
    let result = tokio::task::spawn_blocking(start_once)
        .await
        .unwrap_or_else(|e| panic!("test control plane: start-up task failed: {e}"));
    unwrap_started(result)
}

/// Blocking form of [`control_plane()`], for synchronous tests. Do not call it from an async
/// context (it blocks the thread while the control plane starts).
#[allow(
    dead_code,
    reason = "for synchronous tests; the current binaries are all async"
)]
pub fn control_plane_blocking() -> &'static ControlPlane {
    unwrap_started(start_once())
}

fn unwrap_started(result: &'static Result<ControlPlane, String>) -> &'static ControlPlane {
    match result {
        Ok(cp) => cp,
        Err(e) => panic!("test control plane could not be started:\n{e}"),
    }
}

fn start_once() -> &'static Result<ControlPlane, String> {
    CONTROL_PLANE.get_or_init(|| {
        // A thread of its own: start-up runs a short-lived runtime, which must not be nested in
        // the caller's.
        std::thread::Builder::new()
            .name("envtest-start".into())
            .spawn(ControlPlane::start)
            .map_err(|e| format!("cannot spawn the start-up thread: {e}"))
            .and_then(|handle| {
                handle.join().unwrap_or_else(|panic| {
                    let msg = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "unknown panic".into());
                    Err(format!("start-up panicked: {msg}"))
                })
            })
    })
}

/// A running etcd + kube-apiserver pair. Plain data only: build clients with [`Self::client`].
#[derive(Debug)]
#[allow(
    dead_code,
    reason = "shared by every test binary that starts a control plane; each uses part of it"
)]
pub struct ControlPlane {
    base_url: String,
    admin_token: String,
    ca_path: PathBuf,
    dir: PathBuf,
    bin_dir: PathBuf,
    kubeconfig_path: PathBuf,
    kubectl_path: PathBuf,
    etcd_url: String,
    etcd_pid: u32,
    apiserver_pid: u32,
    crds: Vec<String>,
    startup: Duration,
}

/// A namespace of its own for one test, with an admin client.
pub struct TestNamespace {
    name: String,
    client: kube::Client,
}

#[allow(
    dead_code,
    reason = "shared by every test binary that starts a control plane; each uses part of it"
)]
impl TestNamespace {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An admin (`system:masters`) client; namespaced `Api`s still need the namespace name.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// `Api<K>` in this namespace, with the admin client.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

#[allow(
    dead_code,
    reason = "shared by every test binary that starts a control plane; each uses part of it"
)]
impl ControlPlane {
    /// `https://127.0.0.1:<port>` of the API server.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Bearer token of the admin user (`envtest-admin`, group `system:masters`).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// PEM file of the CA that signed the API server's serving certificate.
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    /// A kubeconfig for the admin user (for `kubectl` or the operator's `--kubeconfig`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    pub fn kubectl_path(&self) -> &Path {
        &self.kubectl_path
    }

    /// The directory holding `kube-apiserver`, `etcd` and `kubectl`.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The control plane's temporary directory (logs: `etcd.log`, `kube-apiserver.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn etcd_url(&self) -> &str {
        &self.etcd_url
    }

    pub fn etcd_pid(&self) -> u32 {
        self.etcd_pid
    }

    pub fn apiserver_pid(&self) -> u32 {
        self.apiserver_pid
    }

    /// Names of the CustomResourceDefinitions installed from `crds/` (all Established).
    pub fn installed_crds(&self) -> &[String] {
        &self.crds
    }

    /// How long start-up took (binaries, processes, readiness, CRDs).
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// A `kubectl` command already pointed at this control plane as admin.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(&self.kubectl_path);
        cmd.arg("--kubeconfig").arg(&self.kubeconfig_path);
        cmd
    }

    /// A fresh admin client, bound to the calling test's runtime.
    pub async fn client(&self) -> kube::Client {
        self.client_with_token(&self.admin_token).await
    }

    /// A client that authenticates with `token` (e.g. a ServiceAccount token).
    pub async fn client_with_token(&self, token: &str) -> kube::Client {
        client_from_kubeconfig(&self.kubeconfig_json(token, None))
            .await
            .unwrap_or_else(|e| panic!("test control plane: {e}"))
    }

    /// A namespace named `<prefix>-<n>-<random>` created for the caller.
    pub async fn namespace(&self, prefix: &str) -> TestNamespace {
        let client = self.client().await;
        let name = unique_name(prefix);
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([("cxone-envtest/test".to_string(), "true".to_string())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "test control plane: cannot create namespace {name}: {}",
                    kube_error(&e)
                )
            });
        TestNamespace { name, client }
    }

    /// A client acting as ServiceAccount `namespace/name` (created if missing), with a token
    /// from the TokenRequest API. It has no permissions until RBAC grants them.
    pub async fn service_account_client(&self, namespace: &str, name: &str) -> kube::Client {
        let token = self.service_account_token(namespace, name).await;
        self.client_with_token(&token).await
    }

    /// A token (valid for one hour) for ServiceAccount `namespace/name`, created if missing.
    pub async fn service_account_token(&self, namespace: &str, name: &str) -> String {
        let sas: Api<ServiceAccount> = Api::namespaced(self.client().await, namespace);
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        };
        match sas.create(&PostParams::default(), &sa).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(e) => panic!(
                "test control plane: cannot create ServiceAccount {namespace}/{name}: {}",
                kube_error(&e)
            ),
        }
        let request = TokenRequest {
            spec: TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let issued = sas
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .unwrap_or_else(|e| {
                panic!("test control plane: TokenRequest for ServiceAccount {namespace}/{name} failed: {}", kube_error(&e))
            });
        issued
            .status
            .map(|s| s.token)
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| {
                panic!("test control plane: TokenRequest for {namespace}/{name} returned no token")
            })
    }

    /// A kubeconfig (JSON, which is YAML too) for `token`, optionally with a default namespace.
    pub fn kubeconfig_json(&self, token: &str, namespace: Option<&str>) -> String {
        let mut context = serde_json::json!({"cluster": "envtest", "user": "envtest-user"});
        if let Some(ns) = namespace {
            context["namespace"] = ns.into();
        }
        serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "envtest", "cluster": {
                "server": self.base_url,
                "certificate-authority": self.ca_path,
            }}],
            "users": [{"name": "envtest-user", "user": {"token": token}}],
            "contexts": [{"name": "envtest", "context": context}],
            "current-context": "envtest",
        })
        .to_string()
    }

    /// Writes a kubeconfig for `token` into the control plane's directory and returns its path
    /// (e.g. to run the operator binary as a ServiceAccount).
    pub fn write_kubeconfig(
        &self,
        file_name: &str,
        token: &str,
        namespace: Option<&str>,
    ) -> PathBuf {
        let path = self.dir.join(file_name);
        write_private(&path, self.kubeconfig_json(token, namespace).as_bytes())
            .unwrap_or_else(|e| panic!("test control plane: {e}"));
        path
    }

    fn start() -> Result<ControlPlane, String> {
        let started = Instant::now();
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let bin_dir = provide_binaries(manifest_dir)?;
        let supervisor = manifest_dir.join("hack/envtest/supervise.sh");
        if !supervisor.is_file() {
            return Err(format!("{} is missing", supervisor.display()));
        }

        let dir = std::env::temp_dir().join(format!(
            "cxone-envtest-{}-{}",
            std::process::id(),
            random_hex(4)
        ));
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut procs = Processes {
            supervisor,
            dir: dir.clone(),
            started: Vec::new(),
        };
        // Removes `dir` once this process is gone, whatever happens to the other two, unless
        // CXONE_ENVTEST_KEEP_DIR=1 asks to keep it (logs, etcd data) for a post-mortem.
        let keep = std::env::var("CXONE_ENVTEST_KEEP_DIR").is_ok_and(|v| v == "1");
        procs.spawn("janitor", !keep, Path::new("true"), &[])?;

        let result = Self::start_in(started, manifest_dir, bin_dir, &dir, &mut procs);
        if result.is_err() {
            procs.stop_all();
        }
        result
    }

    fn start_in(
        started: Instant,
        manifest_dir: &Path,
        bin_dir: PathBuf,
        dir: &Path,
        procs: &mut Processes,
    ) -> Result<ControlPlane, String> {
        let admin_token = random_hex(24);
        let token_file = dir.join("tokens.csv");
        write_private(
            &token_file,
            format!("{admin_token},envtest-admin,envtest-admin,\"system:masters\"\n").as_bytes(),
        )?;
        let (sa_key, sa_pub) = service_account_keys(manifest_dir, dir)?;

        // etcd
        let etcd_bin = bin_dir.join("etcd");
        let mut etcd = None;
        for attempt in 1..=PROCESS_START_ATTEMPTS {
            let [client_port, peer_port] = free_ports::<2>()?;
            let client_url = format!("http://127.0.0.1:{client_port}");
            let peer_url = format!("http://127.0.0.1:{peer_port}");
            let data_dir = dir.join(format!("etcd-data-{attempt}"));
            let args = [
                "--name=envtest".to_string(),
                format!("--data-dir={}", data_dir.display()),
                format!("--listen-client-urls={client_url}"),
                format!("--advertise-client-urls={client_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=envtest={peer_url}"),
                "--initial-cluster-state=new".to_string(),
                "--unsafe-no-fsync".to_string(),
                "--log-level=warn".to_string(),
            ];
            let proc = procs.spawn("etcd", false, &etcd_bin, &args)?;
            match wait_etcd(&proc, client_port) {
                Ok(()) => {
                    etcd = Some((proc, client_url));
                    break;
                }
                Err(StartError::PortInUse(msg)) if attempt < PROCESS_START_ATTEMPTS => {
                    eprintln!("envtest: etcd port race ({msg}); retrying with other ports");
                    procs.stop(&proc);
                }
                Err(e) => return Err(e.into_message()),
            }
        }
        let (etcd, etcd_url) = etcd.ok_or("etcd: no attempt left")?;

        // kube-apiserver
        let apiserver_bin = bin_dir.join("kube-apiserver");
        let cert_dir = dir.join("certs");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot build a start-up runtime: {e}"))?;
        let mut apiserver = None;
        for attempt in 1..=PROCESS_START_ATTEMPTS {
            let [port] = free_ports::<1>()?;
            let args = [
                "--bind-address=127.0.0.1".to_string(),
                "--advertise-address=127.0.0.1".to_string(),
                format!("--secure-port={port}"),
                format!("--etcd-servers={etcd_url}"),
                format!("--cert-dir={}", cert_dir.display()),
                "--authorization-mode=RBAC".to_string(),
                format!("--token-auth-file={}", token_file.display()),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_string(),
                format!("--service-account-key-file={}", sa_pub.display()),
                format!("--service-account-signing-key-file={}", sa_key.display()),
                "--service-cluster-ip-range=10.0.0.0/24".to_string(),
                // Nothing routes to 127.0.0.1 from a Pod; keep the `kubernetes` Service without
                // endpoints instead of logging rejected loopback endpoints.
                "--endpoint-reconciler-type=none".to_string(),
                "--profiling=false".to_string(),
            ];
            let proc = procs.spawn("kube-apiserver", false, &apiserver_bin, &args)?;
            let base_url = format!("https://127.0.0.1:{port}");
            match runtime.block_on(wait_apiserver(&proc, &base_url, &cert_dir, &admin_token)) {
                Ok(ca_pem) => {
                    apiserver = Some((proc, base_url, ca_pem));
                    break;
                }
                Err(StartError::PortInUse(msg)) if attempt < PROCESS_START_ATTEMPTS => {
                    eprintln!(
                        "envtest: kube-apiserver port race ({msg}); retrying with another port"
                    );
                    procs.stop(&proc);
                }
                Err(e) => return Err(e.into_message()),
            }
        }
        let (apiserver, base_url, ca_pem) = apiserver.ok_or("kube-apiserver: no attempt left")?;

        let ca_path = dir.join("ca.crt");
        fs::write(&ca_path, ca_pem)
            .map_err(|e| format!("cannot write {}: {e}", ca_path.display()))?;
        let mut cp = ControlPlane {
            base_url,
            admin_token,
            ca_path,
            dir: dir.to_path_buf(),
            kubectl_path: bin_dir.join("kubectl"),
            bin_dir,
            kubeconfig_path: dir.join("kubeconfig"),
            etcd_url,
            etcd_pid: etcd.pid,
            apiserver_pid: apiserver.pid,
            crds: Vec::new(),
            startup: Duration::ZERO,
        };
        write_private(
            &cp.kubeconfig_path,
            cp.kubeconfig_json(&cp.admin_token, None).as_bytes(),
        )?;

        cp.crds = runtime.block_on(install_crds(&cp, &manifest_dir.join("crds")))?;
        cp.startup = started.elapsed();
        eprintln!(
            "envtest: control plane at {} ready in {:.1}s (dir {})",
            cp.base_url,
            cp.startup.as_secs_f64(),
            cp.dir.display()
        );
        Ok(cp)
    }
}

/// A kube error without the debug dump of the whole `Status`.
fn kube_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => {
            format!("{} ({} {})", status.message, status.code, status.reason)
        }
        other => other.to_string(),
    }
}

async fn client_from_kubeconfig(kubeconfig: &str) -> Result<kube::Client, String> {
    let kubeconfig = Kubeconfig::from_yaml(kubeconfig).map_err(|e| format!("kubeconfig: {e}"))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| format!("kubeconfig: {e}"))?;
    kube::Client::try_from(config).map_err(|e| format!("kube client: {e}"))
}

/// Runs `hack/envtest.sh` (its progress goes to stderr) and returns the directory it prints.
fn provide_binaries(manifest_dir: &Path) -> Result<PathBuf, String> {
    let script = manifest_dir.join("hack/envtest.sh");
    let timeout = std::env::var("CXONE_ENVTEST_BUILD_TIMEOUT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(BUILD_TIMEOUT);
    let mut child = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} did not finish within {}s (set CXONE_ENVTEST_BUILD_TIMEOUT_SECS to wait longer)",
                    script.display(),
                    timeout.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => return Err(format!("waiting for {}: {e}", script.display())),
        }
    };
    let out = reader.join().unwrap_or_default();
    if !status.success() {
        return Err(format!(
            "{} failed ({status}); its messages are above in the test's stderr",
            script.display()
        ));
    }
    let dir = PathBuf::from(
        out.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim(),
    );
    for bin in ["kube-apiserver", "etcd", "kubectl"] {
        if !dir.join(bin).is_file() {
            return Err(format!(
                "{} printed {:?}, which holds no {bin}",
                script.display(),
                dir.display()
            ));
        }
    }
    Ok(dir)
}

/// Writes an RSA key pair for service-account tokens: openssl if present, else a Go helper.
fn service_account_keys(manifest_dir: &Path, dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    let key = dir.join("sa.key");
    let public = dir.join("sa.pub");
    let openssl = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .stdin(Stdio::null())
        .output();
    let mut errors = Vec::new();
    match openssl {
        Ok(out) if out.status.success() => {
            let out = Command::new("openssl")
                .args(["pkey", "-pubout", "-in"])
                .arg(&key)
                .arg("-out")
                .arg(&public)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("openssl pkey: {e}"))?;
            if out.status.success() {
                return Ok((key, public));
            }
            errors.push(format!(
                "openssl pkey: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(out) => errors.push(format!(
            "openssl genpkey: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => errors.push(format!("openssl: {e}")),
    }
    let helper = manifest_dir.join("hack/envtest/genkey/main.go");
    match Command::new("go")
        .arg("run")
        .arg(&helper)
        .arg(&key)
        .arg(&public)
        .env("GOFLAGS", "-mod=mod")
        .env("GOWORK", "off")
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => return Ok((key, public)),
        Ok(out) => errors.push(format!(
            "go run {}: {}",
            helper.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => errors.push(format!("go: {e}")),
    }
    Err(format!(
        "cannot generate the service-account RSA key (needs openssl or go): {}",
        errors.join("; ")
    ))
}

/// `N` distinct free loopback ports (bound together, then released).
fn free_ports<const N: usize>() -> Result<[u16; N], String> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot bind a loopback port: {e}"))?;
    let mut ports = [0u16; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener
            .local_addr()
            .map_err(|e| format!("local_addr: {e}"))?
            .port();
    }
    Ok(ports)
}

fn unique_name(prefix: &str) -> String {
    let mut clean: String = prefix
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    clean = clean.trim_matches('-').chars().take(40).collect();
    let clean = clean.trim_end_matches('-');
    let clean = if clean.is_empty() { "test" } else { clean };
    let n = NAME_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{clean}-{n}-{}", random_hex(3))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    let ok = fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok();
    if !ok {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let seed = nanos ^ (u128::from(std::process::id()) << 64);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (seed >> ((i % 16) * 8)) as u8;
        }
    }
    hex::encode(buf)
}

fn write_private(path: &Path, contents: &[u8]) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(contents))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Processes started under `supervise.sh`.
struct Processes {
    supervisor: PathBuf,
    dir: PathBuf,
    /// Pids of the supervisors, for stopping on a failed start.
    started: Vec<u32>,
}

/// One supervised server process.
struct Proc {
    name: String,
    pid: u32,
    supervisor_pid: u32,
    log: PathBuf,
    exit_file: PathBuf,
}

enum StartError {
    PortInUse(String),
    Failed(String),
}

impl StartError {
    fn into_message(self) -> String {
        match self {
            StartError::PortInUse(m) | StartError::Failed(m) => m,
        }
    }
}

impl Processes {
    fn spawn(
        &mut self,
        name: &str,
        cleanup: bool,
        program: &Path,
        args: &[String],
    ) -> Result<Proc, String> {
        let pid_file = self.dir.join(format!("{name}.pid"));
        let exit_file = self.dir.join(format!("{name}.exit"));
        let _ = fs::remove_file(&pid_file);
        let _ = fs::remove_file(&exit_file);
        // A retry (port race) starts with a fresh log; the earlier attempt's log is kept aside.
        let log = self.dir.join(format!("{name}.log"));
        if log.exists() {
            let mut n = 1;
            while self.dir.join(format!("{name}.attempt-{n}.log")).exists() {
                n += 1;
            }
            let _ = fs::rename(&log, self.dir.join(format!("{name}.attempt-{n}.log")));
        }
        let supervisor_log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.supervisor.log")))
            .map_err(|e| format!("cannot open the supervisor log: {e}"))?;
        let mut cmd = Command::new("bash");
        cmd.arg(&self.supervisor)
            .arg(std::process::id().to_string())
            .arg(&self.dir)
            .arg(name);
        if cleanup {
            cmd.arg("--cleanup");
        }
        cmd.arg("--").arg(program).args(args);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(supervisor_log))
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start {name} under {}: {e}",
                    self.supervisor.display()
                )
            })?;
        let supervisor_pid = child.id();
        // The Child handle is dropped on purpose: the supervisor outlives it by design.
        drop(child);
        self.started.push(supervisor_pid);
        let deadline = Instant::now() + Duration::from_secs(10);
        let pid = loop {
            if let Some(pid) = fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                break pid;
            }
            if Instant::now() >= deadline {
                let log = tail(&self.dir.join(format!("{name}.supervisor.log")));
                return Err(format!(
                    "{name}: the supervisor wrote no pid file within 10s\n{log}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Ok(Proc {
            name: name.to_string(),
            pid,
            supervisor_pid,
            log,
            exit_file,
        })
    }

    /// Stops one process (SIGTERM to its supervisor, which stops the process) and waits for it.
    fn stop(&mut self, proc: &Proc) {
        terminate(proc.supervisor_pid);
        self.started.retain(|&p| p != proc.supervisor_pid);
        let deadline = Instant::now() + Duration::from_secs(8);
        while Instant::now() < deadline && process_alive(proc.pid) {
            std::thread::sleep(POLL);
        }
    }

    fn stop_all(&mut self) {
        for pid in self.started.drain(..).rev() {
            terminate(pid);
        }
    }
}

impl Proc {
    /// `Some(message)` once the process has exited.
    fn exited(&self) -> Option<String> {
        let code = fs::read_to_string(&self.exit_file).ok()?;
        Some(format!(
            "{} (pid {}) exited early with status {}; last lines of {}:\n{}",
            self.name,
            self.pid,
            code.trim(),
            self.log.display(),
            tail(&self.log)
        ))
    }

    fn early_exit(&self) -> Option<StartError> {
        let msg = self.exited()?;
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        if log.contains("address already in use") {
            Some(StartError::PortInUse(msg))
        } else {
            Some(StartError::Failed(msg))
        }
    }

    fn timed_out(&self, what: &str, timeout: Duration, last: &str) -> StartError {
        StartError::Failed(format!(
            "{} (pid {}) was not {what} within {}s{}; last lines of {}:\n{}",
            self.name,
            self.pid,
            timeout.as_secs(),
            if last.is_empty() {
                String::new()
            } else {
                format!(" (last answer: {last})")
            },
            self.log.display(),
            tail(&self.log)
        ))
    }
}

fn terminate(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn process_alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; its state letter is Z.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(LOG_TAIL_LINES);
    lines[start..]
        .iter()
        .map(|l| format!("    {l}\n"))
        .collect()
}

/// Polls etcd's `/health` over plain HTTP on loopback.
fn wait_etcd(proc: &Proc, port: u16) -> Result<(), StartError> {
    let deadline = Instant::now() + ETCD_READY_TIMEOUT;
    let mut last;
    loop {
        if let Some(e) = proc.early_exit() {
            return Err(e);
        }
        match etcd_health(port) {
            Ok(body) if body.contains("\"health\":\"true\"") => return Ok(()),
            Ok(body) => last = body,
            Err(e) => last = e,
        }
        if Instant::now() >= deadline {
            return Err(proc.timed_out("healthy", ETCD_READY_TIMEOUT, &last));
        }
        std::thread::sleep(POLL);
    }
}

fn etcd_health(port: u16) -> Result<String, String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    Ok(response
        .rsplit("\r\n\r\n")
        .next()
        .unwrap_or("")
        .trim()
        .to_string())
}

/// Waits for `/readyz` to answer 200 and returns the PEM of the serving certificate's CA.
async fn wait_apiserver(
    proc: &Proc,
    base_url: &str,
    cert_dir: &Path,
    token: &str,
) -> Result<String, StartError> {
    let deadline = Instant::now() + APISERVER_READY_TIMEOUT;
    let mut http: Option<(reqwest::Client, String)> = None;
    let mut last = String::new();
    loop {
        if let Some(e) = proc.early_exit() {
            return Err(e);
        }
        if http.is_none() {
            // The API server writes its self-signed certificate (and CA) at start-up.
            if let Some(ca) = read_serving_ca(&cert_dir.join("apiserver.crt")) {
                let certs = reqwest::Certificate::from_pem_bundle(ca.as_bytes())
                    .map_err(|e| StartError::Failed(format!("CA of {}: {e}", proc.name)))?;
                let client = reqwest::Client::builder()
                    .tls_certs_only(certs)
                    .timeout(Duration::from_secs(5))
                    .build()
                    .map_err(|e| StartError::Failed(format!("HTTP client: {e}")))?;
                http = Some((client, ca));
            } else {
                last = "no serving certificate yet".into();
            }
        }
        if let Some((client, ca)) = &http {
            match client
                .get(format!("{base_url}/readyz?verbose"))
                .bearer_auth(token)
                .send()
                .await
            {
                Ok(resp) if resp.status().is_success() => return Ok(ca.clone()),
                Ok(resp) => {
                    let status = resp.status();
                    let body = resp.text().await.unwrap_or_default();
                    let failing: Vec<&str> =
                        body.lines().filter(|l| l.contains("failed")).collect();
                    last = format!("{status}: {}", failing.join(", "));
                }
                Err(e) => last = format!("{e:?}"),
            }
        }
        if Instant::now() >= deadline {
            return Err(proc.timed_out("ready", APISERVER_READY_TIMEOUT, &last));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The CA certificate from the API server's self-signed `apiserver.crt` (serving certificate
/// followed by the CA that signed it); `None` while the file is missing or incomplete.
fn read_serving_ca(path: &Path) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    const END: &str = "-----END CERTIFICATE-----";
    let blocks: Vec<String> = text
        .split_inclusive(END)
        .filter(|b| b.contains("-----BEGIN CERTIFICATE-----") && b.ends_with(END))
        .map(|b| format!("{}\n", b.trim()))
        .collect();
    blocks.last().cloned()
}

/// Server-side applies every CustomResourceDefinition in `crds_dir` (`*.yaml`, `*.yml`,
/// `*.json`, multi-document YAML allowed) and waits until each is Established.
async fn install_crds(cp: &ControlPlane, crds_dir: &Path) -> Result<Vec<String>, String> {
    let Ok(entries) = fs::read_dir(crds_dir) else {
        return Ok(Vec::new());
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | "json")
                )
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let client = client_from_kubeconfig(&cp.kubeconfig_json(&cp.admin_token, None)).await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut names = Vec::new();
    for file in &files {
        let text =
            fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)
            .map_err(|e| format!("{}: invalid YAML: {e}", file.display()))?;
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            if doc.get("kind").and_then(|k| k.as_str()) != Some("CustomResourceDefinition") {
                continue;
            }
            let name = doc
                .pointer("/metadata/name")
                .and_then(|n| n.as_str())
                .ok_or_else(|| {
                    format!(
                        "{}: a CustomResourceDefinition without metadata.name",
                        file.display()
                    )
                })?
                .to_string();
            crds.patch(&name, &params, &Patch::Apply(&doc))
                .await
                .map_err(|e| {
                    format!(
                        "{}: kube-apiserver rejected CRD {name}: {}",
                        file.display(),
                        kube_error(&e)
                    )
                })?;
            names.push(name);
        }
    }
    let deadline = Instant::now() + CRD_ESTABLISHED_TIMEOUT;
    for name in &names {
        loop {
            let crd = crds
                .get(name)
                .await
                .map_err(|e| format!("reading CRD {name}: {}", kube_error(&e)))?;
            let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
            if conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
            {
                break;
            }
            if Instant::now() >= deadline {
                let summary: Vec<String> = conditions
                    .iter()
                    .map(|c| {
                        format!(
                            "{}={} ({})",
                            c.type_,
                            c.status,
                            c.message.clone().unwrap_or_default()
                        )
                    })
                    .collect();
                return Err(format!(
                    "CRD {name} not Established within {}s: {}",
                    CRD_ESTABLISHED_TIMEOUT.as_secs(),
                    summary.join("; ")
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }
    Ok(names)
}
