//! The node layer (DESIGN.md §6, layer 4): the operator as users run it. The image is built from
//! the Dockerfile (hack/image.sh), loaded into a real single-node cluster (hack/node/cluster.sh:
//! kubelet, containerd + runc, CNI, kube-proxy, CoreDNS, kube-controller-manager,
//! kube-scheduler), and every case acts and looks through `helm` and `kubectl` only. `make
//! node-test` runs it (and `make test`); it is not part of `cargo test --all-targets` because it
//! needs root and a few minutes.
//!
//! Each case installs its own release into its own namespace (which enforces PodSecurity
//! `restricted`), with its jobs in another namespace it watches, so the cases run in parallel on
//! the one node. A failing case prints the node's diagnostics: pods, events, `kubectl describe`,
//! container logs and the tails of the kubelet, containerd and control-plane logs.

#[path = "node/harness.rs"]
mod harness;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cxone_skill_operator::simulator::Stats;
use harness::{Node, PortForward, http_get, node, ok, run, wait_for};
use serde_json::Value;

const CHART: &str = "charts/cxone-skill-operator";
/// The examples' credentials (examples/00-namespace-and-credentials.yaml), which the chart's
/// simulator is given as its one client.
const CLIENT_ID: &str = "demo-client";
const CLIENT_SECRET: &str = "demo-secret";

/// One Helm release of the chart, with the simulator, in namespace `ns`, reconciling jobs in
/// `jobs_ns`. Prints the node's diagnostics when dropped during a panic.
struct Release {
    node: &'static Node,
    started: std::time::Instant,
    name: String,
    ns: String,
    jobs_ns: String,
}

impl Release {
    /// `helm install` with the simulator and `values` (YAML) over the tests' base values.
    fn install(name: &str, values: &str) -> Release {
        let node = node();
        let r = Release {
            node,
            started: std::time::Instant::now(),
            name: name.to_string(),
            ns: name.to_string(),
            jobs_ns: format!("{name}-jobs"),
        };
        node.restricted_namespace(&r.ns);
        node.restricted_namespace(&r.jobs_ns);
        // The examples' credentials Secret, in the jobs' namespace (not its Namespace document:
        // that namespace exists, restricted).
        let creds = std::fs::read_to_string(
            harness::repo().join("examples/00-namespace-and-credentials.yaml"),
        )
        .unwrap();
        let secret: Vec<&str> = creds
            .split("\n---\n")
            .filter(|d| !d.contains("kind: Namespace"))
            .collect();
        node.apply(&secret.join("\n---\n").replace("cxone-demo", &r.jobs_ns));
        let base = format!(
            r#"
image:
  repository: {repo}
  tag: "{tag}"
crds:
  install: false
watchNamespaces: [{jobs}]
simulator:
  enabled: true
  jobDuration: 10s
  # The admin endpoints (GET /_sim/stats, the tests' count of CXone jobs) take the clients
  # file's content as their bearer token.
  extraArgs: ["--admin-token-file=/etc/cxone-simulator/clients"]
  clients:
    entries:
      - {{clientId: {CLIENT_ID}, clientSecret: {CLIENT_SECRET}}}
"#,
            repo = node.image_repository,
            tag = node.image_tag,
            jobs = r.jobs_ns,
        );
        let t0 = std::time::Instant::now();
        let out = ok(node
            .helm()
            .args(["install", name, CHART, "-n", name, "--wait", "--timeout=4m"])
            .args(["-f", &r.values_file("base", &base)])
            .args(["-f", &r.values_file("case", values)])
            .current_dir(&node.repo));
        eprintln!(
            "{name}: helm install --wait took {:.1?}",
            t0.elapsed().as_secs_f64()
        );
        assert!(out.contains("STATUS: deployed"), "{out}");
        r
    }

    fn values_file(&self, kind: &str, yaml: &str) -> String {
        let path = self
            .node
            .dir
            .join(format!("values-{}-{kind}.yaml", self.name));
        std::fs::write(&path, yaml).unwrap();
        path.to_string_lossy().into_owned()
    }

    fn fullname(&self) -> String {
        format!("{}-cxone-skill-operator", self.name)
    }

    fn simulator(&self) -> String {
        format!("{}-simulator", self.fullname())
    }

    fn simulator_url(&self) -> String {
        format!("http://{}.{}.svc:8089", self.simulator(), self.ns)
    }

    fn kubectl(&self) -> std::process::Command {
        self.node.kubectl()
    }

    /// The operator's pods (not the simulator's), as JSON.
    fn operator_pods(&self) -> Vec<Value> {
        let v = self.node.get_json(&[
            "pods",
            "-n",
            &self.ns,
            "-l",
            &format!(
                "app.kubernetes.io/instance={},app.kubernetes.io/component!=simulator",
                self.name
            ),
        ]);
        v["items"].as_array().cloned().unwrap_or_default()
    }

    fn rollout_status(&self) {
        ok(self.kubectl().args([
            "rollout",
            "status",
            "-n",
            &self.ns,
            &format!("deployment/{}", self.fullname()),
            "--timeout=4m",
        ]));
    }

    /// The simulator's counters, through a `kubectl port-forward` to its Service.
    fn stats(&self) -> Stats {
        let pf = PortForward::service(self.node, &self.ns, &self.simulator(), 8089);
        let token = format!("{CLIENT_ID}:{CLIENT_SECRET}");
        let body = wait_for("the simulator's stats", Duration::from_secs(30), || {
            http_get(
                &format!("127.0.0.1:{}", pf.port),
                "/_sim/stats",
                Some(&token),
            )
            .map_err(|e| eprintln!("{}: {e}", self.name))
            .ok()
        });
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("stats {body}: {e}"))
    }

    /// A SkillTrainingJob from examples/billing-support.yaml named `job`, against the simulator,
    /// with `extra_spec` (YAML lines indented by two spaces) added to its spec.
    fn job_yaml(&self, job: &str, extra_spec: &str) -> String {
        let text =
            std::fs::read_to_string(harness::repo().join("examples/billing-support.yaml")).unwrap();
        text.replace("name: billing-support", &format!("name: {job}"))
            .replace(
                "namespace: cxone-demo",
                &format!("namespace: {}", self.jobs_ns),
            )
            .replace(
                "region: us2-01",
                &format!("baseUrl: {}", self.simulator_url()),
            )
            .replace("\nspec:\n", &format!("\nspec:\n{extra_spec}"))
    }

    fn jobs(&self) -> Vec<Value> {
        let v = self
            .node
            .get_json(&["skilltrainingjobs", "-n", &self.jobs_ns]);
        v["items"].as_array().cloned().unwrap_or_default()
    }

    fn job(&self, name: &str) -> Value {
        self.node
            .get_json(&["skilltrainingjob", name, "-n", &self.jobs_ns])
    }

    /// Waits until every job named in `names` is in `phase`; panics early if one is in another
    /// final phase.
    fn wait_phase(&self, names: &BTreeSet<String>, phase: &str, timeout: Duration) -> Vec<Value> {
        wait_for(
            &format!("{} jobs of {} to be {phase}", names.len(), self.name),
            timeout,
            || {
                let jobs: Vec<Value> = self
                    .jobs()
                    .into_iter()
                    .filter(|j| names.contains(j["metadata"]["name"].as_str().unwrap_or("")))
                    .collect();
                for j in &jobs {
                    let p = j["status"]["phase"].as_str().unwrap_or("");
                    if p != phase && ["Succeeded", "Failed", "Invalid", "Cancelled"].contains(&p) {
                        panic!(
                            "job {} is {p}, expected {phase}: {}",
                            j["metadata"]["name"], j["status"]
                        );
                    }
                }
                let done = jobs
                    .iter()
                    .filter(|j| j["status"]["phase"] == phase)
                    .count();
                (jobs.len() == names.len() && done == names.len()).then_some(jobs)
            },
        )
    }

    /// CXone job ids of the named jobs, once every one has been submitted.
    fn wait_submitted(
        &self,
        names: &BTreeSet<String>,
        timeout: Duration,
    ) -> BTreeMap<String, String> {
        wait_for(
            &format!("{} jobs of {} to be submitted", names.len(), self.name),
            timeout,
            || {
                let ids: BTreeMap<String, String> = self
                    .jobs()
                    .iter()
                    .filter_map(|j| {
                        let name = j["metadata"]["name"].as_str()?.to_string();
                        let id = j["status"]["jobId"].as_str()?.to_string();
                        names.contains(&name).then_some((name, id))
                    })
                    .collect();
                (ids.len() == names.len()).then_some(ids)
            },
        )
    }

    /// The holder of the leader election Lease.
    fn lease_holder(&self) -> Option<String> {
        run(self.kubectl().args([
            "get",
            "lease",
            "cxone-skill-operator",
            "-n",
            &self.ns,
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ]))
        .ok()
        .filter(|h| !h.is_empty())
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        eprintln!("{}: case took {:.1?}", self.name, self.started.elapsed());
        if std::thread::panicking() {
            self.node
                .diagnose(&[&self.ns, &self.jobs_ns, "kube-system"]);
        }
    }
}

fn names(prefix: &str, n: usize) -> BTreeSet<String> {
    (0..n).map(|i| format!("{prefix}-{i:02}")).collect()
}

/// Intervals [first, last] of the Events each replica (reportingInstance) emitted in `ns`.
fn acting_intervals(node: &Node, ns: &str) -> BTreeMap<String, (String, String)> {
    let v = node.get_json(&["events.events.k8s.io", "-n", ns]);
    let mut out: BTreeMap<String, (String, String)> = BTreeMap::new();
    for e in v["items"].as_array().into_iter().flatten() {
        if e["reportingController"]
            .as_str()
            .is_none_or(|c| !c.contains("cxone"))
        {
            continue;
        }
        let Some(who) = e["reportingInstance"].as_str() else {
            continue;
        };
        let first = e["eventTime"].as_str().unwrap_or("").to_string();
        let last = e["series"]["lastObservedTime"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| first.clone());
        if first.is_empty() {
            continue;
        }
        let entry = out
            .entry(who.to_string())
            .or_insert((first.clone(), last.clone()));
        if first < entry.0 {
            entry.0 = first;
        }
        if last > entry.1 {
            entry.1 = last;
        }
    }
    out
}

// ---- cases ------------------------------------------------------------------------------------

/// `helm install` with the simulator into a namespace enforcing `restricted`: the operator and
/// simulator pods start (not only are admitted) as non-root with a read-only root filesystem,
/// the operator becomes Ready once its caches sync, the examples succeed against the simulator
/// through its Service (cluster DNS, kube-proxy), and `kubectl logs` shows the JSON log.
#[test]
fn install_runs_the_examples_in_a_restricted_namespace() {
    let r = Release::install("node-install", "{}\n");
    let node = r.node;

    // PodSecurity restricted is enforced, and the pods run.
    let ns = node.get_json(&["namespace", &r.ns]);
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    let pods = node.get_json(&["pods", "-n", &r.ns]);
    let pods = pods["items"].as_array().unwrap();
    assert_eq!(pods.len(), 2, "operator and simulator pods");
    for p in pods {
        let name = p["metadata"]["name"].as_str().unwrap();
        assert_eq!(p["status"]["phase"], "Running", "{name}");
        let c = &p["status"]["containerStatuses"][0];
        assert_eq!(c["ready"], true, "{name} is not Ready");
        assert_eq!(p["spec"]["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_eq!(
            p["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"], true,
            "{name}"
        );
    }
    // A pod without the restricted settings is refused there: the policy is really enforced.
    let refused = run(node.kubectl().args([
        "run",
        "root-probe",
        "-n",
        &r.ns,
        "--image",
        &format!("{}:{}", node.image_repository, node.image_tag),
        "--overrides",
        // No securityContext at all: root allowed, privilege escalation, capabilities kept.
        r#"{"spec":{"containers":[{"name":"root-probe","image":"x"}]}}"#,
    ]))
    .expect_err("a pod without the restricted securityContext must be refused");
    assert!(refused.contains("violates PodSecurity"), "{refused}");

    // The examples, pointed at the simulator's Service.
    let mut applied = Vec::new();
    for file in [
        "account-access.yaml",
        "billing-support.yaml",
        "order-tracking.yaml",
        "invalid-mixed-data.yaml",
    ] {
        let text = std::fs::read_to_string(harness::repo().join("examples").join(file)).unwrap();
        let text = text
            .replace(
                "namespace: cxone-demo",
                &format!("namespace: {}", r.jobs_ns),
            )
            .replace("region: us2-01", &format!("baseUrl: {}", r.simulator_url()));
        node.apply(&text);
        applied.push(file.trim_end_matches(".yaml").to_string());
    }
    let valid: BTreeSet<String> = applied
        .iter()
        .filter(|n| !n.starts_with("invalid"))
        .cloned()
        .collect();
    let jobs = r.wait_phase(&valid, "Succeeded", Duration::from_secs(240));
    for j in &jobs {
        assert!(j["status"]["jobId"].is_string(), "{}", j["status"]);
    }
    r.wait_phase(
        &BTreeSet::from(["invalid-mixed-data".to_string()]),
        "Invalid",
        Duration::from_secs(60),
    );
    let stats = r.stats();
    assert_eq!(stats.jobs_created, valid.len() as u64, "{stats:?}");

    // The operator's log, through the kubelet: JSON lines.
    let logs = ok(r
        .kubectl()
        .args(["logs", "-n", &r.ns, &format!("deployment/{}", r.fullname())]));
    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() > 3, "{logs}");
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}"));
        assert!(v.get("level").is_some() || v.get("fields").is_some(), "{l}");
    }
}

/// Two replicas with leader election; `helm upgrade` (a rolling restart of both) while 20 jobs
/// train: every job Succeeds, CXone sees exactly 20 jobs, the Lease holder changes, and the
/// replicas' Events never overlap in time (at most one acts at any moment).
#[test]
fn upgrade_of_two_replicas_while_twenty_jobs_train() {
    let r = Release::install(
        "node-upgrade",
        "replicaCount: 2\nleaderElection: {leaseSeconds: 10}\nsimulator: {jobDuration: 40s}\n",
    );
    let leader = wait_for("a leader", Duration::from_secs(60), || r.lease_holder());
    let jobs = names("train", 20);
    let yaml: Vec<String> = jobs.iter().map(|j| r.job_yaml(j, "")).collect();
    r.node.apply(&yaml.join("\n---\n"));
    let before = r.wait_submitted(&jobs, Duration::from_secs(120));

    let t0 = std::time::Instant::now();
    ok(r.node
        .helm()
        .args(["upgrade", &r.name, CHART, "-n", &r.ns, "--reuse-values"])
        .args(["--set", "podAnnotations.restartedAt=upgrade-1"])
        .args(["--wait", "--timeout=4m"])
        .current_dir(&r.node.repo));
    r.rollout_status();
    eprintln!(
        "node-upgrade: helm upgrade (rolling restart) took {:.1?}",
        t0.elapsed()
    );
    let pods: BTreeSet<String> = r
        .operator_pods()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    // The Lease holder identity starts with the pod's name (POD_NAME).
    let holder_pod = |holder: &str| {
        pods.iter()
            .find(|p| holder.starts_with(p.as_str()))
            .cloned()
    };
    assert_eq!(
        holder_pod(&leader),
        None,
        "the old leader {leader} is still there: {pods:?}"
    );

    let done = r.wait_phase(&jobs, "Succeeded", Duration::from_secs(300));
    for j in &done {
        let name = j["metadata"]["name"].as_str().unwrap();
        assert_eq!(
            j["status"]["jobId"].as_str(),
            Some(before[name].as_str()),
            "{name} was submitted again after the upgrade"
        );
    }
    let new_leader = wait_for("the new leader", Duration::from_secs(60), || {
        r.lease_holder()
    });
    assert_ne!(new_leader, leader, "the Lease holder did not change");
    assert!(
        holder_pod(&new_leader).is_some(),
        "{new_leader} is none of {pods:?}"
    );

    let stats = r.stats();
    assert_eq!(stats.jobs_created, 20, "duplicate CXone jobs: {stats:?}");

    let acting = acting_intervals(r.node, &r.jobs_ns);
    eprintln!("node-upgrade: replicas' Event intervals {acting:#?}");
    assert!(!acting.is_empty(), "no Events from the operator");
    let mut spans: Vec<&(String, String)> = acting.values().collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(
            w[0].1 <= w[1].0,
            "two replicas acted at the same time: {acting:#?}"
        );
    }
}

/// The operator pod force-deleted (`--grace-period=0 --force`) while its jobs train: the new
/// pod finishes every job, none is submitted twice.
#[test]
fn force_deleted_pod_loses_no_job() {
    let r = Release::install("node-force", "simulator: {jobDuration: 30s}\n");
    let jobs = names("force", 8);
    let yaml: Vec<String> = jobs.iter().map(|j| r.job_yaml(j, "")).collect();
    r.node.apply(&yaml.join("\n---\n"));
    let before = r.wait_submitted(&jobs, Duration::from_secs(120));
    let old: Vec<String> = r
        .operator_pods()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(old.len(), 1);
    ok(r.kubectl().args([
        "delete",
        "pod",
        &old[0],
        "-n",
        &r.ns,
        "--grace-period=0",
        "--force",
    ]));
    wait_for("a replacement pod", Duration::from_secs(120), || {
        let pods = r.operator_pods();
        pods.iter()
            .any(|p| {
                p["metadata"]["name"] != old[0].as_str()
                    && p["status"]["containerStatuses"][0]["ready"] == true
            })
            .then_some(())
    });
    let done = r.wait_phase(&jobs, "Succeeded", Duration::from_secs(240));
    for j in &done {
        let name = j["metadata"]["name"].as_str().unwrap();
        assert_eq!(
            j["status"]["jobId"].as_str(),
            Some(before[name].as_str()),
            "{name}"
        );
    }
    let stats = r.stats();
    assert_eq!(stats.jobs_created, 8, "{stats:?}");
}

/// Deleting a finished job removes its audit ConfigMap and its artifact Secret through the
/// garbage collector (kube-controller-manager); `deletionPolicy: Orphan` keeps a running CXone
/// job, the default (Cancel) cancels one.
#[test]
fn garbage_collection_and_deletion_policies() {
    let r = Release::install(
        "node-gc",
        "artifactSecrets: {enabled: true}\nsimulator: {jobDuration: 30s}\n",
    );
    r.node
        .apply(&r.job_yaml("gc", "  artifacts:\n    secretName: gc-artifacts\n"));
    let done = r.wait_phase(
        &BTreeSet::from(["gc".to_string()]),
        "Succeeded",
        Duration::from_secs(180),
    );
    let uid = done[0]["metadata"]["uid"].as_str().unwrap().to_string();
    let audit = done[0]["status"]["audit"]["configMap"]
        .as_str()
        .expect("status.audit.configMap")
        .to_string();
    let owned = |kind: &str| -> Vec<String> {
        let v = r.node.get_json(&[kind, "-n", &r.jobs_ns]);
        v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|o| {
                o["metadata"]["ownerReferences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|ref_| ref_["uid"] == uid.as_str())
            })
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let cms = owned("configmaps");
    assert!(
        cms.contains(&audit),
        "audit {audit} not owned by the job: {cms:?}"
    );
    assert_eq!(owned("secrets"), vec!["gc-artifacts".to_string()]);
    ok(r.kubectl().args([
        "delete",
        "skilltrainingjob",
        "gc",
        "-n",
        &r.jobs_ns,
        "--wait=true",
    ]));
    wait_for(
        "the garbage collector to remove the job's ConfigMaps and Secret",
        Duration::from_secs(120),
        || {
            let cm = run(r
                .kubectl()
                .args(["get", "configmap", &audit, "-n", &r.jobs_ns]));
            let s = run(r
                .kubectl()
                .args(["get", "secret", "gc-artifacts", "-n", &r.jobs_ns]));
            (cm.is_err_and(|e| e.contains("NotFound"))
                && s.is_err_and(|e| e.contains("NotFound"))
                && owned("configmaps").is_empty())
            .then_some(())
        },
    );

    // Deleted while training: Orphan keeps the CXone job, Cancel (the default) cancels it.
    // The simulator's jobs take 30 s: these two are deleted while they train.
    r.node.apply(&format!(
        "{}\n---\n{}",
        r.job_yaml("orphan", "  deletionPolicy: Orphan\n"),
        r.job_yaml("cancel", "  deletionPolicy: Cancel\n")
    ));
    let ids = r.wait_submitted(
        &BTreeSet::from(["orphan".to_string(), "cancel".to_string()]),
        Duration::from_secs(120),
    );
    let before = r.stats();
    ok(r.kubectl().args([
        "delete",
        "skilltrainingjob",
        "orphan",
        "cancel",
        "-n",
        &r.jobs_ns,
        "--wait=true",
        "--timeout=120s",
    ]));
    let after = r.stats();
    eprintln!("node-gc: CXone jobs {ids:?}; stats before {before:?}, after {after:?}");
    assert_eq!(after.jobs_created, 3, "{after:?}");
    // Only the Cancel job's CXone job is cancelled; the Orphan job's keeps training.
    assert_eq!(
        after.jobs_in("CANCELLED"),
        before.jobs_in("CANCELLED") + 1,
        "{after:?}"
    );
    assert!(after.total("cancel") >= 1, "{after:?}");
}

/// A job registering its model into the tests' OCI registry (docker-registry in the node's
/// network namespace, plain HTTP) from inside the operator pod, with the allowlist and the
/// chart's egress values set for it.
#[test]
fn registers_into_the_oci_registry_from_the_pod() {
    let registry = node().registry.clone();
    let (host, port) = registry.rsplit_once(':').unwrap();
    let values = format!(
        r#"
registries:
  allowed: ["http://{registry}/models"]
  allowPlainHttp: true
networkPolicy:
  enabled: true
  apiServer:
    cidrs: ["{host}/32"]
    ports: [6443]
  cxone:
    cidrs: ["198.18.0.0/24"]
    except: []
    ports: [8089]
  registries:
    cidrs: ["{host}/32"]
    except: []
    ports: [{port}]
"#
    );
    let r = Release::install("node-oci", &values);
    // The chart's egress rule for the registry is there (this node's CNI does not enforce
    // NetworkPolicy; see the README).
    let np = r
        .node
        .get_json(&["networkpolicy", &r.fullname(), "-n", &r.ns]);
    let egress = np["spec"]["egress"].to_string();
    assert!(
        egress.contains(&format!("{host}/32")) && egress.contains(port),
        "{egress}"
    );
    r.node.apply(&r.job_yaml(
        "oci",
        &format!("  registry:\n    oci:\n      repository: {registry}/models/billing-support\n"),
    ));
    let done = r.wait_phase(
        &BTreeSet::from(["oci".to_string()]),
        "Succeeded",
        Duration::from_secs(180),
    );
    let reg = wait_for(
        "the registration in status",
        Duration::from_secs(120),
        || {
            let j = r.job("oci");
            let reg = &j["status"]["registry"];
            reg["oci"]["reference"]
                .as_str()
                .is_some_and(|r| {
                    r.starts_with(&format!("{registry}/models/billing-support@sha256:"))
                })
                .then(|| reg.clone())
        },
    );
    eprintln!(
        "node-oci: status.registry {reg}; job {}",
        done[0]["status"]["jobId"]
    );
    // The registry has it: the tag list of the repository (from the host, over the veth).
    let tags = http_get(&registry, "/v2/models/billing-support/tags/list", None)
        .unwrap_or_else(|e| panic!("{e}"));
    let tags: Value = serde_json::from_str(&tags).unwrap();
    assert!(
        tags["tags"].as_array().is_some_and(|t| !t.is_empty()),
        "{tags}"
    );
}

/// The image built from the Dockerfile matches it: user 65532, entrypoint, command, exposed
/// ports, labels; and it has no shell.
#[test]
fn image_matches_the_dockerfile_and_has_no_shell() {
    let node = node();
    let dockerfile = std::fs::read_to_string(harness::repo().join("Dockerfile")).unwrap();
    // The image config from its OCI archive (index -> manifest -> config).
    let listing = ok(std::process::Command::new("tar")
        .arg("-tf")
        .arg(&node.image_archive));
    let blob = |digest: &str| -> String {
        ok(std::process::Command::new("tar")
            .arg("-xOf")
            .arg(&node.image_archive)
            .arg(format!(
                "blobs/sha256/{}",
                digest.trim_start_matches("sha256:")
            )))
    };
    let index: Value = serde_json::from_str(&ok(std::process::Command::new("tar")
        .arg("-xOf")
        .arg(&node.image_archive)
        .arg("index.json")))
    .unwrap();
    let manifest: Value =
        serde_json::from_str(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let config: Value =
        serde_json::from_str(&blob(manifest["config"]["digest"].as_str().unwrap())).unwrap();
    let c = &config["config"];
    assert!(dockerfile.contains(&format!("USER {}", c["User"].as_str().unwrap())));
    assert_eq!(c["User"], "65532:65532");
    assert_eq!(
        c["Entrypoint"],
        serde_json::json!(["/cxone-skill-operator"])
    );
    assert!(dockerfile.contains(r#"ENTRYPOINT ["/cxone-skill-operator"]"#));
    assert_eq!(c["Cmd"], serde_json::json!(["run"]));
    assert!(dockerfile.contains(r#"CMD ["run"]"#));
    let ports: BTreeSet<String> = c["ExposedPorts"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let expose = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("EXPOSE "))
        .unwrap();
    let want: BTreeSet<String> = expose
        .split_whitespace()
        .map(|p| format!("{p}/tcp"))
        .collect();
    assert_eq!(ports, want);
    let labels = c["Labels"].as_object().unwrap();
    for key in [
        "org.opencontainers.image.title",
        "org.opencontainers.image.description",
        "org.opencontainers.image.version",
        "org.opencontainers.image.revision",
        "org.opencontainers.image.licenses",
        "org.opencontainers.image.base.name",
    ] {
        assert!(dockerfile.contains(key), "{key} not in the Dockerfile");
        assert!(
            labels.contains_key(key),
            "{key} not in the image: {labels:?}"
        );
    }
    assert_eq!(
        labels["org.opencontainers.image.title"],
        "cxone-skill-operator"
    );
    assert_eq!(
        labels["org.opencontainers.image.version"].as_str(),
        Some(node.image_tag.as_str())
    );
    // No shell anywhere in the layers, and the binary is there.
    let mut files = Vec::new();
    for layer in manifest["layers"].as_array().unwrap() {
        let digest = layer["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:");
        let member = format!("blobs/sha256/{digest}");
        assert!(listing.contains(&member));
        let mut tar = std::process::Command::new("bash");
        tar.arg("-c").arg(format!(
            "tar -xOf '{}' '{member}' | tar -tzf - 2>/dev/null || tar -xOf '{}' '{member}' | tar -tf -",
            node.image_archive.display(),
            node.image_archive.display()
        ));
        files.extend(ok(&mut tar).lines().map(str::to_string));
    }
    assert!(
        files
            .iter()
            .any(|f| f.trim_start_matches("./") == "cxone-skill-operator"),
        "{files:?}"
    );
    for f in &files {
        let base = f.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        assert!(
            !["sh", "bash", "dash", "ash", "busybox", "zsh"].contains(&base),
            "the image has a shell: {f}"
        );
    }
}
