//! Sync modes over snapshots in a row: what each mode sends and removes, checked member by
//! member on the emulator's list, with its call counts; the removal guard; changed
//! definitions; `--full`; and a kill between an accepted batch and the state update.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use cm_export::campaign_monitor::{ConsentToTrack, ImportBatch, ImportSubscriber};
use cm_export::config::{Connection, Connections, Pipeline};
use cm_export::emulator::{Emulator, MemberState};
use cm_export::export::{self, ProgressMode, RunOptions};
use cm_export::state::{Report, RunStatus};
use datafusion::arrow::array::{ArrayRef, BooleanArray, RecordBatch, StringArray};
use datafusion::parquet::arrow::ArrowWriter;

use crate::support::{KEY, LIST, command, emulator_with, key_client, output};

const OTHER: &str = "b58ee1d3039b8bec838e6d1482a8a966";

const PIPELINE: &str = r#"
[source]
path = "profiles"
[[segment]]
name = "vip"
sql = "SELECT * FROM profiles WHERE vip"
[destination]
connection = "cm"
list-id = "a58ee1d3039b8bec838e6d1482a8a965"
mode = "mirror"
[mapping]
email = "email"
name = "full_name"
custom-fields = { City = "city" }
[options]
batch-size = 100
concurrency = 2
"#;

/// One profile: address, city, in the segment.
type Profile = (String, String, bool);

fn s1() -> Vec<Profile> {
    (0..200)
        .map(|i| (format!("m{i}@example.com"), "Cluj".to_owned(), true))
        .collect()
}

/// S1 with 1% changed (m0, m1), 1% gone (m198, m199), 1% new (n0, n1); and m5, m6, m7,
/// who unsubscribed in Campaign Monitor after S1: m5 leaves the segment, m6 stays as it
/// was, m7's city changes.
fn s2() -> Vec<Profile> {
    let mut rows = s1();
    for i in [0, 1, 7] {
        rows[i].1 = "Iasi".to_owned();
    }
    for i in [5, 198, 199] {
        rows[i].2 = false;
    }
    rows.extend((0..2).map(|i| (format!("n{i}@example.com"), "Brasov".to_owned(), true)));
    rows
}

/// The same profiles, none of them in the segment.
fn outside(rows: Vec<Profile>) -> Vec<Profile> {
    rows.into_iter().map(|(email, city, _)| (email, city, false)).collect()
}

/// Writes the snapshot, replacing the one before. Addresses come as a source has them:
/// some in capitals and padded, which must not make the same member look new.
fn snapshot(dir: &Path, rows: &[Profile]) {
    let folder = dir.join("profiles");
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::create_dir_all(&folder).unwrap();
    let emails: Vec<String> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| match i % 3 {
            0 => format!("  {}\u{a0}", r.0.to_uppercase()),
            _ => r.0.clone(),
        })
        .collect();
    let names: Vec<String> = rows.iter().map(|r| format!("Member {}", r.0)).collect();
    let batch = RecordBatch::try_from_iter([
        ("email", Arc::new(StringArray::from(emails)) as ArrayRef),
        ("full_name", Arc::new(StringArray::from(names)) as ArrayRef),
        (
            "city",
            Arc::new(StringArray::from(rows.iter().map(|r| r.1.clone()).collect::<Vec<_>>())) as ArrayRef,
        ),
        (
            "vip",
            Arc::new(BooleanArray::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())) as ArrayRef,
        ),
    ])
    .unwrap();
    let file = std::fs::File::create(folder.join("part-0.parquet")).unwrap();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

struct Setup {
    dir: tempfile::TempDir,
    emulator: Emulator,
    pipeline: Pipeline,
    connection: Connection,
}

/// A folder with S1, a list that already holds `pre@example.com` (never sent by the export),
/// and a pipeline in `mode`.
async fn setup(mode: &str) -> Setup {
    setup_with(mode, |_| {}).await
}

async fn setup_with(mode: &str, faults: impl FnOnce(&mut cm_export::emulator::EmulatorConfig)) -> Setup {
    let emulator = emulator_with(|c| {
        c.lists.push((OTHER.into(), "List Two".into()));
        faults(c);
    })
    .await;
    for list in [LIST, OTHER] {
        emulator.with_list_mut(list, |l| l.add_custom_field("City", "Text", vec![], true).unwrap());
    }
    let pre = ImportSubscriber {
        email_address: "pre@example.com".into(),
        name: None,
        custom_fields: vec![],
        consent_to_track: ConsentToTrack::Yes,
        row_key: None,
        mobile_number: None,
        consent_to_send_sms: None,
    };
    let batch = ImportBatch::new(vec![pre]).unwrap();
    // Through the faults an emulator may inject, until it lands.
    let landed = async {
        for _ in 0..50 {
            if let Ok(answer) = key_client(&emulator).import(LIST, &batch, false).await
                && answer.status == 201
            {
                return true;
            }
        }
        false
    };
    assert!(landed.await);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key.txt"), KEY).unwrap();
    std::fs::write(
        dir.path().join("connections.toml"),
        format!(
            "[cm]\ndisplay-name = \"T\"\ndata-privacy-consent = true\napi-key-file = \"key.txt\"\nexport-user = \"t\"\nbase-url = \"{}\"\n",
            emulator.base_url()
        ),
    )
    .unwrap();
    snapshot(dir.path(), &s1());
    let pipeline = define(
        dir.path(),
        &PIPELINE.replace("mode = \"mirror\"", &format!("mode = \"{mode}\"")),
    );
    let connection = Connections::load(&dir.path().join("connections.toml"))
        .unwrap()
        .get("cm")
        .unwrap()
        .clone();
    Setup {
        dir,
        emulator,
        pipeline,
        connection,
    }
}

fn define(dir: &Path, text: &str) -> Pipeline {
    let path = dir.join("vip.toml");
    std::fs::write(&path, text).unwrap();
    Pipeline::load(&path).unwrap()
}

impl Setup {
    async fn run(&self, change: impl FnOnce(&mut RunOptions)) -> Report {
        let mut options = RunOptions {
            state_dir: Some(self.dir.path().join(".cm-export")),
            progress: ProgressMode::Never,
            ..RunOptions::default()
        };
        change(&mut options);
        export::run(&self.pipeline, &self.connection, None, &options, std::future::pending())
            .await
            .unwrap()
    }

    /// Every member of the first list by address, with its state.
    fn list(&self) -> BTreeMap<String, MemberState> {
        self.emulator
            .with_list(LIST, |l| {
                l.members
                    .values()
                    .map(|m| (m.email().to_ascii_lowercase(), m.state))
                    .collect()
            })
            .unwrap()
    }

    fn unsubscribe(&self, emails: &[&str]) {
        self.emulator.with_list_mut(LIST, |l| {
            for email in emails {
                l.member_mut(email).unwrap().state = MemberState::Unsubscribed;
            }
        });
    }
}

/// The list S1 leaves: its 200 members and `pre`, all active.
fn after_s1() -> BTreeMap<String, MemberState> {
    let mut list: BTreeMap<String, MemberState> = s1().into_iter().map(|r| (r.0, MemberState::Active)).collect();
    list.insert("pre@example.com".into(), MemberState::Active);
    list
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_sends_the_changes_and_removes_only_members_it_added_who_left() {
    let s = setup("mirror").await;
    let first = s.run(|_| {}).await;
    assert_eq!(first.status, RunStatus::Succeeded, "{first:?}");
    assert_eq!(
        (first.members_sent, first.members_unchanged, first.members_removed),
        (200, 0, 0)
    );
    assert_eq!(
        first.full_sync.as_deref(),
        Some("this is the export's first run in this mode")
    );
    assert_eq!(first.synced_members, Some(200));
    assert_eq!(s.list(), after_s1());
    assert_eq!(s.emulator.stats().import_calls, 1 + 2);

    s.unsubscribe(&["m5@example.com", "m6@example.com", "m7@example.com"]);
    snapshot(s.dir.path(), &s2());
    let second = s.run(|_| {}).await;
    assert_eq!(second.status, RunStatus::SucceededWithRejects, "{second:?}");
    // n0, n1 new; m0, m1 changed; m7 changed but unsubscribed: refused (206), not re-added.
    assert_eq!((second.members_new, second.members_existing), (2, 2));
    assert_eq!(second.rejected.api, BTreeMap::from([(206, 1)]));
    assert_eq!(second.members_unchanged, 199 - 5);
    // m198 and m199 left and are removed; m5 left but had unsubscribed: not touched.
    assert_eq!(
        (
            second.members_removed,
            second.members_already_gone,
            second.removal_failures
        ),
        (2, 1, 0)
    );
    let mut expected = after_s1();
    expected.insert("n0@example.com".into(), MemberState::Active);
    expected.insert("n1@example.com".into(), MemberState::Active);
    for gone in ["m198@example.com", "m199@example.com"] {
        expected.insert(gone.into(), MemberState::Deleted);
    }
    for unsubscribed in ["m5@example.com", "m6@example.com", "m7@example.com"] {
        expected.insert(unsubscribed.into(), MemberState::Unsubscribed);
    }
    assert_eq!(s.list(), expected);
    let stats = s.emulator.stats();
    assert_eq!((stats.import_calls, stats.subscribers_received), (3 + 1, 1 + 200 + 5));
    assert_eq!((stats.subscribers_deleted, stats.subscribers_unsubscribed), (2, 0));
    // The rejects file explains the refused member.
    assert_eq!(second.rejected_rows(), 1);

    // Nothing changed: only m7, still refused, is tried again; nobody is removed twice.
    let third = s.run(|_| {}).await;
    assert_eq!(
        (third.members_sent, third.members_unchanged, third.members_removed),
        (0, 198, 0)
    );
    assert_eq!(third.rejected.api, BTreeMap::from([(206, 1)]));
    assert_eq!(s.list(), expected);
    assert_eq!(s.emulator.stats().subscribers_deleted, 2);

    // S3: the segment comes back empty. Nobody is removed, nothing is sent.
    snapshot(s.dir.path(), &outside(s2()));
    let calls = s.emulator.stats().requests;
    let fourth = s.run(|_| {}).await;
    assert_eq!(fourth.status, RunStatus::Failed);
    assert_eq!(fourth.status.exit_code(), 2);
    let why = fourth.error.unwrap();
    assert!(
        why.contains("the segment returned no rows, so mirror would remove all 199 members")
            && why.ends_with("run once with --allow-removals 199"),
        "{why}"
    );
    assert_eq!(s.list(), expected);
    let after = s.emulator.stats().requests;
    assert_eq!(
        after
            .keys()
            .filter(|k| k.contains("subscribers"))
            .map(|k| after[k].clone())
            .collect::<Vec<_>>(),
        calls
            .keys()
            .filter(|k| k.contains("subscribers"))
            .map(|k| calls[k].clone())
            .collect::<Vec<_>>(),
        "no subscriber call at all"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_past_max_removals_is_refused_until_allowed() {
    let s = setup("mirror").await;
    assert_eq!(s.run(|_| {}).await.status, RunStatus::Succeeded);
    // 30% of the members leave, and one more joins: the bound is 10% (20).
    let mut rows = s1();
    for row in rows.iter_mut().take(60) {
        row.2 = false;
    }
    rows.push(("late@example.com".into(), "Cluj".into(), true));
    snapshot(s.dir.path(), &rows);
    let refused = s.run(|_| {}).await;
    assert_eq!(refused.status, RunStatus::Failed);
    let why = refused.error.unwrap();
    assert!(
        why.contains("mirror would remove 60 of the 200 members this export has on the list, more than `options.max-removals` = 10% allows (20)")
            && why.contains("nothing was removed or sent")
            && why.ends_with("--allow-removals 40"),
        "{why}"
    );
    assert_eq!(s.list(), after_s1(), "late@ was not sent either");

    let allowed = s.run(|o| o.allow_removals = 40).await;
    assert_eq!(allowed.status, RunStatus::Succeeded, "{allowed:?}");
    assert_eq!((allowed.members_sent, allowed.members_removed), (1, 60));
    let list = s.list();
    assert_eq!(list.values().filter(|s| **s == MemberState::Deleted).count(), 60);
    assert_eq!(list["late@example.com"], MemberState::Active);
    assert_eq!(
        list["pre@example.com"],
        MemberState::Active,
        "never removed: the export did not add it"
    );
    assert_eq!(allowed.synced_members, Some(141));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_sends_only_new_and_changed_members_and_removes_nobody() {
    let s = setup("changes").await;
    assert_eq!(s.run(|_| {}).await.members_sent, 200);
    snapshot(s.dir.path(), &s2());
    let second = s.run(|_| {}).await;
    // m0, m1, m7 changed; n0, n1 new. Nobody unsubscribed here.
    assert_eq!(
        (second.members_new, second.members_existing, second.members_unchanged),
        (2, 3, 194)
    );
    assert_eq!((second.members_removed, second.members_already_gone), (0, 0));
    let list = s.list();
    assert_eq!(list.len(), 203);
    assert!(list.values().all(|s| *s == MemberState::Active), "{list:?}");
    let stats = s.emulator.stats();
    assert_eq!(
        (stats.subscribers_received, stats.subscribers_deleted),
        (1 + 200 + 5, 0)
    );

    // --full sends every member and keeps the state true.
    let full = s.run(|o| o.full = true).await;
    assert_eq!((full.members_sent, full.members_unchanged), (199, 0));
    assert_eq!(full.full_sync.as_deref(), Some("--full was given"));
    let after = s.run(|_| {}).await;
    assert_eq!((after.members_sent, after.members_unchanged), (0, 199));

    // S3, an empty segment: nothing to send, and `changes` removes nobody.
    snapshot(s.dir.path(), &outside(s2()));
    let third = s.run(|_| {}).await;
    assert_eq!(
        (third.status, third.members_sent, third.members_removed),
        (RunStatus::Succeeded, 0, 0)
    );
    assert_eq!(s.list(), list);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_sends_every_member_every_time() {
    let s = setup("upsert").await;
    assert_eq!(s.run(|_| {}).await.members_sent, 200);
    snapshot(s.dir.path(), &s2());
    let second = s.run(|_| {}).await;
    assert_eq!(
        (second.members_sent, second.members_unchanged, second.synced_members),
        (199, 0, None)
    );
    assert_eq!(s.list().len(), 203);
    assert!(s.list().values().all(|s| *s == MemberState::Active));
    assert!(!s.dir.path().join(".cm-export/synced").exists());
    snapshot(s.dir.path(), &outside(s2()));
    let third = s.run(|_| {}).await;
    assert_eq!((third.status, third.members_sent), (RunStatus::Succeeded, 0));
    assert_eq!(s.list().len(), 203);
}

/// Mirror under a rate limit, 500s and dropped connections: the list ends exactly as it
/// should, each member removed once; a member no longer on the list at all counts as gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_removals_go_through_the_gate_and_retries() {
    let s = setup_with("mirror", |c| {
        c.fail_rate = 0.15;
        c.drop_rate = 0.1;
        c.rate_limit = Some(cm_export::emulator::RateLimitConfig {
            requests: 40,
            window: std::time::Duration::from_millis(200),
        });
        c.seed = 7;
    })
    .await;
    let fast = |o: &mut RunOptions| {
        o.backoff = cm_export::retry::Backoff {
            base: std::time::Duration::from_millis(1),
            cap: std::time::Duration::from_millis(20),
            max_retries: 30,
            max_rate_limit_wait: std::time::Duration::from_millis(300),
        }
    };
    let first = s.run(fast).await;
    assert_eq!(first.status, RunStatus::Succeeded, "{first:?}");
    // Everyone in S1 but ten members leaves; one of them is no longer on the list at all.
    s.emulator.with_list_mut(LIST, |l| l.members.remove("m3@example.com"));
    let mut rows = s1();
    for row in rows.iter_mut().skip(10) {
        row.2 = false;
    }
    snapshot(s.dir.path(), &rows);
    let second = s
        .run(|o| {
            fast(o);
            o.allow_removals = 190;
        })
        .await;
    assert_eq!(second.status, RunStatus::Succeeded, "{second:?}");
    assert_eq!(second.members_removed + second.members_already_gone, 190);
    let list = s.list();
    for i in 0..200 {
        let email = format!("m{i}@example.com");
        let want = match i {
            3 => None,
            0..10 => Some(MemberState::Active),
            _ => Some(MemberState::Deleted),
        };
        assert_eq!(list.get(&email).copied(), want, "{email}");
    }
    assert_eq!(list["pre@example.com"], MemberState::Active);
    let stats = s.emulator.stats();
    assert_eq!(stats.subscribers_deleted, 190);
    // The gate learned the limit from the headers and kept under it; the faults came.
    assert!(
        stats.faults.injected_500 > 0 && stats.faults.dropped_after_applying > 0,
        "{:?}",
        stats.faults
    );
    assert!(second.retries > 0);
    // The state holds the ten left; the next run has nothing to do.
    assert_eq!(second.synced_members, Some(10));
    let third = s.run(fast).await;
    assert_eq!(
        (third.members_sent, third.members_removed, third.members_unchanged),
        (0, 0, 10)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_with_no_files_removes_nobody() {
    let s = setup("mirror").await;
    s.run(|_| {}).await;
    std::fs::remove_file(s.dir.path().join("profiles/part-0.parquet")).unwrap();
    let report = s.run(|o| o.allow_removals = 1000).await;
    assert_eq!(report.status, RunStatus::Failed);
    assert!(
        report.error.as_deref().unwrap().contains("matches nothing"),
        "{report:?}"
    );
    assert_eq!(s.list(), after_s1());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_list_or_mapping_makes_a_full_run_that_removes_nobody() {
    let s = setup("mirror").await;
    s.run(|_| {}).await;
    // The mapping changes (no name any more) and 1% of the members leave.
    let mut rows = s1();
    rows[0].2 = false;
    rows[1].2 = false;
    snapshot(s.dir.path(), &rows);
    let pipeline = define(s.dir.path(), &PIPELINE.replace("name = \"full_name\"\n", ""));
    let s = Setup { pipeline, ..s };
    let changed = s.run(|_| {}).await;
    assert_eq!(changed.status, RunStatus::Succeeded, "{changed:?}");
    assert_eq!((changed.members_sent, changed.members_removed), (198, 0));
    assert_eq!(
        changed.full_sync.as_deref(),
        Some(
            "the mapping changed since the synced state was made; the state is made anew, and nobody is removed on the strength of the old one"
        )
    );
    assert_eq!(s.list(), after_s1(), "m0 and m1 stay: the new state never had them");
    // The state is now the new mapping's: the next run diffs against it.
    let next = s.run(|_| {}).await;
    assert_eq!((next.members_sent, next.members_unchanged), (0, 198));

    // Another list: everyone is sent there, and nobody is removed from either list on
    // the strength of the first list's state.
    rows[2].2 = false;
    snapshot(s.dir.path(), &rows);
    let text = std::fs::read_to_string(s.dir.path().join("vip.toml")).unwrap();
    let s = Setup {
        pipeline: define(s.dir.path(), &text.replace(LIST, OTHER)),
        ..s
    };
    let moved = s.run(|_| {}).await;
    assert_eq!((moved.members_sent, moved.members_removed), (197, 0));
    assert!(
        moved.full_sync.as_deref().unwrap().starts_with(&format!(
            "the synced state was made for list {LIST}, this run sends to list {OTHER}"
        )),
        "{moved:?}"
    );
    assert_eq!(s.list(), after_s1());
    let other = s.emulator.stats().lists[OTHER].members.clone();
    assert_eq!(other, BTreeMap::from([("Active".to_owned(), 197)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_run_neither_reads_nor_changes_the_real_state() {
    let s = setup("mirror").await;
    s.run(|_| {}).await;
    let state = s.dir.path().join(".cm-export/synced/vip.parquet");
    let before = std::fs::read(&state).unwrap();
    snapshot(s.dir.path(), &s2());
    let sandbox = s.run(|o| o.sandbox = true).await;
    assert_eq!((sandbox.members_sent, sandbox.members_removed), (199, 0));
    assert_eq!(
        sandbox.full_sync.as_deref(),
        Some("a sandbox run: the emulator's list starts empty")
    );
    assert_eq!(std::fs::read(&state).unwrap(), before);
    // The real run still sends the changes (here the "sandbox" was the same emulator).
    let real = s.run(|_| {}).await;
    assert_eq!(
        (real.members_sent, real.members_unchanged, real.members_removed),
        (5, 194, 3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_shows_the_diff_and_what_the_guard_would_decide() {
    let s = setup("mirror").await;
    s.run(|_| {}).await;
    s.unsubscribe(&["m5@example.com"]);
    snapshot(s.dir.path(), &s2());
    let options = RunOptions {
        state_dir: Some(s.dir.path().join(".cm-export")),
        ..RunOptions::default()
    };
    let plan = export::plan(&s.pipeline, &options).await.unwrap();
    let diff = plan.diff.as_ref().unwrap();
    assert_eq!((diff.to_add, diff.to_update, diff.unchanged), (2, 3, 194));
    let removals = diff.removals.as_ref().unwrap();
    // Plan reads no list: m5 counts until the run finds it unsubscribed.
    assert_eq!(
        (removals.to_remove, removals.bound, removals.refused.as_deref()),
        (3, 20, None)
    );
    assert!(
        removals.samples.iter().all(|s| s.contains("***@example.com")),
        "{removals:?}"
    );
    assert_eq!(s.emulator.stats().import_calls, 1 + 2, "plan sent nothing");

    snapshot(s.dir.path(), &outside(s1()));
    let plan = export::plan(&s.pipeline, &options).await.unwrap();
    let summary = plan.summary();
    assert!(
        summary.contains("mode mirror: to add 0, to update 0, unchanged 0")
            && summary.contains("to remove 200: REFUSED: the segment returned no rows"),
        "{summary}"
    );
}

/// The binary, killed after an accepted batch and before the synced state was written; the
/// resumed run puts every accepted member in the state, so the next run sends nobody again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_before_the_state_update_is_mended_by_resume() {
    let s = setup("changes").await;
    let run = |args: &[&str]| {
        let mut cm = command();
        cm.current_dir(s.dir.path())
            .args(["run", "vip.toml", "--progress", "never"])
            .args(args);
        cm
    };
    s.emulator.hold_imports();
    s.emulator.release_imports(1);
    let mut child = run(&[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    s.emulator.imports_waiting(1).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    assert!(
        !s.dir.path().join(".cm-export/synced/vip.parquet").exists(),
        "killed before the state update"
    );
    s.emulator.open_imports();

    let (code, stdout, stderr) = output(run(&["--resume"])).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("200 members of this export on the list"), "{stdout}");
    let (code, stdout, stderr) = output(run(&[])).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("sent 0 (new 0, existing 0)") && stdout.contains("mode changes: 200 unchanged (not sent)"),
        "{stdout}"
    );
    let stats = s.emulator.stats();
    // Each member landed once, but for a batch whose answer the kill may have cut off.
    assert_eq!(stats.lists[LIST].members["Active"], 201);
    assert!(
        stats.subscribers_received <= 1 + 200 + 100,
        "{}",
        stats.subscribers_received
    );
}
