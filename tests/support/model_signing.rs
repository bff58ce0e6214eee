//! The independent verifier of model signatures: `model_signing verify key` from the test venv
//! (hack/python-venv.sh installs the `model-signing` package pinned in
//! hack/requirements-test.txt), and the throwaway keys in tests/data/signing/.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// A file of tests/data/signing/.
pub fn key_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/signing")
        .join(name)
}

/// The test venv's `model_signing` command (the venv is made on first use).
fn verifier() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/python-venv.sh"))
            .stdin(Stdio::null())
            .output()
            .expect("run hack/python-venv.sh");
        assert!(
            out.status.success(),
            "hack/python-venv.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let venv = String::from_utf8_lossy(&out.stdout).trim().to_string();
        PathBuf::from(venv).join("bin/model_signing")
    })
}

/// `model_signing verify key --public_key KEY --signature SIG DIR`.
pub fn verify(public_key: &Path, signature: &Path, dir: &Path) -> Output {
    Command::new(verifier())
        .args(["verify", "key", "--public_key"])
        .arg(public_key)
        .arg("--signature")
        .arg(signature)
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run model_signing")
}
