//! A real OCI registry for tests: the CNCF distribution registry (`docker-registry`, Debian) on
//! 127.0.0.1 with filesystem storage in a temporary directory, optionally behind htpasswd Basic
//! auth, and `oras` as an independent client to check what was pushed. Both come from
//! `hack/oci-tools.sh` (run once per test binary; it installs what is missing).
//!
//! ```ignore
//! let registry = support::oci_registry::TestRegistry::start().await;
//! let target = registry.target("cxone/billing");
//! let out = registry.oras(&["manifest", "fetch", &registry.reference("cxone/billing:v1")]);
//! ```

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use cxone_skill_operator::registry::RegistryAuth;
use cxone_skill_operator::registry::oci::OciTarget;

/// Longest wait for a registry to answer `/v2/`.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest any `oras` command may take.
const ORAS_TIMEOUT: Duration = Duration::from_secs(120);

/// Paths of the tools `hack/oci-tools.sh` provides.
#[derive(Debug)]
pub struct OciTools {
    pub registry: PathBuf,
    pub htpasswd: PathBuf,
    pub oras: PathBuf,
}

/// Runs `hack/oci-tools.sh` once per process (installing what is missing) and returns its paths.
pub fn oci_tools() -> &'static OciTools {
    static TOOLS: OnceLock<OciTools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/oci-tools.sh");
        let out = Command::new(&script)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed:\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let path = |name: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .map(PathBuf::from)
                .unwrap_or_else(|| panic!("hack/oci-tools.sh printed no {name}=: {stdout}"))
        };
        OciTools {
            registry: path("REGISTRY"),
            htpasswd: path("HTPASSWD"),
            oras: path("ORAS"),
        }
    })
}

/// A running `docker-registry serve` on 127.0.0.1; killed (and its storage removed) on drop.
pub struct TestRegistry {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
    credentials: Option<(String, String)>,
}

#[allow(
    dead_code,
    reason = "shared by the registry tests and the registry bench; each uses part of it"
)]
impl TestRegistry {
    /// An anonymous registry.
    pub async fn start() -> Self {
        Self::start_inner(None).await
    }

    /// A registry that requires HTTP Basic credentials (htpasswd, bcrypt).
    pub async fn start_with_htpasswd(user: &str, password: &str) -> Self {
        Self::start_inner(Some((user.to_string(), password.to_string()))).await
    }

    async fn start_inner(credentials: Option<(String, String)>) -> Self {
        let tools = oci_tools();
        let dir = unique_dir("cxone-oci-registry");
        std::fs::create_dir_all(dir.join("data")).unwrap();
        if let Some((user, password)) = &credentials {
            let out = Command::new(&tools.htpasswd)
                .args(["-Bbn", user, password])
                .stdin(Stdio::null())
                .output()
                .expect("htpasswd runs");
            assert!(out.status.success(), "htpasswd failed");
            std::fs::write(dir.join("htpasswd"), &out.stdout).unwrap();
        }
        // A free port can be taken by someone else between our probe and the registry's bind:
        // try a few.
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let config = registry_config(&dir, addr, credentials.is_some());
            std::fs::write(dir.join("config.yml"), config).unwrap();
            let log = std::fs::File::create(dir.join("registry.log")).unwrap();
            let child = Command::new(&tools.registry)
                .arg("serve")
                .arg(dir.join("config.yml"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", tools.registry.display()));
            let mut registry = Self {
                child,
                dir: dir.clone(),
                addr,
                credentials: credentials.clone(),
            };
            match registry.wait_ready().await {
                Ok(()) => return registry,
                Err(e) => {
                    last_error = e;
                    let _ = registry.child.kill();
                    let _ = registry.child.wait();
                    // Keep the directory for the next attempt.
                    registry.dir = PathBuf::new();
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        panic!("the test registry did not start: {last_error}");
    }

    /// Polls `/v2/` until it answers (200, or 401 behind htpasswd), the process exits, or
    /// [`READY_TIMEOUT`] passes.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let url = format!("http://{}/v2/", self.addr);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("docker-registry exited ({status}): {}", self.log()));
            }
            if let Ok(resp) = http.get(&url).send().await {
                let s = resp.status().as_u16();
                if s == 200 || s == 401 {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no answer on {url} within {READY_TIMEOUT:?}: {}",
                    self.log()
                ));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The registry's log so far (the last 4 KiB).
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default();
        let start = text.len().saturating_sub(4096);
        let start = (start..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(text.len());
        text[start..].to_string()
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `127.0.0.1:<port>/<rest>` (a repository, `repo:tag` or `repo@digest`).
    pub fn reference(&self, rest: &str) -> String {
        format!("{}/{rest}", self.addr)
    }

    /// A plain-HTTP target for `repository` in this registry.
    pub fn target(&self, repository: &str) -> OciTarget {
        OciTarget::parse(&self.reference(repository), true).expect("a valid test reference")
    }

    /// The registry's own credentials as [`RegistryAuth`] (anonymous without htpasswd).
    pub fn auth(&self) -> RegistryAuth {
        match &self.credentials {
            Some((username, password)) => RegistryAuth::Basic {
                username: username.clone(),
                password: password.clone(),
            },
            None => RegistryAuth::Anonymous,
        }
    }

    /// Runs `oras <args> --plain-http` (with the registry's credentials, and a registry config
    /// of its own so no credential store of the machine is read or written). Panics with its
    /// output when it fails or takes longer than two minutes.
    pub fn oras(&self, args: &[&str]) -> Output {
        let out = self.oras_unchecked(args);
        assert!(
            out.status.success(),
            "oras {args:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Like [`Self::oras`], returning the output whatever the exit status.
    pub fn oras_unchecked(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(&oci_tools().oras);
        cmd.args(args)
            .arg("--plain-http")
            .arg("--registry-config")
            .arg(self.dir.join("oras-auth.json"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some((user, password)) = &self.credentials {
            cmd.args(["--username", user, "--password", password]);
        }
        run_with_timeout(cmd, ORAS_TIMEOUT)
    }

    /// The temporary directory of this registry (storage, config, log); removed on drop.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Runs `cmd`, killing it after `timeout`.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Output {
    let mut child = cmd.spawn().expect("the command starts");
    // Drain the pipes on threads so a chatty command cannot block on a full pipe.
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr, &mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("the command can be waited for") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} took longer than {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// A loopback port free at the moment of asking.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    listener.local_addr().unwrap().port()
}

/// A new directory name under the system's temporary directory.
pub fn unique_dir(prefix: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    std::env::temp_dir().join(format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    ))
}

/// The registry's configuration: filesystem storage in `dir`, loopback only, deletes allowed,
/// htpasswd when asked.
fn registry_config(dir: &Path, addr: SocketAddr, htpasswd: bool) -> String {
    let mut config = format!(
        "version: 0.1\n\
         log:\n  level: warn\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {data}\n  delete:\n    enabled: true\n\
         http:\n  addr: {addr}\n  secret: cxone-test-upload-state-secret\n",
        data = dir.join("data").display(),
    );
    if htpasswd {
        config.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: cxone-test\n    path: {}\n",
            dir.join("htpasswd").display()
        ));
    }
    config
}
