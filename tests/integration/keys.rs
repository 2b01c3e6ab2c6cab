//! `[mapping] key`: every rejected row, wherever it was refused (by the exporter, by the
//! API in a partial import), carries the row's key, so that a missing address can still be
//! traced; `plan`'s samples show it beside the masked address. The key is never sent.

use std::path::Path;
use std::sync::Arc;

use cm_export::emulator::MemberState;
use cm_export::export;
use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};

use std::sync::LazyLock;

use crate::support::{LIST, all_profiles, emulator, local_export, text_rows, write_profiles};

static PIPELINE: LazyLock<String> = LazyLock::new(|| {
    all_profiles(
        r#"[mapping]
email = "email"
name = "full_name"
consent-to-track = "Yes"
custom-fields = { City = "city" }
key = "customer_id"
"#,
    )
});

fn profiles(dir: &Path) {
    let long = "x".repeat(251);
    let rows: [(i64, Option<&str>, &str); 6] = [
        (101, Some("ada@example.com"), "Cluj"),
        (102, None, "Iasi"),
        (103, Some("not-an-email"), "Arad"),
        (104, Some("bounced@example.com"), "Sibiu"),
        (105, Some("ADA@example.com"), "Cluj"),
        (106, Some("long@example.com"), &long),
    ];
    let batch = RecordBatch::try_from_iter([
        (
            "customer_id",
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))) as ArrayRef,
        ),
        ("email", Arc::new(StringArray::from_iter(rows.iter().map(|r| r.1)))),
        (
            "full_name",
            Arc::new(StringArray::from_iter_values(rows.iter().map(|_| "N"))),
        ),
        (
            "city",
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
        ),
    ])
    .unwrap();
    write_profiles(dir, &batch);
}

/// `(email, key, reason)` of every rejects row, sorted by key.
fn rejects(path: &Path) -> Vec<(Option<String>, Option<String>, String)> {
    let mut rows: Vec<_> = text_rows(path, &["email", "key", "reason"])
        .into_iter()
        .map(|row| match <[_; 3]>::try_from(row) {
            Ok([email, key, reason]) => (email, key, reason.unwrap()),
            Err(row) => panic!("{row:?}"),
        })
        .collect();
    rows.sort_by(|a, b| a.1.cmp(&b.1));
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reject_carries_its_rows_key_and_plan_shows_it() {
    let emulator = emulator().await;
    emulator.with_list_mut(LIST, |l| {
        let body = serde_json::json!({ "EmailAddress": "bounced@example.com", "ConsentToTrack": "Yes" }).to_string();
        l.add(
            serde_json::from_str(&body).unwrap(),
            "2026-11-28 10:00:00".parse().unwrap(),
        )
        .unwrap();
        l.add_custom_field("City", "Text", vec![], true).unwrap();
        l.member_mut("bounced@example.com").unwrap().state = MemberState::Bounced;
    });
    let dir = tempfile::tempdir().unwrap();
    profiles(dir.path());
    let (pipeline, connection, options) = local_export(&emulator, dir.path(), PIPELINE.as_str());

    let plan = export::plan(&pipeline, &options).await.unwrap();
    assert_eq!(
        plan.samples,
        [
            "a***@example.com key=101 name=\"N\" consent=Yes City=Cluj",
            "b***@example.com key=104 name=\"N\" consent=Yes City=Sibiu",
        ]
    );

    let report = export::run(&pipeline, &connection, None, &options, std::future::pending())
        .await
        .unwrap();
    let text = |s: &str| Some(s.to_owned());
    assert_eq!(
        rejects(report.rejects_file.as_ref().unwrap()),
        [
            (None, text("102"), "missing_email".to_owned()),
            (text("not-an-email"), text("103"), "invalid_email".to_owned()),
            (text("bounced@example.com"), text("104"), "api".to_owned()),
            (text("long@example.com"), text("106"), "invalid_field".to_owned()),
        ]
    );
    // The key is never sent: the list holds the address, name and field, nothing else.
    emulator.with_list(LIST, |l| {
        let ada = l.member("ada@example.com").unwrap();
        assert_eq!(ada.custom_fields, [("City".to_owned(), "Cluj".to_owned())]);
        assert!(!format!("{:?}", ada.details()).contains("101"));
    });
}
