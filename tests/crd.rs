//! The committed CRD is exactly what the code generates (regenerate with `make crds`).

#[test]
fn committed_crd_matches_the_generated_one() {
    let generated = cxone_skill_operator::crd::crd_yaml().expect("renders");
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/skilltrainingjobs.ai.cxone.io.yaml"
    );
    let committed = std::fs::read_to_string(path).expect("crds/ file exists");
    assert!(
        committed == generated,
        "crds/skilltrainingjobs.ai.cxone.io.yaml is stale: run `make crds` and commit the result"
    );
}

#[test]
fn crd_has_the_status_subresource_printer_columns_and_rules() {
    use kube::CustomResourceExt;
    let crd = cxone_skill_operator::crd::SkillTrainingJob::crd();
    let v = &crd.spec.versions[0];
    assert!(
        v.subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some()
    );
    let columns: Vec<&str> = v
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        columns,
        [
            "Phase",
            "Progress",
            "Precision",
            "Recall",
            "Ready",
            "Job",
            "Age"
        ]
    );
    let json = serde_json::to_string(&crd).unwrap();
    for rule in [
        "has(self.region) != has(self.baseUrl)",
        "self.start <= self.end",
        "self.utterances.all(u, self.labels.exists(l, l.id == u.label))",
    ] {
        assert!(json.contains(rule), "missing CEL rule {rule}");
    }
    assert_eq!(
        crd.spec.names.short_names.as_deref(),
        Some(&["stj".to_string()][..])
    );
    assert_eq!(
        crd.spec.names.categories.as_deref(),
        Some(&["cxone".to_string()][..])
    );
}

/// Every property of `schema` (nested objects and array items included) without a non-empty
/// description, as dotted paths (`[]` for array items).
fn undocumented(schema: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
        for (name, prop) in props {
            let here = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            // A field without a doc comment of its own can inherit its type's text, such as
            // k8s-openapi's "Time is a wrapper around time.Time …", which explains nothing.
            let described = prop
                .get("description")
                .and_then(|d| d.as_str())
                .is_some_and(|d| !d.trim().is_empty() && !d.starts_with("Time is a wrapper"));
            if !described {
                out.push(here.clone());
            }
            undocumented(prop, &here, out);
        }
    }
    if let Some(items) = schema.get("items") {
        undocumented(items, &format!("{path}[]"), out);
    }
    if let Some(extra) = schema.get("additionalProperties") {
        undocumented(extra, &format!("{path}{{}}"), out);
    }
}

/// The schema of the CRD's first version as JSON.
fn open_api_schema() -> serde_json::Value {
    use kube::CustomResourceExt;
    let crd = cxone_skill_operator::crd::SkillTrainingJob::crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("the CRD has a schema");
    serde_json::to_value(schema).unwrap()
}

#[test]
fn every_crd_property_has_a_description_for_kubectl_explain() {
    let schema = open_api_schema();
    let mut missing = Vec::new();
    undocumented(&schema, "", &mut missing);
    assert!(
        missing.is_empty(),
        "{} properties have no description (add a doc comment to the field in src/crd/): {}",
        missing.len(),
        missing.join(", ")
    );
    // The walk reaches spec and status, nested objects and array items.
    let mut all = Vec::new();
    let mut strip = schema.clone();
    strip_descriptions(&mut strip);
    undocumented(&strip, "", &mut all);
    for path in [
        "spec.evaluation.thresholdSweep.start",
        "spec.utterancesFrom[].configMapKeyRef.name",
        "status.evaluation.macroF1",
        "status.evaluation.perLabel[].support",
        "status.conditions[].type",
        "status.history[].completedAt",
    ] {
        assert!(all.iter().any(|p| p == path), "the walk misses {path}");
    }
    assert!(all.len() > 100, "only {} properties walked", all.len());
}

fn strip_descriptions(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            map.remove("description");
            map.values_mut().for_each(strip_descriptions);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_descriptions),
        _ => {}
    }
}

#[test]
fn every_field_naming_an_object_or_a_data_key_has_the_kubernetes_pattern() {
    use cxone_skill_operator::names::{DATA_KEY_PATTERN, DNS_SUBDOMAIN_PATTERN};
    let schema = open_api_schema();
    let at = |path: &[&str]| {
        let mut s = &schema;
        for p in path {
            s = if *p == "[]" {
                &s["items"]
            } else {
                &s["properties"][*p]
            };
        }
        s.clone()
    };
    let names: [&[&str]; 6] = [
        &["spec", "connection", "credentialsSecretRef", "name"],
        &["spec", "utterancesFrom", "[]", "configMapKeyRef", "name"],
        &["spec", "artifacts", "secretName"],
        &["status", "artifacts", "secretName"],
        &["status", "audit", "configMap"],
        &["status", "evaluation", "reportConfigMap"],
    ];
    for path in names {
        let s = at(path);
        assert_eq!(s["pattern"], DNS_SUBDOMAIN_PATTERN, "{path:?}: {s}");
        assert_eq!(s["maxLength"], 253, "{path:?}: {s}");
    }
    let keys: [&[&str]; 3] = [
        &["spec", "connection", "credentialsSecretRef", "clientIdKey"],
        &[
            "spec",
            "connection",
            "credentialsSecretRef",
            "clientSecretKey",
        ],
        &["spec", "utterancesFrom", "[]", "configMapKeyRef", "key"],
    ];
    for path in keys {
        let s = at(path);
        assert_eq!(s["pattern"], DATA_KEY_PATTERN, "{path:?}: {s}");
        assert_eq!(s["maxLength"], 253, "{path:?}: {s}");
    }
}
