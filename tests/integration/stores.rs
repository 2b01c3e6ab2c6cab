//! Snapshots in object stores, on real local servers that `.ci/run` starts: S3 (`moto_server`,
//! `CM_TEST_S3_ENDPOINT`) and Azure Blob / ADLS (Azurite, `CM_TEST_AZURITE_ENDPOINT`). Each
//! export's list is checked member by member against the same files read locally.

use std::collections::BTreeSet;
use std::path::Path;

use object_store::ObjectStoreExt;
use object_store::aws::AmazonS3Builder;

use crate::support::{KEY, LIST, active_emails, command, emulator, segment_members, server};

const SEGMENT: &str = "lifetime_value > 300";

/// Writes profiles to `dir/profiles` (two files) and returns their names.
fn profiles(dir: &Path) -> Vec<std::path::PathBuf> {
    cm_export::sample::generate(&dir.join("profiles"), 3000, 2, 17).unwrap()
}

/// Writes profiles locally and uploads them to `store` twice: flat (`flat/NAME`) and as Hive
/// partitions (`hive/part=a/`, `hive/part=b/`); returns the local files.
async fn upload(store: &dyn object_store::ObjectStore, dir: &Path) -> Vec<std::path::PathBuf> {
    let files = profiles(dir);
    for (i, file) in files.iter().enumerate() {
        let bytes = std::fs::read(file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for key in [
            format!("flat/{name}"),
            format!("hive/part={}/{name}", ["a", "b"][i % 2]),
        ] {
            store
                .put(&object_store::path::Path::from(key), bytes.clone().into())
                .await
                .unwrap();
        }
    }
    files
}

/// Runs `cm-export run` of a pipeline reading `path` with `storage` against a fresh
/// emulator: exit code, stderr, the list's members.
async fn export(
    dir: &Path,
    path: &str,
    storage: &str,
    sql: &str,
    env: &[(&str, &str)],
) -> (i32, String, BTreeSet<String>) {
    let emulator = emulator().await;
    std::fs::write(
        dir.join("connections.toml"),
        format!(
            "[cm]\ndisplay-name = \"T\"\ndata-privacy-consent = true\napi-key-env = \"CM_STORE_TEST_KEY\"\nexport-user = \"t\"\nbase-url = \"{}\"\n",
            emulator.base_url()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("cloud.toml"),
        format!(
            "[source]\npath = \"{path}\"\n{storage}\n[[segment]]\nname = \"s\"\nsql = \"{sql}\"\n[destination]\nconnection = \"cm\"\nlist-id = \"{LIST}\"\n[mapping]\nemail = \"email\"\nname = \"full_name\"\n[options]\nbatch-size = 500\n"
        ),
    )
    .unwrap();
    let mut run = command();
    run.args(["run", "cloud.toml", "--progress", "never"])
        .env("CM_STORE_TEST_KEY", KEY)
        .current_dir(dir);
    for (name, value) in env {
        run.env(name, value);
    }
    let (code, _, stderr) = crate::support::output(run).await;
    (code, stderr, active_emails(&emulator))
}

/// Each of `flat` (the uploaded files) puts the segment's members on the list; `hive` (the
/// same files as `part=a`, `part=b`) has the partition as a column, as locally.
async fn exports_flat_and_hive(
    dir: &Path,
    files: &[std::path::PathBuf],
    flat: &[String],
    hive: &str,
    storage: &str,
    env: &[(&str, &str)],
) {
    let members = format!("SELECT email FROM profiles WHERE {SEGMENT}");
    let all = segment_members(&dir.join("profiles"), &members).await;
    let select = format!("SELECT * FROM profiles WHERE {SEGMENT}");
    for path in flat {
        let (code, stderr, on_list) = export(dir, path, storage, &select, env).await;
        assert_eq!(code, 1, "{path}: {stderr}");
        assert_eq!(on_list, all, "{path}");
    }
    let first = segment_members(&files[0], &members).await;
    let part_a = format!("SELECT * FROM profiles WHERE part = 'a' AND {SEGMENT}");
    let (code, stderr, on_list) = export(dir, hive, storage, &part_a, env).await;
    assert_eq!(code, 1, "{hive}: {stderr}");
    assert_eq!(on_list, first, "{hive}");
}

fn s3_storage(endpoint: &str) -> String {
    format!(
        "[source.storage]\nendpoint = \"{endpoint}\"\nallow-http = true\nregion = \"us-east-1\"\naccess-key-id-env = \"CM_TEST_S3_KEY_ID\"\nsecret-access-key-env = \"CM_TEST_S3_SECRET\"\n"
    )
}

const S3_KEYS: [(&str, &str); 2] = [
    ("CM_TEST_S3_KEY_ID", "testing"),
    ("CM_TEST_S3_SECRET", "testing-secret-f00d"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_from_s3_flat_hive_and_glob_and_refuses_a_missing_bucket() {
    let Some(endpoint) = server("CM_TEST_S3_ENDPOINT", "a local S3 server (moto_server)") else {
        return;
    };
    let bucket = format!("cm-export-test-{:08x}", rand::random::<u32>());
    let created = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{}", created.status());
    let store = AmazonS3Builder::new()
        .with_endpoint(&endpoint)
        .with_allow_http(true)
        .with_bucket_name(&bucket)
        .with_region("us-east-1")
        .with_access_key_id("testing")
        .with_secret_access_key("testing-secret-f00d")
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = upload(&store, dir.path()).await;
    let storage = s3_storage(&endpoint);
    let flat = [format!("s3://{bucket}/flat/"), format!("s3://{bucket}/flat/*.parquet")];
    exports_flat_and_hive(
        dir.path(),
        &files,
        &flat,
        &format!("s3://{bucket}/hive/"),
        &storage,
        &S3_KEYS,
    )
    .await;
    let select = format!("SELECT * FROM profiles WHERE {SEGMENT}");

    // A missing bucket: named, nothing sent, no secret in the words.
    let missing = format!("s3://{bucket}-missing/flat/");
    let (code, stderr, on_list) = export(dir.path(), &missing, &storage, &select, &S3_KEYS).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(&missing), "{stderr}");
    assert!(!stderr.contains("testing-secret-f00d"), "{stderr}");
    assert!(on_list.is_empty());

    // A secret's variable that is not set is named.
    let (code, stderr, _) = export(dir.path(), &format!("s3://{bucket}/flat/"), &storage, &select, &[]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(
            "`source.storage.access-key-id-env` names the environment variable `CM_TEST_S3_KEY_ID`, which is not set"
        ),
        "{stderr}"
    );
}

/// Azurite's well-known development account.
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Creates a container: the one call `object_store` does not make. Signed with the account
/// key as Azure's Shared Key scheme says (path-style, as Azurite serves it).
async fn create_container(endpoint: &str, container: &str) {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let date = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    let version = "2021-08-06";
    let to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{container}\nrestype:container"
    );
    let key = base64::engine::general_purpose::STANDARD.decode(AZURITE_KEY).unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(to_sign.as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let created = reqwest::Client::new()
        .put(format!("{endpoint}/{container}?restype=container"))
        .header("x-ms-date", date)
        .header("x-ms-version", version)
        .header("Content-Length", "0")
        .header("Authorization", format!("SharedKey {AZURITE_ACCOUNT}:{signature}"))
        .send()
        .await
        .unwrap();
    assert!(
        created.status().is_success(),
        "{}: {}",
        created.status(),
        created.text().await.unwrap_or_default()
    );
}

fn azure_storage(endpoint: &str) -> String {
    format!(
        "[source.storage]\nendpoint = \"{endpoint}\"\nallow-http = true\naccount-name = \"{AZURITE_ACCOUNT}\"\naccount-key-env = \"CM_TEST_AZURE_KEY\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_from_azure_blob_and_adls_paths_and_refuses_a_wrong_key() {
    let Some(endpoint) = server("CM_TEST_AZURITE_ENDPOINT", "Azurite (azurite-blob)") else {
        return;
    };
    // Azurite serves the account under its name: http://127.0.0.1:PORT/devstoreaccount1.
    let endpoint = format!("{}/{AZURITE_ACCOUNT}", endpoint.trim_end_matches('/'));
    let container = format!("cm-export-test-{:08x}", rand::random::<u32>());
    create_container(&endpoint, &container).await;
    let store = object_store::azure::MicrosoftAzureBuilder::new()
        .with_endpoint(endpoint.clone())
        .with_allow_http(true)
        .with_account(AZURITE_ACCOUNT)
        .with_access_key(AZURITE_KEY)
        .with_container_name(&container)
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = upload(&store, dir.path()).await;
    let storage = azure_storage(&endpoint);
    let key = [("CM_TEST_AZURE_KEY", AZURITE_KEY)];
    let flat = [
        format!("az://{container}/flat/"),
        format!("abfss://{container}@{AZURITE_ACCOUNT}.dfs.core.windows.net/flat/"),
    ];
    exports_flat_and_hive(
        dir.path(),
        &files,
        &flat,
        &format!("az://{container}/hive/"),
        &storage,
        &key,
    )
    .await;
    let select = format!("SELECT * FROM profiles WHERE {SEGMENT}");

    // Denied: another key. The URL is named, the key is not.
    let wrong = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXk=";
    let path = format!("az://{container}/flat/");
    let (code, stderr, on_list) = export(dir.path(), &path, &storage, &select, &[("CM_TEST_AZURE_KEY", wrong)]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(&path), "{stderr}");
    assert!(!stderr.contains(wrong) && !stderr.contains(AZURITE_KEY), "{stderr}");
    assert!(on_list.is_empty());
}

/// A file served over HTTP, as `https://host/file.parquet` is read (HEAD, then ranged GETs);
/// plain http is allowed to loopback only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_one_file_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let files = profiles(dir.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let files_dir = dir.path().join("profiles");
    let app = axum::Router::new().fallback_service(tower_http::services::ServeDir::new(files_dir));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    let select = format!("SELECT * FROM profiles WHERE {SEGMENT}");
    let first = segment_members(&files[0], &format!("SELECT email FROM profiles WHERE {SEGMENT}")).await;
    let (code, stderr, on_list) = export(dir.path(), &format!("http://{address}/{name}"), "", &select, &[]).await;
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(on_list, first);

    let (code, stderr, _) = export(
        dir.path(),
        &format!("http://{address}/missing.parquet"),
        "",
        &select,
        &[],
    )
    .await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("missing.parquet"), "{stderr}");
}
