//! `cm-export connection authorize NAME`: the OAuth authorization-code flow, as command-line
//! tools run it. It prints (and on a desktop opens) Campaign Monitor's authorize page, takes
//! the code on the loopback redirect (or pasted, when the browser runs elsewhere), exchanges
//! it, and keeps the tokens in the connection's owner-only token file.

use std::io::IsTerminal as _;
use std::time::Duration;

use cm_export::campaign_monitor::oauth::{self, AuthorizeError, Loopback};
use cm_export::campaign_monitor::{Client, ClientOptions, retry_call};
use cm_export::config::{Connection, CredentialSource};

pub async fn authorize(connection: &Connection, open_browser: bool, wait: Duration) -> anyhow::Result<u8> {
    let CredentialSource::OAuthApp(app) = &connection.credentials else {
        anyhow::bail!(
            "connection `{name}` in `{}` has no OAuth application to authorize: give it an `[{name}.oauth]` table with `client-id` and `client-secret-env` (README, \"Authorizing with OAuth\")",
            connection.file.display(),
            name = connection.name,
        );
    };
    // Checked before the browser is sent anywhere: without it the code cannot be exchanged.
    let secret = app.client_secret()?;
    let loopback = Loopback::bind(&app.redirect_uri).await?;
    let redirect = loopback.redirect_uri().clone();
    let state = format!("{:032x}", rand::random::<u128>());
    let url = oauth::authorize_url(&connection.base_url, &app.client_id, &redirect, &app.scope, &state);
    println!(
        "Authorize cm-export for connection `{}` ({}): open this address, sign in to Campaign Monitor and allow access ({}):\n\n    {url}\n",
        connection.name, connection.display_name, app.scope
    );
    if open_browser && webbrowser::open(&url).is_ok() {
        println!("(opened in your browser)");
    }
    let paste = std::io::stdin().is_terminal();
    let minutes = match wait.as_secs().div_ceil(60) {
        1 => "1 minute".to_owned(),
        n => format!("{n} minutes"),
    };
    println!("Waiting up to {minutes} for the browser to come back to {redirect}.");
    if paste {
        println!(
            "If the browser runs on another machine, the address it ends up at will not load there: copy it from the address bar and paste it here."
        );
    }
    let code = tokio::select! {
        code = loopback.wait(&state) => code?,
        code = pasted(&state), if paste => code?,
        () = tokio::time::sleep(wait) => anyhow::bail!(
            "the browser did not come back to {redirect} within {minutes}; nothing was kept: run the command again"
        ),
    };
    let tokens = oauth::exchange_code(&connection.base_url, &app.client_id, &secret, &redirect, &code).await?;
    app.token_file.write(&tokens, None, chrono::Utc::now())?;
    let client = Client::new(
        connection.base_url.clone(),
        &connection.resolve_credentials()?,
        ClientOptions::default(),
    )?;
    let date = retry_call(&super::connection::quick(), || client.system_date())
        .await
        .map_err(|e| anyhow::anyhow!("the new tokens were kept, but the API refused them: {e}"))?;
    println!(
        "authorized: connection `{}`: tokens kept in `{}` (readable by you only); accepted by {} (API time {}); runs refresh them when they expire",
        connection.name,
        app.token_file.path().display(),
        connection.base_url,
        date.system_date
    );
    Ok(0)
}

/// The code from an address pasted at the terminal. Reads on a thread of its own: a read of
/// the terminal cannot be cancelled, and must not hold the process open once the browser's
/// return came.
async fn pasted(state: &str) -> Result<String, AuthorizeError> {
    let (lines, mut line) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for text in std::io::stdin().lines().map_while(Result::ok) {
            if lines.send(text).is_err() {
                break;
            }
        }
    });
    while let Some(text) = line.recv().await {
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let query = url::Url::parse(text).ok().and_then(|u| u.query().map(str::to_owned));
        match oauth::returned(query.as_deref().unwrap_or(""), state)? {
            Some(code) => return Ok(code),
            None => eprintln!("that address carries no code: paste the whole address the browser ended up at"),
        }
    }
    // The terminal closed: the browser's return is the only way left.
    std::future::pending().await
}
