//! Smoke tests of the test control plane (tests/support): a real etcd + kube-apiserver.

mod support {
    mod envtest;
    pub use envtest::{ControlPlane, control_plane};
}

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};

/// (base URL, kube-apiserver pid) seen by the first test that got here.
static FIRST_SEEN: OnceLock<(String, u32)> = OnceLock::new();

fn assert_shared(cp: &support::ControlPlane) {
    let mine = (cp.base_url().to_string(), cp.apiserver_pid());
    let first = FIRST_SEEN.get_or_init(|| mine.clone());
    assert_eq!(
        first, &mine,
        "every test in a binary shares one control plane"
    );
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", cp.apiserver_pid()))
        .expect("kube-apiserver runs");
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(
        cmdline.contains("kube-apiserver"),
        "pid {} is {cmdline}",
        cp.apiserver_pid()
    );
    let port = cp.base_url().rsplit(':').next().unwrap();
    assert!(
        cmdline.contains(&format!("--secure-port={port}")),
        "{cmdline}"
    );
}

fn named(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        ..ObjectMeta::default()
    }
}

#[tokio::test]
async fn api_server_answers_and_stores_objects() {
    let cp = support::control_plane().await;
    assert_shared(cp);
    let client = cp.client().await;
    let version = client.apiserver_version().await.expect("GET /version");
    assert_eq!(version.major, "1");

    // Every CRD from crds/ was applied and is Established.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in cp.installed_crds() {
        let crd = crds.get(name).await.expect("installed CRD");
        let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
        assert!(
            conditions
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True"),
            "{name}: {conditions:?}"
        );
    }

    let ns = cp.namespace("smoke-objects").await;
    let cms: Api<ConfigMap> = ns.api();
    let cm = ConfigMap {
        metadata: named("plain"),
        data: Some(BTreeMap::from([(
            "greeting".to_string(),
            "hello".to_string(),
        )])),
        ..ConfigMap::default()
    };
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create ConfigMap");
    let read = cms.get("plain").await.expect("get ConfigMap");
    assert_eq!(read.data.unwrap()["greeting"], "hello");

    // Server-side apply: create, then change a field as the same manager.
    let params = PatchParams::apply("smoke-test").force();
    for value in ["one", "two"] {
        let applied = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "applied"},
            "data": {"value": value},
        });
        cms.patch("applied", &params, &Patch::Apply(&applied))
            .await
            .expect("server-side apply");
    }
    let applied = cms.get("applied").await.expect("get applied ConfigMap");
    assert_eq!(applied.data.as_ref().unwrap()["value"], "two");
    let managers: Vec<_> = applied
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| Some((m.manager?, m.operation?)))
        .collect();
    assert!(
        managers.contains(&("smoke-test".to_string(), "Apply".to_string())),
        "managed fields: {managers:?}"
    );
}

#[tokio::test]
async fn service_account_needs_rbac() {
    let cp = support::control_plane().await;
    assert_shared(cp);
    let ns = cp.namespace("smoke-rbac").await;
    let sa_client = cp.service_account_client(ns.name(), "reader").await;
    let secrets: Api<Secret> = Api::namespaced(sa_client, ns.name());

    match secrets.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => {
            assert!(status.is_forbidden(), "expected 403, got {status:?}")
        }
        other => panic!("a ServiceAccount without a Role must not list Secrets: {other:?}"),
    }

    let role = Role {
        metadata: named("secret-reader"),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["secrets".to_string()]),
            verbs: vec!["get".to_string(), "list".to_string()],
            ..PolicyRule::default()
        }]),
    };
    let binding = RoleBinding {
        metadata: named("secret-reader"),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_string(),
            kind: "Role".to_string(),
            name: "secret-reader".to_string(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_string(),
            name: "reader".to_string(),
            namespace: Some(ns.name().to_string()),
            ..Subject::default()
        }]),
    };
    ns.api::<Role>()
        .create(&PostParams::default(), &role)
        .await
        .expect("create Role");
    ns.api::<RoleBinding>()
        .create(&PostParams::default(), &binding)
        .await
        .expect("create RoleBinding");

    // The RBAC authorizer sees new bindings through an informer: allowed within moments.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match secrets.list(&ListParams::default()).await {
            Ok(_) => break,
            Err(kube::Error::Api(status)) if status.is_forbidden() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the bound ServiceAccount still cannot list Secrets: {e}"),
        }
    }
}

#[tokio::test]
async fn kubectl_uses_the_admin_kubeconfig() {
    let cp = support::control_plane().await;
    assert_shared(cp);
    let ns = cp.namespace("smoke-kubectl").await;
    let out = cp
        .kubectl()
        .args(["get", "ns", "-o", "name"])
        .output()
        .expect("run kubectl");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl get ns failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("namespace/{}", ns.name())),
        "{stdout}"
    );
    assert!(stdout.contains("namespace/default"), "{stdout}");
    assert!(cp.kubeconfig_path().is_file());
    assert!(cp.kubectl_path().is_file());
}
