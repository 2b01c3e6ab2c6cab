//! `cm-export serve DIR` and `cm-export user ...`: the service and its users.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use cm_export::schedule::Clock;
use cm_export::serve::{Audit, Role, ServeOptions, Token, Users};

use super::table::Table;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The folder of pipeline definitions (`*.toml`).
    dir: PathBuf,
    /// Where to listen; put it behind a TLS proxy to serve beyond this machine.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The state folder (default: DIR/.cm-export): runs, history, users, connections.
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<u8> {
    let options = ServeOptions {
        dir: args.dir,
        listen: args.listen,
        state_dir: args.state_dir,
        schedule: None,
    };
    let serving = cm_export::serve::start(options, Clock::System).await?;
    println!("serving on http://{}", serving.addr);
    std::io::stdout().flush()?;
    super::shutdown_signal().await;
    serving.stop().await?;
    Ok(0)
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user; prints their API token, once.
    Add {
        name: String,
        #[arg(long, value_enum)]
        role: Role,
        #[command(flatten)]
        state: StateDir,
    },
    /// The users, their roles and whether they have a password.
    List {
        #[command(flatten)]
        state: StateDir,
    },
    /// Remove a user: their token and password stop working.
    Remove {
        name: String,
        #[command(flatten)]
        state: StateDir,
    },
    /// A new API token for a user; the old one stops working.
    Token {
        name: String,
        #[command(flatten)]
        state: StateDir,
    },
    /// Set a user's console password (read from the terminal, or a line of stdin).
    Password {
        name: String,
        #[command(flatten)]
        state: StateDir,
    },
}

#[derive(Debug, Args)]
pub struct StateDir {
    /// The service's state folder (default: `pipelines/.cm-export` when there is a
    /// `pipelines` folder here, else `.cm-export`).
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

impl StateDir {
    fn path(&self) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(|| {
            let pipelines = Path::new("pipelines");
            cm_export::state::default_dir(if pipelines.is_dir() { pipelines } else { Path::new("") })
        })
    }
}

/// Who changed users from this machine, for the audit log.
fn operator() -> String {
    format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned()))
}

pub fn user(command: UserCommand) -> anyhow::Result<u8> {
    let (state, name) = match &command {
        UserCommand::Add { state, name, .. }
        | UserCommand::Remove { state, name }
        | UserCommand::Token { state, name }
        | UserCommand::Password { state, name } => (state.path(), Some(name.clone())),
        UserCommand::List { state } => (state.path(), None),
    };
    let mut users = Users::load(&Users::path(&state))?;
    let audit = Audit::new(&state);
    let target = name.unwrap_or_default();
    match command {
        UserCommand::Add { role, .. } => {
            let Token(token) = users.add(&target, role)?;
            audit.record(
                &operator(),
                "user.added",
                &target,
                Some(format!("role {}", role.as_str())),
            )?;
            println!(
                "added {} `{target}` to the service of `{}`; their API token (shown once, keep it secret):",
                role.as_str(),
                state.display()
            );
            println!("{token}");
        }
        UserCommand::List { .. } => {
            let mut table = Table::new(["USER", "ROLE", "PASSWORD", "ADDED"]);
            for user in users.list() {
                table.row([
                    user.name.clone(),
                    user.role.as_str().to_owned(),
                    if user.has_password() { "set" } else { "none" }.to_owned(),
                    user.created_at.clone(),
                ]);
            }
            match users.list().is_empty() {
                true => println!(
                    "no users in `{}`; add one with `cm-export user add NAME --role admin`",
                    state.display()
                ),
                false => println!("{table}"),
            }
        }
        UserCommand::Remove { .. } => {
            users.remove(&target)?;
            audit.record(&operator(), "user.removed", &target, None)?;
            println!("removed `{target}`");
        }
        UserCommand::Token { .. } => {
            let Token(token) = users.new_token(&target)?;
            audit.record(&operator(), "user.token", &target, None)?;
            println!("a new API token for `{target}` (the old one no longer works):");
            println!("{token}");
        }
        UserCommand::Password { .. } => {
            let password = if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                rpassword::prompt_password(format!("password for `{target}`: "))?
            } else {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                line.trim_end_matches(['\r', '\n']).to_owned()
            };
            users.set_password(&target, &password)?;
            audit.record(&operator(), "user.password", &target, None)?;
            println!("password set for `{target}`");
        }
    }
    Ok(0)
}
