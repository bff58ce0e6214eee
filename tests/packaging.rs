//! Packaging: the Helm chart (charts/cxone-skill-operator), the plain manifests (deploy/), the
//! Dockerfile and the Argo CD health check (deploy/argocd/).
//!
//! The static checks run the pinned tools that `hack/tools.sh` installs (helm, hadolint,
//! kubernetes-validate, and argocd-lua: hack/argocd-lua, the Argo CD health script runtime; the
//! script is run once per test binary and is a no-op when they are cached; `CXONE_TOOLS_BIN` may
//! name a directory that already holds them). The install
//! tests use the real kube-apiserver of `tests/support`: `helm install` into it, then the operator
//! binary runs with a token of the chart's ServiceAccount, so a job that reaches Succeeded proves
//! the chart's RBAC is sufficient. There is no kube-controller-manager, so the chart's own
//! Deployment never starts pods: the operator runs as a process with the same flags instead.

mod support {
    mod envtest;
    pub mod operator;
    pub use envtest::{ControlPlane, control_plane};
}

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use cxone_skill_operator::crd::Phase;
use cxone_skill_operator::simulator::SimulatorConfig;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};
use support::operator::{CLIENT_ID, CLIENT_SECRET, OperatorProcess, World, guide_job, phase};

/// Namespace of deploy/ and of the default-values renders compared with it.
const SYSTEM_NS: &str = "cxone-skill-operator-system";
/// Release name whose full name equals the chart name (so names match deploy/).
const RELEASE: &str = "cxone-skill-operator";
/// Schema version for kubernetes-validate: the test API server runs 1.37 (hack/envtest.sh), and
/// kubernetes-validate 1.37.0 ships schemas for 1.37.0.
const KUBE_SCHEMA_VERSION: &str = "1.37.0";
/// Kinds whose schema is a third-party CRD that kubernetes-validate does not ship.
const SKIP_VALIDATE_KINDS: &[&str] = &["ServiceMonitor"];
const JOB_TIMEOUT: Duration = Duration::from_secs(90);

// ---- paths and tools --------------------------------------------------------------------------

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart() -> PathBuf {
    repo().join("charts/cxone-skill-operator")
}

fn health_dir() -> PathBuf {
    repo().join("deploy/argocd/resource_customizations/ai.cxone.io/SkillTrainingJob")
}

/// The directory with helm, hadolint, kubernetes-validate and argocd-lua (hack/tools.sh).
fn tools_bin() -> &'static Path {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let result = BIN.get_or_init(|| {
        if let Some(dir) = std::env::var_os("CXONE_TOOLS_BIN").map(PathBuf::from)
            && ["helm", "hadolint", "kubernetes-validate", "argocd-lua"]
                .iter()
                .all(|t| dir.join(t).is_file())
        {
            return Ok(dir);
        }
        let out = Command::new("bash")
            .arg(repo().join("hack/tools.sh"))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run hack/tools.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "hack/tools.sh failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("helm").is_file() {
            Ok(dir)
        } else {
            Err(format!(
                "hack/tools.sh printed {dir:?}, which holds no helm"
            ))
        }
    });
    match result {
        Ok(dir) => dir,
        Err(e) => panic!("packaging tools are not available: {e}"),
    }
}

/// A command running tool `name`; helm keeps its caches next to the tools, not in $HOME.
fn tool(name: &str) -> Command {
    let bin = tools_bin();
    let mut cmd = Command::new(bin.join(name));
    let home = bin.parent().unwrap_or(bin).join("helm-home");
    cmd.env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .stdin(Stdio::null());
    cmd
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", describe(cmd)))
}

/// Runs `cmd`, panics with its output unless it succeeds, returns stdout.
fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        describe(cmd),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `cmd`, panics if it succeeds, returns stdout + stderr.
fn fails(cmd: &mut Command) -> String {
    let out = run(cmd);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "{} succeeded but should have failed:\n{text}",
        describe(cmd)
    );
    text
}

/// A file in a per-process temporary directory.
fn temp_file(name: &str, contents: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!("cxone-packaging-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(format!("{}-{name}", N.fetch_add(1, Ordering::SeqCst)));
    std::fs::write(&path, contents).expect("write temp file");
    path
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

// ---- YAML documents ---------------------------------------------------------------------------

fn docs(yaml: &str) -> Vec<Value> {
    let all: Vec<Value> =
        serde_saphyr::from_multiple(yaml).unwrap_or_else(|e| panic!("invalid YAML: {e}\n{yaml}"));
    all.into_iter().filter(|d| !d.is_null()).collect()
}

fn kind(d: &Value) -> &str {
    d["kind"].as_str().unwrap_or_default()
}

fn name(d: &Value) -> &str {
    d["metadata"]["name"].as_str().unwrap_or_default()
}

fn of_kind<'a>(docs: &'a [Value], k: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| kind(d) == k).collect()
}

fn find<'a>(docs: &'a [Value], k: &str, n: &str) -> &'a Value {
    docs.iter()
        .find(|d| kind(d) == k && name(d) == n)
        .unwrap_or_else(|| {
            let have: Vec<String> = docs
                .iter()
                .map(|d| format!("{}/{}", kind(d), name(d)))
                .collect();
            panic!("no {k}/{n} among {have:?}")
        })
}

/// `helm template cxone-skill-operator <chart> -n cxone-skill-operator-system <args>`.
fn render(args: &[&str]) -> String {
    ok(tool("helm")
        .args(["template", RELEASE])
        .arg(chart())
        .args(["--namespace", SYSTEM_NS])
        .args(args))
}

fn render_docs(args: &[&str]) -> Vec<Value> {
    docs(&render(args))
}

fn ci_values(name: &str) -> String {
    chart().join("ci").join(name).to_string_lossy().into_owned()
}

/// The value sets every render check runs with: default, namespaced, everything on.
fn value_sets() -> Vec<(&'static str, Vec<String>)> {
    vec![
        ("default", vec![]),
        (
            "namespaced",
            vec!["-f".into(), ci_values("namespaced-values.yaml")],
        ),
        ("full", vec!["-f".into(), ci_values("full-values.yaml")]),
    ]
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The first path at which `a` and `b` differ.
fn first_difference(path: &str, a: &Value, b: &Value) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                first_difference(
                    &format!("{path}.{k}"),
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                )
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| first_difference(&format!("{path}[{i}]"), p, q)),
        _ if a == b => None,
        _ => Some(format!("{path}: {a} != {b}")),
    }
}

fn assert_same(what: &str, a: &Value, b: &Value) {
    if let Some(diff) = first_difference("", a, b) {
        panic!("{what} differ at {diff}");
    }
}

fn operator_deployment(docs: &[Value]) -> &Value {
    docs.iter()
        .find(|d| {
            kind(d) == "Deployment"
                && d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
        })
        .expect("the operator Deployment")
}

fn container_args(deployment: &Value) -> Vec<String> {
    deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("container args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_string())
        .collect()
}

fn verbs_of(rule: &Value) -> Vec<&str> {
    rule["verbs"]
        .as_array()
        .map(|v| v.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn rule_grants(rule: &Value, resource: &str) -> bool {
    rule["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|x| x == resource || x == "*")
}

fn grants(rules: &Value, resource: &str) -> bool {
    rules
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| rule_grants(r, resource))
}

// ---- helm lint, render, schema ----------------------------------------------------------------

#[test]
fn helm_lint_strict_passes_with_default_namespaced_and_full_values() {
    let version = ok(tool("helm").args(["version", "--short"]));
    assert!(
        version.starts_with("v3.") || version.starts_with("v4."),
        "helm {version}"
    );
    for (label, args) in value_sets() {
        let out = ok(tool("helm")
            .args(["lint", "--strict"])
            .arg(chart())
            .args(as_strs(&args)));
        assert!(
            out.contains("0 chart(s) failed") && !out.contains("[WARNING]"),
            "helm lint --strict ({label}):\n{out}"
        );
    }
}

#[test]
fn every_rendered_manifest_validates_against_kubernetes_1_37() {
    for (label, args) in value_sets() {
        let rendered = render_docs(&as_strs(&args));
        let (skipped, checked): (Vec<&Value>, Vec<&Value>) = rendered
            .iter()
            .partition(|d| SKIP_VALIDATE_KINDS.contains(&kind(d)));
        if label == "full" {
            assert_eq!(skipped.len(), 1, "the full render has a ServiceMonitor");
        }
        validate_manifests(label, &checked);
    }
    // deploy/ and the Argo CD ConfigMap are plain manifests too.
    let deploy = deploy_docs();
    validate_manifests("deploy/", &deploy.iter().collect::<Vec<_>>());
    let cm = docs(&read(&repo().join("deploy/argocd/argocd-cm.yaml")));
    validate_manifests("argocd-cm.yaml", &cm.iter().collect::<Vec<_>>());
}

fn validate_manifests(label: &str, manifests: &[&Value]) {
    let text: String = manifests
        .iter()
        .map(|d| format!("---\n{}\n", serde_json::to_string(d).unwrap()))
        .collect();
    let file = temp_file(&format!("{}.yaml", label.replace('/', "_")), &text);
    let out = run(tool("kubernetes-validate")
        .args(["--kubernetes-version", KUBE_SCHEMA_VERSION, "--strict"])
        .arg(&file));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let passed = report.matches(" passed for resource ").count();
    assert!(
        out.status.success()
            && passed == manifests.len()
            && !report.contains("ERROR")
            && !report.contains("WARN"),
        "kubernetes-validate {KUBE_SCHEMA_VERSION} ({label}): {passed} of {} passed\n{report}",
        manifests.len()
    );
    let _ = std::fs::remove_file(file);
}

#[test]
fn values_schema_rejects_wrong_types_and_unknown_keys() {
    let cases = [
        (
            "operator:\n  concurrency: eight\n",
            &["/operator/concurrency", "integer"][..],
        ),
        (
            "operator:\n  concurency: 4\n",
            &["/operator", "concurency"][..],
        ),
        ("watchNamespace:\n  - team-a\n", &["watchNamespace"][..]),
        (
            "watchNamespaces: team-a\n",
            &["/watchNamespaces", "array"][..],
        ),
        (
            "crds:\n  install: \"yes\"\n",
            &["/crds/install", "boolean"][..],
        ),
        (
            "networkPolicy:\n  cxone:\n    ports: [https]\n",
            &["/networkPolicy/cxone/ports/0"][..],
        ),
        (
            "simulator:\n  clients:\n    entries:\n      - clientId: a\n        secret: b\n",
            &["/simulator/clients/entries/0", "secret"][..],
        ),
        (
            "operator:\n  logFormat: yaml\n",
            &["/operator/logFormat"][..],
        ),
        (
            "artifactSecrets:\n  enabled: \"yes\"\n",
            &["/artifactSecrets/enabled", "boolean"][..],
        ),
        (
            "artifactSecrets:\n  enable: true\n",
            &["/artifactSecrets", "enable"][..],
        ),
    ];
    for (values, expect) in cases {
        let file = temp_file("bad-values.yaml", values);
        let err = fails(
            tool("helm")
                .args(["template", RELEASE])
                .arg(chart())
                .arg("-f")
                .arg(&file),
        );
        for word in expect {
            assert!(
                err.contains(word),
                "helm template with\n{values}should name {word:?}; it said:\n{err}"
            );
        }
        // lint applies the schema too.
        fails(
            tool("helm")
                .args(["lint", "--strict"])
                .arg(chart())
                .arg("-f")
                .arg(&file),
        );
        let _ = std::fs::remove_file(file);
    }
}

#[test]
fn values_schema_closes_every_object() {
    let schema: Value =
        serde_json::from_str(&read(&chart().join("values.schema.json"))).expect("JSON schema");
    fn walk(path: &str, node: &Value, open: &mut Vec<String>) {
        let Some(obj) = node.as_object() else { return };
        let is_object = obj.get("type") == Some(&json!("object"));
        if is_object {
            match obj.get("additionalProperties") {
                // A record: every key is declared.
                Some(Value::Bool(false)) => {}
                // A map (labels, annotations, resources): its values are typed.
                Some(Value::Object(_)) if !obj.contains_key("properties") => {}
                // A Kubernetes object passed through unchanged (affinity terms, EnvVar sources,
                // `global`): documented as such.
                None if !obj.contains_key("properties")
                    && obj
                        .get("description")
                        .and_then(Value::as_str)
                        .is_some_and(|d| d.contains("passed through") || d.contains("global")) => {}
                _ => open.push(path.to_string()),
            }
        }
        for (k, v) in obj {
            match k.as_str() {
                "properties" => {
                    for (p, s) in v.as_object().into_iter().flatten() {
                        walk(&format!("{path}.{p}"), s, open);
                    }
                }
                "items" | "additionalProperties" => walk(&format!("{path}[]"), v, open),
                _ => {}
            }
        }
    }
    let mut open = Vec::new();
    walk("", &schema, &mut open);
    assert!(
        open.is_empty(),
        "objects that accept unknown keys: {open:?}"
    );
    // Every top-level value of values.yaml is declared (and nothing more is required).
    let values = docs(&read(&chart().join("values.yaml"))).remove(0);
    for key in values.as_object().unwrap().keys() {
        assert!(
            schema["properties"].get(key).is_some(),
            "values.yaml key {key} is not in values.schema.json"
        );
    }
}

#[test]
fn templates_render_deterministically_without_cluster_lookups() {
    // Argo CD renders with `helm template`: no lookup, no randomness, no clock.
    let forbidden = [
        "lookup",
        "now",
        "randAlphaNum",
        "randAlpha",
        "randNumeric",
        "randAscii",
        "randInt",
        "uuidv4",
        "genPrivateKey",
        "genCA",
        "genSelfSignedCert",
        "genSignedCert",
        "date",
    ];
    for entry in std::fs::read_dir(chart().join("templates")).unwrap() {
        let path = entry.unwrap().path();
        let text = read(&path);
        for action in text.split("{{").skip(1) {
            let action = action.split("}}").next().unwrap_or_default();
            let action = action.trim_start_matches('-').trim_start();
            if action.starts_with("/*") {
                continue;
            }
            for token in action.split(|c: char| !c.is_ascii_alphanumeric() && c != '_') {
                assert!(
                    !forbidden.contains(&token),
                    "{} uses {token} in {{{{{action}}}}}",
                    path.display()
                );
            }
        }
    }
    for (label, args) in value_sets() {
        let args = as_strs(&args);
        assert!(
            render(&args) == render(&args),
            "{label}: two renders differ"
        );
    }
}

#[test]
fn security_contexts_probes_and_labels_are_hardened_everywhere() {
    for (label, args) in value_sets() {
        let rendered = render_docs(&as_strs(&args));
        for d in of_kind(&rendered, "Deployment") {
            let pod = &d["spec"]["template"]["spec"];
            let what = format!("{label}: Deployment {}", name(d));
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{what}");
            assert_eq!(pod["securityContext"]["runAsUser"], 65532, "{what}");
            assert_eq!(
                pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
                "{what}"
            );
            for c in pod["containers"].as_array().unwrap() {
                let sc = &c["securityContext"];
                assert_eq!(sc["runAsNonRoot"], true, "{what}");
                assert_eq!(sc["runAsUser"], 65532, "{what}");
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
                assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{what}");
                assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{what}");
                assert!(c["resources"]["requests"].is_object(), "{what}: requests");
                assert!(c["resources"]["limits"]["memory"].is_string(), "{what}");
                assert!(c["livenessProbe"]["httpGet"].is_object(), "{what}");
                assert!(c["readinessProbe"]["httpGet"].is_object(), "{what}");
            }
        }
        let op = operator_deployment(&rendered);
        let pod = &op["spec"]["template"]["spec"];
        assert_eq!(pod["automountServiceAccountToken"], true);
        let c = &pod["containers"][0];
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(c["livenessProbe"]["httpGet"]["port"], "probes");
        let env: Vec<(&str, &str)> = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| {
                Some((
                    e["name"].as_str()?,
                    e["valueFrom"]["fieldRef"]["fieldPath"].as_str()?,
                ))
            })
            .collect();
        assert!(
            env.contains(&("POD_NAMESPACE", "metadata.namespace")),
            "{env:?}"
        );
        assert!(env.contains(&("POD_NAME", "metadata.name")), "{env:?}");
        for d in &rendered {
            if kind(d) == "CustomResourceDefinition" {
                continue; // identical to crds/, see chart_crd_is_crds_dir_plus_keep_annotation
            }
            let labels = &d["metadata"]["labels"];
            for l in [
                "app.kubernetes.io/name",
                "app.kubernetes.io/instance",
                "app.kubernetes.io/version",
                "app.kubernetes.io/managed-by",
                "app.kubernetes.io/part-of",
                "helm.sh/chart",
            ] {
                assert!(
                    labels[l].is_string(),
                    "{label}: {}/{} lacks label {l}",
                    kind(d),
                    name(d)
                );
            }
        }
    }
}

#[test]
fn namespaced_render_has_roles_per_namespace_and_no_cluster_wide_secret_access() {
    let cluster = render_docs(&[]);
    let cluster_rules = &find(&cluster, "ClusterRole", RELEASE)["rules"];
    assert!(grants(cluster_rules, "secrets"));
    assert_eq!(of_kind(&cluster, "Role").len(), 1, "only the Lease Role");

    let ns = render_docs(&["-f", &ci_values("namespaced-values.yaml")]);
    for d in of_kind(&ns, "ClusterRole") {
        assert!(
            !grants(&d["rules"], "secrets"),
            "ClusterRole {} grants secrets in namespaced mode",
            name(d)
        );
    }
    assert!(of_kind(&ns, "ClusterRole").is_empty());
    assert!(of_kind(&ns, "ClusterRoleBinding").is_empty());
    for watched in ["team-a", "team-b"] {
        let role = ns
            .iter()
            .find(|d| kind(d) == "Role" && d["metadata"]["namespace"] == watched)
            .unwrap_or_else(|| panic!("no Role in {watched}"));
        assert_same(
            &format!("Role rules in {watched} and the ClusterRole rules"),
            &role["rules"],
            cluster_rules,
        );
        let binding = ns
            .iter()
            .find(|d| kind(d) == "RoleBinding" && d["metadata"]["namespace"] == watched)
            .unwrap_or_else(|| panic!("no RoleBinding in {watched}"));
        assert_eq!(binding["roleRef"]["name"], name(role));
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": RELEASE, "namespace": SYSTEM_NS}])
        );
    }
    // The Lease Role stays in the release namespace in both modes.
    for rendered in [&cluster, &ns] {
        let lease = find(rendered, "Role", "cxone-skill-operator-leader-election");
        assert_eq!(lease["metadata"]["namespace"], SYSTEM_NS);
        assert!(grants(&lease["rules"], "leases"));
        assert!(!grants(&lease["rules"], "secrets"));
    }
    let args = container_args(operator_deployment(&ns));
    assert!(args.contains(&"--watch-namespaces=team-a,team-b".to_string()));
}

/// (API group, resource, verbs) of each rule of the release's ClusterRole in `rendered`.
fn cluster_rules(rendered: &[Value]) -> Vec<(String, String, Vec<String>)> {
    find(rendered, "ClusterRole", RELEASE)["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["apiGroups"][0].as_str().unwrap().to_string(),
                r["resources"][0].as_str().unwrap().to_string(),
                verbs_of(r).into_iter().map(str::to_string).collect(),
            )
        })
        .collect()
}

/// Every rule comment of templates/rbac.yaml rendered with `args`: each rule has one.
fn assert_every_rule_has_a_comment(args: &[&str]) {
    let mut all = vec!["--show-only", "templates/rbac.yaml"];
    all.extend_from_slice(args);
    let text = render(&all);
    for block in text.split("\n---") {
        let lines: Vec<&str> = block.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.trim_start().starts_with("- apiGroups:") {
                assert!(
                    i > 0 && lines[i - 1].trim_start().starts_with('#'),
                    "rule without a comment in templates/rbac.yaml ({args:?}):\n{}",
                    lines[i.saturating_sub(2)..(i + 3).min(lines.len())].join("\n")
                );
            }
        }
    }
}

#[test]
fn rbac_grants_exactly_what_the_operator_uses() {
    let rendered = render_docs(&[]);
    let rules = find(&rendered, "ClusterRole", RELEASE)["rules"]
        .as_array()
        .unwrap()
        .clone();
    let got = cluster_rules(&rendered);
    let want: Vec<(String, String, Vec<String>)> = [
        (
            "ai.cxone.io",
            "skilltrainingjobs",
            vec!["get", "list", "watch", "patch"],
        ),
        (
            "ai.cxone.io",
            "skilltrainingjobs/status",
            vec!["get", "patch"],
        ),
        (
            "ai.cxone.io",
            "skilltrainingjobs/finalizers",
            vec!["update"],
        ),
        // Credentials and the metadata watch only: artifactSecrets.enabled is false.
        ("", "secrets", vec!["get", "list", "watch"]),
        ("", "configmaps", vec!["get", "list", "watch", "create"]),
        ("events.k8s.io", "events", vec!["create", "patch"]),
    ]
    .into_iter()
    .map(|(g, r, v)| {
        (
            g.to_string(),
            r.to_string(),
            v.into_iter().map(str::to_string).collect(),
        )
    })
    .collect();
    assert_eq!(got, want);
    // With artifactSecrets.enabled the Secret rule, and only it, gains create and patch.
    let on = cluster_rules(&render_docs(&["--set", "artifactSecrets.enabled=true"]));
    let want_on: Vec<(String, String, Vec<String>)> = want
        .iter()
        .cloned()
        .map(|(g, r, mut v)| {
            if r == "secrets" {
                v.extend(["create".to_string(), "patch".to_string()]);
            }
            (g, r, v)
        })
        .collect();
    assert_eq!(on, want_on);
    // No wildcard, no delete anywhere.
    for r in &rules {
        assert!(!verbs_of(r).contains(&"*") && !verbs_of(r).contains(&"delete"));
    }
    // Every rule carries a comment saying why (comments survive into the rendered YAML).
    assert_every_rule_has_a_comment(&[]);
    assert_every_rule_has_a_comment(&["--set", "artifactSecrets.enabled=true"]);
}

/// The verbs on Secrets of every Role and ClusterRole in `rendered` (by kind/namespace/name).
fn secret_verbs(rendered: &[Value]) -> Vec<(String, Vec<String>)> {
    rendered
        .iter()
        .filter(|d| kind(d) == "Role" || kind(d) == "ClusterRole")
        .flat_map(|d| {
            let what = format!(
                "{}/{}/{}",
                kind(d),
                d["metadata"]["namespace"].as_str().unwrap_or("-"),
                name(d)
            );
            d["rules"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| rule_grants(r, "secrets"))
                .map(move |r| {
                    (
                        what.clone(),
                        verbs_of(r).into_iter().map(str::to_string).collect(),
                    )
                })
        })
        .collect()
}

#[test]
fn artifact_secrets_value_gates_secret_writes_and_the_operator_flag() {
    const FLAG: &str = "--enable-artifact-secrets";
    let namespaced = ci_values("namespaced-values.yaml");
    for (label, base) in [
        ("cluster-wide", vec![]),
        ("namespaced", vec!["-f", namespaced.as_str()]),
    ] {
        // Off (the default): Secrets are read, never written, and the flag is absent.
        for off in [
            base.clone(),
            [base.as_slice(), &["--set", "artifactSecrets.enabled=false"]].concat(),
        ] {
            let rendered = render_docs(&off);
            let verbs = secret_verbs(&rendered);
            assert!(!verbs.is_empty(), "{label}: no rule grants Secrets");
            for (role, v) in &verbs {
                assert_eq!(v, &["get", "list", "watch"], "{label}: {role} ({off:?})");
            }
            let args = container_args(operator_deployment(&rendered));
            assert!(!args.iter().any(|a| a.contains(FLAG)), "{label}: {args:?}");
        }
        // On: the same rules gain create and patch, and the flag is passed once.
        let on = [base.as_slice(), &["--set", "artifactSecrets.enabled=true"]].concat();
        let rendered = render_docs(&on);
        let verbs = secret_verbs(&rendered);
        assert_eq!(
            verbs.len(),
            if label == "namespaced" { 2 } else { 1 },
            "{label}: {verbs:?}"
        );
        for (role, v) in &verbs {
            assert_eq!(
                v,
                &["get", "list", "watch", "create", "patch"],
                "{label}: {role}"
            );
        }
        let args = container_args(operator_deployment(&rendered));
        assert_eq!(
            args.iter().filter(|a| a.as_str() == FLAG).count(),
            1,
            "{label}: {args:?}"
        );
    }
    // The flag cannot sneak in through extraArgs (the RBAC would not match it).
    let err = fails(
        tool("helm")
            .args(["template", RELEASE])
            .arg(chart())
            .args(["--set-json", &format!(r#"extraArgs=["{FLAG}"]"#)]),
    );
    assert!(
        err.contains(FLAG) && err.contains("set the value instead"),
        "{err}"
    );
}

#[test]
fn leader_election_follows_replicas_unless_forced() {
    let elect = |args: &[&str]| {
        container_args(operator_deployment(&render_docs(args)))
            .iter()
            .any(|a| a == "--leader-elect")
    };
    assert!(!elect(&[]));
    assert!(elect(&["--set", "replicaCount=2"]));
    assert!(elect(&["--set", "leaderElection.enabled=true"]));
    assert!(!elect(&[
        "--set",
        "replicaCount=3",
        "--set",
        "leaderElection.enabled=false"
    ]));
    let args = container_args(operator_deployment(&render_docs(&[
        "--set",
        "replicaCount=2",
        "--set",
        "leaderElection.id=my-lease",
    ])));
    assert!(args.contains(&"--leader-election-id=my-lease".to_string()));
    let lease = render_docs(&["--set", "leaderElection.id=my-lease"]);
    assert_eq!(
        find(&lease, "Role", "cxone-skill-operator-leader-election")["rules"][0]["resourceNames"],
        json!(["my-lease"])
    );
}

#[test]
fn values_reach_the_operator_flags() {
    let args = container_args(operator_deployment(&render_docs(&[
        "--set-json",
        r#"operator={"allowedEndpoints":["https://api.*.cxone.com","https://gw.example/cxone"],"cxoneRateLimit":2.5,"concurrency":3,"logFormat":"text","logLevel":"debug","progressStep":10,"metricsPort":9090,"healthPort":9091}"#,
        "--set-json",
        r#"extraArgs=["--leader-election-namespace=elsewhere"]"#,
    ])));
    for want in [
        "run",
        "--metrics-bind-address=:9090",
        "--health-probe-bind-address=:9091",
        "--log-format=text",
        "--concurrency=3",
        "--cxone-rate-limit=2.5",
        "--progress-step=10",
        "--allowed-endpoints=https://api.*.cxone.com,https://gw.example/cxone",
        "--leader-election-namespace=elsewhere",
    ] {
        assert!(args.contains(&want.to_string()), "{want} not in {args:?}");
    }
    // A flag the chart sets from values cannot be repeated through extraArgs.
    let err = fails(
        tool("helm")
            .args(["template", RELEASE])
            .arg(chart())
            .args(["--set-json", r#"extraArgs=["--concurrency=3"]"#]),
    );
    assert!(err.contains("--concurrency=3") && err.contains("set the value instead"));
}

#[test]
fn optional_parts_render_only_when_enabled() {
    let default = render_docs(&[]);
    for k in [
        "ServiceMonitor",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "Secret",
    ] {
        assert!(of_kind(&default, k).is_empty(), "{k} rendered by default");
    }
    assert_eq!(of_kind(&default, "Deployment").len(), 1, "no simulator");
    let full = render_docs(&["-f", &ci_values("full-values.yaml")]);
    for k in ["ServiceMonitor", "PodDisruptionBudget"] {
        assert_eq!(of_kind(&full, k).len(), 1, "{k}");
    }
    // The operator's NetworkPolicy (networkPolicy.enabled) and the simulator's (see
    // simulator_network_policy_admits_only_the_operator).
    assert_eq!(of_kind(&full, "NetworkPolicy").len(), 2);
    // NetworkPolicy: egress to DNS, the API server CIDR and CXone (443), plus the simulator.
    let np = &find(&full, "NetworkPolicy", RELEASE)["spec"];
    let egress = np["egress"].as_array().unwrap();
    assert_eq!(egress[0]["ports"][0]["port"], 53);
    assert_eq!(egress[1]["to"][0]["ipBlock"]["cidr"], "10.96.0.1/32");
    assert_eq!(
        egress[2]["ports"],
        json!([{"port": 443, "protocol": "TCP"}])
    );
    assert_eq!(egress.len(), 4, "{egress:?}");
    let err = fails(
        tool("helm")
            .args(["template", RELEASE])
            .arg(chart())
            .args(["--set", "networkPolicy.enabled=true"]),
    );
    assert!(err.contains("networkPolicy.apiServer.cidrs"), "{err}");
}

#[test]
fn allowed_registries_reach_the_operator_and_its_network_policy() {
    let default = render_docs(&[]);
    let args = |docs: &[Value]| -> Vec<String> {
        find(docs, "Deployment", RELEASE)["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect()
    };
    assert!(
        !args(&default)
            .iter()
            .any(|a| a.starts_with("--allowed-registries")),
        "no registry is allowed by default"
    );
    let on = render_docs(&[
        "--set",
        "registries.allowed={registry.example.com/cxone,https://mlflow.example.com}",
        "--set",
        "registries.maxConcurrent=2",
        "--set",
        "networkPolicy.enabled=true",
        "--set",
        "networkPolicy.apiServer.cidrs={10.96.0.1/32}",
    ]);
    let a = args(&on);
    assert!(
        a.contains(
            &"--allowed-registries=registry.example.com/cxone,https://mlflow.example.com"
                .to_string()
        ),
        "{a:?}"
    );
    assert!(a.contains(&"--max-concurrent-registrations=2".to_string()));
    let egress = find(&on, "NetworkPolicy", RELEASE)["spec"]["egress"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        egress.len(),
        4,
        "DNS, API server, CXone, registries: {egress:?}"
    );
    assert_eq!(
        egress[3]["ports"],
        json!([{"port": 443, "protocol": "TCP"}])
    );
    let err = fails(
        tool("helm")
            .args(["template", RELEASE])
            .arg(chart())
            .args(["--set", "registries.allowed={ftp://x y}"]),
    );
    assert!(err.contains("/registries/allowed/0"), "{err}");
}

#[test]
fn simulator_takes_credentials_from_a_secret_and_is_allowed_by_the_operator() {
    let full = render_docs(&["-f", &ci_values("full-values.yaml")]);
    let sim = find(&full, "Deployment", "cxone-skill-operator-simulator");
    let container = &sim["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(args[0], "simulate");
    assert!(args.contains(&"--clients-file=/etc/cxone-simulator/clients"));
    // The staging simulator keeps its /_sim admin endpoints off (the simulator's default).
    assert!(
        !args.iter().any(|a| a.starts_with("--admin")),
        "admin endpoints enabled: {args:?}"
    );
    for a in &args {
        assert!(
            !a.contains("staging-secret") && !a.starts_with("--client-secret"),
            "credentials on the command line: {a}"
        );
    }
    assert!(container["env"].is_null(), "no credentials in env either");
    let secret = find(&full, "Secret", "cxone-skill-operator-simulator");
    assert_eq!(
        secret["stringData"]["clients"],
        "staging-client:staging-secret\nread-only:read-only-secret:ai.training.read\n"
    );
    assert_eq!(
        sim["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"],
        "cxone-skill-operator-simulator"
    );
    let url = "http://cxone-skill-operator-simulator.cxone-skill-operator-system.svc:8089";
    assert!(
        container_args(operator_deployment(&full)).contains(&format!(
            "--allowed-endpoints=https://api.*.cxone.com,{url}"
        ))
    );
    find(&full, "Service", "cxone-skill-operator-simulator");
    // An existing Secret: referenced, not created.
    let existing = render_docs(&[
        "--set",
        "simulator.enabled=true",
        "--set",
        "simulator.clients.existingSecret=sim-clients",
    ]);
    assert!(of_kind(&existing, "Secret").is_empty());
    let sim = find(&existing, "Deployment", "cxone-skill-operator-simulator");
    assert_eq!(
        sim["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"],
        "sim-clients"
    );
    // No credentials at all: a clear error.
    let err = fails(
        tool("helm")
            .args(["template", RELEASE])
            .arg(chart())
            .args(["--set", "simulator.enabled=true"]),
    );
    assert!(err.contains("simulator.clients.existingSecret"), "{err}");
}

/// True when `selector` (a LabelSelector with matchLabels only) selects an object with `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    assert!(
        selector.get("matchExpressions").is_none(),
        "matchExpressions are not expected: {selector}"
    );
    let want = selector["matchLabels"].as_object().expect("matchLabels");
    !want.is_empty() && want.iter().all(|(k, v)| &labels[k] == v)
}

#[test]
fn simulator_network_policy_admits_only_the_operator() {
    let sim_name = "cxone-skill-operator-simulator";
    for (port, extra) in [(8089, vec![]), (9000, vec!["--set", "simulator.port=9000"])] {
        let mut args = vec![
            "--set",
            "simulator.enabled=true",
            "--set",
            "simulator.clients.existingSecret=sim-clients",
        ];
        args.extend(extra);
        let rendered = render_docs(&args);
        // Only the simulator's policy: networkPolicy.enabled (the operator's) is off.
        assert_eq!(of_kind(&rendered, "NetworkPolicy").len(), 1);
        let np = find(&rendered, "NetworkPolicy", sim_name);
        assert_eq!(np["metadata"]["namespace"], SYSTEM_NS);
        let spec = &np["spec"];
        let sim = find(&rendered, "Deployment", sim_name);
        let operator = operator_deployment(&rendered);
        assert_eq!(sim["metadata"]["namespace"], SYSTEM_NS);
        assert_eq!(operator["metadata"]["namespace"], SYSTEM_NS);
        let sim_pod_labels = &sim["spec"]["template"]["metadata"]["labels"];
        let operator_pod_labels = &operator["spec"]["template"]["metadata"]["labels"];
        // It selects the simulator's pods, and not the operator's.
        assert!(selects(&spec["podSelector"], sim_pod_labels), "{spec}");
        assert!(
            !selects(&spec["podSelector"], operator_pod_labels),
            "{spec}"
        );
        assert_eq!(spec["podSelector"], sim["spec"]["selector"]);
        // Ingress and egress are both isolated; no egress rule at all.
        assert_eq!(spec["policyTypes"], json!(["Ingress", "Egress"]));
        assert!(
            spec["egress"].as_array().is_none_or(Vec::is_empty),
            "the simulator needs no egress: {spec}"
        );
        // One ingress rule: from the operator's pods (same namespace: a bare podSelector), to
        // the simulator's port only.
        let ingress = spec["ingress"].as_array().expect("ingress rules");
        assert_eq!(ingress.len(), 1, "{spec}");
        let from = ingress[0]["from"].as_array().expect("from");
        assert_eq!(from.len(), 1, "{spec}");
        let peer = from[0].as_object().unwrap();
        assert_eq!(
            peer.keys().collect::<Vec<_>>(),
            ["podSelector"],
            "no namespaceSelector or ipBlock: {spec}"
        );
        assert_eq!(from[0]["podSelector"], operator["spec"]["selector"]);
        assert!(selects(&from[0]["podSelector"], operator_pod_labels));
        assert!(!selects(&from[0]["podSelector"], sim_pod_labels));
        assert_eq!(
            ingress[0]["ports"],
            json!([{"port": port, "protocol": "TCP"}])
        );
        let container = &sim["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["ports"][0]["containerPort"], port);
        assert!(
            container_args(sim).contains(&format!("--listen=0.0.0.0:{port}")),
            "{sim}"
        );
    }
    // No simulator, no simulator policy.
    assert!(
        render_docs(&[])
            .iter()
            .all(|d| !(kind(d) == "NetworkPolicy" && name(d) == sim_name))
    );
}

// ---- the CRD ----------------------------------------------------------------------------------

fn crds_dir_doc() -> Value {
    docs(&read(
        &repo().join("crds/skilltrainingjobs.ai.cxone.io.yaml"),
    ))
    .remove(0)
}

#[test]
fn chart_crd_is_crds_dir_plus_keep_annotation() {
    let source = read(&repo().join("crds/skilltrainingjobs.ai.cxone.io.yaml"));
    for copy in [
        "charts/cxone-skill-operator/files/crds/skilltrainingjobs.ai.cxone.io.yaml",
        "deploy/crds/skilltrainingjobs.ai.cxone.io.yaml",
    ] {
        assert!(
            read(&repo().join(copy)) == source,
            "{copy} differs from crds/skilltrainingjobs.ai.cxone.io.yaml: run `make chart-crd`"
        );
    }
    // Text: the rendered CRD is the file's document, byte for byte.
    let body = |text: &str| -> String {
        let start = text.find("\napiVersion:").map(|i| i + 1).unwrap_or(0);
        text[start..].trim_end().to_string()
    };
    let rendered = render(&[
        "--show-only",
        "templates/crd.yaml",
        "--set",
        "crds.keep=false",
    ]);
    assert!(
        body(&rendered) == body(&source),
        "templates/crd.yaml does not emit crds/skilltrainingjobs.ai.cxone.io.yaml verbatim"
    );
    // Structure: equal as objects, and only the annotations added with crds.keep.
    let want = crds_dir_doc();
    let plain = render_docs(&[
        "--show-only",
        "templates/crd.yaml",
        "--set",
        "crds.keep=false",
    ]);
    assert_eq!(plain.len(), 1);
    assert_same("chart CRD (crds.keep=false) and crds/", &plain[0], &want);

    let kept = render_docs(&["--show-only", "templates/crd.yaml"]);
    let mut want_kept = want.clone();
    want_kept["metadata"]["annotations"] = json!({"helm.sh/resource-policy": "keep"});
    assert_same("chart CRD (default) and crds/ + keep", &kept[0], &want_kept);

    let none = render(&["--set", "crds.install=false"]);
    assert!(!none.contains("kind: CustomResourceDefinition"));
}

// ---- deploy/ ----------------------------------------------------------------------------------

/// The manifests deploy/kustomization.yaml lists, in order.
fn deploy_docs() -> Vec<Value> {
    let dir = repo().join("deploy");
    let k = docs(&read(&dir.join("kustomization.yaml"))).remove(0);
    assert_eq!(k["namespace"], SYSTEM_NS);
    k["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .flat_map(|r| docs(&read(&dir.join(r.as_str().unwrap()))))
        .collect()
}

#[test]
fn deploy_manifests_match_the_chart_with_default_values() {
    let deploy = deploy_docs();
    let chart = render_docs(&[]);
    let cluster_scoped = [
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
    ];
    for d in &deploy {
        if !cluster_scoped.contains(&kind(d)) {
            assert_eq!(
                d["metadata"]["namespace"],
                SYSTEM_NS,
                "{}/{}",
                kind(d),
                name(d)
            );
        }
    }
    // Every object of the chart exists in deploy/ (plus the Namespace there).
    for c in &chart {
        find(&deploy, kind(c), name(c));
    }
    for (k, n, field) in [
        ("ClusterRole", RELEASE, "rules"),
        ("ClusterRoleBinding", RELEASE, "roleRef"),
        ("ClusterRoleBinding", RELEASE, "subjects"),
        ("Role", "cxone-skill-operator-leader-election", "rules"),
        (
            "RoleBinding",
            "cxone-skill-operator-leader-election",
            "roleRef",
        ),
        (
            "RoleBinding",
            "cxone-skill-operator-leader-election",
            "subjects",
        ),
        ("ServiceAccount", RELEASE, "automountServiceAccountToken"),
        ("Service", "cxone-skill-operator-metrics", "spec"),
    ] {
        assert_same(
            &format!("{k}/{n} {field} of deploy/ and the chart"),
            &find(&deploy, k, n)[field],
            &find(&chart, k, n)[field],
        );
    }
    let (d, c) = (
        &find(&deploy, "Deployment", RELEASE)["spec"],
        &find(&chart, "Deployment", RELEASE)["spec"],
    );
    for field in ["replicas", "selector"] {
        assert_same(&format!("Deployment {field}"), &d[field], &c[field]);
    }
    let (dp, cp) = (&d["template"]["spec"], &c["template"]["spec"]);
    assert_same(
        "pod securityContext of deploy/ and the chart",
        &dp["securityContext"],
        &cp["securityContext"],
    );
    assert_same(
        "container securityContext of deploy/ and the chart",
        &dp["containers"][0]["securityContext"],
        &cp["containers"][0]["securityContext"],
    );
    // The whole pod spec too: args, env, probes, resources, volumes.
    assert_same("pod spec of deploy/ and the chart", dp, cp);
}

// ---- Dockerfile -------------------------------------------------------------------------------

#[test]
fn dockerfile_passes_hadolint_and_builds_a_non_root_image() {
    let dockerfile = repo().join("Dockerfile");
    let out = run(tool("hadolint").arg(&dockerfile));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "hadolint Dockerfile:\n{report}"
    );
    // hadolint is really checking: an unpinned base image is reported.
    let bad = temp_file("Dockerfile", "FROM debian\nRUN echo hi\n");
    let report = fails(tool("hadolint").arg(&bad));
    assert!(report.contains("DL3006"), "{report}");
    let _ = std::fs::remove_file(bad);

    let text = read(&dockerfile);
    for want in [
        "cargo build --release --locked",
        // The runtime base is a build argument (hack/image.sh passes a local equivalent).
        "ARG BASE_IMAGE=gcr.io/distroless/cc-debian12:nonroot",
        "FROM ${BASE_IMAGE}",
        "USER 65532:65532",
        r#"ENTRYPOINT ["/cxone-skill-operator"]"#,
        r#"CMD ["run"]"#,
        "org.opencontainers.image.title",
        "org.opencontainers.image.version",
        "org.opencontainers.image.licenses",
        "COPY Cargo.toml Cargo.lock ./",
    ] {
        assert!(text.contains(want), "Dockerfile lacks {want:?}");
    }
    // Manifests are copied (and dependencies built) before the sources.
    let manifests = text.find("COPY Cargo.toml Cargo.lock").unwrap();
    let sources = text.find("COPY src ./src").expect("COPY src");
    assert!(manifests < sources);
    // Every directory holding a target of Cargo.toml is copied and not docker-ignored (cargo
    // refuses to load a package whose declared target files are missing).
    let ignore = read(&repo().join(".dockerignore"));
    let manifest = read(&repo().join("Cargo.toml"));
    let mut dirs: BTreeSet<String> = manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("path = \""))
        .filter_map(|p| p.split('/').next())
        .map(str::to_string)
        .collect();
    dirs.insert("src".into());
    if manifest.contains("[[bench]]") {
        dirs.insert("benches".into());
    }
    for dir in &dirs {
        assert!(
            text.contains(&format!("COPY {dir} ./{dir}")),
            "the Dockerfile does not copy {dir}/, which Cargo.toml needs"
        );
        assert!(
            !ignore
                .lines()
                .any(|l| l.trim().trim_end_matches('/') == dir.as_str()),
            ".dockerignore excludes {dir}/, which Cargo.toml needs"
        );
    }
    for want in ["target/", ".git/"] {
        assert!(
            ignore.lines().any(|l| l.trim() == want),
            ".dockerignore lacks {want}"
        );
    }
}

// ---- Argo CD health check ---------------------------------------------------------------------

/// Runs `argocd-lua` (hack/argocd-lua, built by hack/tools.sh): `script` in gopher-lua with the
/// libraries Argo CD opens for an argocd-cm health check (all of them with `open_libs`, as
/// `useOpenLibs: true` does), `obj` = the JSON or YAML file `object`.
fn argocd_lua(script: &Path, object: &Path, open_libs: bool) -> Command {
    let mut cmd = tool("argocd-lua");
    if open_libs {
        cmd.arg("-use-open-libs");
    }
    cmd.arg(script).arg(object);
    cmd
}

/// The (status, message) the runner printed.
fn health_of(stdout: &str) -> (String, String) {
    let v: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("argocd-lua printed no JSON health ({e}): {stdout}"));
    let field = |k: &str| {
        v[k].as_str()
            .unwrap_or_else(|| panic!("argocd-lua printed no {k}: {stdout}"))
            .to_string()
    };
    (field("status"), field("message"))
}

/// health.lua on `object` (a JSON or YAML file), as Argo CD evaluates it.
fn run_health(object: &Path) -> (String, String) {
    health_of(&ok(&mut argocd_lua(
        &health_dir().join("health.lua"),
        object,
        false,
    )))
}

/// Runs the Lua `script` on a minimal object; Ok(health) or Err(stdout + stderr).
fn run_script(script: &str, open_libs: bool) -> Result<(String, String), String> {
    let file = temp_file("probe.lua", script);
    let object = temp_file(
        "probe.json",
        r#"{"apiVersion":"ai.cxone.io/v1alpha1","kind":"SkillTrainingJob","metadata":{"name":"x","generation":2}}"#,
    );
    let out = run(&mut argocd_lua(&file, &object, open_libs));
    let _ = std::fs::remove_file(file);
    let _ = std::fs::remove_file(object);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(health_of(&stdout))
    } else {
        Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

#[test]
fn argo_cd_health_check_passes_every_test_case_in_argo_cds_lua_runtime() {
    let dir = health_dir();
    let tests = docs(&read(&dir.join("health_test.yaml"))).remove(0);
    let cases = tests["tests"].as_array().expect("tests");
    let mut used = BTreeSet::new();
    let mut statuses = BTreeSet::new();
    let mut failures = Vec::new();
    for case in cases {
        let input = case["inputPath"].as_str().expect("inputPath");
        used.insert(input.to_string());
        let want_status = case["healthStatus"]["status"].as_str().unwrap();
        let want_message = case["healthStatus"]["message"].as_str().unwrap_or("");
        statuses.insert(want_status.to_string());
        let (status, message) = run_health(&dir.join(input));
        if status != want_status || message != want_message {
            failures.push(format!(
                "{input}: want {want_status} {want_message:?}, got {status} {message:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "health.lua:\n{}", failures.join("\n"));
    // Every testdata file has a case, and every outcome is covered.
    for entry in std::fs::read_dir(dir.join("testdata")).unwrap() {
        let file = format!("testdata/{}", entry.unwrap().file_name().to_string_lossy());
        assert!(
            used.contains(&file),
            "{file} has no case in health_test.yaml"
        );
    }
    for s in ["Healthy", "Progressing", "Degraded", "Suspended"] {
        assert!(statuses.contains(s), "no case expects {s}");
    }
    // Strings the JSON-to-Lua conversion must carry through unchanged, and a generation that
    // arrives as a string or with a fraction is still printed as a whole number.
    let tricky = json!({
        "metadata": {"generation": 1},
        "status": {"observedGeneration": 1, "phase": "Training",
                   "message": "quote \" backslash \\ newline\nend ünïcode"}
    });
    let file = temp_file("tricky.json", &tricky.to_string());
    assert_eq!(
        run_health(&file),
        (
            "Progressing".to_string(),
            "quote \" backslash \\ newline\nend ünïcode".to_string()
        )
    );
    for (generation, want) in [(json!("7"), "7"), (json!(12.5), "12"), (json!(null), "0")] {
        let obj = json!({"metadata": {"generation": generation}, "status": {"phase": "Pending"}});
        let file = temp_file("generation.json", &obj.to_string());
        assert_eq!(
            run_health(&file),
            (
                "Progressing".to_string(),
                format!("waiting for the operator to observe generation {want}")
            ),
            "generation {generation}"
        );
        let _ = std::fs::remove_file(file);
    }
}

#[test]
fn argocd_lua_runner_is_as_strict_as_argo_cd() {
    // What a health script sees: package, base and table; the safe os only through require.
    let (_, seen) = run_script(
        r#"local seen = {}
        for _, name in ipairs({"math", "string", "os", "io", "debug", "coroutine", "channel",
                               "package", "table", "require", "pairs", "ipairs", "tostring",
                               "tonumber", "type", "pcall", "obj"}) do
          if _G[name] ~= nil then table.insert(seen, name) end
        end
        local safe = require("os")
        for _, name in ipairs({"time", "date", "clock", "exit", "execute", "getenv", "remove"}) do
          if safe[name] ~= nil then table.insert(seen, "os." .. name) end
        end
        return {status = "Healthy", message = table.concat(seen, " ")}"#,
        false,
    )
    .expect("the probe runs");
    assert_eq!(
        seen,
        "package table require pairs ipairs tostring tonumber type pcall obj os.time os.date"
    );
    // Scripts that work in Lua 5.1 with every library open, and fail in Argo CD: the runner
    // fails them, and succeeds with the same script once every library is open (so the failure
    // is the missing library, nothing else).
    for (script, error, open_result) in [
        (
            r#"return {status = "Healthy", message = tostring(math.floor(2.5))}"#,
            "'floor'",
            "2",
        ),
        (
            r#"return {status = "Healthy", message = ("x"):upper()}"#,
            "upper",
            "X",
        ),
        (
            r#"local s = "abc" return {status = "Healthy", message = s:sub(1, 2)}"#,
            "sub",
            "ab",
        ),
        (
            r#"return {status = "Healthy", message = string.format("%d", 3)}"#,
            "'format'",
            "3",
        ),
        (
            r#"return {status = "Healthy", message = tostring(os.time() > 0)}"#,
            "'time'",
            "true",
        ),
    ] {
        let err = run_script(script, false)
            .expect_err(&format!("{script} must fail in Argo CD's runtime"));
        assert!(
            err.contains("probe.lua") && err.contains(error),
            "{script}: the error should name {error}: {err}"
        );
        assert_eq!(
            run_script(script, true),
            Ok(("Healthy".to_string(), open_result.to_string())),
            "{script} with every library open"
        );
    }
    // The safe os works where Argo CD offers it.
    assert_eq!(
        run_script(
            r#"local os = require("os") return {status = "Healthy", message = os.date("!%Y-%m-%d", 86400)}"#,
            false
        ),
        Ok(("Healthy".to_string(), "1970-01-02".to_string()))
    );
    // What Argo CD does with the result: an unknown status is Unknown; a non-table is an error.
    assert_eq!(
        run_script(r#"return {status = "Fine", message = "x"}"#, false),
        Ok((
            "Unknown".to_string(),
            "Lua returned an invalid health status".to_string()
        ))
    );
    for (script, error) in [
        (
            r#"return "Healthy""#,
            "expect table output from Lua script, not string",
        ),
        ("local hs = {}", "not nil"),
        ("return {status = ", "does not load"),
        (r#"error("boom")"#, "boom"),
        (
            r#"return {status = "Healthy", message = {1, 2}}"#,
            "cannot unmarshal array",
        ),
        ("while true do end", "ran longer than 1s"),
    ] {
        let err = run_script(script, false).expect_err(script);
        assert!(err.contains(error), "{script}: want {error:?} in: {err}");
    }
    // Bad input is named, with exit code 2.
    let script = health_dir().join("health.lua");
    let two = temp_file("two.yaml", "kind: A\n---\nkind: B\n");
    let list = temp_file("list.json", "[1, 2]");
    let broken = temp_file("broken.yaml", "metadata: {name: [\n");
    for (object, error) in [
        (two.clone(), "holds 2 YAML documents"),
        (list.clone(), "not an object"),
        (broken.clone(), "not valid JSON or YAML"),
        (
            PathBuf::from("/nonexistent/obj.yaml"),
            "cannot read the object",
        ),
    ] {
        let out = run(&mut argocd_lua(&script, &object, false));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{object:?}: {stderr}");
        assert!(
            stderr.contains(error),
            "{object:?}: want {error:?} in {stderr}"
        );
    }
    for f in [two, list, broken] {
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn health_lua_uses_no_library_argo_cd_leaves_out() {
    // A cheap guard next to the runtime test: no reference to a library Argo CD does not open
    // for an argocd-cm health script (comments included, so nobody is misled).
    let script = read(&health_dir().join("health.lua"));
    for lib in ["math", "string", "os", "io", "debug", "coroutine", "utf8"] {
        for (at, _) in script.match_indices(lib) {
            let before = script[..at].chars().next_back();
            let after = script[at + lib.len()..].chars().next();
            let word_start = !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            assert!(
                !(word_start && matches!(after, Some('.') | Some('[') | Some(':'))),
                "health.lua uses {lib}{}, which Argo CD does not open: line {}",
                after.unwrap(),
                script[..at].lines().count()
            );
        }
    }
    // The guard sees such a use.
    let sample = "local x = math.floor(1)";
    assert!(sample.match_indices("math").any(|(at, _)| {
        sample[at + 4..].starts_with('.')
            && !sample[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
    }));
}

#[test]
fn argocd_cm_carries_the_health_check_verbatim() {
    let cm = docs(&read(&repo().join("deploy/argocd/argocd-cm.yaml"))).remove(0);
    assert_eq!(kind(&cm), "ConfigMap");
    assert_eq!(name(&cm), "argocd-cm");
    let script = read(&health_dir().join("health.lua"));
    assert!(
        cm["data"]["resource.customizations.health.ai.cxone.io_SkillTrainingJob"] == script,
        "deploy/argocd/argocd-cm.yaml is stale: run `make argocd-cm`"
    );
}

#[test]
fn argocd_application_uses_server_side_apply_and_orders_crds_first() {
    let apps = docs(&read(&repo().join("deploy/argocd/application.yaml")));
    assert!(apps.len() >= 2);
    let wave = |a: &Value| -> i64 {
        a["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]
            .as_str()
            .unwrap_or("0")
            .parse()
            .unwrap()
    };
    for app in &apps {
        assert_eq!(kind(app), "Application");
        let options: Vec<&str> = app["spec"]["syncPolicy"]["syncOptions"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(options.contains(&"ServerSideApply=true"), "{}", name(app));
        assert!(
            options.contains(&"SkipDryRunOnMissingResource=true"),
            "{}",
            name(app)
        );
    }
    let operator = &apps[0];
    assert_eq!(
        operator["spec"]["source"]["path"],
        "charts/cxone-skill-operator"
    );
    assert!(apps[1..].iter().all(|a| wave(operator) < wave(a)));
    // The Application's values are valid for the chart.
    let values =
        serde_json::to_string(&operator["spec"]["source"]["helm"]["valuesObject"]).unwrap();
    let file = temp_file("argocd-values.json", &values);
    let rendered = render_docs(&["-f", &file.to_string_lossy()]);
    let crd = find(
        &rendered,
        "CustomResourceDefinition",
        "skilltrainingjobs.ai.cxone.io",
    );
    assert_eq!(
        crd["metadata"]["annotations"]["argocd.argoproj.io/sync-options"],
        "Prune=false,ServerSideApply=true"
    );
    let _ = std::fs::remove_file(file);
}

// ---- against the test API server --------------------------------------------------------------

#[tokio::test]
async fn deploy_and_chart_manifests_are_accepted_by_the_api_server() {
    let cp = support::control_plane().await;
    // kubectl apply -k deploy/ (the README's plain-manifest install).
    let out = cp
        .kubectl()
        .args([
            "apply",
            "--server-side",
            "--field-manager=packaging-test",
            "-k",
        ])
        .arg(repo().join("deploy"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl apply -k deploy/:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let admin = cp.client().await;
    Api::<ClusterRole>::all(admin.clone())
        .get(RELEASE)
        .await
        .expect("ClusterRole from deploy/");
    Api::<Role>::namespaced(admin.clone(), SYSTEM_NS)
        .get("cxone-skill-operator-leader-election")
        .await
        .expect("Lease Role from deploy/");
    // deploy/ is the chart's default (artifactSecrets.enabled=false): its ServiceAccount reads
    // Secrets (credentials) and cannot create or patch one, as the API server's authorizer says.
    let token = cp.service_account_token(SYSTEM_NS, RELEASE).await;
    let sa = cp.client_with_token(&token).await;
    let probe_ns = cp.namespace("pkg-deploy-secrets").await;
    let sa_secrets: Api<Secret> = Api::namespaced(sa, probe_ns.name());
    sa_secrets
        .list(&ListParams::default())
        .await
        .expect("deploy/'s ServiceAccount lists Secrets (credentials)");
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "artifact-urls"},
        "stringData": {"modelWeightsUrl": "https://example.invalid/w"}
    }))
    .unwrap();
    assert!(
        is_forbidden(sa_secrets.create(&PostParams::default(), &secret).await),
        "deploy/'s ServiceAccount must not create Secrets"
    );
    assert!(
        is_forbidden(
            sa_secrets
                .patch(
                    "artifact-urls",
                    &kube::api::PatchParams::apply("packaging-test"),
                    &kube::api::Patch::Apply(&secret),
                )
                .await
        ),
        "deploy/'s ServiceAccount must not apply Secrets"
    );
    // Every object of the full-values render, server-side dry run (namespaced to a test
    // namespace; the ServiceMonitor needs the Prometheus Operator's CRD and is left out).
    let ns = cp.namespace("pkg-dryrun").await;
    let rendered = docs(&ok(tool("helm")
        .args(["template", "dry"])
        .arg(chart())
        .args(["--namespace", ns.name()])
        .args(["-f", &ci_values("full-values.yaml")])
        .args([
            "--set-json",
            &format!(r#"watchNamespaces=["{}"]"#, ns.name()),
        ])));
    let text: String = rendered
        .iter()
        .filter(|d| !SKIP_VALIDATE_KINDS.contains(&kind(d)))
        .map(|d| format!("---\n{}\n", serde_json::to_string(d).unwrap()))
        .collect();
    let file = temp_file("full-render.yaml", &text);
    let out = cp
        .kubectl()
        .args([
            "apply",
            "--server-side",
            "--dry-run=server",
            "--field-manager=packaging-test",
            "-f",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "server-side dry run of the full render:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_file(file);
}

/// The install tests share the control plane; run them one at a time so a cluster-wide
/// operator never sees the other test's jobs.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Namespaced,
    ClusterWide,
}

fn helm_at(cp: &support::ControlPlane) -> Command {
    let mut cmd = tool("helm");
    cmd.arg("--kubeconfig").arg(cp.kubeconfig_path());
    cmd
}

fn is_forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(ref s)) if s.code == 403)
}

/// Polls `probe` until it yields a value; on timeout panics with the operator's log.
async fn wait_for<T, F, Fut>(w: &World, what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        if Instant::now() >= deadline {
            let log = w.operator_log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "timed out after {timeout:?} waiting for {what}\noperator log (newest first):\n{}",
                tail.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn install_and_train(mode: Mode) {
    let _serial = SERIAL.lock().await;
    let cp = support::control_plane().await;
    let prefix = match mode {
        Mode::Namespaced => "pkg-ns-jobs",
        Mode::ClusterWide => "pkg-cw-jobs",
    };
    let mut w = World::new(
        prefix,
        SimulatorConfig {
            job_duration: Duration::from_millis(2000),
            ..SimulatorConfig::default()
        },
    )
    .await;
    w.put_secret("cxone-credentials", CLIENT_ID, CLIENT_SECRET)
        .await;
    let release_ns = cp.namespace("pkg-release").await;
    let release = match mode {
        Mode::Namespaced => "stj-ns",
        Mode::ClusterWide => "stj-cw",
    };
    let fullname = format!("{release}-cxone-skill-operator");
    let values = match mode {
        // The harness installed the CRD already. The job below writes its artifact URLs into
        // a Secret (spec.artifacts.secretName), so artifact Secrets are on.
        Mode::Namespaced => json!({
            "crds": {"install": false},
            "watchNamespaces": [w.ns.name()],
            "leaderElection": {"enabled": true},
            "artifactSecrets": {"enabled": true},
        }),
        // The chart's CRD template against the real API server: the release takes over the
        // CRD the harness applied, and keeps it on uninstall.
        Mode::ClusterWide => json!({
            "replicaCount": 2,
            "crds": {"install": true},
            "artifactSecrets": {"enabled": true},
        }),
    };
    let values_file = temp_file("install-values.json", &values.to_string());
    let mut install = helm_at(cp);
    install
        .args(["install", release])
        .arg(chart())
        .args(["--namespace", release_ns.name(), "--timeout", "2m"])
        .arg("-f")
        .arg(&values_file);
    if mode == Mode::ClusterWide {
        install.arg("--take-ownership");
    }
    let notes = ok(&mut install);
    for want in [
        "create secret generic cxone-credentials",
        "kind: SkillTrainingJob",
        "kubectl get stj",
    ] {
        assert!(notes.contains(want), "NOTES lack {want:?}:\n{notes}");
    }
    let manifest = docs(&ok(helm_at(cp).args([
        "get",
        "manifest",
        release,
        "--namespace",
        release_ns.name(),
    ])));
    let admin = cp.client().await;
    match mode {
        Mode::Namespaced => {
            assert!(of_kind(&manifest, "ClusterRole").is_empty());
            Api::<Role>::namespaced(admin.clone(), w.ns.name())
                .get(&fullname)
                .await
                .expect("the chart's Role in the watched namespace");
        }
        Mode::ClusterWide => {
            Api::<ClusterRole>::all(admin.clone())
                .get(&fullname)
                .await
                .expect("the chart's ClusterRole");
        }
    }

    // The flags the chart's Deployment passes, as a process: the harness sets the bind
    // addresses and the log format; POD_NAMESPACE (downward API) becomes the Lease namespace;
    // the only allowed endpoint is the simulator. --enable-artifact-secrets (the job writes its
    // artifact URLs into a Secret) comes from the rendered args like every other flag.
    let deployment = operator_deployment(&manifest);
    let rendered_args = container_args(deployment);
    assert!(
        rendered_args
            .iter()
            .any(|a| a == "--enable-artifact-secrets"),
        "{rendered_args:?}"
    );
    let mut args: Vec<String> = rendered_args
        .into_iter()
        .filter(|a| {
            a != "run"
                && !a.starts_with("--metrics-bind-address")
                && !a.starts_with("--health-probe-bind-address")
                && !a.starts_with("--log-format")
        })
        .map(|a| {
            if a.starts_with("--allowed-endpoints=") {
                format!("--allowed-endpoints={}", w.sim_url())
            } else {
                a
            }
        })
        .collect();
    assert!(args.iter().any(|a| a == "--leader-elect"), "{args:?}");
    if mode == Mode::Namespaced {
        assert!(args.contains(&format!("--watch-namespaces={}", w.ns.name())));
    } else {
        assert!(!args.iter().any(|a| a.starts_with("--watch-namespaces")));
    }
    args.push(format!("--leader-election-namespace={}", release_ns.name()));
    let sa = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(sa, fullname);
    let token = cp.service_account_token(release_ns.name(), &sa).await;
    let kubeconfig = cp.write_kubeconfig(&format!("{release}-sa.kubeconfig"), &token, None);
    w.operator = Some(OperatorProcess::start(cp, &kubeconfig, &args));

    // A job that reads a ConfigMap and writes an artifact Secret, so every rule is used.
    let csv = "text,label\ncancel now,cancel_sub\nstop my plan,cancel_sub\nupgrade me,upgrade_plan\nmore features please,upgrade_plan\n";
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "utterances"},
        "data": {"data.csv": csv}
    }))
    .unwrap();
    w.ns.api::<ConfigMap>()
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let mut job = guide_job(
        "packaged",
        &w.sim_url(),
        json!({
            "utterancesFrom": [{"configMapKeyRef": {"name": "utterances", "key": "data.csv"}, "format": "csv"}],
            "artifacts": {"secretName": "packaged-artifacts"},
        }),
    );
    job["spec"]["labels"] = json!([
        {"id": "cancel_sub", "name": "Cancel"}, {"id": "upgrade_plan", "name": "Upgrade"}
    ]);
    job["spec"].as_object_mut().unwrap().remove("utterances");
    w.create_job(job).await;
    let done = w
        .wait_job("packaged", JOB_TIMEOUT, "Succeeded", |j| {
            phase(j) == Some(Phase::Succeeded)
        })
        .await;

    let status = done.status.clone().unwrap();
    let audit = status.audit.clone().expect("audit record");
    w.ns.api::<ConfigMap>()
        .get(&audit.config_map)
        .await
        .expect("audit ConfigMap created as the ServiceAccount");
    let artifacts =
        w.ns.api::<Secret>()
            .get("packaged-artifacts")
            .await
            .expect("artifact Secret applied as the ServiceAccount");
    assert_eq!(
        artifacts.metadata.owner_references.unwrap()[0].name,
        "packaged"
    );
    let events: Api<Event> = w.ns.api();
    wait_for(&w, "Events about the job", Duration::from_secs(20), || {
        let events = events.clone();
        async move {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .any(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("packaged"))
                .then_some(())
        }
    })
    .await;
    let leases: Api<Lease> = Api::namespaced(admin.clone(), release_ns.name());
    let holder = wait_for(
        &w,
        "the leader election Lease",
        Duration::from_secs(20),
        || {
            let leases = leases.clone();
            async move {
                let lease = leases.get_opt("cxone-skill-operator").await.ok()??;
                lease.spec?.holder_identity
            }
        },
    )
    .await;
    assert!(!holder.is_empty());

    // What the ServiceAccount may not do.
    let sa_client = cp.client_with_token(&token).await;
    let elsewhere = cp.namespace("pkg-elsewhere").await;
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "not-yours"},
        "stringData": {"password": "hunter2"}
    }))
    .unwrap();
    elsewhere
        .api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let sa_secrets_elsewhere: Api<Secret> = Api::namespaced(sa_client.clone(), elsewhere.name());
    let sa_secrets_watched: Api<Secret> = Api::namespaced(sa_client.clone(), w.ns.name());
    assert!(
        is_forbidden(
            sa_secrets_watched
                .delete("cxone-credentials", &DeleteParams::default())
                .await
        ),
        "the ServiceAccount must not delete Secrets"
    );
    assert!(
        is_forbidden(
            Api::<CustomResourceDefinition>::all(sa_client.clone())
                .get("skilltrainingjobs.ai.cxone.io")
                .await
        ),
        "the ServiceAccount must not read CRDs"
    );
    match mode {
        Mode::Namespaced => {
            assert!(
                is_forbidden(sa_secrets_elsewhere.get("not-yours").await),
                "a namespaced install must not read Secrets of an unwatched namespace"
            );
            assert!(
                is_forbidden(
                    Api::<Secret>::all(sa_client.clone())
                        .list(&ListParams::default())
                        .await
                ),
                "a namespaced install must not list Secrets cluster-wide"
            );
            assert!(
                is_forbidden(
                    Api::<Secret>::namespaced(sa_client.clone(), release_ns.name())
                        .list(&ListParams::default())
                        .await
                ),
                "the Lease Role grants no Secrets"
            );
        }
        Mode::ClusterWide => {
            sa_secrets_elsewhere
                .get("not-yours")
                .await
                .expect("cluster-wide mode reads Secrets everywhere (credentials)");
        }
    }

    // Deletion: the operator removes its finalizer (patch), as the ServiceAccount.
    w.jobs
        .delete("packaged", &DeleteParams::default())
        .await
        .unwrap();
    w.wait_gone("packaged", Duration::from_secs(60)).await;
    let log = w.operator_log();
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "the operator hit a permission error:\n{log}"
    );
    drop(w.operator.take());

    ok(helm_at(cp).args(["uninstall", release, "--namespace", release_ns.name()]));
    if mode == Mode::ClusterWide {
        // helm.sh/resource-policy: keep (crds.keep) left the CRD, and so every job, in place.
        Api::<CustomResourceDefinition>::all(admin.clone())
            .get("skilltrainingjobs.ai.cxone.io")
            .await
            .expect("the CRD survives helm uninstall");
        assert!(
            Api::<ClusterRole>::all(admin.clone())
                .get_opt(&fullname)
                .await
                .unwrap()
                .is_none(),
            "uninstall removes the ClusterRole"
        );
    }
    let _ = std::fs::remove_file(values_file);
}

#[tokio::test]
async fn helm_install_namespaced_rbac_suffices_and_hides_other_namespaces() {
    install_and_train(Mode::Namespaced).await;
}

#[tokio::test]
async fn helm_install_cluster_wide_rbac_suffices_and_keeps_the_crd() {
    install_and_train(Mode::ClusterWide).await;
}
