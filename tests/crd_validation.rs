//! The API server itself rejects invalid SkillTrainingJobs with the schema and CEL messages of
//! the committed CRD.

mod support {
    mod envtest;
    pub use envtest::control_plane;
}

use cxone_skill_operator::crd::SkillTrainingJob;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use serde_json::{Value, json};

fn base() -> Value {
    json!({
        "apiVersion": "ai.cxone.io/v1alpha1",
        "kind": "SkillTrainingJob",
        "metadata": {"name": "x"},
        "spec": {
            "skillId": "skill-1",
            "connection": {"region": "us2-01", "credentialsSecretRef": {"name": "creds"}},
            "language": "en",
            "labels": [{"id": "a", "name": "A"}, {"id": "b", "name": "B"}],
            "utterances": [{"text": "hello", "label": "a"}, {"text": "bye", "label": "b"}]
        }
    })
}

/// Creates `manifest` as untyped JSON (so invalid values reach the server) and returns the
/// rejection message.
async fn rejection(api: &Api<DynamicObject>, name: &str, manifest: Value) -> String {
    let mut manifest = manifest;
    manifest["metadata"]["name"] = name.into();
    let obj: DynamicObject = serde_json::from_value(manifest).unwrap();
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => panic!("{name}: the API server accepted an invalid manifest"),
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{name}: {status:?}");
            status.message
        }
        Err(e) => panic!("{name}: unexpected error {e}"),
    }
}

/// A named change to the valid manifest and the message the API server must answer with.
type Case = (&'static str, Box<dyn Fn(&mut Value)>, &'static str);

#[tokio::test]
async fn the_api_server_rejects_invalid_specs_with_clear_messages() {
    let cp = support::control_plane().await;
    let ns = cp.namespace("crd").await;
    let typed: Api<SkillTrainingJob> = Api::namespaced(ns.client(), ns.name());
    let resource = ApiResource::erase::<SkillTrainingJob>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(ns.client(), ns.name(), &resource);

    // The valid base is accepted.
    let ok: SkillTrainingJob = serde_json::from_value(base()).unwrap();
    typed
        .create(&PostParams::default(), &ok)
        .await
        .expect("a valid job is accepted");
    // The finest sweep the analysis accepts (1000 thresholds) is accepted too.
    let mut finest = base();
    finest["metadata"]["name"] = "finest-sweep".into();
    finest["spec"]["evaluation"] =
        json!({"thresholdSweep": {"start": 0.0, "end": 0.999, "step": 0.001}});
    api.create(
        &PostParams::default(),
        &serde_json::from_value(finest).unwrap(),
    )
    .await
    .expect("a sweep of 1000 thresholds is accepted");

    let cases: Vec<Case> = vec![
        (
            "region-and-baseurl",
            Box::new(|m| m["spec"]["connection"]["baseUrl"] = "https://api.x.cxone.com".into()),
            "set exactly one of connection.region and connection.baseUrl",
        ),
        (
            "patience",
            Box::new(|m| m["spec"]["hyperparameters"] = json!({"maxEpochs": 3, "patience": 4})),
            "hyperparameters.patience must not exceed maxEpochs",
        ),
        (
            "undefined-label",
            Box::new(|m| m["spec"]["utterances"][1]["label"] = "ghost".into()),
            "every inline utterance must use a label id defined in spec.labels",
        ),
        (
            "split",
            Box::new(|m| m["spec"]["hyperparameters"] = json!({"validationSplit": 0.9})),
            "spec.hyperparameters.validationSplit: Invalid value",
        ),
        (
            "duplicate-label",
            Box::new(|m| m["spec"]["labels"][1]["id"] = "a".into()),
            "spec.labels[1]: Duplicate value",
        ),
        (
            "language",
            Box::new(|m| m["spec"]["language"] = "english".into()),
            "spec.language: Too long",
        ),
        (
            "no-skill",
            Box::new(|m| {
                m["spec"].as_object_mut().unwrap().remove("skillId");
            }),
            "spec.skillId: Required value",
        ),
        (
            "policy",
            Box::new(|m| m["spec"]["deletionPolicy"] = "Delete".into()),
            "spec.deletionPolicy: Unsupported value: \"Delete\"",
        ),
        (
            "sweep",
            Box::new(|m| {
                m["spec"]["evaluation"] =
                    json!({"thresholdSweep": {"start": 0.9, "end": 0.3, "step": 0.05}})
            }),
            "thresholdSweep.start must not exceed end",
        ),
        (
            "sweep-too-fine",
            Box::new(|m| {
                m["spec"]["evaluation"] =
                    json!({"thresholdSweep": {"start": 0.0, "end": 1.0, "step": 0.001}})
            }),
            "thresholdSweep has more than 1000 thresholds",
        ),
        (
            "no-data",
            Box::new(|m| {
                m["spec"].as_object_mut().unwrap().remove("utterances");
            }),
            "give training data: spec.utterances and/or spec.utterancesFrom",
        ),
        (
            "polling",
            Box::new(|m| m["spec"]["polling"] = json!({"initialIntervalSeconds": 1})),
            "spec.polling.initialIntervalSeconds: Invalid value",
        ),
        (
            "registry-without-target",
            Box::new(|m| m["spec"]["registry"] = json!({"promotion": {"minAccuracy": 0.9}})),
            "spec.registry needs at least one target: oci and/or mlflow",
        ),
        (
            "registry-tagged-repository",
            Box::new(|m| {
                m["spec"]["registry"] =
                    json!({"oci": {"repository": "registry.example.com/cxone/billing:v1"}})
            }),
            "spec.registry.oci.repository",
        ),
        (
            "registry-regression-without-metric",
            Box::new(|m| {
                m["spec"]["registry"] = json!({
                    "mlflow": {"trackingUri": "https://mlflow.example.com", "modelName": "m"},
                    "promotion": {"maxRegression": 0.01}
                })
            }),
            "promotion.maxRegression needs promotion.compareMetric",
        ),
        (
            "registry-threshold-over-one",
            Box::new(|m| {
                m["spec"]["registry"] = json!({
                    "mlflow": {"trackingUri": "https://mlflow.example.com", "modelName": "m"},
                    "promotion": {"minMacroF1": 1.5}
                })
            }),
            "spec.registry.promotion.minMacroF1",
        ),
        (
            "registry-unknown-metric",
            Box::new(|m| {
                m["spec"]["registry"] = json!({
                    "mlflow": {"trackingUri": "https://mlflow.example.com", "modelName": "m"},
                    "promotion": {"compareMetric": "loss"}
                })
            }),
            "spec.registry.promotion.compareMetric",
        ),
    ];
    for (name, mutate, expected) in cases {
        let mut m = base();
        mutate(&mut m);
        let message = rejection(&api, name, m).await;
        assert!(
            message.contains(expected),
            "{name}: expected {expected:?} in {message:?}"
        );
    }
}

/// Where a manifest names a Kubernetes object or a key of one, and how to set it.
struct NameField {
    /// The field path the API server names in its message.
    path: &'static str,
    /// Whether the field is a `data` key (rather than an object name).
    key: bool,
    set: fn(&mut Value, &str),
}

fn name_fields() -> Vec<NameField> {
    vec![
        NameField {
            path: "spec.connection.credentialsSecretRef.name",
            key: false,
            set: |m, v| m["spec"]["connection"]["credentialsSecretRef"]["name"] = v.into(),
        },
        NameField {
            path: "spec.connection.credentialsSecretRef.clientIdKey",
            key: true,
            set: |m, v| m["spec"]["connection"]["credentialsSecretRef"]["clientIdKey"] = v.into(),
        },
        NameField {
            path: "spec.connection.credentialsSecretRef.clientSecretKey",
            key: true,
            set: |m, v| {
                m["spec"]["connection"]["credentialsSecretRef"]["clientSecretKey"] = v.into()
            },
        },
        NameField {
            path: "spec.utterancesFrom[0].configMapKeyRef.name",
            key: false,
            set: |m, v| {
                m["spec"]["utterancesFrom"] = json!([{
                    "configMapKeyRef": {"name": v, "key": "utterances.jsonl"},
                    "format": "jsonl"
                }])
            },
        },
        NameField {
            path: "spec.utterancesFrom[0].configMapKeyRef.key",
            key: true,
            set: |m, v| {
                m["spec"]["utterancesFrom"] = json!([{
                    "configMapKeyRef": {"name": "data", "key": v},
                    "format": "jsonl"
                }])
            },
        },
        NameField {
            path: "spec.registry.oci.credentialsSecretRef.name",
            key: false,
            set: |m, v| {
                m["spec"]["registry"] = json!({"oci": {
                    "repository": "registry.example.com/cxone/billing",
                    "credentialsSecretRef": {"name": v}
                }})
            },
        },
        NameField {
            path: "spec.registry.mlflow.credentialsSecretRef.name",
            key: false,
            set: |m, v| {
                m["spec"]["registry"] = json!({"mlflow": {
                    "trackingUri": "https://mlflow.example.com", "modelName": "m",
                    "credentialsSecretRef": {"name": v}
                }})
            },
        },
        NameField {
            path: "spec.artifacts.secretName",
            key: false,
            set: |m, v| m["spec"]["artifacts"] = json!({"secretName": v}),
        },
    ]
}

/// A valid object name of exactly 253 characters with dots.
fn longest_name() -> String {
    let name = format!(
        "{}.{}.{}",
        "a".repeat(63),
        "b-c".repeat(21),
        "d".repeat(125)
    );
    assert_eq!(name.len(), 253);
    name
}

#[tokio::test]
async fn the_api_server_rejects_names_that_are_not_kubernetes_names_naming_the_field() {
    use cxone_skill_operator::names::{is_data_key, is_dns_subdomain};
    let cp = support::control_plane().await;
    let ns = cp.namespace("crd-names").await;
    let resource = ApiResource::erase::<SkillTrainingJob>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(ns.client(), ns.name(), &resource);

    // What the operator would otherwise have put into API paths, and other non-names.
    let bad_names = [
        "cxone-credentials?watch=true",
        "../x",
        "../../ns/secrets/stolen",
        "Creds",
        "a_b",
        "-a",
        "a.",
        "creds%2f..",
        "créds",
    ];
    let bad_keys = ["../x", "..", ".", "..x", "a/b", "k?x=1", "a b", "clé"];
    let too_long = "a".repeat(254);
    let mut case = 0;
    for field in name_fields() {
        let values: &[&str] = if field.key { &bad_keys } else { &bad_names };
        for value in values.iter().copied().chain([too_long.as_str()]) {
            // The operator's own check agrees with the API server.
            let valid = if field.key {
                is_data_key(value)
            } else {
                is_dns_subdomain(value)
            };
            assert!(!valid, "{value:?} passes the operator's check");
            let mut m = base();
            (field.set)(&mut m, value);
            case += 1;
            let message = rejection(&api, &format!("bad-name-{case}"), m).await;
            let expected = if value.len() > 253 {
                format!("{}: Too long", field.path)
            } else {
                format!("{}: Invalid value: {value:?}", field.path)
            };
            assert!(
                message.contains(&expected),
                "{} = {value:?}: expected {expected:?} in {message:?}",
                field.path
            );
        }
    }

    // The longest valid names and unusual but valid keys are accepted.
    let long = longest_name();
    assert!(is_dns_subdomain(&long));
    for field in name_fields() {
        let values: Vec<String> = if field.key {
            vec![
                ".hidden".into(),
                "a..b".into(),
                "UPPER_lower-1.x".into(),
                "k".repeat(253),
            ]
        } else {
            vec![long.clone(), "a".into(), "0.1-x".into()]
        };
        for value in &values {
            let mut m = base();
            (field.set)(&mut m, value);
            case += 1;
            m["metadata"]["name"] = format!("good-name-{case}").into();
            let obj: DynamicObject = serde_json::from_value(m).unwrap();
            api.create(&PostParams::default(), &obj)
                .await
                .unwrap_or_else(|e| panic!("{} = {value:?} rejected: {e}", field.path));
        }
    }
}
