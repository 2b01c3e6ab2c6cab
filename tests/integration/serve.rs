//! `cm-export serve`: the roles' table, request by request, against a service in this
//! process exporting to the emulator. Each row of the table is a test.

use std::path::Path;
use std::time::Duration;

use cm_export::emulator::Emulator;
use cm_export::schedule::ManualClock;
use cm_export::serve::{Role, ServeOptions, Serving, Token, Users};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{KEY, LIST, active_emails, emulator};

/// A service in this process, its users' tokens, and the emulator its connections reach.
pub struct Service {
    pub dir: tempfile::TempDir,
    pub emulator: Emulator,
    serving: Option<Serving>,
    pub base: String,
    pub admin: String,
    pub contributor: String,
    pub viewer: String,
    pub clock: ManualClock,
}

impl Service {
    /// Answers `method path` as the holder of `token` (`""`: no token): status and body.
    async fn call(&self, token: &str, method: Method, path: &str, body: Option<Body>) -> (StatusCode, Value) {
        let mut request = reqwest::Client::new().request(method, format!("{}{path}", self.base));
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        request = match body {
            Some(Body::Json(value)) => request.json(&value),
            Some(Body::Text(text)) => request.body(text),
            None => request,
        };
        let answer = request.send().await.unwrap();
        let status = answer.status();
        let text = answer.text().await.unwrap();
        assert!(!text.contains(KEY), "an answer holds the API key: {text}");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn add_connection(&self, name: &str, usable_by: &str) {
        let (status, body) = self
            .call(
                &self.admin,
                Method::POST,
                "/api/connections",
                Some(connection(name, usable_by, &self.emulator)),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    async fn save(&self, token: &str, export: &str, connection: &str) -> (StatusCode, Value) {
        let path = format!("/api/exports/{export}");
        self.call(
            token,
            Method::PUT,
            &path,
            Some(Body::Text(definition(self.dir.path(), connection))),
        )
        .await
    }

    /// Waits for run `run_id` of `export` to end; its report.
    pub async fn finished(&self, export: &str, run_id: &str) -> Value {
        let path = format!("/api/exports/{export}/runs/{run_id}");
        // The run ends on its own (the emulator answers at once): bounded polling for its end.
        for _ in 0..1500 {
            let (status, report) = self.call(&self.viewer, Method::GET, &path, None).await;
            assert_eq!(status, StatusCode::OK, "{report}");
            if report["status"] != "running" {
                return report;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("run {run_id} of {export} did not end in 30 s");
    }

    pub async fn stop(mut self) {
        if let Some(serving) = self.serving.take() {
            serving.stop().await.unwrap();
        }
    }
}

enum Body {
    Json(Value),
    Text(String),
}

fn connection(name: &str, usable_by: &str, emulator: &Emulator) -> Body {
    Body::Json(json!({
        "name": name,
        "display_name": format!("Campaign Monitor ({name})"),
        "usable_by": usable_by,
        "data_privacy_consent": true,
        "api_key": KEY,
        "export_user": "exports@example.com",
        "base_url": emulator.base_url(),
    }))
}

fn definition(dir: &Path, connection: &str) -> String {
    format!(
        "[source]\npath = \"{}\"\n[[segment]]\nname = \"valuable\"\nsql = \"SELECT * FROM profiles WHERE lifetime_value > 300\"\n\
         [destination]\nconnection = \"{connection}\"\nlist-id = \"{LIST}\"\n[mapping]\nemail = \"email\"\nname = \"full_name\"\n\
         [options]\nbatch-size = 100\nconcurrency = 2\n",
        dir.join("profiles").display()
    )
}

pub async fn service() -> Service {
    let dir = tempfile::tempdir().unwrap();
    cm_export::sample::generate(&dir.path().join("profiles"), 1500, 2, 13).unwrap();
    std::fs::create_dir(dir.path().join("pipelines")).unwrap();
    let state = dir.path().join("state");
    let mut users = Users::load(&Users::path(&state)).unwrap();
    let mut token = |name, role| {
        let Token(token) = users.add(name, role).unwrap();
        token
    };
    let (admin, contributor, viewer) = (
        token("ana", Role::Admin),
        token("bob", Role::Contributor),
        token("vic", Role::Viewer),
    );
    // Scheduled times never come: the clock moves only by hand.
    let clock = ManualClock::new(chrono::Utc::now());
    let options = ServeOptions {
        dir: dir.path().join("pipelines"),
        listen: ([127, 0, 0, 1], 0).into(),
        state_dir: Some(state),
        schedule: None,
    };
    let serving = cm_export::serve::start(options, clock.clock()).await.unwrap();
    Service {
        base: format!("http://{}", serving.addr),
        serving: Some(serving),
        dir,
        emulator: emulator().await,
        admin,
        contributor,
        viewer,
        clock,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everyone_sees_exports_runs_and_connections_but_never_a_secret() {
    let s = service().await;
    s.add_connection("shared", "admins-and-contributors").await;
    assert_eq!(s.save(&s.admin, "weekly", "shared").await.0, StatusCode::CREATED);
    for token in [&s.viewer, &s.contributor, &s.admin] {
        for path in [
            "/api/connections",
            "/api/exports",
            "/api/exports/weekly",
            "/api/exports/weekly/runs",
        ] {
            let (status, body) = s.call(token, Method::GET, path, None).await;
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
        }
    }
    let (_, connections) = s.call(&s.viewer, Method::GET, "/api/connections", None).await;
    assert_eq!(connections[0]["credentials"], "api key (held by the service)");
    let (status, body) = s.call("", Method::GET, "/api/exports", None).await;
    assert_eq!(
        (status, body["error"].as_str().is_some()),
        (StatusCode::UNAUTHORIZED, true)
    );
    let forged = format!("{}x", &s.viewer[..s.viewer.len() - 1]);
    assert_eq!(
        s.call(&forged, Method::GET, "/api/exports", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    // A new token (`cm-export user token vic`) ends the old one, though it was just accepted.
    let mut users = Users::load(&Users::path(&s.dir.path().join("state"))).unwrap();
    let Token(new) = users.new_token("vic").unwrap();
    assert_eq!(
        s.call(&s.viewer, Method::GET, "/api/exports", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(s.call(&new, Method::GET, "/api/exports", None).await.0, StatusCode::OK);
    let on_disk = std::fs::read_to_string(s.dir.path().join("state/serve/connections.toml")).unwrap();
    assert!(!on_disk.contains(KEY), "the connections file holds the key");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_manage_connections_users_and_read_the_audit_log() {
    let s = service().await;
    for token in [&s.viewer, &s.contributor] {
        let new = connection("mine", "admins-and-contributors", &s.emulator);
        let (status, body) = s.call(token, Method::POST, "/api/connections", Some(new)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("may not add or change a connection")
        );
        for path in ["/api/audit", "/api/users"] {
            assert_eq!(
                s.call(token, Method::GET, path, None).await.0,
                StatusCode::FORBIDDEN,
                "{path}"
            );
        }
    }
    let mut refused = connection("careless", "admins", &s.emulator);
    if let Body::Json(value) = &mut refused {
        value["data_privacy_consent"] = json!(false);
    }
    let (status, body) = s.call(&s.admin, Method::POST, "/api/connections", Some(refused)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap().contains("data_privacy_consent"),
        "{body}"
    );

    s.add_connection("shared", "admins-and-contributors").await;
    let usable = Some(Body::Json(json!({ "usable_by": "admins" })));
    for token in [&s.viewer, &s.contributor] {
        let (status, _) = s
            .call(token, Method::PATCH, "/api/connections/shared", usable_by(&usable))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = s.call(token, Method::DELETE, "/api/connections/shared", None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (status, _) = s.call(&s.admin, Method::PATCH, "/api/connections/shared", usable).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        s.call(&s.admin, Method::DELETE, "/api/connections/shared", None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    let (status, users) = s.call(&s.admin, Method::GET, "/api/users", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(users.as_array().unwrap().len(), 3);
    let (_, audit) = s.call(&s.admin, Method::GET, "/api/audit", None).await;
    let acts: Vec<String> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e["user"].as_str().unwrap(),
                e["action"].as_str().unwrap(),
                e["target"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        acts,
        [
            "ana connection.removed shared",
            "ana connection.changed shared",
            "ana consent.given shared",
            "ana connection.added shared",
        ]
    );
    s.stop().await;
}

fn usable_by(body: &Option<Body>) -> Option<Body> {
    match body {
        Some(Body::Json(value)) => Some(Body::Json(value.clone())),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contributors_save_plan_and_run_exports_only_on_connections_usable_by_contributors() {
    let s = service().await;
    s.add_connection("shared", "admins-and-contributors").await;
    s.add_connection("restricted", "admins").await;

    let (status, body) = s.save(&s.viewer, "weekly", "shared").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = s.save(&s.contributor, "secret", "restricted").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body["error"].as_str().unwrap().contains("usable by admins"), "{body}");
    assert!(!s.dir.path().join("pipelines/secret.toml").exists());
    assert_eq!(s.save(&s.admin, "secret", "restricted").await.0, StatusCode::CREATED);
    let (status, body) = s.save(&s.contributor, "weekly", "shared").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // A definition that does not validate is refused, and nothing is written.
    let broken = Body::Text(definition(s.dir.path(), "shared").replace("lifetime_value", "lifetime_valu"));
    let (status, body) = s
        .call(&s.contributor, Method::PUT, "/api/exports/broken", Some(broken))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(!s.dir.path().join("pipelines/broken.toml").exists());

    for (path, method) in [
        ("/api/exports/weekly/plan", Method::POST),
        ("/api/exports/weekly/runs", Method::POST),
        ("/api/exports/weekly", Method::DELETE),
    ] {
        let (status, _) = s.call(&s.viewer, method.clone(), path, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "viewer {method} {path}");
        let secret = path.replace("weekly", "secret");
        let (status, _) = s.call(&s.contributor, method.clone(), &secret, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "contributor {method} {secret}");
    }
    let (status, plan) = s
        .call(&s.contributor, Method::POST, "/api/exports/weekly/plan", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    let members = plan["members_unique"].as_u64().unwrap();
    assert!(members > 100, "{plan}");
    assert!(active_emails(&s.emulator).is_empty(), "a plan sent members");

    let (status, started) = s
        .call(&s.contributor, Method::POST, "/api/exports/weekly/runs", None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let run_id = started["run_id"].as_str().unwrap().to_owned();
    let report = s.finished("weekly", &run_id).await;
    assert_eq!(report["status"], "succeeded_with_rejects", "{report}");
    assert_eq!(report["members_sent"].as_u64(), Some(members));
    assert_eq!(active_emails(&s.emulator).len() as u64, members);
    let (_, history) = s.call(&s.viewer, Method::GET, "/api/exports/weekly/runs", None).await;
    assert_eq!(history[0]["run_id"], run_id.as_str());
    assert_eq!(history[0]["trigger"], "manual");

    let (_, audit) = s.call(&s.admin, Method::GET, "/api/audit", None).await;
    let acts: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(acts[..3], ["run.started", "export.saved", "export.saved"]);
    assert_eq!(audit[0]["user"], "bob");

    assert_eq!(
        s.call(&s.contributor, Method::DELETE, "/api/exports/weekly", None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert!(!s.dir.path().join("pipelines/weekly.toml").exists());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contributors_export_stops_when_its_connection_becomes_admins_only() {
    let s = service().await;
    s.add_connection("shared", "admins-and-contributors").await;
    let daily = format!(
        "{}[schedule]\ncron = \"0 3 * * *\"\n",
        definition(s.dir.path(), "shared")
    );
    let (status, body) = s
        .call(
            &s.contributor,
            Method::PUT,
            "/api/exports/weekly",
            Some(Body::Text(daily)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // A run in progress (its imports held) is stopped before its next batch.
    s.emulator.hold_imports();
    s.emulator.release_imports(1);
    let (status, started) = s
        .call(&s.contributor, Method::POST, "/api/exports/weekly/runs", None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let run_id = started["run_id"].as_str().unwrap().to_owned();
    s.emulator.imports_waiting(1).await;
    // While it runs, its report is its progress.
    let (_, running) = s
        .call(
            &s.viewer,
            Method::GET,
            &format!("/api/exports/weekly/runs/{run_id}"),
            None,
        )
        .await;
    assert_eq!(running["status"], "running", "{running}");
    assert_eq!(running["progress"]["stage"], "scan", "{running}");
    assert!(
        running["progress"]["rows_expected"].as_u64().unwrap() > 100,
        "{running}"
    );
    let admins = Some(Body::Json(json!({ "usable_by": "admins" })));
    let (status, _) = s.call(&s.admin, Method::PATCH, "/api/connections/shared", admins).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    s.emulator.open_imports();
    let report = s.finished("weekly", &run_id).await;
    assert_eq!(report["status"], "cancelled", "{report}");
    let why = report["error"].as_str().unwrap();
    assert!(
        why.contains("saved by contributor `bob`") && why.contains("usable by admins only"),
        "{why}"
    );

    // Its scheduled time comes and it does not run: the history says why.
    s.clock.advance(Duration::from_secs(24 * 3600));
    let mut skipped = None;
    for _ in 0..1500 {
        let (_, history) = s.call(&s.viewer, Method::GET, "/api/exports/weekly/runs", None).await;
        skipped = history
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["status"] == "skipped")
            .cloned();
        if skipped.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let skipped = skipped.expect("no history line for the time it did not run");
    assert_eq!(skipped["trigger"], "schedule");
    let why = skipped["message"].as_str().unwrap();
    assert!(
        why.contains("not run at its time") && why.contains("saved by contributor `bob`"),
        "{why}"
    );

    // The contributor may no longer run it; nor may an admin while it is the contributor's.
    let (status, _) = s
        .call(&s.contributor, Method::POST, "/api/exports/weekly/runs", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = s.call(&s.admin, Method::POST, "/api/exports/weekly/runs", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("saved by contributor `bob`"),
        "{body}"
    );
    // Saved again by an admin, it is theirs and runs.
    let text = std::fs::read_to_string(s.dir.path().join("pipelines/weekly.toml")).unwrap();
    let (status, _) = s
        .call(&s.admin, Method::PUT, "/api/exports/weekly", Some(Body::Text(text)))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, started) = s.call(&s.admin, Method::POST, "/api/exports/weekly/runs", None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let report = s.finished("weekly", started["run_id"].as_str().unwrap()).await;
    assert_eq!(report["status"], "succeeded_with_rejects", "{report}");
    s.stop().await;
}

/// A browser logged in to the console: its session cookie and the CSRF token its pages carry.
struct Browser {
    base: String,
    cookie: String,
    csrf: String,
}

impl Browser {
    async fn login(service: &Service, token: &str) -> Browser {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let answer = client
            .post(format!("{}/login", service.base))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::SEE_OTHER);
        let set = answer.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Secure"),
            "{set}"
        );
        let cookie = set.split(';').next().unwrap().to_owned();
        let mut browser = Browser {
            base: service.base.clone(),
            cookie,
            csrf: String::new(),
        };
        let (_, page) = browser.get("/").await;
        let needle = "name=\"csrf\" value=\"";
        let at = page.find(needle).unwrap() + needle.len();
        browser.csrf = page[at..at + page[at..].find('"').unwrap()].to_owned();
        browser
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let answer = reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        (answer.status(), answer.text().await.unwrap())
    }

    /// Posts `fields`, with the session's CSRF token unless `forged`.
    async fn post(&self, path: &str, fields: &[(&str, &str)], forged: bool) -> (StatusCode, String) {
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        if !forged {
            form.push(("csrf", &self.csrf));
        }
        let answer = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .form(&form)
            .send()
            .await
            .unwrap();
        let (status, page) = (answer.status(), answer.text().await.unwrap());
        assert!(!page.contains(KEY), "a page holds the API key");
        (status, page)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_each_role_what_it_may_do_and_refuses_forged_forms() {
    let s = service().await;
    let admin = Browser::login(&s, &s.admin).await;
    let base_url = s.emulator.base_url();
    let connection = [
        ("name", "shared"),
        ("display_name", "Campaign Monitor (shared)"),
        ("api_key", KEY),
        ("export_user", "exports@example.com"),
        ("usable_by", "admins-and-contributors"),
        ("base_url", base_url.as_str()),
    ];
    let (status, page) = admin.post("/connections", &connection, false).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "without \"I agree\"");
    assert!(page.contains("data_privacy_consent"), "{page}");
    let agreed: Vec<_> = connection
        .iter()
        .copied()
        .chain([("data_privacy_consent", "true")])
        .collect();
    let (status, page) = admin.post("/connections", &agreed, true).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a forged form was taken: {page}");
    let (status, page) = admin.post("/connections", &agreed, false).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Connection shared saved"), "{page}");
    let (_, page) = admin.post("/connections/shared/test", &[], false).await;
    assert!(page.contains("Connection shared works"), "{page}");

    let contributor = Browser::login(&s, &s.contributor).await;
    let (_, editor) = contributor.get("/exports/new").await;
    assert!(
        editor.contains("Campaign Monitor (shared)"),
        "the editor offers the shared connection"
    );
    let source = s.dir.path().join("profiles").display().to_string();
    let export = [
        ("name", "weekly"),
        ("source", source.as_str()),
        ("sql", "SELECT * FROM profiles WHERE lifetime_value > 300"),
        ("connection", "shared"),
        ("list_id", LIST),
        ("email", "email"),
        ("full_name", "full_name"),
    ];
    let (status, page) = contributor.post("/exports/new", &export, false).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Export weekly saved"), "{page}");
    let (status, _) = contributor.post("/exports/weekly/run", &[], true).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(active_emails(&s.emulator).is_empty(), "a forged Run now ran");
    let (_, page) = contributor.post("/exports/weekly/run", &[], false).await;
    let at = page.find("Run ").unwrap();
    assert!(page[at..].contains("started"), "{page}");
    let run_id = page[at + 4..at + 4 + page[at + 4..].find(' ').unwrap()].to_owned();
    let report = s.finished("weekly", &run_id).await;
    assert_eq!(report["status"], "succeeded_with_rejects");
    let (_, page) = contributor.get("/exports/weekly").await;
    assert!(page.contains("<svg class=\"runs\""), "no plot of the runs");
    assert!(page.contains("succeeded with rejects"));

    let viewer = Browser::login(&s, &s.viewer).await;
    let (status, page) = viewer.get("/exports/weekly").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains(&run_id) && !page.contains("Run now"),
        "a viewer sees a Run button"
    );
    let (status, _) = viewer.post("/exports/weekly/run", &[], false).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, page) = viewer.get("/connections").await;
    assert!(
        !page.contains("I agree") && !page.contains("Remove"),
        "a viewer may manage connections"
    );
    let (status, _) = viewer.get("/audit").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, page) = admin.get("/audit").await;
    assert!(page.contains("run.started") && page.contains("consent.given"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_says_where_it_serves_first_and_logs_in_with_a_password() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("pipelines")).unwrap();
    let state = dir.path().join("pipelines/.cm-export");
    let mut users = Users::load(&Users::path(&state)).unwrap();
    users.add("ana", Role::Admin).unwrap();
    users.set_password("ana", "correct horse battery").unwrap();
    let mut serve = crate::support::command();
    serve
        .args(["serve", "pipelines", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = serve.spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().unwrap();
    let base = first
        .strip_prefix("serving on ")
        .unwrap_or_else(|| panic!("first line: {first}"));
    assert!(base.starts_with("http://127.0.0.1:"), "{first}");

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = |password: &'static str| {
        client
            .post(format!("{base}/login"))
            .form(&[("name", "ana"), ("password", password)])
            .send()
    };
    assert_eq!(
        login("correct horse batterx").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let answer = login("correct horse battery").await.unwrap();
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert!(
        answer.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("cmx_session=")
    );
    let answer = client.get(format!("{base}/api/me")).send().await.unwrap();
    assert_eq!(
        answer.status(),
        StatusCode::UNAUTHORIZED,
        "the API takes tokens, not cookies"
    );
    child.kill().await.unwrap();
}
