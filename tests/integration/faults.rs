//! Exports under injected faults end with exactly the expected list: every member lands
//! once, every other row is accounted for.

use std::collections::BTreeSet;
use std::time::Duration;

use cm_export::emulator::{EmulatorConfig, RateLimitConfig};
use serde_json::Value;

use crate::support::{KEY, LIST, active_emails, emulator_with, segment_members};

const ROWS: u64 = 6000;
const SEGMENT: &str = "lifetime_value > 300";

async fn export_under(
    faults: impl FnOnce(&mut EmulatorConfig),
) -> (Value, BTreeSet<String>, BTreeSet<String>, cm_export::emulator::Stats) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("profiles");
    cm_export::sample::generate(&data, ROWS, 3, 11).unwrap();
    let emulator = emulator_with(faults).await;
    std::fs::write(
        dir.path().join("connections.toml"),
        format!(
            "[cm]\ndisplay-name = \"faulty\"\ndata-privacy-consent = true\napi-key-env = \"CM_FAULT_KEY\"\nexport-user = \"t\"\nbase-url = \"{}\"\n",
            emulator.base_url()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("faulty.toml"),
        format!(
            "[source]\npath = \"profiles\"\n[[segment]]\nname = \"s\"\nsql = \"SELECT * FROM profiles WHERE {SEGMENT}\"\n\
             [destination]\nconnection = \"cm\"\nlist-id = \"{LIST}\"\n[mapping]\nemail = \"email\"\nname = \"full_name\"\n\
             [options]\nbatch-size = 50\nconcurrency = 6\n"
        ),
    )
    .unwrap();
    let output = crate::support::command()
        .args(["run", "faulty.toml", "--report", "report.json", "--progress", "never"])
        .env("CM_FAULT_KEY", KEY)
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap()).unwrap();
    let on_list = active_emails(&emulator);
    let expected = segment_members(&data, &format!("SELECT email FROM profiles WHERE {SEGMENT}")).await;
    // Every row is accounted for, and every unique member landed.
    let r = &report["rejected"];
    let n = |v: &Value| v.as_u64().unwrap();
    assert_eq!(
        n(&report["rows_matched"]),
        n(&report["members_unique"])
            + n(&r["missing_email"])
            + n(&r["invalid_email"])
            + n(&r["invalid_field"])
            + n(&r["duplicate"])
    );
    assert_eq!(n(&report["members_unique"]), expected.len() as u64);
    assert_eq!(n(&report["members_sent"]), expected.len() as u64, "{report}");
    assert_eq!(report["rejected"]["api"], serde_json::json!({}));
    (report, on_list, expected, emulator.stats())
}

#[tokio::test]
async fn server_errors_are_retried_until_the_list_is_complete() {
    let (report, on_list, expected, stats) = export_under(|c| {
        c.fail_rate = 0.1;
        c.seed = 5;
    })
    .await;
    assert_eq!(on_list, expected);
    // Each import 500 is one retry; the checks before the scan may have met some too.
    let retries = report["retries"].as_u64().unwrap();
    assert!(
        retries > 0 && retries <= stats.faults.injected_500,
        "{retries} {:?}",
        stats.faults
    );
    // Nothing accepted was sent twice: a 500 is answered before the import is applied.
    assert_eq!(stats.lists[LIST].imported_existing, 0);
}

#[tokio::test]
async fn dropped_connections_are_resent_and_counted() {
    let (report, on_list, expected, stats) = export_under(|c| {
        c.drop_rate = 0.05;
        c.latency = Some((Duration::from_millis(1), Duration::from_millis(5)));
        c.seed = 9;
    })
    .await;
    assert_eq!(on_list, expected);
    let dropped = stats.faults.dropped_before_applying + stats.faults.dropped_after_applying;
    assert!(dropped > 0, "{:?}", stats.faults);
    let resent = report["resent_after_unknown"].as_u64().unwrap();
    assert!(resent > 0 && resent <= dropped, "{resent} {:?}", stats.faults);
    // Only batches whose answer was lost after they landed come back as existing members.
    assert!(stats.lists[LIST].imported_existing <= stats.faults.dropped_after_applying * 50);
}

#[tokio::test]
async fn a_tight_rate_limit_is_respected() {
    let (report, on_list, expected, stats) = export_under(|c| {
        c.rate_limit = Some(RateLimitConfig {
            requests: 25,
            window: Duration::from_secs(1),
        })
    })
    .await;
    assert_eq!(on_list, expected);
    let requests = report["requests"].as_u64().unwrap();
    // The gate reads X-RateLimit-Remaining: at most a few requests in a run meet a 429.
    assert!(
        stats.faults.rate_limited * 20 <= requests,
        "{} of {requests}",
        stats.faults.rate_limited
    );
}
