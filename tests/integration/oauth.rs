//! OAuth from the command line against the emulator: `connection authorize` end to end (the
//! browser's part played by following the printed address), the token file, a run that
//! refreshes an expired token and writes it back, and a refresh the API refuses.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use tokio::io::AsyncBufReadExt as _;

use crate::support::{active_emails, all_profiles, emulator_with, output, write_profiles};

const SECRET_VAR: &str = "CM_OAUTH_TEST_CLIENT_SECRET";
const SECRET: &str = "app-s3cret-value";

/// `pipelines/` with connection `cm` on the OAuth application `app`, and `export.toml`
/// sending two addresses through it.
fn folder(base_url: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let pipelines = dir.path().join("pipelines");
    std::fs::create_dir(&pipelines).unwrap();
    std::fs::write(
        pipelines.join("connections.toml"),
        format!(
            r#"
[cm]
display-name = "Campaign Monitor - OAuth"
data-privacy-consent = true
export-user = "ops@example.com"
base-url = "{base_url}"

[cm.oauth]
client-id = "app"
client-secret-env = "{SECRET_VAR}"
redirect-uri = "http://127.0.0.1:0/cm-export/authorized"
"#
        ),
    )
    .unwrap();
    let emails: ArrayRef = Arc::new(StringArray::from(vec!["ada@example.com", "bo@example.com"]));
    write_profiles(&pipelines, &RecordBatch::try_from_iter([("email", emails)]).unwrap());
    std::fs::write(
        pipelines.join("export.toml"),
        all_profiles("[mapping]\nemail = \"email\"\nconsent-to-track = \"Yes\"\n"),
    )
    .unwrap();
    dir
}

fn command(dir: &Path, args: &[&str]) -> tokio::process::Command {
    let mut command = crate::support::command();
    command
        .args(args)
        .env(SECRET_VAR, SECRET)
        .current_dir(dir)
        .kill_on_drop(true);
    command
}

async fn cm(dir: &Path, args: &[&str]) -> (i32, String, String) {
    output(command(dir, args)).await
}

/// `connection authorize cm` with the browser's part done by `browse`, which gets the
/// authorize address the command printed. Returns the command's exit code and output.
async fn authorize<F, Fut>(dir: &Path, browse: F) -> (i32, String, String)
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut child = command(dir, &["connection", "authorize", "cm", "--no-browser"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    // The minute only keeps a broken command from hanging the suite.
    let url = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            printed.push_str(&line);
            printed.push('\n');
            if let Some(url) = line.trim().strip_prefix("http") {
                return format!("http{url}");
            }
        }
        panic!("no authorize address in:\n{printed}");
    })
    .await
    .unwrap();
    browse(url).await;
    while let Some(line) = lines.next_line().await.unwrap() {
        printed.push_str(&line);
        printed.push('\n');
    }
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        printed,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn stored(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("pipelines/.cm-export/oauth/cm.json")).unwrap()).unwrap()
}

async fn emulator_call(emulator: &cm_export::emulator::Emulator, path: &str) {
    let answer = reqwest::Client::new()
        .post(format!("http://{}{path}", emulator.addr()))
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{path}");
}

#[tokio::test]
async fn authorize_keeps_tokens_owner_only_runs_refresh_them_and_a_refused_refresh_says_authorize_again() {
    let emulator = emulator_with(|c| c.oauth_clients = vec![("app".into(), SECRET.into())]).await;
    let dir = folder(&emulator.base_url());
    let dir = dir.path();
    let connections_before = std::fs::read_to_string(dir.join("pipelines/connections.toml")).unwrap();

    let (code, stdout, _) = cm(dir, &["connection", "list"]).await;
    assert_eq!(code, 0);
    assert!(stdout.contains("oauth (not authorized)"), "{stdout}");
    let (code, _, stderr) = cm(dir, &["run", "pipelines/export.toml"]).await;
    assert_eq!(code, 2);
    assert!(
        stderr.contains("connection `cm`: is not authorized yet: run `cm-export connection authorize cm`"),
        "{stderr}"
    );

    // The browser: the emulator's authorize page sends it straight back to the loopback.
    let (code, stdout, stderr) = authorize(dir, |url| async move {
        let page = reqwest::get(&url).await.unwrap();
        assert_eq!(page.status(), 200);
        assert!(page.text().await.unwrap().contains("cm-export is authorized"));
    })
    .await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let first = stored(dir);
    for secret in [
        SECRET,
        first["access_token"].as_str().unwrap(),
        first["refresh_token"].as_str().unwrap(),
    ] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{stdout}\n{stderr}"
        );
    }
    insta::with_settings!({ filters => vec![
        (r"127\.0\.0\.1:\d+", "127.0.0.1:PORT"),
        (r"127\.0\.0\.1%3A\d+", "127.0.0.1%3APORT"),
        (r"state=[0-9a-f]{32}", "state=STATE"),
        (r"API time [0-9: -]+", "API time TIME"),
    ]}, {
        insta::assert_snapshot!("connection_authorize", stdout);
    });
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("pipelines/.cm-export/oauth/cm.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("pipelines/connections.toml")).unwrap(),
        connections_before
    );
    let (_, stdout, _) = cm(dir, &["connection", "list"]).await;
    assert!(stdout.contains("oauth (authorized, refreshed 20"), "{stdout}");

    // Expired: the run refreshes once, carries on, and the next process finds the new tokens.
    emulator_call(&emulator, "/_emulator/expire-tokens").await;
    let (code, stdout, stderr) = cm(dir, &["run", "pipelines/export.toml"]).await;
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(active_emails(&emulator).len(), 2);
    let second = stored(dir);
    assert_ne!(second["access_token"], first["access_token"]);
    // The emulator spends a refresh token once: the old one is gone, the file has the new.
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_eq!(second["authorized_at"], first["authorized_at"]);
    assert_eq!(emulator.stats().requests["auth"][&401], 1);
    let (code, _, stderr) = cm(dir, &["connection", "test", "cm"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(emulator.stats().requests["auth"][&401], 1, "no second refresh");

    // The refresh token no longer works: the run stops and tells the admin what to do.
    emulator_call(&emulator, "/_emulator/revoke-refresh-tokens").await;
    emulator_call(&emulator, "/_emulator/expire-tokens").await;
    let (code, _, stderr) = cm(dir, &["connection", "test", "cm"]).await;
    assert_eq!(code, 2);
    assert!(
        stderr.contains("Expired OAuth Token, and refreshing it failed (HTTP 400 invalid_grant: Specified refresh_token was invalid or expired); run `cm-export connection authorize cm` to authorize the connection again"),
        "{stderr}"
    );
    let (code, _, stderr) = cm(dir, &["run", "pipelines/export.toml"]).await;
    assert_eq!(code, 2);
    assert!(stderr.contains("run `cm-export connection authorize cm`"), "{stderr}");
    assert!(!stderr.contains(second["refresh_token"].as_str().unwrap()), "{stderr}");

    // Authorizing again mends it.
    let (code, _, stderr) = authorize(dir, |url| async move {
        reqwest::get(&url).await.unwrap();
    })
    .await;
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = cm(dir, &["connection", "test", "cm"]).await;
    assert_eq!(code, 0, "{stderr}");
}

#[tokio::test]
async fn a_denied_or_forged_return_keeps_nothing_and_says_why() {
    let emulator = emulator_with(|c| c.oauth_clients = vec![("app".into(), SECRET.into())]).await;
    let dir = folder(&emulator.base_url());
    let dir = dir.path();
    let back = |url: &str, query: &str| {
        let url = url::Url::parse(url).unwrap();
        let pairs: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        let state = pairs["state"].clone();
        format!("{}?{}", pairs["redirect_uri"], query.replace("STATE", &state))
    };

    let (code, _, stderr) = authorize(dir, |url| async move {
        let page = reqwest::get(back(
            &url,
            "error=access_denied&error_description=The+user+said+no&state=STATE",
        ))
        .await
        .unwrap();
        assert_eq!(page.status(), 400);
    })
    .await;
    assert_eq!(code, 2);
    assert!(
        stderr.contains("Campaign Monitor did not authorize cm-export: access_denied (The user said no)"),
        "{stderr}"
    );
    assert!(!dir.join("pipelines/.cm-export/oauth/cm.json").exists());

    let (code, _, stderr) = authorize(dir, |url| async move {
        reqwest::get(back(&url, "code=forged&state=not-ours")).await.unwrap();
    })
    .await;
    assert_eq!(code, 2);
    assert!(stderr.contains("its `state` differs"), "{stderr}");
    assert!(!dir.join("pipelines/.cm-export/oauth/cm.json").exists());

    // Without the client secret nothing starts: the code could not be exchanged.
    let mut command = command(dir, &["connection", "authorize", "cm", "--no-browser"]);
    command.env_remove(SECRET_VAR);
    let (code, stdout, stderr) = output(command).await;
    assert_eq!(code, 2);
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains(&format!(
            "environment variable `{SECRET_VAR}` is not set; export the OAuth application's client secret in it"
        )),
        "{stderr}"
    );
}

/// Two processes on one token file (a scheduler and a run by hand) meet the same expired
/// token: one refreshes, the other takes the new tokens from the file. The emulator spends a
/// refresh token once, so refreshing twice would lock the second out.
#[tokio::test]
async fn two_clients_on_one_token_file_refresh_once() {
    use cm_export::campaign_monitor::{Client, ClientOptions, Credentials, TokenFile, types::OAuthTokens};

    let emulator = emulator_with(|c| c.oauth_clients = vec![("app".into(), SECRET.into())]).await;
    let redirect = "http://127.0.0.1:9/cb";
    let grant = crate::support::authorization_code(&emulator, "app", redirect).await;
    let tokens: OAuthTokens = reqwest::Client::new()
        .post(format!("http://{}/oauth/token", emulator.addr()))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "app"),
            ("client_secret", SECRET),
            ("redirect_uri", redirect),
            ("code", grant.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = TokenFile::new(dir.path().join("cm.json"), "cm");
    file.write(&tokens, None, chrono::Utc::now()).unwrap();
    let process = || {
        let read = file.read().unwrap().unwrap();
        let credentials = Credentials::OAuth {
            access_token: read.access,
            refresh_token: Some(read.refresh),
            file: Some(file.clone()),
        };
        Client::new(
            cm_export::campaign_monitor::BaseUrl::parse(&emulator.base_url()).unwrap(),
            &credentials,
            ClientOptions::default(),
        )
        .unwrap()
    };
    let (scheduler, by_hand) = (process(), process());
    emulator_call(&emulator, "/_emulator/expire-tokens").await;
    let (a, b) = tokio::join!(scheduler.system_date(), by_hand.system_date());
    a.unwrap();
    b.unwrap();
    let after = file.read().unwrap().unwrap();
    assert_ne!(after.access.expose(), tokens.access_token);
    // One exchange, one refresh.
    assert_eq!(emulator.stats().requests["POST oauth/token"][&200], 2);
    // The file's refresh token is the live one: a third process can refresh with it.
    emulator_call(&emulator, "/_emulator/expire-tokens").await;
    process().system_date().await.unwrap();
}
