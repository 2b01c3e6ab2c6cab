//! Failure alerts reach a local webhook receiver, with retries, and say nothing personal or secret.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use cm_export::config::{Connections, Pipeline};
use cm_export::export::{self, RunOptions, StopReason};
use cm_export::retry::Backoff;
use cm_export::state::RunStatus;
use serde_json::Value;

use crate::support::{KEY, LIST, emulator};

type Received = Arc<Mutex<Vec<Value>>>;

/// A receiver that answers 503 to its first POST and 204 after.
async fn receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let app = axum::Router::new()
        .route(
            "/hooks/T0/SECRET",
            axum::routing::post(|State(received): State<Received>, Json(body): Json<Value>| async move {
                let mut received = received.lock().unwrap();
                received.push(body);
                if received.len() == 1 {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::NO_CONTENT
                }
            }),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/T0/SECRET", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

fn options(dir: &std::path::Path) -> RunOptions {
    RunOptions {
        state_dir: Some(dir.join("state")),
        ..RunOptions::default()
    }
}

/// Alerts retry quickly here.
const ALERT_BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(1),
    cap: Duration::from_millis(5),
    max_retries: 3,
    max_rate_limit_wait: Duration::from_millis(5),
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_cancelled_runs_alert_their_webhook() {
    let emulator = emulator().await;
    let (pipeline_hook, from_pipeline) = receiver().await;
    let (connection_hook, from_connection) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    cm_export::sample::generate(&dir.path().join("profiles"), 200, 1, 5).unwrap();
    std::fs::write(dir.path().join("key.txt"), KEY).unwrap();
    let connections = Connections::parse(
        &dir.path().join("connections.toml"),
        &format!(
            "[cm]\ndisplay-name = \"T\"\ndata-privacy-consent = true\napi-key-file = \"key.txt\"\nexport-user = \"ops@example.com\"\nbase-url = \"{}\"\nalert-webhook = \"{connection_hook}\"\n",
            emulator.base_url()
        ),
    )
    .unwrap();
    let connection = connections.get("cm").unwrap();
    let definition = |list_id: &str, hook: &str| {
        format!(
            "{hook}\n[source]\npath = \"profiles\"\n[[segment]]\nname = \"all\"\nsql = \"SELECT * FROM profiles\"\n[destination]\nconnection = \"cm\"\nlist-id = \"{list_id}\"\n[mapping]\nemail = \"email\"\n"
        )
    };
    let path = dir.path().join("weekly.toml");

    // A run that fails (the list does not exist) alerts the pipeline's webhook, once more
    // after the receiver's 503.
    let failing = Pipeline::parse(
        &path,
        &definition(
            "0000000000000000000000000000dead",
            &format!("alert-webhook = \"{pipeline_hook}\""),
        ),
    )
    .unwrap();
    let run = |pipeline: Pipeline, stop: Option<StopReason>| {
        let options = options(dir.path());
        async move {
            let stop = async move {
                match stop {
                    Some(reason) => reason,
                    None => std::future::pending().await,
                }
            };
            // As the command line and the scheduler do: run, then alert.
            let report = export::run(&pipeline, connection, None, &options, stop).await.unwrap();
            cm_export::alert::after_run(&pipeline, connection, &report, &ALERT_BACKOFF).await;
            report
        }
    };
    let report = run(failing, None).await;
    assert_eq!(report.status, RunStatus::Failed);
    let bodies = from_pipeline.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2, "one 503, then delivered: {bodies:?}");
    assert_eq!(bodies[0], bodies[1]);
    let alert = &bodies[1];
    assert_eq!(alert["event"], "cm-export.run.failed");
    assert_eq!(alert["status"], "failed");
    assert_eq!(alert["export"], "weekly");
    assert_eq!(alert["run_id"], report.run_id.as_str());
    assert_eq!(alert["trigger"], "manual");
    assert_eq!(alert["list_id"], "0000000000000000000000000000dead");
    let why = alert["message"].as_str().unwrap();
    assert!(
        why.contains("list `0000000000000000000000000000dead` cannot be used"),
        "{alert}"
    );
    assert!(alert["report"].as_str().unwrap().ends_with("report.json"), "{alert}");
    let text = alert.to_string();
    assert!(
        !text.contains('@') && !text.contains(KEY),
        "no addresses, no secrets: {text}"
    );
    assert!(
        from_connection.lock().unwrap().is_empty(),
        "the pipeline's webhook wins"
    );

    // A cancelled run with no webhook of its own alerts its connection's.
    let cancelled = Pipeline::parse(&path, &definition(LIST, "")).unwrap();
    let report = run(
        cancelled.clone(),
        Some(StopReason::Cancel("its definition was removed".into())),
    )
    .await;
    assert_eq!(report.status, RunStatus::Cancelled);
    let bodies = from_connection.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert_eq!(bodies[1]["event"], "cm-export.run.cancelled");
    assert_eq!(bodies[1]["members_sent"], 0);
    assert_eq!(emulator.stats().import_calls, 0, "cancelled before its first batch");

    // A run that succeeds alerts nobody.
    let report = run(cancelled, None).await;
    assert!(
        matches!(report.status, RunStatus::Succeeded | RunStatus::SucceededWithRejects),
        "{report:?}"
    );
    assert_eq!(from_connection.lock().unwrap().len(), 2);
    assert_eq!(from_pipeline.lock().unwrap().len(), 2);
}
