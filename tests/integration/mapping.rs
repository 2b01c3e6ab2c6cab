//! What the mapping sends beyond address and name: mobile numbers (international form,
//! punctuation dropped, anything else a reject naming the column), SMS consent (a constant
//! or a column), and what a null does to a field on the list (`nulls = "skip"` leaves it,
//! `"clear"` blanks it). Checked on the emulator's list, member by member.

use std::path::Path;
use std::sync::Arc;

use cm_export::emulator::{Emulator, Member};
use cm_export::export;
use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};

use std::sync::LazyLock;

use crate::support::{LIST, all_profiles, emulator, local_export, text_rows, write_profiles};

static PIPELINE: LazyLock<String> = LazyLock::new(|| {
    all_profiles(
        r#"[mapping]
email = "email"
consent-to-track = "Yes"
custom-fields = { City = "city" }
mobile-number = "phone"
consent-to-send-sms = { column = "sms_ok" }
"#,
    )
});

type Row<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>);

fn profiles(dir: &Path, rows: &[Row]) {
    let batch = RecordBatch::try_from_iter([
        (
            "email",
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))) as ArrayRef,
        ),
        ("phone", Arc::new(StringArray::from_iter(rows.iter().map(|r| r.1)))),
        ("sms_ok", Arc::new(StringArray::from_iter(rows.iter().map(|r| r.2)))),
        ("city", Arc::new(StringArray::from_iter(rows.iter().map(|r| r.3)))),
    ])
    .unwrap();
    write_profiles(dir, &batch);
}

async fn run(emulator: &Emulator, dir: &Path, text: &str) -> cm_export::state::Report {
    let (pipeline, connection, options) = local_export(emulator, dir, text);
    export::run(&pipeline, &connection, None, &options, std::future::pending())
        .await
        .unwrap()
}

/// The run's error: it must have sent nothing.
async fn run_err(emulator: &Emulator, dir: &Path, text: &str) -> String {
    let report = run(emulator, dir, text).await;
    assert_eq!(report.members_sent, 0);
    report.error.unwrap()
}

/// `(mobile, SMS consent, fields)` of a member of the list.
fn on_list(emulator: &Emulator, email: &str) -> (Option<String>, &'static str, Vec<(String, String)>) {
    emulator
        .with_list(LIST, |l| {
            let m: &Member = l.member(email).unwrap();
            (
                m.mobile_number.as_deref().map(str::to_owned),
                m.consent_to_send_sms.as_str(),
                m.custom_fields.clone(),
            )
        })
        .unwrap()
}

/// `(email, column, message)` of every rejects row, by address.
fn rejects(path: &Path) -> Vec<(String, String, String)> {
    let mut rows: Vec<_> = text_rows(path, &["email", "column", "message"])
        .into_iter()
        .map(|row| match <[_; 3]>::try_from(row) {
            Ok([Some(email), Some(column), Some(message)]) => (email, column, message),
            row => panic!("{row:?}"),
        })
        .collect();
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mobile_numbers_sms_consent_and_nulls_reach_the_list_as_mapped() {
    let emulator = emulator().await;
    emulator.with_list_mut(LIST, |l| {
        l.add_custom_field("City", "Text", vec![], true).unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    profiles(
        dir.path(),
        &[
            ("ada@example.com", Some("+40 712-345.678"), Some("yes"), Some("Cluj")),
            ("bob@example.com", None, None, Some("Iasi")),
            ("cy@example.com", Some("0712345678"), Some("Yes"), Some("Arad")),
            ("di@example.com", Some("+40712345679"), Some("maybe"), Some("Sibiu")),
        ],
    );
    let report = run(&emulator, dir.path(), PIPELINE.as_str()).await;
    assert_eq!(report.members_sent, 2, "{report:?}");
    assert_eq!(
        on_list(&emulator, "ada@example.com"),
        (Some("+40712345678".into()), "Yes", vec![("City".into(), "Cluj".into())])
    );
    // No number and no consent: nothing of either is sent; a new member's consent is No.
    assert_eq!(
        on_list(&emulator, "bob@example.com"),
        (None, "No", vec![("City".into(), "Iasi".into())])
    );
    assert_eq!(
        rejects(report.rejects_file.as_ref().unwrap()),
        [
            (
                "cy@example.com".to_owned(),
                "phone".to_owned(),
                "mobile number `0712345678` is not in international form: `+`, the country code and the number, 8 to 15 digits (+61412345678)".to_owned()
            ),
            (
                "di@example.com".to_owned(),
                "sms_ok".to_owned(),
                "SMS consent value `maybe` is not Yes, No or Unchanged".to_owned()
            ),
        ]
    );

    // A null city: skipped by default (the list keeps Cluj), cleared with `nulls = "clear"`.
    profiles(dir.path(), &[("ada@example.com", None, Some("No"), None)]);
    run(&emulator, dir.path(), PIPELINE.as_str()).await;
    assert_eq!(
        on_list(&emulator, "ada@example.com"),
        (Some("+40712345678".into()), "No", vec![("City".into(), "Cluj".into())])
    );
    let clearing = PIPELINE.replace("[mapping]", "[mapping]\nnulls = \"clear\"");
    run(&emulator, dir.path(), &clearing).await;
    assert_eq!(
        on_list(&emulator, "ada@example.com"),
        (Some("+40712345678".into()), "No", vec![])
    );
}

static TYPED: LazyLock<String> = LazyLock::new(|| {
    all_profiles(
        r#"[mapping]
email = "email"
consent-to-track = "Yes"
custom-fields = { City = "city", "Loyalty Tier" = { column = "sms_ok", type = "MultiSelectOne", options = ["Yes", "No"] }, Phone = { column = "phone", type = "Text" } }
[options]
create-missing-fields = true
"#,
    )
});

/// `(name, key, type, options)` of the list's fields.
fn fields(emulator: &Emulator) -> Vec<(String, String, String, Vec<String>)> {
    emulator
        .with_list(LIST, |l| {
            l.custom_fields
                .iter()
                .map(|f| {
                    (
                        f.field_name.clone(),
                        f.key.clone(),
                        f.data_type.clone(),
                        f.field_options.clone(),
                    )
                })
                .collect()
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_fields_and_options_are_created_with_their_types_and_a_clash_sends_nothing() {
    let emulator = emulator().await;
    emulator.with_list_mut(LIST, |l| {
        l.add_custom_field("City", "Text", vec![], true).unwrap();
        l.add_custom_field(
            "Loyalty Tier",
            "MultiSelectOne",
            vec!["No".into(), "Maybe".into()],
            true,
        )
        .unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    profiles(
        dir.path(),
        &[("ada@example.com", Some("+40712345678"), Some("Yes"), Some("Cluj"))],
    );

    // Without `create-missing-fields`, the missing field stops the run before anything is sent.
    let without = TYPED.replace("create-missing-fields = true", "create-missing-fields = false");
    let error = run_err(&emulator, dir.path(), &without).await;
    assert!(
        error.contains(
            "custom field `Loyalty Tier` lacks the option(s) `Yes` that `mapping.custom-fields.Loyalty Tier` names"
        ),
        "{error}"
    );
    let error = run_err(&emulator, dir.path(), &without.replace(r#""Yes", "No""#, r#""No""#)).await;
    assert!(error.contains("has no custom field with key `Phone`"), "{error}");
    assert_eq!(emulator.stats().import_calls, 0);
    assert_eq!(fields(&emulator).len(), 2);

    // With it: `Phone` is created as Text, `Yes` is added to the tier's options (kept: No, Maybe).
    let report = run(&emulator, dir.path(), TYPED.as_str()).await;
    assert_eq!(report.members_sent, 1, "{report:?}");
    assert_eq!(
        fields(&emulator),
        [
            ("City".into(), "[city]".into(), "Text".into(), vec![]),
            (
                "Loyalty Tier".into(),
                "[loyaltytier]".into(),
                "MultiSelectOne".into(),
                vec!["No".to_owned(), "Maybe".into(), "Yes".into()]
            ),
            ("Phone".into(), "[phone]".into(), "Text".into(), vec![]),
        ]
    );
    assert_eq!(
        on_list(&emulator, "ada@example.com").2,
        [
            ("City".to_owned(), "Cluj".to_owned()),
            ("Loyalty Tier".into(), "Yes".into()),
            ("Phone".into(), "+40712345678".into())
        ]
    );

    // A field of another type on the list: refused before anything is sent or changed.
    let calls = emulator.stats().import_calls;
    let clash = TYPED.replace(r#"type = "Text""#, r#"type = "Number""#);
    let error = run_err(&emulator, dir.path(), &clash).await;
    assert!(
        error.contains(
            "has custom field `Phone` as Text, but `mapping.custom-fields.Phone` maps it as Number; nothing was sent"
        ),
        "{error}"
    );
    assert_eq!(emulator.stats().import_calls, calls);
    assert_eq!(fields(&emulator).len(), 3);
}

static VALUES: LazyLock<String> = LazyLock::new(|| {
    all_profiles(
        r#"[mapping]
email = "email"
consent-to-track = "Yes"
[mapping.custom-fields]
Age = { column = "age", type = "Number" }
Joined = { column = "joined", type = "Date" }
Tier = { column = "tier", type = "MultiSelectOne", options = ["Bronze", "Gold"] }
Interests = { column = "interests", type = "MultiSelectMany", options = ["Books", "Music", "Film"], delimiter = ";" }
Country = { column = "country", type = "Country" }
State = { column = "state", type = "USState" }
[options]
create-missing-fields = true
"#,
    )
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_values_are_checked_before_sending_and_sent_as_the_api_reads_them() {
    let emulator = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let column = |values: [&str; 7]| Arc::new(StringArray::from_iter_values(values)) as ArrayRef;
    let batch = RecordBatch::try_from_iter([
        (
            "email",
            column([
                "ok@example.com",
                "age@example.com",
                "date@example.com",
                "tier@example.com",
                "many@example.com",
                "country@example.com",
                "state@example.com",
            ]),
        ),
        ("age", column([" 42 ", "forty", "7", "7", "7", "7", "7"])),
        (
            "joined",
            column([
                "2024-02-29",
                "2024/01/01",
                "2023-02-29",
                "2024/01/01",
                "2024/01/01",
                "2024/01/01",
                "2024/01/01",
            ]),
        ),
        (
            "tier",
            column(["gold", "Gold", "Gold", "platinum", "Gold", "Gold", "Gold"]),
        ),
        (
            "interests",
            column(["music; books", "Film", "Film", "Film", "Film;golf", "Film", "Film"]),
        ),
        (
            "country",
            column([
                "united kingdom",
                "Romania",
                "Romania",
                "Romania",
                "Romania",
                "Narnia",
                "Romania",
            ]),
        ),
        (
            "state",
            column(["ca", "Ohio", "Ohio", "Ohio", "Ohio", "Ohio", "Ontario"]),
        ),
    ])
    .unwrap();
    write_profiles(dir.path(), &batch);
    let report = run(&emulator, dir.path(), VALUES.as_str()).await;
    assert_eq!(report.members_sent, 1, "{report:?}");
    assert_eq!(
        on_list(&emulator, "ok@example.com").2,
        [
            ("Age".to_owned(), "42".to_owned()),
            ("Country".into(), "United Kingdom".into()),
            ("Interests".into(), "Music".into()),
            ("Interests".into(), "Books".into()),
            ("Joined".into(), "2024/02/29".into()),
            ("State".into(), "California".into()),
            ("Tier".into(), "Gold".into()),
        ]
    );
    assert_eq!(
        rejects(report.rejects_file.as_ref().unwrap()),
        [
            (
                "age@example.com".to_owned(),
                "age".to_owned(),
                "column `age`: `forty` is not a number (custom field `age` is Number)".to_owned()
            ),
            (
                "country@example.com".into(),
                "country".into(),
                "column `country`: `Narnia` is not a country name Campaign Monitor knows (it lists them at `countries.json`: `United Kingdom`, `United States of America`, ...) (custom field `country` is Country)"
                    .into()
            ),
            (
                "date@example.com".into(),
                "joined".into(),
                "column `joined`: `2023-02-29` is not a date (yyyy/mm/dd or yyyy-mm-dd) (custom field `joined` is Date)"
                    .into()
            ),
            (
                "many@example.com".into(),
                "interests".into(),
                "column `interests`: `golf` is not one of the field's options (Books, Music, Film) (custom field `interests` is MultiSelectMany)"
                    .into()
            ),
            (
                "state@example.com".into(),
                "state".into(),
                "column `state`: `Ontario` is not a US state (a name like `California`, or its code `CA`) (custom field `state` is USState)"
                    .into()
            ),
            (
                "tier@example.com".into(),
                "tier".into(),
                "column `tier`: `platinum` is not one of the field's options (Bronze, Gold) (custom field `tier` is MultiSelectOne)"
                    .into()
            ),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_column_fills_a_multi_select_many_field_one_key_per_item() {
    use datafusion::arrow::array::{ListBuilder, StringBuilder};
    let emulator = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let mut interests = ListBuilder::new(StringBuilder::new());
    for items in [vec!["music", "Books"], vec!["Film", "golf"], vec![]] {
        for item in items {
            interests.values().append_value(item);
        }
        interests.append(true);
    }
    let batch = RecordBatch::try_from_iter([
        (
            "email",
            Arc::new(StringArray::from_iter_values([
                "a@example.com",
                "b@example.com",
                "c@example.com",
            ])) as ArrayRef,
        ),
        ("interests", Arc::new(interests.finish()) as ArrayRef),
    ])
    .unwrap();
    write_profiles(dir.path(), &batch);
    let text = VALUES.replace(
        r#"Age = { column = "age", type = "Number" }
Joined = { column = "joined", type = "Date" }
Tier = { column = "tier", type = "MultiSelectOne", options = ["Bronze", "Gold"] }
Interests = { column = "interests", type = "MultiSelectMany", options = ["Books", "Music", "Film"], delimiter = ";" }
Country = { column = "country", type = "Country" }
State = { column = "state", type = "USState" }"#,
        r#"Interests = { column = "interests", type = "MultiSelectMany", options = ["Books", "Music", "Film"] }"#,
    );
    let report = run(&emulator, dir.path(), &text).await;
    assert_eq!(report.members_sent, 2, "{report:?}");
    assert_eq!(
        on_list(&emulator, "a@example.com").2,
        [
            ("Interests".to_owned(), "Music".to_owned()),
            ("Interests".into(), "Books".into())
        ]
    );
    assert!(on_list(&emulator, "c@example.com").2.is_empty());
    let rejected = rejects(report.rejects_file.as_ref().unwrap());
    assert_eq!(rejected.len(), 1);
    assert!(
        rejected[0]
            .2
            .contains("`golf` is not one of the field's options (Books, Music, Film)"),
        "{rejected:?}"
    );
}
