//! A real MLflow tracking server (model registry and artifact proxy) for tests, from the venv of
//! `hack/mlflow-venv.sh`.
//!
//! One plain server and one with MLflow's `basic-auth` app per test binary: the first caller of
//! [`server()`] or [`basic_auth_server()`] starts it (about 8 s), later callers get the same one.
//! Tests stay independent by using names of their own ([`unique_name`]).
//!
//! Each server runs as `mlflow server --host 127.0.0.1 --port <free port> --backend-store-uri
//! sqlite:///<tmp>/mlflow.db --artifacts-destination <tmp>/artifacts --serve-artifacts
//! --workers 1` in a process group of its own (it starts uvicorn as a child). A small watcher
//! script stops the whole group and removes the temporary directory once the test process is
//! gone, however it ended (Rust never drops statics); a [`MlflowServer`] that is dropped stops
//! its group at once. The server's own Host-header check allows `127.0.0.1` by default, so no
//! `--allowed-hosts` is needed on loopback. Its background job runner (GenAI jobs) is switched
//! off with `MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`: the registry does not use it.
//!
//! Environment: `CXONE_MLFLOW_KEEP_DIR=1` keeps the temporary directory (server log, databases,
//! artifacts) after the run.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Deadline of `hack/mlflow-venv.sh` (a cold install takes minutes).
const VENV_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Deadline of the server's `/health` (healthy in about 8 s on an idle machine).
const HEALTH_TIMEOUT: Duration = Duration::from_secs(120);
/// Deadline of one run of `hack/mlflow_check.py`.
const CHECK_TIMEOUT: Duration = Duration::from_secs(120);
const START_ATTEMPTS: u32 = 3;
const POLL: Duration = Duration::from_millis(100);
const LOG_TAIL_LINES: usize = 40;

/// The admin user of the basic-auth server.
pub const ADMIN_USER: &str = "admin";

static VENV: OnceLock<Result<PathBuf, String>> = OnceLock::new();
static PLAIN: OnceLock<Result<MlflowServer, String>> = OnceLock::new();
#[allow(dead_code, reason = "the demo uses the anonymous server only")]
static BASIC_AUTH: OnceLock<Result<MlflowServer, String>> = OnceLock::new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The test binary's plain MLflow server (no authentication), started on first use.
pub async fn server() -> &'static MlflowServer {
    shared(&PLAIN, false).await
}

/// The test binary's MLflow server with the `basic-auth` app, started on first use; its admin
/// is [`ADMIN_USER`] with [`MlflowServer::admin_password`].
#[allow(dead_code, reason = "the demo uses the anonymous server only")]
pub async fn basic_auth_server() -> &'static MlflowServer {
    shared(&BASIC_AUTH, true).await
}

async fn shared(
    cell: &'static OnceLock<Result<MlflowServer, String>>,
    basic_auth: bool,
) -> &'static MlflowServer {
    let result =
        tokio::task::spawn_blocking(move || cell.get_or_init(|| MlflowServer::start(basic_auth)))
            .await
            .unwrap_or_else(|e| panic!("MLflow server: start-up task failed: {e}"));
    match result {
        Ok(server) => server,
        Err(e) => panic!("the MLflow test server could not be started:\n{e}"),
    }
}

/// The venv of `hack/mlflow-venv.sh` (installed on first use). Blocking.
#[allow(
    dead_code,
    reason = "the MLflow venv for tests that run its Python client directly"
)]
pub fn venv() -> &'static Path {
    match VENV.get_or_init(install_venv) {
        Ok(path) => path,
        Err(e) => panic!("the MLflow venv could not be installed:\n{e}"),
    }
}

/// A name no other test (in this or an earlier run) uses.
pub fn unique_name(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{}-{}-{:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos & 0xffff_ffff
    )
}

/// A loopback port nothing listens on (bound, then released).
pub fn unused_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free port: {e}"))
}

/// A running MLflow tracking server.
#[derive(Debug)]
pub struct MlflowServer {
    url: String,
    dir: PathBuf,
    log: PathBuf,
    python: PathBuf,
    admin_password: Option<String>,
    /// The server's process group (its pid).
    pgid: u32,
    server: Mutex<Option<Child>>,
    watcher: Mutex<Option<Child>>,
    startup: Duration,
    remove_dir_on_drop: bool,
}

#[allow(dead_code, reason = "shared by the MLflow tests; each uses part of it")]
impl MlflowServer {
    /// Starts a server (blocking until `/health` answers). See the module documentation.
    pub fn start(basic_auth: bool) -> Result<Self, String> {
        let started = Instant::now();
        let venv = match VENV.get_or_init(install_venv) {
            Ok(v) => v.clone(),
            Err(e) => return Err(e.clone()),
        };
        let dir = std::env::temp_dir().join(unique_name("cxone-mlflow"));
        fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let log = dir.join("server.log");
        let admin_password = basic_auth.then(|| format!("Cx1-{}", unique_name("pw")));
        if let Some(password) = &admin_password {
            // The default settings but for the databases and the admin's password. (Not the
            // credential cache `auth_cache_ttl_seconds`: with it, 3.17.2 answers a bearer token
            // with a 500 instead of a 401.)
            let ini = format!(
                "[mlflow]\n\
                 default_permission = READ\n\
                 database_uri = sqlite:///{}\n\
                 admin_username = {ADMIN_USER}\n\
                 admin_password = {password}\n\
                 authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n",
                dir.join("basic_auth.db").display()
            );
            fs::write(dir.join("auth.ini"), ini)
                .map_err(|e| format!("cannot write the auth config: {e}"))?;
        }

        let mut last_error = String::new();
        for attempt in 1..=START_ATTEMPTS {
            let port = unused_port();
            let mut command = Command::new(venv.join("bin/mlflow"));
            command
                .args(["server", "--host", "127.0.0.1", "--port", &port.to_string()])
                .arg("--backend-store-uri")
                .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
                .arg("--artifacts-destination")
                .arg(dir.join("artifacts"))
                .args(["--serve-artifacts", "--workers", "1"])
                .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
                .env_remove("MLFLOW_TRACKING_URI")
                .env_remove("MLFLOW_AUTH_ADMIN_USERNAME")
                .env_remove("MLFLOW_AUTH_ADMIN_PASSWORD")
                .current_dir(&dir)
                .stdin(Stdio::null())
                // A group of its own, so the uvicorn child stops with it.
                .process_group(0);
            if basic_auth {
                command
                    .args(["--app-name", "basic-auth"])
                    .env("MLFLOW_AUTH_CONFIG_PATH", dir.join("auth.ini"))
                    // The auth app refuses to start without a static key for its CSRF tokens.
                    .env("MLFLOW_FLASK_SERVER_SECRET_KEY", unique_name("csrf"));
            }
            let out = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
            let err = out
                .try_clone()
                .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
            let mut child = command
                .stdout(out)
                .stderr(err)
                .spawn()
                .map_err(|e| format!("cannot start mlflow server: {e}"))?;
            let pgid = child.id();
            let watcher = match spawn_watcher(pgid, &dir) {
                Ok(w) => w,
                Err(e) => {
                    stop_group(pgid);
                    let _ = child.wait();
                    return Err(e);
                }
            };
            let url = format!("http://127.0.0.1:{port}");
            let mut server = Self {
                url,
                dir: dir.clone(),
                log: log.clone(),
                python: venv.join("bin/python"),
                admin_password: admin_password.clone(),
                pgid,
                server: Mutex::new(Some(child)),
                watcher: Mutex::new(Some(watcher)),
                startup: Duration::ZERO,
                remove_dir_on_drop: true,
            };
            match server.wait_healthy(port) {
                Ok(()) => {
                    server.startup = started.elapsed();
                    return Ok(server);
                }
                Err(e) => {
                    let port_race = fs::read_to_string(&log)
                        .unwrap_or_default()
                        .contains("address already in use");
                    last_error = e;
                    // Stops the attempt's process group (and its watcher) but keeps the
                    // directory for the next attempt.
                    server.remove_dir_on_drop = false;
                    drop(server);
                    if !port_race {
                        break;
                    }
                    eprintln!("mlflow: port race on attempt {attempt}; retrying");
                }
            }
        }
        if std::env::var("CXONE_MLFLOW_KEEP_DIR").as_deref() != Ok("1") {
            let _ = fs::remove_dir_all(&dir);
        }
        Err(last_error)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The admin password of a basic-auth server.
    pub fn admin_password(&self) -> Option<&str> {
        self.admin_password.as_deref()
    }

    /// How long start-up took (venv check included).
    pub fn startup(&self) -> Duration {
        self.startup
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }

    /// What MLflow's own Python client sees of `model`'s versions for `job_id` (and `alias`):
    /// the JSON of `hack/mlflow_check.py`. Blocking; panics with the checker's stderr on
    /// failure.
    pub fn check(&self, model: &str, job_id: &str, alias: Option<&str>) -> serde_json::Value {
        self.run_check(model, job_id, alias, None)
    }

    /// [`Self::check`], also leaving the first version's model files in `dir` (downloaded by
    /// MLflow's client, for a signature verifier to read).
    #[allow(dead_code, reason = "used by registry_e2e, not by registry_mlflow")]
    pub fn check_and_download(&self, model: &str, job_id: &str, dir: &Path) -> serde_json::Value {
        self.run_check(model, job_id, None, Some(dir))
    }

    fn run_check(
        &self,
        model: &str,
        job_id: &str,
        alias: Option<&str>,
        download: Option<&Path>,
    ) -> serde_json::Value {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/mlflow_check.py");
        let mut command = Command::new(&self.python);
        command.arg(&script).arg(model).arg(job_id).args(alias);
        if let Some(dir) = download {
            command.arg("--download").arg(dir);
        }
        command
            .env("MLFLOW_TRACKING_URI", &self.url)
            .env_remove("MLFLOW_TRACKING_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(password) = &self.admin_password {
            command
                .env("MLFLOW_TRACKING_USERNAME", ADMIN_USER)
                .env("MLFLOW_TRACKING_PASSWORD", password);
        }
        let (status, stdout, stderr) = run_with_deadline(command, CHECK_TIMEOUT)
            .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
        assert!(
            status,
            "{} failed:\n{stderr}\nserver log:\n{}",
            script.display(),
            self.log_tail()
        );
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{} printed no JSON ({e}): {stdout}", script.display()))
    }

    fn wait_healthy(&self, port: u16) -> Result<(), String> {
        let deadline = Instant::now() + HEALTH_TIMEOUT;
        loop {
            if let Some(status) = self
                .server
                .lock()
                .ok()
                .and_then(|mut c| c.as_mut().and_then(|c| c.try_wait().ok().flatten()))
            {
                return Err(format!(
                    "mlflow server exited ({status}) before it was healthy; last lines of {}:\n{}",
                    self.log.display(),
                    self.log_tail()
                ));
            }
            let last = match health(port) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "mlflow server was not healthy within {} s (last: {last}); last lines of {}:\n{}",
                    HEALTH_TIMEOUT.as_secs(),
                    self.log.display(),
                    self.log_tail()
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Stops the process group and the watcher; removes the directory when asked (and not
    /// kept with `CXONE_MLFLOW_KEEP_DIR=1`).
    fn stop(&self, remove_dir: bool) {
        stop_group(self.pgid);
        if let Some(mut child) = self.server.lock().ok().and_then(|mut c| c.take()) {
            let _ = child.wait();
        }
        if let Some(mut watcher) = self.watcher.lock().ok().and_then(|mut c| c.take()) {
            let _ = watcher.kill();
            let _ = watcher.wait();
        }
        if remove_dir && std::env::var("CXONE_MLFLOW_KEEP_DIR").as_deref() != Ok("1") {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        self.stop(self.remove_dir_on_drop);
    }
}

/// Stops every process of the group: SIGTERM, then SIGKILL after a second.
fn stop_group(pgid: u32) {
    let group = format!("-{pgid}");
    let signal = |sig: &str| {
        Command::new("kill")
            .args([sig, "--", &group])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !signal("-TERM") {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        if !signal("-0") {
            return;
        }
        std::thread::sleep(POLL);
    }
    signal("-KILL");
}

/// Watches the test process; once it is gone (exited, panicked, killed, or a zombie), stops the
/// server's process group and removes its directory (unless `CXONE_MLFLOW_KEEP_DIR=1`).
const WATCHER: &str = r#"
parent="$1" pgid="$2" dir="$3" keep="$4"
alive() {
  kill -0 "$parent" 2>/dev/null || return 1
  local stat
  read -r stat <"/proc/$parent/stat" 2>/dev/null || return 0
  stat="${stat##*) }"
  [[ "${stat%% *}" != Z ]]
}
stop() {
  kill -TERM -- "-$pgid" 2>/dev/null
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    kill -0 -- "-$pgid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$pgid" 2>/dev/null
  [[ "$keep" == 1 ]] || rm -rf "$dir"
  exit 0
}
trap stop TERM INT HUP
while alive; do
  sleep 0.5 &
  wait $!
done
stop
"#;

fn spawn_watcher(pgid: u32, dir: &Path) -> Result<Child, String> {
    let keep = if std::env::var("CXONE_MLFLOW_KEEP_DIR").as_deref() == Ok("1") {
        "1"
    } else {
        "0"
    };
    Command::new("bash")
        .args(["-c", WATCHER, "mlflow-watcher"])
        .arg(std::process::id().to_string())
        .arg(pgid.to_string())
        .arg(dir)
        .arg(keep)
        // It must not hold the test's output open: `cargo test` waits for it.
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the watcher: {e}"))
}

/// `GET /health` over plain HTTP on loopback (the basic-auth app leaves it open).
fn health(port: u16) -> Result<(), String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream
        .take(64 * 1024)
        .read_to_string(&mut answer)
        .map_err(|e| e.to_string())?;
    let status = answer.lines().next().unwrap_or_default().to_string();
    if status.contains(" 200 ") {
        Ok(())
    } else {
        Err(status)
    }
}

/// Runs `hack/mlflow-venv.sh` (its progress goes to stderr) and returns the path it prints.
fn install_venv() -> Result<PathBuf, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/mlflow-venv.sh");
    let mut command = Command::new("bash");
    command
        .arg(&script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (ok, stdout, stderr) = run_with_deadline(command, VENV_TIMEOUT)
        .map_err(|e| format!("{}: {e}", script.display()))?;
    if !ok {
        return Err(format!("{} failed:\n{stderr}", script.display()));
    }
    let venv = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    if !venv.join("bin/mlflow").is_file() {
        return Err(format!(
            "{} printed {:?}, which holds no bin/mlflow",
            script.display(),
            venv.display()
        ));
    }
    Ok(venv)
}

/// Runs `command` to completion within `timeout`: (success, stdout, stderr).
fn run_with_deadline(
    mut command: Command,
    timeout: Duration,
) -> Result<(bool, String, String), String> {
    let mut child = command.spawn().map_err(|e| format!("cannot run: {e}"))?;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = stdout.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("did not finish within {} s", timeout.as_secs()));
            }
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => return Err(format!("waiting: {e}")),
        }
    };
    Ok((
        status.success(),
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    ))
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
