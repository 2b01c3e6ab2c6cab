//! The official Python client (`createsend`, from PyPI) against the emulator. `.ci/run`
//! installs it; on a machine without it the test says so, and fails under CI.

use std::process::Command;

use crate::support::{KEY, LIST, emulator};

fn python_with_createsend() -> bool {
    Command::new("python3")
        .args(["-c", "import createsend"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test]
async fn official_python_client_works_against_the_emulator() {
    if !python_with_createsend() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install the official client: python3 -m pip install createsend"
        );
        eprintln!("skipped: `python3 -m pip install createsend` to run the official client against the emulator");
        return;
    }
    let emulator = emulator().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/official_client/check.py");
    let base = emulator.base_url();
    let output = tokio::process::Command::new("python3")
        .args([script, &base, KEY, LIST])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("official client: ok"), "{stdout}");
}
