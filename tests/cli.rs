//! The offline commands, run as the built binary.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cxone-skill-operator"))
}

fn data(name: &str) -> String {
    format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn validate_accepts_valid_manifests_and_data_with_one_line_each() {
    let out = bin()
        .args([
            "validate",
            &data("guide-job.yaml"),
            &data("configmap-job.yaml"),
            &data("utterances.jsonl"),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines[0].contains("SkillTrainingJob demo/guide-example: 6 utterances, 3 labels, language en, digest sha256:"), "{stdout}");
    assert!(
        lines[1].contains("SkillTrainingJob demo/billing: 6 utterances, 2 labels"),
        "{stdout}"
    );
    assert!(
        lines[2].ends_with("valid: 4 utterances, 2 labels, language en"),
        "{stdout}"
    );
}

#[test]
fn validate_reports_every_violation_and_exits_1() {
    let out = bin()
        .args([
            "validate",
            &data("invalid-job.yaml"),
            &data("guide-job.yaml"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "invalid-job.yaml: invalid",
        "spec.connection: set either region or baseUrl, not both",
        "labels[1]: label id \"greet\" is already defined at labels[0]",
        "spec.utterances[1]: text is empty or only whitespace",
        "mixed languages",
        "spec.utterances[3]: text \"Hello There\" is also labelled \"greet\" at spec.utterances[0]",
        "spec.utterances[4]: label \"ghost\" is not defined",
        "guide-job.yaml: valid",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}

#[test]
fn validate_explains_unreadable_and_malformed_files() {
    let dir = std::env::temp_dir().join(format!("cxone-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad_yaml = dir.join("bad.yaml");
    std::fs::write(&bad_yaml, "kind: SkillTrainingJob\nspec: [unclosed\n").unwrap();
    let bad_utf8 = dir.join("bad.csv");
    std::fs::write(&bad_utf8, b"text,label\nhi\xff,greet\n").unwrap();
    let wrong_type = dir.join("wrong.yaml");
    std::fs::write(&wrong_type, "apiVersion: ai.cxone.io/v1alpha1\nkind: SkillTrainingJob\nmetadata: {name: x}\nspec: {skillId: 5}\n").unwrap();
    let out = bin()
        .arg("validate")
        .args([&bad_yaml, &bad_utf8, &wrong_type, &dir.join("missing.yaml")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("bad.yaml: invalid (1 problems)\n  - not valid YAML"),
        "{stdout}"
    );
    assert!(stdout.contains("not valid UTF-8 at byte 13"), "{stdout}");
    assert!(
        stdout.contains("SkillTrainingJob x: not a valid SkillTrainingJob"),
        "{stdout}"
    );
    assert!(
        stdout.contains("missing.yaml: invalid (1 problems)\n  - cannot read"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn write_evaluation(name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("cxone-eval-{}-{name}.json", std::process::id()));
    let body = serde_json::json!({
        "labels": [{"id": "a", "name": "A"}, {"id": "b", "name": "B"}],
        "actuals":     ["a", "a", "b", "b"],
        "predictions": ["a", "b", "b", "b"],
        "scores":      [0.95, 0.4, 0.8, 0.6],
        "precision": 0.8333333333333333,
        "recall": 0.75,
        "confusionMatrix": [[1, 1], [0, 2]],
        "trainingDurationSeconds": 12.5
    });
    std::fs::write(&path, body.to_string()).unwrap();
    path
}

#[test]
fn evaluate_prints_the_documented_json() {
    let input = write_evaluation("json");
    let out = bin()
        .args(["evaluate", "--input"])
        .arg(&input)
        .args(["--output", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["accuracy"], 0.75);
    assert!((v["macro"]["precision"].as_f64().unwrap() - 5.0 / 6.0).abs() < 1e-12);
    assert_eq!(v["macro"]["recall"], 0.75);
    assert!(v["weighted"]["f1"].is_number());
    assert_eq!(v["perLabel"][1]["label"], "b");
    assert_eq!(v["perLabel"][1]["support"], 2);
    assert_eq!(
        v["confusionMatrix"]["labels"],
        serde_json::json!(["a", "b"])
    );
    assert_eq!(
        v["confusionMatrix"]["matrix"],
        serde_json::json!([[1, 1], [0, 2]])
    );
    assert_eq!(v["thresholds"].as_array().unwrap().len(), 13);
    // Below 0.4 everything is answered (3 of 4 right); from 0.45 on the wrong answer abstains.
    assert_eq!(v["recommendation"]["threshold"], 0.45);
    assert_eq!(v["recommendation"]["precision"], 1.0);
    assert_eq!(v["recommendation"]["objective"], "maxF1");
    let _ = std::fs::remove_file(input);
}

#[test]
fn evaluate_table_and_min_precision() {
    let input = write_evaluation("table");
    let out = bin()
        .args(["evaluate", "--input"])
        .arg(&input)
        .args(["--min-precision", "0.99"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("accuracy  0.7500"), "{stdout}");
    assert!(
        stdout.contains("recommended threshold 0.45 (minPrecision)"),
        "{stdout}"
    );
    let _ = std::fs::remove_file(input);
}

#[test]
fn evaluate_without_the_server_summary_says_agreement_is_unknown() {
    let path =
        std::env::temp_dir().join(format!("cxone-eval-nosummary-{}.json", std::process::id()));
    // Only the per-example arrays: no precision, recall or confusionMatrix.
    let body = serde_json::json!({
        "labels": [{"id": "a", "name": "A"}, {"id": "b", "name": "B"}],
        "actuals":     ["a", "a", "b", "b"],
        "predictions": ["a", "b", "b", "b"],
        "scores":      [0.95, 0.4, 0.8, 0.6]
    });
    std::fs::write(&path, body.to_string()).unwrap();

    let out = bin()
        .args(["evaluate", "--input"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("accuracy  0.7500"), "{stdout}");
    assert!(
        stdout.contains(
            "server summary: unknown, not reported by the server (precision, recall, confusionMatrix)"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("agrees"), "{stdout}");
    assert!(!stdout.contains("disagree"), "{stdout}");

    let out = bin()
        .args(["evaluate", "--input"])
        .arg(&path)
        .args(["--output", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["accuracy"], 0.75);
    assert_eq!(
        v["confusionMatrix"]["matrix"],
        serde_json::json!([[1, 1], [0, 2]])
    );
    assert!(v["serverComparison"]["consistent"].is_null(), "{v}");
    assert_eq!(
        v["serverComparison"]["notReported"],
        serde_json::json!(["precision", "recall", "confusionMatrix"])
    );

    // With the summary, the table says it agrees.
    let input = write_evaluation("agrees");
    let out = bin()
        .args(["evaluate", "--input"])
        .arg(&input)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("server summary: agrees with the recomputed metrics\n"),
        "{stdout}"
    );
    let _ = std::fs::remove_file(input);
    let _ = std::fs::remove_file(path);
}

#[test]
fn evaluate_rejects_bad_input_clearly() {
    let path = std::env::temp_dir().join(format!("cxone-eval-bad-{}.json", std::process::id()));
    std::fs::write(&path, r#"{"labels": [{"id": "a"}], "actuals": ["a"], "predictions": ["zzz"], "precision": 1, "recall": 1, "confusionMatrix": []}"#).unwrap();
    let out = bin()
        .args(["evaluate", "--input"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown label id \"zzz\" at predictions[0]"),
        "{stderr}"
    );
    std::fs::write(&path, "{not json").unwrap();
    let out = bin()
        .args(["evaluate", "--input"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a CXone evaluation response"));
    let _ = std::fs::remove_file(path);
}

#[test]
fn validate_checks_the_examples() {
    let dir = format!("{}/examples", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".yaml"))
        .collect();
    files.sort();
    let out = bin().arg("validate").args(&files).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Exactly one example is deliberately invalid.
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let invalid: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains(": invalid ("))
        .collect();
    assert_eq!(invalid.len(), 1, "{stdout}");
    assert!(invalid[0].contains("invalid-mixed-data.yaml"), "{stdout}");
    for name in ["billing-support", "order-tracking", "account-access"] {
        assert!(
            stdout.contains(&format!("SkillTrainingJob cxone-demo/{name}: ")),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains("00-namespace-and-credentials.yaml: valid: no SkillTrainingJob"),
        "{stdout}"
    );
}

/// A temporary directory for one test, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("cxone-cli-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn write(&self, file: &str, contents: &str) -> std::path::PathBuf {
        let path = self.0.join(file);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A SkillTrainingJob manifest with the given names; the inline data is valid.
fn job_manifest(
    name: &str,
    secret: &str,
    client_id_key: &str,
    config_map: &str,
    key: &str,
    artifacts_secret: &str,
) -> String {
    format!(
        r#"apiVersion: v1
kind: ConfigMap
metadata: {{name: "{config_map}", namespace: demo}}
data:
  "{key}": |
    {{"text": "where is my parcel", "label": "track"}}
    {{"text": "has my order shipped", "label": "track"}}
    {{"text": "cancel my order", "label": "cancel"}}
    {{"text": "I do not want the order anymore", "label": "cancel"}}
---
apiVersion: ai.cxone.io/v1alpha1
kind: SkillTrainingJob
metadata: {{name: "{name}", namespace: demo}}
spec:
  skillId: skill-orders
  connection:
    region: us2-01
    credentialsSecretRef: {{name: "{secret}", clientIdKey: "{client_id_key}"}}
  language: en
  labels:
    - {{id: track, name: Track}}
    - {{id: cancel, name: Cancel}}
  utterancesFrom:
    - configMapKeyRef: {{name: "{config_map}", key: "{key}"}}
      format: jsonl
  artifacts: {{secretName: "{artifacts_secret}"}}
"#
    )
}

#[test]
fn validate_rejects_names_that_are_not_kubernetes_names_and_says_which_field() {
    let dir = TempDir::new("names");
    let bad = dir.write(
        "bad-names.yaml",
        &job_manifest(
            "orders",
            "cxone-credentials?watch=true",
            "../client-id",
            "../x",
            "a/b",
            "../../ns/secrets/stolen",
        ),
    );
    let out = bin().arg("validate").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "SkillTrainingJob demo/orders: spec.connection.credentialsSecretRef.name: \"cxone-credentials?watch=true\" is not a valid Kubernetes object name: character 18 is '?'",
        "spec.connection.credentialsSecretRef.clientIdKey: \"../client-id\" is not a valid ConfigMap or Secret key: character 3 is '/'",
        "spec.utterancesFrom[0].configMapKeyRef.name: \"../x\" is not a valid Kubernetes object name: character 3 is '/'",
        "spec.utterancesFrom[0].configMapKeyRef.key: \"a/b\" is not a valid ConfigMap or Secret key: character 2 is '/'",
        "spec.artifacts.secretName: \"../../ns/secrets/stolen\" is not a valid Kubernetes object name: character 3 is '/'",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }

    // The job's own name and namespace are checked too.
    let bad_meta = dir.write(
        "bad-metadata.yaml",
        &job_manifest("Orders_1", "creds", "clientId", "data", "u.jsonl", "urls")
            .replace("namespace: demo}\nspec", "namespace: team.a}\nspec"),
    );
    let out = bin().arg("validate").arg(&bad_meta).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("metadata.name: \"Orders_1\" is not a valid Kubernetes object name: character 1 is 'O' (upper-case letters are not allowed)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("metadata.namespace: \"team.a\" is not a valid namespace name"),
        "{stdout}"
    );
}

#[test]
fn validate_accepts_the_longest_valid_names_and_keys() {
    let dir = TempDir::new("long-names");
    let long = format!(
        "{}.{}.{}",
        "a".repeat(63),
        "b-c".repeat(21),
        "d".repeat(125)
    );
    assert_eq!(long.len(), 253);
    let key = format!(".{}", "K_-.".repeat(63));
    assert_eq!(key.len(), 253);
    let file = dir.write(
        "long.yaml",
        &job_manifest(&long, &long, ".client_id", &long, &key, &long),
    );
    let out = bin().arg("validate").arg(&file).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("valid: SkillTrainingJob demo/aaa") && stdout.contains("4 utterances"),
        "{stdout}"
    );
}

#[test]
fn validate_checks_endpoints_against_an_operators_allowlist() {
    // guide-job.yaml names region us2-01: allowed by the default pattern, not by a gateway-only
    // list.
    let allowed = bin()
        .args([
            "validate",
            "--allowed-endpoints",
            "https://api.*.cxone.com",
            &data("guide-job.yaml"),
        ])
        .output()
        .unwrap();
    assert!(
        allowed.status.success(),
        "{}",
        String::from_utf8_lossy(&allowed.stdout)
    );
    let refused = bin()
        .args([
            "validate",
            "--allowed-endpoints=https://gw.example/cxone",
            &data("guide-job.yaml"),
        ])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&refused.stdout);
    assert!(
        stdout.contains(
            "spec.connection.baseUrl https://api.us2-01.cxone.com/ is not an allowed CXone endpoint"
        ),
        "{stdout}"
    );
    let bad = bin()
        .args([
            "validate",
            "--allowed-endpoints=not a url",
            &data("guide-job.yaml"),
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--allowed-endpoints"));
}

#[test]
fn validate_checks_registries_against_an_operators_allowlist() {
    let allowed = bin()
        .args([
            "validate",
            "--allowed-registries",
            "registry.example.com/cxone,https://mlflow.example.com",
            &data("registry-job.yaml"),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&allowed.stdout);
    assert!(allowed.status.success(), "{stdout}");
    let refused = bin()
        .args([
            "validate",
            "--allowed-registries=registry.example.com/other,https://mlflow.example.com",
            &data("registry-job.yaml"),
        ])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&refused.stdout);
    assert!(
        stdout.contains(
            "spec.registry.oci.repository registry.example.com/cxone/billing-support is not an allowed registry"
        ),
        "{stdout}"
    );
    let plain = bin()
        .args([
            "validate",
            "--allowed-registries=http://registry.internal",
            &data("registry-job.yaml"),
        ])
        .output()
        .unwrap();
    assert_eq!(plain.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&plain.stderr).contains("plain HTTP"));
}

#[test]
fn validate_reports_registry_problems_the_schema_cannot_see() {
    let dir = TempDir::new("registry");
    let text = std::fs::read_to_string(data("registry-job.yaml"))
        .unwrap()
        .replace(
            "registry.example.com/cxone/billing-support",
            "registry.example.com/cxone/billing-support:v1",
        )
        .replace("maxRegression: 0.01", "maxRegression: 1.5");
    let file = dir.write("bad-registry.yaml", &text);
    let out = bin().arg("validate").arg(&file).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("spec.registry.oci.repository"), "{stdout}");
    assert!(
        stdout.contains("spec.registry.promotion.maxRegression is 1.5"),
        "{stdout}"
    );
}
