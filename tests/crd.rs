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
