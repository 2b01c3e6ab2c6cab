//! `cm-export serve DIR`: the scheduler of `cm-export schedule DIR` plus an HTTP API under
//! `/api` and a web console at `/`, where every request is a user's (a bearer token, or the
//! console's session) and the roles decide what it may do. The service holds the connections and their keys (`vault`), knows who saved each
//! export (`owners`), and asks the scheduler, through a permit, before every run whether the
//! export's owner may still use its connection.

mod access;
mod api;
mod audit;
mod console;
mod ops;
mod owners;
mod roles;
mod users;
mod vault;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;

pub use audit::{Audit, AuditEntry};
pub use roles::{Action, Role};
pub use users::{MIN_PASSWORD, Token, User, UserError, Users};
pub use vault::{ConnectionView, NewConnection, Vault};

use crate::schedule::{Clock, Command, LiveRuns, Permit, ScheduleOptions, Scheduler};
use owners::Owners;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("`{}` is not a folder of pipeline definitions", .0.display())]
    NotAFolder(PathBuf),
    #[error(transparent)]
    Schedule(#[from] crate::schedule::ScheduleError),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTP server stopped")]
    Server(#[source] std::io::Error),
}

#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The folder of pipeline definitions.
    pub dir: PathBuf,
    pub listen: SocketAddr,
    /// Default `DIR/.cm-export`.
    pub state_dir: Option<PathBuf>,
    /// For the scheduler (its clock, reloads, runs); its `dir`, connections and state folder
    /// are the service's.
    pub schedule: Option<ScheduleOptions>,
}

type Shared = Arc<Service>;

/// What every request reaches.
pub(crate) struct Service {
    dir: PathBuf,
    state_dir: PathBuf,
    users: PathBuf,
    vault: Vault,
    owners: Owners,
    audit: Audit,
    scheduler: mpsc::UnboundedSender<Command>,
    /// The runs in progress (the scheduler's), with their counts.
    live: LiveRuns,
    /// Tokens already checked against their Argon2 hash, by their SHA-256 (see `api`).
    checked: std::sync::Mutex<std::collections::HashMap<[u8; 32], access::Checked>>,
    /// The console's logged-in browsers, by session id.
    sessions: std::sync::Mutex<std::collections::HashMap<String, console::Session>>,
}

/// A service listening, its scheduler running.
pub struct Serving {
    pub addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    done: tokio::task::JoinHandle<Result<(), ServeError>>,
}

impl Serving {
    /// Stops taking requests, lets the scheduler stop its runs (resumable), and waits.
    pub async fn stop(self) -> Result<(), ServeError> {
        self.stop.send_replace(true);
        self.done
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }
}

/// Starts the service: listening on `options.listen`, the scheduler following `DIR`.
pub async fn start(options: ServeOptions, clock: Clock) -> Result<Serving, ServeError> {
    if !options.dir.is_dir() {
        return Err(ServeError::NotAFolder(options.dir));
    }
    let dir = std::path::absolute(&options.dir).unwrap_or(options.dir.clone());
    let state_dir = options
        .state_dir
        .clone()
        .unwrap_or_else(|| crate::state::default_dir(&dir));
    let state_dir = std::path::absolute(&state_dir).unwrap_or(state_dir);
    let vault = Vault::new(&state_dir);
    let mut schedule = options.schedule.unwrap_or_else(|| ScheduleOptions::new(dir.clone()));
    schedule.dir = dir.clone();
    schedule.connections = Some(vault.file().to_owned());
    schedule.run.state_dir = Some(state_dir.clone());
    schedule.permit = Some(permit(&state_dir));
    let schedule_live = schedule.live.clone();
    let (commands, received) = mpsc::unbounded_channel();
    let scheduler = Scheduler::new(schedule, clock)?.with_commands(received);
    let service = Arc::new(Service {
        dir,
        users: Users::path(&state_dir),
        vault,
        owners: Owners::new(&state_dir),
        audit: Audit::new(&state_dir),
        state_dir,
        scheduler: commands,
        live: schedule_live,
        checked: Default::default(),
        sessions: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: options.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: options.listen,
        source,
    })?;
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let mut scheduler_stop = stopped.clone();
    let done = tokio::spawn(async move {
        let scheduling = tokio::spawn(scheduler.run(async move {
            let _ = scheduler_stop.wait_for(|s| *s).await;
        }));
        let routes = api::router().merge(console::router()).with_state(service);
        let served = axum::serve(listener, routes)
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
            .map_err(ServeError::Server);
        let _ = scheduling.await;
        served
    });
    Ok(Serving { addr, stop, done })
}

/// Before every run and on every reload: an export saved by a contributor runs only while
/// its connection is usable by contributors (the owner's role now, or at saving when the
/// user is gone).
fn permit(state_dir: &std::path::Path) -> Permit {
    let owners = Owners::new(state_dir);
    let users = Users::path(state_dir);
    Permit(Arc::new(move |export, _, connection| {
        let Some(owner) = owners.get(export) else {
            return Ok(());
        };
        let role = Users::load(&users)
            .ok()
            .and_then(|all| all.get(&owner.user).map(|u| u.role))
            .unwrap_or(owner.role);
        if role.may(Action::UseConnection(connection.usable_by)) {
            Ok(())
        } else {
            Err(format!(
                "it was saved by {} `{}`, and connection `{}` is usable by admins only; an admin must save the export again, or make the connection usable by contributors",
                role.as_str(),
                owner.user,
                connection.name
            ))
        }
    }))
}
