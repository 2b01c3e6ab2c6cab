//! A Campaign Monitor API emulator: the same endpoints, status codes, error bodies and
//! headers as the real API, lists kept in memory, and faults injected on request.
//!
//! It is part of the product: `cm-export emulator` serves it, `--sandbox` starts it
//! in-process, and the tests and benchmarks run against it.

mod api;
mod config;
mod countries;
mod lists;
mod members;
mod oauth;
mod server;
mod stats;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::routing::{any, get, post};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use config::{EmulatorConfig, RateLimitConfig};
pub use lists::{ImportOutcome, IncomingImport, List, Member, MemberState, Stamp};
pub use members::Members;
pub use stats::{Faults, ListCounts, Stats};

struct Token {
    client_id: String,
    expires_at: tokio::time::Instant,
}

/// An authorization code the authorize page issued, not yet exchanged.
struct Grant {
    client_id: String,
    redirect_uri: String,
}

struct State {
    lists: HashMap<String, List>,
    codes: HashMap<String, Grant>,
    tokens: HashMap<String, Token>,
    refresh_tokens: HashMap<String, String>,
    /// Rate-limit windows per identity: (window start, requests in it).
    windows: HashMap<String, (tokio::time::Instant, u64)>,
    rng: SmallRng,
    /// Faults draw from their own sequence, so the same seed injects the same faults into
    /// the same sequence of requests, however answer delays (drawn from `rng`) interleave.
    fault_rng: SmallRng,
    stats: Stats,
}

struct Shared {
    config: EmulatorConfig,
    state: Mutex<State>,
    imports: ImportGate,
}

/// Holds import calls where they arrive until a test lets them through, so a test can stop a
/// run between two batches without waiting on the clock.
#[derive(Default)]
struct ImportGate {
    /// `Some` while held: each import takes a permit.
    permits: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    waiting: tokio::sync::watch::Sender<u64>,
}

struct Uncount<'a>(&'a tokio::sync::watch::Sender<u64>);

impl Drop for Uncount<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl ImportGate {
    fn permits(&self) -> MutexGuard<'_, Option<Arc<tokio::sync::Semaphore>>> {
        self.permits.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn pass(&self) {
        let held = self.permits().clone();
        let Some(permits) = held else { return };
        match permits.try_acquire() {
            Ok(permit) => permit.forget(),
            // Closed: the gate was opened.
            Err(tokio::sync::TryAcquireError::Closed) => {}
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                // Counted while it waits, also when its client goes away meanwhile (a killed
                // run): the guard uncounts it when the handler is dropped.
                self.waiting.send_modify(|n| *n += 1);
                let _waiting = Uncount(&self.waiting);
                if let Ok(permit) = permits.acquire().await {
                    permit.forget();
                }
            }
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running emulator. Dropping it stops accepting connections.
pub struct Emulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
}

impl Emulator {
    /// Binds `listen` (use port 0 for a free one) and serves in the background.
    pub async fn start(config: EmulatorConfig, listen: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                lists: config
                    .lists
                    .iter()
                    .map(|(id, title)| (id.clone(), List::new(id, title)))
                    .collect(),
                codes: HashMap::new(),
                tokens: HashMap::new(),
                refresh_tokens: HashMap::new(),
                windows: HashMap::new(),
                rng: SmallRng::seed_from_u64(config.seed),
                fault_rng: SmallRng::seed_from_u64(config.seed ^ 0x5eed_fa17),
                stats: Stats::default(),
            }),
            config,
            imports: ImportGate::default(),
        });
        let router = Router::new()
            .route("/api/v3.3/{*path}", any(api::handle))
            .route("/oauth", get(oauth::authorize))
            .route("/oauth/token", post(oauth::token))
            .route("/_emulator/stats", get(stats_handler))
            .route("/_emulator/expire-tokens", post(oauth::expire))
            .route("/_emulator/revoke-refresh-tokens", post(oauth::revoke_refresh))
            .layer(axum::extract::DefaultBodyLimit::max(
                crate::campaign_monitor::MAX_REQUEST_BYTES,
            ))
            .with_state(shared.clone());
        tokio::spawn(server::serve(listener, router, async {
            let _ = stopped.await;
        }));
        Ok(Self {
            addr,
            shared,
            stop: Some(stop),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR/api/v3.3`.
    pub fn base_url(&self) -> String {
        format!("http://{}/api/v3.3", self.addr)
    }

    pub fn stats(&self) -> Stats {
        snapshot(&self.shared)
    }

    /// Reads a list directly (tests and the sandbox summary).
    pub fn with_list<R>(&self, list_id: &str, read: impl FnOnce(&List) -> R) -> Option<R> {
        self.shared.lock().lists.get(list_id).map(read)
    }

    /// Changes a list directly: tests use it to set up unsubscribed members and custom fields.
    pub fn with_list_mut<R>(&self, list_id: &str, change: impl FnOnce(&mut List) -> R) -> Option<R> {
        self.shared.lock().lists.get_mut(list_id).map(change)
    }

    /// From now on, import calls wait where they arrive until [`Emulator::release_imports`]
    /// lets them through (tests use it to stop a run between two batches).
    pub fn hold_imports(&self) {
        *self.shared.imports.permits() = Some(Arc::new(tokio::sync::Semaphore::new(0)));
    }

    /// Lets `calls` held import calls through, now or as they arrive.
    pub fn release_imports(&self, calls: usize) {
        if let Some(permits) = self.shared.imports.permits().as_ref() {
            permits.add_permits(calls);
        }
    }

    /// Stops holding: every waiting and later import call goes through.
    pub fn open_imports(&self) {
        if let Some(permits) = self.shared.imports.permits().take() {
            permits.close();
        }
    }

    /// Removes a list, as deleting it in Campaign Monitor does: calls on it then fail with
    /// code 101.
    pub fn remove_list(&self, list_id: &str) {
        self.shared.lock().lists.remove(list_id);
    }

    /// Resolves once `calls` import calls wait at the held gate (every permit given is used).
    pub async fn imports_waiting(&self, calls: u64) {
        let mut waiting = self.shared.imports.waiting.subscribe();
        let _ = waiting.wait_for(|n| *n >= calls).await;
    }

    pub fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn snapshot(shared: &Shared) -> Stats {
    let state = shared.lock();
    let mut stats = state.stats.clone();
    for (id, list) in &state.lists {
        stats.lists.insert(
            id.clone(),
            ListCounts {
                title: list.title.clone(),
                members: list
                    .count_by_state()
                    .into_iter()
                    .map(|(s, n)| (s.as_str().to_owned(), n))
                    .collect(),
                imported_new: list.total_new,
                imported_existing: list.total_existing,
            },
        );
    }
    stats
}

async fn stats_handler(axum::extract::State(shared): axum::extract::State<Arc<Shared>>) -> axum::Json<Stats> {
    axum::Json(snapshot(&shared))
}
