//! The client against the emulator: every call and every error the API page lists.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use cm_export::campaign_monitor::types::{ApiErrorBody, NewCustomField};
use cm_export::campaign_monitor::{
    ApiError, Class, ConsentToTrack, Credentials, ImportBatch, ImportField, ImportSubscriber, MemberState, Secret,
    TransportErrorKind, classify,
};
use reqwest::Method;

use crate::support::{KEY, LIST, client, emulator, emulator_with, key_client};

fn sub(email: &str) -> ImportSubscriber {
    ImportSubscriber {
        email_address: email.into(),
        name: Some(format!("Name of {email}")),
        custom_fields: vec![],
        consent_to_track: ConsentToTrack::Yes,
        row_key: None,
        mobile_number: None,
        consent_to_send_sms: None,
    }
}

fn code(err: ApiError) -> (u16, i64) {
    match err {
        ApiError::Api(f) => (f.status, f.code),
        other => panic!("not an API error: {other}"),
    }
}

#[tokio::test]
async fn credentials_are_checked() {
    let emulator = emulator().await;
    let good = key_client(&emulator);
    assert!(!good.system_date().await.unwrap().system_date.is_empty());
    let bad = client(&emulator, Credentials::ApiKey(Secret::new("wrong")));
    let err = bad.system_date().await.unwrap_err();
    assert!(!format!("{err} {err:?}").contains("wrong"));
    assert_eq!(code(err), (401, 50));
    // No header at all.
    let raw = reqwest::get(format!("{}/systemdate.json", emulator.base_url()))
        .await
        .unwrap();
    assert_eq!(raw.status(), 401);
    let body: ApiErrorBody = raw.json().await.unwrap();
    assert_eq!(body.code, 50);
}

#[tokio::test]
async fn lists_stats_and_custom_fields() {
    let emulator = emulator().await;
    let c = key_client(&emulator);
    let details = c.list_details(LIST).await.unwrap();
    assert_eq!((details.list_id.as_str(), details.title.as_str()), (LIST, "List One"));
    assert_eq!(code(c.list_details("nope").await.unwrap_err()), (400, 101));
    let key = c
        .create_custom_field(
            LIST,
            &NewCustomField {
                field_name: "New Date Field".into(),
                data_type: "Date".into(),
                options: vec![],
                visible_in_preference_center: true,
            },
        )
        .await
        .unwrap();
    assert_eq!(key, "[newdatefield]");
    let fields = c.custom_fields(LIST).await.unwrap();
    assert_eq!(fields[0].key, "[newdatefield]");
    assert_eq!(fields[0].data_type, "Date");
    assert_eq!(c.list_stats(LIST).await.unwrap().total_active_subscribers, 0);
}

#[tokio::test]
async fn import_counts_new_existing_duplicates_and_failures() {
    let emulator = emulator().await;
    let c = key_client(&emulator);
    emulator.with_list_mut(LIST, |l| l.add_custom_field("City", "Text", vec![], true).unwrap());
    let mut first = sub("a@example.com");
    first.custom_fields.push(ImportField {
        key: "City".into(),
        value: "Cluj".into(),
        clear: false,
    });
    let batch = ImportBatch::new(vec![first, sub("b@example.com")]).unwrap();
    let answer = c.import(LIST, &batch, false).await.unwrap();
    assert_eq!(answer.status, 201);
    assert_eq!(classify(&Ok(answer.clone())), Class::Success);
    let result: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(result["TotalNewSubscribers"], 2);

    let batch = ImportBatch::new(vec![
        sub("A@example.com"),
        sub("c@example.com"),
        sub("C@EXAMPLE.com"),
        sub("bad@nodot"),
    ])
    .unwrap();
    let Class::PartialFailure(result) = classify(&c.import(LIST, &batch, false).await) else {
        panic!("expected a partial failure");
    };
    assert_eq!(result.total_unique_emails_submitted, 3);
    assert_eq!(
        (result.total_new_subscribers, result.total_existing_subscribers),
        (1, 1)
    );
    assert_eq!(result.duplicate_emails_in_submission, vec!["C@EXAMPLE.com"]);
    assert_eq!(result.failure_details[0].email_address, "bad@nodot");
    assert_eq!(result.failure_details[0].code, 1);

    let one = c.subscriber(LIST, "a@example.com").await.unwrap();
    assert_eq!(one.state, "Active");
    assert_eq!(one.custom_fields[0].value, "Cluj");
    assert_eq!(one.consent_to_track.as_deref(), Some("Yes"));
    assert_eq!(
        code(c.subscriber(LIST, "zz@example.com").await.unwrap_err()),
        (400, 203)
    );
    assert_eq!(c.list_stats(LIST).await.unwrap().total_active_subscribers, 3);
}

async fn raw_import(c: &cm_export::campaign_monitor::Client, body: serde_json::Value) -> (u16, i64) {
    let answer = c
        .send(
            Method::POST,
            &format!("subscribers/{LIST}/import.json"),
            Some(Bytes::from(body.to_string())),
        )
        .await
        .unwrap();
    let error: ApiErrorBody = serde_json::from_slice(&answer.body).unwrap();
    (answer.status, error.code)
}

#[tokio::test]
async fn whole_request_errors() {
    let emulator = emulator().await;
    let c = key_client(&emulator);
    let many: Vec<_> = (0..1001)
        .map(|i| serde_json::json!({"EmailAddress": format!("{i}@x.com"), "ConsentToTrack": "Yes"}))
        .collect();
    assert_eq!(
        raw_import(&c, serde_json::json!({"Subscribers": many, "Resubscribe": false})).await,
        (400, 209)
    );
    assert_eq!(
        raw_import(&c, serde_json::json!({"Subscribers": [], "Resubscribe": false})).await,
        (400, 212)
    );
    assert_eq!(
        raw_import(&c, serde_json::json!({"Subscribers": [{"EmailAddress": "a@x.com"}]})).await,
        (400, 214)
    );
    assert_eq!(
        raw_import(
            &c,
            serde_json::json!({"Subscribers": [{"EmailAddress": "a@x.com", "ConsentToTrack": "Perhaps"}]})
        )
        .await,
        (400, 215)
    );
    // A body over the request limit is refused as every error is: JSON `Code` and `Message`.
    let wide = "x".repeat(250);
    let heavy: Vec<_> = (0..1000)
        .map(|i| {
            let fields: Vec<_> = (0..9)
                .map(|k| serde_json::json!({"Key": format!("F{k}"), "Value": wide}))
                .collect();
            serde_json::json!({"EmailAddress": format!("{i}@x.com"), "ConsentToTrack": "Yes", "CustomFields": fields})
        })
        .collect();
    let body = serde_json::json!({"Subscribers": heavy, "Resubscribe": false}).to_string();
    assert!(body.len() > cm_export::campaign_monitor::MAX_REQUEST_BYTES);
    let answer = c
        .send(
            Method::POST,
            &format!("subscribers/{LIST}/import.json"),
            Some(Bytes::from(body)),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 413);
    let error: ApiErrorBody = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(error.code, 413);
    assert!(!error.message.is_empty());
    assert!(matches!(classify(&Ok(answer)), Class::Permanent(_)));
    // Python's spelling of the queue flag is accepted too.
    let answer = c
        .send(
            Method::POST,
            &format!("subscribers/{LIST}/import.json"),
            Some(Bytes::from(
                serde_json::json!({"Subscribers": [{"EmailAddress": "a@x.com", "ConsentToTrack": "yes"}],
                    "Resubscribe": false, "QueueSubscriptionBasedAutoresponders": false})
                .to_string(),
            )),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 201);
    let stats = emulator.stats();
    assert_eq!(stats.subscribers_applied, 1);
    assert_eq!(stats.lists[LIST].members["Active"], 1);
}

#[tokio::test]
async fn unsubscribed_and_deleted_stay_out_unless_resubscribe() {
    let emulator = emulator().await;
    let c = key_client(&emulator);
    let batch = ImportBatch::new(vec![sub("u@example.com"), sub("d@example.com"), sub("k@example.com")]).unwrap();
    c.import(LIST, &batch, false).await.unwrap();
    c.unsubscribe(LIST, "u@example.com").await.unwrap();
    c.delete(LIST, "d@example.com").await.unwrap();
    assert_eq!(
        code(c.unsubscribe(LIST, "nobody@example.com").await.unwrap_err()),
        (400, 203)
    );
    // Removing someone already removed: 203 for a deleted member, a quiet 200 for an
    // unsubscribe repeated; only changes of state are counted.
    assert_eq!(code(c.delete(LIST, "d@example.com").await.unwrap_err()), (400, 203));
    assert_eq!(
        code(c.unsubscribe(LIST, "d@example.com").await.unwrap_err()),
        (400, 203)
    );
    c.unsubscribe(LIST, "u@example.com").await.unwrap();
    let stats = emulator.stats();
    assert_eq!((stats.subscribers_deleted, stats.subscribers_unsubscribed), (1, 1));
    assert_eq!(
        stats.requests["DELETE subscribers/{listid}.json"],
        BTreeMap::from([(200, 1), (400, 1)])
    );

    let Class::PartialFailure(result) = classify(&c.import(LIST, &batch, false).await) else {
        panic!("expected a partial failure");
    };
    let codes: Vec<_> = result
        .failure_details
        .iter()
        .map(|f| (f.email_address.as_str(), f.code))
        .collect();
    assert_eq!(codes, vec![("u@example.com", 206), ("d@example.com", 205)]);
    assert_eq!(c.subscriber(LIST, "u@example.com").await.unwrap().state, "Unsubscribed");

    let unsubscribed = c.members(LIST, MemberState::Unsubscribed, 1, 10).await.unwrap();
    assert_eq!(unsubscribed.results[0].email_address, "u@example.com");
    let deleted = c.members(LIST, MemberState::Deleted, 1, 10).await.unwrap();
    assert_eq!(deleted.total_number_of_records, 1);

    let answer = c.import(LIST, &batch, true).await.unwrap();
    assert_eq!(answer.status, 201);
    assert_eq!(
        c.members(LIST, MemberState::Active, 1, 10)
            .await
            .unwrap()
            .total_number_of_records,
        3
    );
}

#[tokio::test]
async fn active_members_page_in_email_order() {
    let emulator = emulator().await;
    let c = key_client(&emulator);
    let subs: Vec<_> = (0..25).rev().map(|i| sub(&format!("m{i:02}@example.com"))).collect();
    c.import(LIST, &ImportBatch::new(subs).unwrap(), false).await.unwrap();
    let page = c.members(LIST, MemberState::Active, 3, 10).await.unwrap();
    assert_eq!(
        (
            page.page_number,
            page.records_on_this_page,
            page.total_number_of_records,
            page.number_of_pages
        ),
        (3, 5, 25, 3)
    );
    assert_eq!(page.results[0].email_address, "m20@example.com");
    let raw = c
        .send(
            Method::GET,
            &format!("lists/{LIST}/active.json?page=1&pagesize=5"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(raw.status, 400);
}

#[tokio::test]
async fn clients_and_their_lists() {
    let emulator = emulator().await;
    let c = key_client(&emulator);
    let clients = c.send(Method::GET, "clients.json", None).await.unwrap();
    let clients: serde_json::Value = serde_json::from_slice(&clients.body).unwrap();
    let id = clients[0]["ClientID"].as_str().unwrap().to_owned();
    let lists = c
        .send(Method::GET, &format!("clients/{id}/lists.json"), None)
        .await
        .unwrap();
    let lists: serde_json::Value = serde_json::from_slice(&lists.body).unwrap();
    assert_eq!(lists[0]["ListID"], LIST);
    let unknown = c.send(Method::GET, "nothing/here.json", None).await.unwrap();
    assert_eq!((unknown.status, unknown.body.len()), (404, 0));
}

async fn token(emulator: &cm_export::emulator::Emulator, form: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{}/oauth/token", emulator.addr()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn oauth_codes_are_good_once_for_their_client_and_redirect_and_refresh_tokens_rotate() {
    let emulator = emulator_with(|c| c.oauth_clients = vec![("app".into(), "s3cret".into())]).await;
    let unknown_client = reqwest::get(format!(
        "http://{}/oauth?client_id=other&redirect_uri=http://127.0.0.1:9/cb&scope=ManageLists",
        emulator.addr()
    ))
    .await
    .unwrap();
    assert_eq!(unknown_client.status(), 400);
    let redirect = "http://127.0.0.1:9/cb";
    let code = crate::support::authorization_code(&emulator, "app", redirect).await;
    let exchange = |secret: &str, redirect: &str, code: &str| {
        format!(
            "grant_type=authorization_code&client_id=app&client_secret={secret}&redirect_uri={redirect}&code={code}"
        )
    };
    for (form, why) in [
        (exchange("no", redirect, &code), "wrong secret"),
        (exchange("s3cret", redirect, "made-up"), "unknown code"),
    ] {
        let refused = token(&emulator, &form).await;
        assert_eq!(refused.status(), 400, "{why}");
        let err: serde_json::Value = refused.json().await.unwrap();
        assert_eq!(err["error"], "invalid_grant", "{why}");
    }
    // A refused exchange spends the code, as a guessed one must not be tried again.
    let code = crate::support::authorization_code(&emulator, "app", redirect).await;
    let elsewhere = token(&emulator, &exchange("s3cret", "http://127.0.0.1:9/other", &code)).await;
    assert_eq!(elsewhere.status(), 400, "another redirect address");
    let code = crate::support::authorization_code(&emulator, "app", redirect).await;
    let tokens: cm_export::campaign_monitor::types::OAuthTokens =
        token(&emulator, &exchange("s3cret", redirect, &code))
            .await
            .json()
            .await
            .unwrap();
    assert_eq!(
        token(&emulator, &exchange("s3cret", redirect, &code)).await.status(),
        400,
        "used twice"
    );
    let refresh = |token: &str| format!("grant_type=refresh_token&refresh_token={token}");
    let renewed: cm_export::campaign_monitor::types::OAuthTokens = token(&emulator, &refresh(&tokens.refresh_token))
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(renewed.refresh_token, tokens.refresh_token);
    assert_eq!(
        token(&emulator, &refresh(&tokens.refresh_token)).await.status(),
        400,
        "spent"
    );
    reqwest::Client::new()
        .post(format!("http://{}/_emulator/revoke-refresh-tokens", emulator.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        token(&emulator, &refresh(&renewed.refresh_token)).await.status(),
        400,
        "revoked"
    );
}

#[tokio::test]
async fn oauth_tokens_are_issued_expire_and_refresh_once() {
    let emulator = emulator_with(|c| c.oauth_clients = vec![("app".into(), "s3cret".into())]).await;
    let grant = crate::support::authorization_code(&emulator, "app", "http://l/").await;
    let tokens: cm_export::campaign_monitor::types::OAuthTokens = token(
        &emulator,
        &format!(
            "grant_type=authorization_code&client_id=app&client_secret=s3cret&code={grant}&redirect_uri=http://l/"
        ),
    )
    .await
    .json()
    .await
    .unwrap();

    let c = client(
        &emulator,
        Credentials::OAuth {
            access_token: Secret::new(tokens.access_token.clone()),
            refresh_token: Some(Secret::new(tokens.refresh_token.clone())),
            file: None,
        },
    );
    c.system_date().await.unwrap();
    reqwest::Client::new()
        .post(format!("http://{}/_emulator/expire-tokens", emulator.addr()))
        .send()
        .await
        .unwrap();
    // Expired: the client refreshes once and repeats the call.
    c.system_date().await.unwrap();
    let stats = emulator.stats();
    assert_eq!(stats.requests["auth"][&401], 1);

    let stale = client(
        &emulator,
        Credentials::OAuth {
            access_token: Secret::new(tokens.access_token),
            refresh_token: None,
            file: None,
        },
    );
    assert_eq!(code(stale.system_date().await.unwrap_err()), (401, 121));
    let unknown = client(
        &emulator,
        Credentials::OAuth {
            access_token: Secret::new("made-up"),
            refresh_token: Some(Secret::new("also-made-up")),
            file: None,
        },
    );
    assert_eq!(code(unknown.system_date().await.unwrap_err()), (401, 120));
    // A refresh token the emulator never issued fails the refresh; the 121 stands.
    let bad_refresh = client(
        &emulator,
        Credentials::OAuth {
            access_token: Secret::new(tokens.refresh_token.clone() + "x"),
            refresh_token: Some(Secret::new("nope")),
            file: None,
        },
    );
    assert_eq!(code(bad_refresh.system_date().await.unwrap_err()).1, 120);
}

#[tokio::test]
async fn rate_limit_headers_on_every_answer_and_429_over_the_limit() {
    let emulator = emulator_with(|c| {
        c.rate_limit = Some(cm_export::emulator::RateLimitConfig {
            requests: 3,
            window: Duration::from_secs(60),
        })
    })
    .await;
    let c = key_client(&emulator);
    let mut remaining = vec![];
    for _ in 0..3 {
        let answer = c.send(Method::GET, "systemdate.json", None).await.unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.rate_limit.limit, Some(3));
        assert!(answer.rate_limit.reset.unwrap() <= Duration::from_secs(60));
        remaining.push(answer.rate_limit.remaining.unwrap());
    }
    assert_eq!(remaining, vec![2, 1, 0]);
    let limited = c.send(Method::GET, "systemdate.json", None).await.unwrap();
    assert_eq!(limited.status, 429);
    let body: ApiErrorBody = serde_json::from_slice(&limited.body).unwrap();
    assert_eq!((body.code, body.message.as_str()), (429, "Rate limit exceeded"));
    match classify(&Ok(limited)) {
        Class::Retryable { wait: Some(wait), .. } => assert!(wait > Duration::ZERO && wait <= Duration::from_secs(60)),
        other => panic!("{other:?}"),
    }
    assert_eq!(emulator.stats().faults.rate_limited, 1);
}

#[tokio::test]
async fn faults_500_and_dropped_connections() {
    let failing = emulator_with(|c| c.fail_rate = 1.0).await;
    let answer = key_client(&failing)
        .send(Method::GET, "systemdate.json", None)
        .await
        .unwrap();
    assert_eq!(answer.status, 500);
    let body: ApiErrorBody = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!((body.code, body.message.as_str()), (500, "Internal Server Error"));

    let dropping = emulator_with(|c| {
        c.drop_rate = 1.0;
        c.seed = 3;
    })
    .await;
    let c = key_client(&dropping);
    let batch = ImportBatch::new(vec![sub("a@example.com")]).unwrap();
    for _ in 0..8 {
        let err = c.import(LIST, &batch, false).await.unwrap_err();
        assert_eq!(err.kind, TransportErrorKind::Dropped, "{err}");
    }
    let stats = dropping.stats();
    let faults = stats.faults;
    assert_eq!(faults.dropped_before_applying + faults.dropped_after_applying, 8);
    assert!(faults.dropped_before_applying > 0 && faults.dropped_after_applying > 0);
    // Only the drops after applying reached the list.
    assert_eq!(stats.import_calls, faults.dropped_after_applying);
}

#[tokio::test]
async fn stats_count_requests_by_endpoint_and_status() {
    let emulator = emulator().await;
    let c = key_client(&emulator);
    c.import(LIST, &ImportBatch::new(vec![sub("a@example.com")]).unwrap(), false)
        .await
        .unwrap();
    let _ = c.list_details("missing").await;
    let stats: serde_json::Value = reqwest::get(format!("http://{}/_emulator/stats", emulator.addr()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["requests"]["POST subscribers/{listid}/import.json"]["201"], 1);
    assert_eq!(stats["requests"]["GET lists/{listid}.json"]["400"], 1);
    assert_eq!(stats["import_calls"], 1);
    assert_eq!(stats["subscribers_received"], 1);
    assert_eq!(stats["lists"][LIST]["members"]["Active"], 1);
    let _ = KEY;
}
