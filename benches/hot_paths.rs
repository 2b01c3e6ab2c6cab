//! Micro benchmarks of the hot paths: `cargo bench --bench hot_paths`.
//!
//! Throughput is printed per item (addresses, rows, subscribers).

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::sync::Arc;

use cm_export::campaign_monitor::{ConsentToTrack, ImportBatch, ImportField, ImportSubscriber};
use cm_export::emulator::{IncomingImport, List};
use cm_export::members::{Dedupe, Extractor, FieldLayout, Layout, normalise};
use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray, StringViewArray};
use divan::counter::ItemsCount;
use divan::{Bencher, black_box};

fn main() {
    divan::main();
}

fn addresses(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match i % 20 {
            0 => format!("  Person.{i}@Example.COM "),
            1 => format!("broken{i}.example.com"),
            _ => format!("first.last{i}@mail.example.org"),
        })
        .collect()
}

#[divan::bench]
fn email_normalise_validate(bencher: Bencher) {
    let emails = addresses(8192);
    bencher
        .counter(ItemsCount::new(emails.len()))
        .bench(|| emails.iter().filter(|e| normalise(Some(black_box(e))).is_ok()).count());
}

/// In batches of 8192, as extraction offers them: a million distinct addresses, so the table
/// outgrows the caches as a real segment's does.
#[divan::bench]
fn dedupe_1m(bencher: Bencher) {
    let emails = addresses(1_000_000);
    bencher.counter(ItemsCount::new(emails.len())).bench(|| {
        let mut d = Dedupe::with_capacity(emails.len() as u64);
        emails
            .chunks(8192)
            .map(|batch| {
                d.first_times(batch.iter().map(String::as_str))
                    .into_iter()
                    .filter(|&f| f)
                    .count()
            })
            .sum::<usize>()
    });
}

/// The whole members stage on one 8192-row Arrow batch (Utf8View, as Parquet yields it).
#[divan::bench]
fn extract_batch_8192(bencher: Bencher) {
    let emails = addresses(8192);
    let names: Vec<String> = (0..8192).map(|i| format!("Person {i}")).collect();
    let cities: Vec<&str> = (0..8192).map(|i| ["Cluj", "Iasi", "Paris"][i % 3]).collect();
    let batch = RecordBatch::try_from_iter(vec![
        (
            "email",
            Arc::new(StringViewArray::from_iter_values(emails.iter())) as ArrayRef,
        ),
        (
            "name",
            Arc::new(StringViewArray::from_iter_values(names.iter())) as ArrayRef,
        ),
        ("city", Arc::new(StringArray::from(cities)) as ArrayRef),
    ])
    .unwrap();
    let layout = Layout {
        email: 0,
        name: Some(1),
        consent: None,
        consent_default: ConsentToTrack::Yes,
        fields: vec![FieldLayout::plain("City", "city", 2)],
        ..Default::default()
    };
    bencher.counter(ItemsCount::new(8192usize)).bench(|| {
        let mut extractor = Extractor::new(layout.clone());
        let mut members = 0;
        extractor.extract(&batch, |_, _| members += 1, |_| {}).unwrap();
        members
    });
}

fn import_batch() -> ImportBatch {
    import_batch_from(0)
}

fn import_batch_from(first: usize) -> ImportBatch {
    let subscribers = (first..first + 1000)
        .map(|i| ImportSubscriber {
            email_address: format!("first.last{i}@mail.example.org"),
            name: Some(format!("First Last {i}")),
            custom_fields: vec![ImportField {
                key: "City".into(),
                value: "Cluj-Napoca".into(),
                clear: false,
            }],
            consent_to_track: ConsentToTrack::Yes,
            row_key: None,
            mobile_number: None,
            consent_to_send_sms: None,
        })
        .collect();
    ImportBatch::new(subscribers).unwrap()
}

#[divan::bench]
fn encode_import_body_1000(bencher: Bencher) {
    let batch = import_batch();
    bencher
        .counter(ItemsCount::new(1000usize))
        .bench(|| batch.to_body(false).len());
}

/// The emulator's work for one 1000-member import into a fresh list: parse the body and
/// add every member (the export's case: most members are new).
#[divan::bench]
fn emulator_import_1000(bencher: Bencher) {
    let body = import_batch().to_body(false);
    bencher
        .counter(ItemsCount::new(1000usize))
        .with_inputs(|| {
            let mut list = List::new("l", "bench");
            list.add_custom_field("City", "Text", vec![], true).unwrap();
            list
        })
        .bench_local_values(|mut list| {
            let request = IncomingImport::parse(black_box(&body)).unwrap();
            black_box(list.import(request, "2026-01-01 00:00:00".parse().unwrap()));
            list
        });
}

/// A whole export's worth of imports into one list: a million members in 1000 bodies, as
/// the e2e bench's emulator takes them, without the HTTP around it. The list outgrows the
/// caches, so this is what an address lookup really costs.
#[divan::bench(sample_count = 5, sample_size = 1)]
fn emulator_import_1m(bencher: Bencher) {
    let bodies: Vec<Vec<u8>> = (0..1000).map(|b| import_batch_from(b * 1000).to_body(false)).collect();
    bencher
        .counter(ItemsCount::new(1_000_000usize))
        .with_inputs(|| {
            let mut list = List::new("l", "bench");
            list.add_custom_field("City", "Text", vec![], true).unwrap();
            list
        })
        .bench_local_values(|mut list| {
            for body in &bodies {
                let request = IncomingImport::parse(black_box(body)).unwrap();
                black_box(list.import(request, "2026-01-01 00:00:00".parse().unwrap()));
            }
            list
        });
}

#[divan::bench]
fn emulator_parse_import_1000(bencher: Bencher) {
    let body = import_batch().to_body(false);
    bencher.counter(ItemsCount::new(1000usize)).bench(|| {
        IncomingImport::parse(black_box(&body))
            .unwrap()
            .subscribers
            .map(|s| s.len())
    });
}
