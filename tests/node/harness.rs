//! The node layer's harness: one single-node cluster per test process (hack/node/cluster.sh,
//! torn down by its watcher when this process ends, however it ends), the operator image built
//! from the Dockerfile (hack/image.sh) and loaded into it, and `helm`/`kubectl` to act and look.
//! Failing cases print what CI needs to diagnose them (see [`Release`]'s `Drop`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Node {
    pub repo: PathBuf,
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub kubectl: PathBuf,
    pub helm: PathBuf,
    pub helm_home: PathBuf,
    /// `host:port` of the registry the pods reach (plain HTTP, in the node's network namespace).
    pub registry: String,
    pub image_repository: String,
    pub image_tag: String,
    /// The OCI archive of the image (for the image checks).
    pub image_archive: PathBuf,
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd`; Ok(stdout) if it succeeds, Err(a description with its output) if not.
pub fn run(cmd: &mut Command) -> Result<String, String> {
    let out: Output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", describe(cmd)))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{} failed ({}):\n{}{}",
            describe(cmd),
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Runs `cmd` and panics with its output unless it succeeds; returns stdout.
pub fn ok(cmd: &mut Command) -> String {
    run(cmd).unwrap_or_else(|e| panic!("{e}"))
}

/// Polls `f` (every 0.5 s) until it returns Some, or panics after `timeout` naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `NAME=VALUE` lines of a script's stdout.
fn field(out: &str, name: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name}= in:\n{out}"))
        .to_string()
}

static NODE: OnceLock<Result<Node, String>> = OnceLock::new();

/// The node of this test process, brought up (and the image built and loaded) on first use.
pub fn node() -> &'static Node {
    match NODE.get_or_init(start) {
        Ok(n) => n,
        Err(e) => panic!("the node could not be brought up:\n{e}"),
    }
}

fn script(repo: &Path, path: &str) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg(repo.join(path)).current_dir(repo);
    // The scripts' progress goes to stderr, which the test output shows.
    cmd.stderr(Stdio::inherit());
    cmd
}

fn start() -> Result<Node, String> {
    let repo = repo();
    let t0 = Instant::now();
    let tools = run(&mut script(&repo, "hack/tools.sh"))?;
    let tools_bin = PathBuf::from(tools.trim());
    let envtest = PathBuf::from(run(&mut script(&repo, "hack/envtest.sh"))?.trim());
    let dir = std::env::temp_dir().join(format!("cxone-node-test-{}", std::process::id()));
    let up = run(script(&repo, "hack/node/cluster.sh")
        .arg("up")
        .arg("--dir")
        .arg(&dir)
        .arg("--parent")
        .arg(std::process::id().to_string())
        .arg("--registry"))?;
    eprintln!("node: cluster up in {:.0?}", t0.elapsed());
    let t1 = Instant::now();
    let image = run(script(&repo, "hack/image.sh").arg("--dir").arg(&dir))?;
    eprintln!("node: image built and loaded in {:.0?}", t1.elapsed());
    let image_name = field(&image, "IMAGE");
    let (repository, tag) = image_name.rsplit_once(':').expect("IMAGE=repo:tag");
    let helm_home = tools_bin.parent().unwrap_or(&tools_bin).join("helm-home");
    let node = Node {
        kubeconfig: PathBuf::from(field(&up, "KUBECONFIG")),
        registry: field(&up, "REGISTRY"),
        dir,
        kubectl: envtest.join("kubectl"),
        helm: tools_bin.join("helm"),
        helm_home,
        image_repository: repository.to_string(),
        image_tag: tag.to_string(),
        image_archive: PathBuf::from(field(&image, "ARCHIVE")),
        repo,
    };
    // The CRD once for every release of the tests (they install with crds.install=false, so
    // parallel releases do not fight over its ownership).
    run(node
        .kubectl()
        .args(["apply", "--server-side", "-f"])
        .arg(node.repo.join("crds/skilltrainingjobs.ai.cxone.io.yaml")))?;
    run(node.kubectl().args([
        "wait",
        "--for=condition=Established",
        "crd/skilltrainingjobs.ai.cxone.io",
        "--timeout=60s",
    ]))?;
    Ok(node)
}

impl Node {
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(&self.kubectl);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--request-timeout=30s");
        cmd
    }

    pub fn helm(&self) -> Command {
        let mut cmd = Command::new(&self.helm);
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CACHE_HOME", self.helm_home.join("cache"))
            .env("HELM_CONFIG_HOME", self.helm_home.join("config"))
            .env("HELM_DATA_HOME", self.helm_home.join("data"));
        cmd
    }

    /// `kubectl get … -o json`, parsed.
    pub fn get_json(&self, args: &[&str]) -> Value {
        let out = ok(self.kubectl().arg("get").args(args).args(["-o", "json"]));
        serde_json::from_str(&out).expect("kubectl -o json")
    }

    /// Applies YAML text with `kubectl apply -f -`.
    pub fn apply(&self, yaml: &str) {
        let mut child = self
            .kubectl()
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl apply");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(yaml.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "kubectl apply failed:\n{}{}\n--- input:\n{yaml}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A namespace enforcing PodSecurity `restricted` (the chart's pods must start in it).
    pub fn restricted_namespace(&self, name: &str) {
        self.apply(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n    \
             pod-security.kubernetes.io/enforce: restricted\n    \
             pod-security.kubernetes.io/enforce-version: latest\n"
        ));
    }

    /// What CI needs to see when a case in `namespaces` fails.
    pub fn diagnose(&self, namespaces: &[&str]) {
        eprintln!("==================== node diagnostics ====================");
        let show = |title: &str, cmd: &mut Command| {
            eprintln!("---- {title}");
            match run(cmd) {
                Ok(s) => eprintln!("{s}"),
                Err(e) => eprintln!("{e}"),
            }
        };
        show("node", self.kubectl().args(["describe", "nodes"]));
        show(
            "pods (all namespaces)",
            self.kubectl().args(["get", "pods", "-A", "-o", "wide"]),
        );
        for ns in namespaces {
            show(
                &format!("events in {ns}"),
                self.kubectl()
                    .args(["get", "events", "-n", ns, "--sort-by=.lastTimestamp"]),
            );
            show(
                &format!("deployments, leases, jobs in {ns}"),
                self.kubectl().args([
                    "get",
                    "deployments,replicasets,leases,skilltrainingjobs",
                    "-n",
                    ns,
                    "-o",
                    "wide",
                ]),
            );
            show(
                &format!("describe pods in {ns}"),
                self.kubectl().args(["describe", "pods", "-n", ns]),
            );
            let pods = run(self.kubectl().args([
                "get",
                "pods",
                "-n",
                ns,
                "-o",
                "jsonpath={.items[*].metadata.name}",
            ]))
            .unwrap_or_default();
            for pod in pods.split_whitespace() {
                show(
                    &format!("logs of {ns}/{pod}"),
                    self.kubectl()
                        .args(["logs", "-n", ns, pod, "--all-containers", "--tail=80"]),
                );
                show(
                    &format!("previous logs of {ns}/{pod}"),
                    self.kubectl().args([
                        "logs",
                        "-n",
                        ns,
                        pod,
                        "--all-containers",
                        "--previous",
                        "--tail=40",
                    ]),
                );
            }
        }
        show(
            "component logs (kubelet, containerd, …)",
            script(&self.repo, "hack/node/cluster.sh")
                .arg("diagnose")
                .arg("--dir")
                .arg(&self.dir),
        );
        eprintln!("==================== end of node diagnostics ====================");
    }
}

/// A `kubectl port-forward` to a Service, stopped when dropped.
pub struct PortForward {
    child: Child,
    pub port: u16,
}

impl PortForward {
    pub fn service(node: &Node, ns: &str, service: &str, port: u16) -> PortForward {
        let mut child = node
            .kubectl()
            .args([
                "port-forward",
                "-n",
                ns,
                &format!("service/{service}"),
                &format!(":{port}"),
                "--address=127.0.0.1",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("kubectl port-forward");
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut line).expect("port-forward output");
        // "Forwarding from 127.0.0.1:43127 -> 8089"
        let local = line
            .split_whitespace()
            .nth(2)
            .and_then(|a| a.rsplit_once(':'))
            .and_then(|(_, p)| p.parse().ok());
        let Some(port) = local else {
            let _ = child.kill();
            panic!("unexpected kubectl port-forward output: {line:?}");
        };
        // Keep draining its stdout (one line per connection) so it never blocks.
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = out.read_to_string(&mut sink);
        });
        PortForward { child, port }
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET (the test's own client; the body of a 2xx answer, else Err).
pub fn http_get(addr: &str, path: &str, bearer: Option<&str>) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Accept: application/json\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP header")?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    if status.starts_with('2') {
        Ok(body)
    } else {
        Err(format!("GET {path}: {status}: {body}"))
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}
