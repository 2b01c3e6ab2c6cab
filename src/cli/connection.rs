//! `cm-export connection list` and `cm-export connection test NAME [--list ID]`.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use cm_export::campaign_monitor::{ApiError, Client, ClientOptions};
use cm_export::config::{Connection, Connections, CredentialSource, UsableBy};
use cm_export::retry::Backoff;

use super::table::Table;

#[derive(Debug, Subcommand)]
pub enum ConnectionCommand {
    /// Each connection: who may use it, consent, where its credentials come from (never their value).
    List {
        /// The connections file (default: $CM_EXPORT_CONNECTIONS, then pipelines/connections.toml, then ./connections.toml).
        #[arg(long)]
        connections: Option<PathBuf>,
    },
    /// Check a connection's credentials against the API, and a list if given. Exit 0 or 2.
    Test {
        name: String,
        /// Also check this list: print its title and subscriber count.
        #[arg(long = "list", value_name = "LIST_ID")]
        list_id: Option<String>,
        #[arg(long)]
        connections: Option<PathBuf>,
    },
}

fn load(explicit: Option<&Path>) -> anyhow::Result<Connections> {
    let file = Connections::locate(explicit, Path::new("pipelines"))?;
    Ok(Connections::load(&file)?)
}

pub async fn dispatch(command: ConnectionCommand) -> anyhow::Result<u8> {
    match command {
        ConnectionCommand::List { connections } => list(&load(connections.as_deref())?),
        ConnectionCommand::Test {
            name,
            list_id,
            connections,
        } => {
            let all = load(connections.as_deref())?;
            test(all.get(&name)?, list_id.as_deref()).await
        }
    }
}

fn list(all: &Connections) -> anyhow::Result<u8> {
    println!("connections in `{}`:", all.file.display());
    let mut table = Table::new([
        "NAME",
        "DISPLAY NAME",
        "USABLE BY",
        "CONSENT",
        "CREDENTIALS",
        "FROM",
        "ALERTS",
    ]);
    for c in all.connections.values() {
        let (kind, from) = credential_source(&c.credentials);
        table.row([
            c.name.clone(),
            c.display_name.clone(),
            match c.usable_by {
                UsableBy::Admins => "admins",
                UsableBy::AdminsAndContributors => "admins and contributors",
            }
            .to_owned(),
            if c.data_privacy_consent { "given" } else { "NOT GIVEN" }.to_owned(),
            kind.to_owned(),
            from,
            c.alert_webhook
                .as_ref()
                .map_or_else(|| "-".to_owned(), ToString::to_string),
        ]);
    }
    println!("{table}");
    Ok(0)
}

/// The kind of credential and where it is read from, with whether it is there; never its value.
fn credential_source(source: &CredentialSource) -> (&'static str, String) {
    let env = |var: &str| {
        let state = match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => "set",
            Ok(_) => "empty",
            Err(_) => "not set",
        };
        format!("env {var} ({state})")
    };
    match source {
        CredentialSource::ApiKeyEnv(var) => ("API key", env(var)),
        CredentialSource::ApiKeyFile(file) => (
            "API key",
            format!(
                "file {} ({})",
                file.display(),
                if file.is_file() { "present" } else { "missing" }
            ),
        ),
        CredentialSource::OAuth {
            access_token_env,
            refresh_token_env,
        } => (
            "OAuth",
            match refresh_token_env {
                Some(refresh) => format!("{}, refresh {}", env(access_token_env), env(refresh)),
                None => env(access_token_env),
            },
        ),
    }
}

async fn test(connection: &Connection, list_id: Option<&str>) -> anyhow::Result<u8> {
    let failed = |what: &str, why: String| {
        eprintln!("FAILED: connection `{}`: {what}: {why}", connection.name);
        Ok(2)
    };
    let credentials = match connection.resolve_credentials() {
        Ok(credentials) => credentials,
        Err(error) => return failed("no credentials", error.to_string()),
    };
    let client = Client::new(connection.base_url.clone(), &credentials, ClientOptions::default())?;
    // A few quick retries: a check should answer in seconds, not ride out an outage.
    let backoff = Backoff {
        max_retries: 3,
        ..Backoff::default()
    };
    let date = match cm_export::campaign_monitor::retry_call(&backoff, || client.system_date()).await {
        Ok(date) => date,
        Err(error @ ApiError::Api(_)) => return failed("the credentials were not accepted", plain(&error)),
        Err(error) => {
            return failed(
                &format!("Campaign Monitor at {} could not be reached", connection.base_url),
                plain(&error),
            );
        }
    };
    println!(
        "ok: connection `{}` ({}): credentials accepted by {} (API time {})",
        connection.name, connection.display_name, connection.base_url, date.system_date
    );
    let Some(list_id) = list_id else {
        return Ok(0);
    };
    let details = match cm_export::campaign_monitor::retry_call(&backoff, || client.list_details(list_id)).await {
        Ok(details) => details,
        Err(error) => return failed(&format!("list `{list_id}` cannot be used"), plain(&error)),
    };
    let stats = match cm_export::campaign_monitor::retry_call(&backoff, || client.list_stats(list_id)).await {
        Ok(stats) => stats,
        Err(error) => return failed(&format!("list `{list_id}` has no statistics"), plain(&error)),
    };
    println!(
        "ok: list {list_id} \"{}\": {} active subscribers",
        details.title, stats.total_active_subscribers
    );
    Ok(0)
}

/// What the API said, for a person.
fn plain(error: &ApiError) -> String {
    match error {
        ApiError::Api(failure) => match failure.code {
            50 | 120 | 121 | 122 => format!(
                "Campaign Monitor refused them: \"{}\" (code {}); check the API key or token",
                failure.message, failure.code
            ),
            101 => format!(
                "Campaign Monitor has no such list for this account: \"{}\" (code 101); check the list id",
                failure.message
            ),
            _ => format!(
                "Campaign Monitor said \"{}\" (code {}, HTTP {})",
                failure.message, failure.code, failure.status
            ),
        },
        other => cm_export::error_text::chain(other),
    }
}
