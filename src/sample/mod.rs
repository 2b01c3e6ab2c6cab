//! Synthetic unified customer profiles as Parquet, with the defects real data has: mixed
//! case, stray spaces, duplicate, invalid and missing addresses. Same seed, same bytes.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::properties::WriterProperties;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const FIRST: [&str; 24] = [
    "ana", "andrei", "maria", "ion", "elena", "mihai", "sofia", "david", "emma", "lucas", "mia", "noah", "olivia",
    "liam", "ioana", "radu", "clara", "felix", "lena", "paul", "irina", "tudor", "nina", "victor",
];
const LAST: [&str; 20] = [
    "popescu", "ionescu", "smith", "muller", "martin", "garcia", "rossi", "novak", "jansen", "berg", "dumitru", "stan",
    "moreau", "fischer", "lopez", "bianchi", "kowalski", "larsen", "murphy", "costa",
];
const DOMAINS: [&str; 8] = [
    "example.com",
    "example.org",
    "mail.example.net",
    "example.ro",
    "post.example.de",
    "example.fr",
    "example.co.uk",
    "inbox.example.io",
];
const COUNTRIES: [(&str, &[&str]); 8] = [
    ("RO", &["Bucharest", "Cluj-Napoca", "Iasi", "Timisoara"]),
    ("DE", &["Berlin", "Munich", "Hamburg"]),
    ("FR", &["Paris", "Lyon", "Marseille"]),
    ("GB", &["London", "Manchester", "Leeds"]),
    ("US", &["New York", "Chicago", "Austin"]),
    ("ES", &["Madrid", "Barcelona"]),
    ("IT", &["Rome", "Milan"]),
    ("NL", &["Amsterdam", "Utrecht"]),
];
const TIERS: [&str; 4] = ["bronze", "silver", "gold", "platinum"];
/// Rows per Parquet row group.
const ROW_GROUP: usize = 65_536;

#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error("cannot create `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write `{}`", path.display())]
    Parquet {
        path: PathBuf,
        #[source]
        source: ParquetError,
    },
}

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Int64, false),
        Field::new("email", DataType::Utf8, true),
        Field::new("first_name", DataType::Utf8, false),
        Field::new("last_name", DataType::Utf8, false),
        Field::new("full_name", DataType::Utf8, false),
        Field::new("country", DataType::Utf8, false),
        Field::new("city", DataType::Utf8, false),
        Field::new("loyalty_tier", DataType::Utf8, false),
        Field::new("lifetime_value", DataType::Float64, false),
        Field::new("signup_date", DataType::Date32, false),
        Field::new("consent", DataType::Boolean, false),
    ]))
}

/// A stable per-id hash, so a customer's name and address derive from the id alone and
/// a duplicate row can repeat an earlier customer's address.
fn mix(id: u64) -> u64 {
    let mut z = id.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn names(id: u64) -> (&'static str, &'static str) {
    let h = mix(id);
    (FIRST[(h % 24) as usize], LAST[((h >> 8) % 20) as usize])
}

fn clean_email(id: u64) -> String {
    let (first, last) = names(id);
    format!("{first}.{last}{id}@{}", DOMAINS[((mix(id) >> 16) % 8) as usize])
}

/// The address column for row `id`, with its defect, if any.
fn email(id: u64, rng: &mut SmallRng) -> Option<String> {
    let roll: f64 = rng.random();
    let base = |rng: &mut SmallRng| {
        // About 3% of rows repeat an earlier customer's address.
        if id > 10 && rng.random_bool(0.03) {
            clean_email(rng.random_range(0..id))
        } else {
            clean_email(id)
        }
    };
    Some(match roll {
        r if r < 0.010 => return None,
        r if r < 0.015 => ["", "  "][rng.random_range(0..2)].to_owned(),
        r if r < 0.025 => {
            let (first, last) = names(id);
            match rng.random_range(0..4) {
                0 => format!("{first}.{last}{id}@"),
                1 => format!("{first} {last}@example.com"),
                2 => format!("{first}.{last}{id}.example.com"),
                _ => format!("{first}..{last}{id}@example.com"),
            }
        }
        r if r < 0.075 => base(rng).to_uppercase(),
        r if r < 0.095 => format!("  {} ", base(rng)),
        _ => base(rng),
    })
}

/// Writes `rows` profiles into `files` Parquet files in `out` (`part-00000.parquet`, ...).
pub fn generate(out: &Path, rows: u64, files: u32, seed: u64) -> Result<Vec<PathBuf>, SampleError> {
    std::fs::create_dir_all(out).map_err(|source| SampleError::Io {
        path: out.to_owned(),
        source,
    })?;
    let files = u64::from(files.max(1));
    let per_file = rows.div_ceil(files);
    let mut written = Vec::new();
    for index in 0..files {
        let start = index * per_file;
        let end = ((index + 1) * per_file).min(rows);
        if start >= end && index > 0 {
            break;
        }
        let path = out.join(format!("part-{index:05}.parquet"));
        let mut rng = SmallRng::seed_from_u64(mix(seed ^ mix(index)));
        write_file(&path, start..end, &mut rng)?;
        written.push(path);
    }
    Ok(written)
}

fn write_file(path: &Path, ids: std::ops::Range<u64>, rng: &mut SmallRng) -> Result<(), SampleError> {
    let parquet_err = |source| SampleError::Parquet {
        path: path.to_owned(),
        source,
    };
    let file = File::create(path).map_err(|source| SampleError::Io {
        path: path.to_owned(),
        source,
    })?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(ROW_GROUP))
        .set_created_by("cm-export sample-data".to_owned())
        .build();
    let mut writer = ArrowWriter::try_new(file, schema(), Some(properties)).map_err(parquet_err)?;
    let mut id = ids.start;
    while id < ids.end {
        let end = (id + ROW_GROUP as u64).min(ids.end);
        let batch = batch(id..end, rng).map_err(|e| parquet_err(e.into()))?;
        writer.write(&batch).map_err(parquet_err)?;
        id = end;
    }
    writer.close().map_err(parquet_err)?;
    Ok(())
}

fn batch(ids: std::ops::Range<u64>, rng: &mut SmallRng) -> Result<RecordBatch, datafusion::arrow::error::ArrowError> {
    let n = (ids.end - ids.start) as usize;
    let mut customer_id = Int64Builder::with_capacity(n);
    let mut email_col = StringBuilder::with_capacity(n, n * 32);
    let mut first_name = StringBuilder::with_capacity(n, n * 6);
    let mut last_name = StringBuilder::with_capacity(n, n * 7);
    let mut full_name = StringBuilder::with_capacity(n, n * 14);
    let mut country = StringBuilder::with_capacity(n, n * 2);
    let mut city = StringBuilder::with_capacity(n, n * 8);
    let mut tier = StringBuilder::with_capacity(n, n * 6);
    let mut value = Float64Builder::with_capacity(n);
    let mut signup = Date32Builder::with_capacity(n);
    let mut consent = BooleanBuilder::with_capacity(n);
    // 2015-01-01 as days since the epoch.
    const SIGNUP_START: i32 = 16_436;
    for id in ids {
        let (first, last) = names(id);
        let capital = |s: &str| {
            let mut c = s.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        };
        let (first_cap, last_cap) = (capital(first), capital(last));
        customer_id.append_value(id as i64);
        email_col.append_option(email(id, rng));
        full_name.append_value(format!("{first_cap} {last_cap}"));
        first_name.append_value(first_cap);
        last_name.append_value(last_cap);
        let (code, cities) = COUNTRIES[rng.random_range(0..COUNTRIES.len())];
        country.append_value(code);
        city.append_value(cities[rng.random_range(0..cities.len())]);
        tier.append_value(TIERS[rng.random_range(0..TIERS.len())]);
        // Exponential, mean 400: about 8% of customers are over 1000.
        let u: f64 = rng.random_range(f64::EPSILON..1.0);
        value.append_value((-u.ln() * 400.0 * 100.0).round() / 100.0);
        signup.append_value(SIGNUP_START + rng.random_range(0..4000));
        consent.append_value(rng.random_bool(0.8));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(customer_id.finish()),
        Arc::new(email_col.finish()),
        Arc::new(first_name.finish()),
        Arc::new(last_name.finish()),
        Arc::new(full_name.finish()),
        Arc::new(country.finish()),
        Arc::new(city.finish()),
        Arc::new(tier.finish()),
        Arc::new(value.finish()),
        Arc::new(signup.finish()),
        Arc::new(consent.finish()),
    ];
    RecordBatch::try_new(schema(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let fa = generate(a.path(), 5000, 2, 7).unwrap();
        let fb = generate(b.path(), 5000, 2, 7).unwrap();
        assert_eq!(fa.len(), 2);
        for (x, y) in fa.iter().zip(&fb) {
            assert_eq!(std::fs::read(x).unwrap(), std::fs::read(y).unwrap());
        }
        let c = tempfile::tempdir().unwrap();
        let fc = generate(c.path(), 5000, 2, 8).unwrap();
        assert_ne!(std::fs::read(&fa[0]).unwrap(), std::fs::read(&fc[0]).unwrap());
    }

    #[test]
    fn has_every_defect() {
        let mut rng = SmallRng::seed_from_u64(1);
        let emails: Vec<Option<String>> = (0..20_000).map(|id| email(id, &mut rng)).collect();
        assert!(emails.iter().any(Option::is_none));
        assert!(emails.iter().flatten().any(|e| e.trim().is_empty()));
        assert!(emails.iter().flatten().any(|e| e.starts_with("  ")));
        assert!(
            emails
                .iter()
                .flatten()
                .any(|e| e.chars().any(|c| c.is_ascii_uppercase()))
        );
        assert!(emails.iter().flatten().any(|e| !e.contains('@')));
    }
}
