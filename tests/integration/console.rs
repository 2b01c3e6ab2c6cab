//! The console in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`), driven over WebDriver (`CM_TEST_CHROMEDRIVER`, which `.ci/run`
//! starts). An admin adds a connection with consent, a contributor builds an export in the
//! editor and runs it against the emulator, a viewer sees it without a Run button, and forged
//! forms are refused.

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::serve::{Service, service};
use crate::support::{KEY, LIST, active_emails, server};

async fn browser(webdriver: &str) -> Client {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
    ];
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({ "binary": "/usr/bin/chromium", "args": args }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(webdriver)
        .await
        .unwrap_or_else(|e| panic!("cannot start Chromium through {webdriver}: {e}"))
}

async fn log_in(browser: &Client, s: &Service, token: &str) {
    browser.goto(&format!("{}/login", s.base)).await.unwrap();
    browser
        .find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys(token)
        .await
        .unwrap();
    browser
        .find(Locator::Css("#login"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.wait().for_element(Locator::Css("header")).await.unwrap();
}

/// Clicks `button` and waits for the answer: a new page showing `shows` (a CSS selector).
async fn submit(browser: &Client, button: &str, shows: &str) -> String {
    let before = browser.find(Locator::Css("html")).await.unwrap();
    click(browser, &format!("#{button}")).await;
    // The old page may show `shows` too: wait until it is gone.
    for _ in 0..600 {
        if before.tag_name().await.is_err() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    browser.wait().for_element(Locator::Css(shows)).await.unwrap();
    browser.source().await.unwrap()
}

/// Opens `path` and returns its page once its heading is there.
async fn open(browser: &Client, s: &Service, path: &str) -> String {
    browser.goto(&format!("{}{path}", s.base)).await.unwrap();
    browser.wait().for_element(Locator::Css("main h1")).await.unwrap();
    browser.source().await.unwrap()
}

async fn click(browser: &Client, css: &str) {
    browser.find(Locator::Css(css)).await.unwrap().click().await.unwrap();
}

async fn log_out(browser: &Client) {
    click(browser, "header form button").await;
    browser.wait().for_element(Locator::Id("token")).await.unwrap();
}

async fn fill(browser: &Client, fields: &[(&str, &str)]) {
    for (id, value) in fields {
        let field = browser.find(Locator::Id(id)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }
}

/// What a POST of `path` from this page, with a CSRF token of its own making, answers.
async fn forged_post(browser: &Client, path: &str) -> u64 {
    let script = "const [path, done] = arguments; \
                  fetch(path, {method: 'POST', body: new URLSearchParams({csrf: 'forged'})}) \
                  .then(r => done(r.status), e => done(String(e)));";
    let status = browser.execute_async(script, vec![json!(path)]).await.unwrap();
    status
        .as_u64()
        .unwrap_or_else(|| panic!("the forged POST failed: {status}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_contributor_and_viewer_in_a_real_browser() {
    let Some(webdriver) = server("CM_TEST_CHROMEDRIVER", "chromedriver (Debian's chromium-driver)") else {
        return;
    };
    let s = service().await;
    let browser = browser(&webdriver).await;

    // The admin adds a connection; without "I agree" it is refused.
    log_in(&browser, &s, &s.admin).await;
    open(&browser, &s, "/connections").await;
    let base_url = s.emulator.base_url();
    fill(
        &browser,
        &[
            ("name", "shared"),
            ("display_name", "Campaign Monitor (shared)"),
            ("api_key", KEY),
            ("export_user", "exports@example.com"),
            ("base_url", &base_url),
        ],
    )
    .await;
    click(&browser, "#usable_by option[value=admins-and-contributors]").await;
    let page = submit(&browser, "add-connection", ".error").await;
    assert!(page.contains("data_privacy_consent"), "{page}");
    fill(&browser, &[("name", "shared"), ("api_key", KEY)]).await;
    let again = [
        ("display_name", "Campaign Monitor (shared)"),
        ("export_user", "exports@example.com"),
        ("base_url", base_url.as_str()),
    ];
    fill(&browser, &again).await;
    click(&browser, "#usable_by option[value=admins-and-contributors]").await;
    browser
        .find(Locator::Id("consent"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let page = submit(&browser, "add-connection", ".notice").await;
    assert!(page.contains("Connection shared saved"), "{page}");
    assert!(!page.contains(KEY));
    log_out(&browser).await;

    // The contributor builds an export in the editor and runs it.
    log_in(&browser, &s, &s.contributor).await;
    open(&browser, &s, "/exports/new").await;
    let source = s.dir.path().join("profiles").display().to_string();
    fill(
        &browser,
        &[
            ("name", "weekly"),
            ("source", &source),
            ("sql", "SELECT * FROM profiles WHERE lifetime_value > 300"),
            ("list_id", LIST),
        ],
    )
    .await;
    let page = submit(&browser, "save", ".notice").await;
    assert!(page.contains("Export weekly saved"), "{page}");
    assert_eq!(forged_post(&browser, "/exports/weekly/run").await, 403);
    assert!(active_emails(&s.emulator).is_empty(), "a forged Run now ran");
    submit(&browser, "run-now", ".notice").await;
    let notice = browser
        .find(Locator::Css(".notice"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let run_id = match notice.split(' ').collect::<Vec<_>>()[..] {
        ["Run", id, "started."] => id.to_owned(),
        _ => panic!("not the notice of a run: {notice}"),
    };
    let report = s.finished("weekly", &run_id).await;
    assert_eq!(report["status"], "succeeded_with_rejects");
    let page = open(&browser, &s, "/exports/weekly").await;
    assert!(
        page.contains("succeeded with rejects") && page.contains(&run_id),
        "{page}"
    );
    let sent = report["members_sent"].as_u64().unwrap();
    assert_eq!(active_emails(&s.emulator).len() as u64, sent);
    log_out(&browser).await;

    // The viewer sees the export and its run, and has no Run button.
    log_in(&browser, &s, &s.viewer).await;
    let page = open(&browser, &s, "/exports/weekly").await;
    assert!(page.contains(&run_id) && page.contains("vic"), "{page}");
    assert!(
        browser.find(Locator::Id("run-now")).await.is_err(),
        "a viewer has a Run button"
    );
    assert_eq!(forged_post(&browser, "/exports/weekly/run").await, 403);
    browser.close().await.unwrap();
    s.stop().await;
}
