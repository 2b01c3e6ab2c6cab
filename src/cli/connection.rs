//! `cm-export connection list`, `connection test NAME [--list ID]`, and what a connection
//! reaches: `connection lists NAME` (to find a list id) and `connection fields NAME --list ID`
//! (the list's custom fields, to map columns to).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;
use cm_export::campaign_monitor::{ApiError, Client, ClientOptions, retry_call};
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
    /// The clients and lists the connection reaches: list id, title, active subscribers.
    Lists {
        name: String,
        #[arg(long)]
        connections: Option<PathBuf>,
    },
    /// Sign the connection in to Campaign Monitor through its OAuth application: opens the
    /// authorize page, takes the code on the loopback redirect, keeps the tokens in the
    /// connection's owner-only token file.
    Authorize {
        name: String,
        /// Print the address only; do not open a browser.
        #[arg(long)]
        no_browser: bool,
        /// How long to wait for the browser to come back, in minutes.
        #[arg(long, value_name = "MINUTES", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=60))]
        wait: u64,
        #[arg(long)]
        connections: Option<PathBuf>,
    },
    /// A list's custom fields: name, key, type and options.
    Fields {
        name: String,
        #[arg(long = "list", value_name = "LIST_ID")]
        list_id: String,
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
        ConnectionCommand::Lists { name, connections } => {
            let all = load(connections.as_deref())?;
            lists(all.get(&name)?).await
        }
        ConnectionCommand::Authorize {
            name,
            no_browser,
            wait,
            connections,
        } => {
            let all = load(connections.as_deref())?;
            super::authorize::authorize(all.get(&name)?, !no_browser, Duration::from_secs(wait * 60)).await
        }
        ConnectionCommand::Fields {
            name,
            list_id,
            connections,
        } => {
            let all = load(connections.as_deref())?;
            fields(all.get(&name)?, &list_id).await
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
            kind,
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
fn credential_source(source: &CredentialSource) -> (String, String) {
    let env = |var: &str| {
        let state = match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => "set",
            Ok(_) => "empty",
            Err(_) => "not set",
        };
        format!("env {var} ({state})")
    };
    match source {
        CredentialSource::ApiKeyEnv(var) => ("API key".to_owned(), env(var)),
        CredentialSource::ApiKeyFile(file) => (
            "API key".to_owned(),
            format!(
                "file {} ({})",
                file.display(),
                if file.is_file() { "present" } else { "missing" }
            ),
        ),
        CredentialSource::OAuthEnv {
            access_token_env,
            refresh_token_env,
        } => (
            "oauth (tokens given)".to_owned(),
            match refresh_token_env {
                Some(refresh) => format!("{}, refresh {}", env(access_token_env), env(refresh)),
                None => env(access_token_env),
            },
        ),
        CredentialSource::OAuthApp(app) => {
            let file = app.token_file.path().display();
            match app.token_file.read() {
                Ok(Some(tokens)) => (
                    format!(
                        "oauth (authorized, refreshed {})",
                        tokens.refreshed_at.format("%Y-%m-%d %H:%M UTC")
                    ),
                    format!("file {file}"),
                ),
                Ok(None) => (
                    "oauth (not authorized)".to_owned(),
                    format!(
                        "file {file} (missing: run `cm-export connection authorize {}`)",
                        app.token_file.connection()
                    ),
                ),
                Err(error) => ("oauth (token file unusable)".to_owned(), error.to_string()),
            }
        }
    }
}

/// Prints why a command about `connection` failed, as one line; exit code 2.
fn failed(connection: &Connection, what: &str, why: String) -> anyhow::Result<u8> {
    eprintln!("FAILED: connection `{}`: {what}: {why}", connection.name);
    Ok(2)
}

/// A client on the connection's credentials, or why there is none.
fn client(connection: &Connection) -> anyhow::Result<Result<Client, String>> {
    Ok(match connection.resolve_credentials() {
        Ok(credentials) => Ok(Client::new(
            connection.base_url.clone(),
            &credentials,
            ClientOptions::default(),
        )?),
        Err(error) => Err(error.to_string()),
    })
}

/// A few quick retries: a command a person waits on should answer in seconds, not ride out
/// an outage.
pub(super) fn quick() -> Backoff {
    Backoff {
        max_retries: 3,
        ..Backoff::default()
    }
}

async fn test(connection: &Connection, list_id: Option<&str>) -> anyhow::Result<u8> {
    let failed = |what: &str, why: String| failed(connection, what, why);
    let client = match client(connection)? {
        Ok(client) => client,
        Err(why) => return failed("no credentials", why),
    };
    let backoff = quick();
    let date = match retry_call(&backoff, || client.system_date()).await {
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
    let details = match retry_call(&backoff, || client.list_details(list_id)).await {
        Ok(details) => details,
        Err(error) => return failed(&format!("list `{list_id}` cannot be used"), plain(&error)),
    };
    let stats = match retry_call(&backoff, || client.list_stats(list_id)).await {
        Ok(stats) => stats,
        Err(error) => return failed(&format!("list `{list_id}` has no statistics"), plain(&error)),
    };
    println!(
        "ok: list {list_id} \"{}\": {} active subscribers",
        details.title, stats.total_active_subscribers
    );
    Ok(0)
}

/// Every list of every client the connection reaches, with its active subscribers: where a
/// pipeline's `list-id` comes from.
async fn lists(connection: &Connection) -> anyhow::Result<u8> {
    let api_failed = |what: &str, error: ApiError| failed(connection, what, plain(&error));
    let client = match client(connection)? {
        Ok(client) => client,
        Err(why) => return failed(connection, "no credentials", why),
    };
    let backoff = quick();
    let clients = match retry_call(&backoff, || client.clients()).await {
        Ok(clients) => clients,
        Err(error) => return api_failed("its clients could not be listed", error),
    };
    let mut table = Table::new(["CLIENT", "LIST ID", "TITLE", "ACTIVE SUBSCRIBERS"]);
    let mut count = 0;
    for account in &clients {
        let lists = match retry_call(&backoff, || client.client_lists(&account.client_id)).await {
            Ok(lists) => lists,
            Err(error) => {
                return api_failed(
                    &format!("the lists of client `{}` could not be listed", account.name),
                    error,
                );
            }
        };
        for list in lists {
            let stats = match retry_call(&backoff, || client.list_stats(&list.list_id)).await {
                Ok(stats) => stats,
                Err(error) => return api_failed(&format!("list `{}` has no statistics", list.list_id), error),
            };
            table.row([
                account.name.clone(),
                list.list_id,
                list.name,
                stats.total_active_subscribers.to_string(),
            ]);
            count += 1;
        }
    }
    let clients = match clients.len() {
        1 => "1 client".to_owned(),
        n => format!("{n} clients"),
    };
    if count == 0 {
        println!(
            "connection `{}` reaches {clients} and no list: create one in Campaign Monitor first",
            connection.name
        );
        return Ok(0);
    }
    println!(
        "connection `{}` reaches {clients} and {count} list(s); a pipeline names one by its id in `[destination] list-id`:",
        connection.name
    );
    print!("{table}");
    Ok(0)
}

/// A list's custom fields: what `[mapping] custom-fields` can map columns to.
async fn fields(connection: &Connection, list_id: &str) -> anyhow::Result<u8> {
    let api_failed = |what: &str, error: ApiError| failed(connection, what, plain(&error));
    let client = match client(connection)? {
        Ok(client) => client,
        Err(why) => return failed(connection, "no credentials", why),
    };
    let backoff = quick();
    let details = match retry_call(&backoff, || client.list_details(list_id)).await {
        Ok(details) => details,
        Err(error) => return api_failed(&format!("list `{list_id}` cannot be used"), error),
    };
    let fields = match retry_call(&backoff, || client.custom_fields(list_id)).await {
        Ok(fields) => fields,
        Err(error) => {
            return api_failed(
                &format!("the custom fields of list `{list_id}` could not be read"),
                error,
            );
        }
    };
    if fields.is_empty() {
        println!("list {list_id} \"{}\" has no custom fields", details.title);
        return Ok(0);
    }
    println!(
        "list {list_id} \"{}\" has {} custom field(s); `[mapping] custom-fields` names one by its name or key:",
        details.title,
        fields.len()
    );
    let mut table = Table::new(["NAME", "KEY", "TYPE", "OPTIONS"]);
    for field in fields {
        let options = match field.field_options.is_empty() {
            true => "-".to_owned(),
            false => field.field_options.join(", "),
        };
        table.row([field.field_name, field.key, field.data_type, options]);
    }
    print!("{table}");
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
