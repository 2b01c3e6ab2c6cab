//! What a user may ask of the service, each asked of the roles first and recorded in the
//! audit log when it changes something: the API and the console both call these.

use std::path::{Path, PathBuf};

use axum::http::StatusCode;
use serde::Serialize;

use super::access::{Answer, ApiError, Caller};
use super::owners::Owner;
use super::roles::{Action, Role};
use super::users::Users;
use super::vault::{ConnectionView, NewConnection, VaultError};
use super::{AuditEntry, Command, Service};
use crate::campaign_monitor::{ApiError as CmError, Client, ClientOptions, retry_call};
use crate::config::{Pipeline, UsableBy};
use crate::error_text::chain;
use crate::export::{self, ProgressMode, RunOptions};
use crate::retry::Backoff;
use crate::state::{History, HistoryEntry};

#[derive(Debug, Clone, Serialize)]
pub struct ExportView {
    pub name: String,
    pub description: Option<String>,
    pub connection: Option<String>,
    pub list_id: Option<String>,
    pub mode: Option<&'static str>,
    pub schedule: Option<String>,
    /// When it would next run on its schedule.
    pub next_run: Option<String>,
    /// Why the definition cannot be used, when it cannot.
    pub problem: Option<String>,
    pub saved_by: Option<Owner>,
    pub last_run: Option<HistoryEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserView {
    pub name: String,
    pub role: Role,
    pub created_at: String,
    pub password: bool,
}

/// What a run started as: its id.
#[derive(Debug, Clone, Serialize)]
pub struct Started {
    pub run_id: String,
}

pub fn describe(usable_by: UsableBy) -> &'static str {
    match usable_by {
        UsableBy::Admins => "admins",
        UsableBy::AdminsAndContributors => "admins and contributors",
    }
}

fn vault_error(error: VaultError) -> ApiError {
    match error {
        VaultError::Unknown(name) => ApiError::not_found(format!("there is no connection `{name}`")),
        VaultError::Write { .. } | VaultError::Config(_) => ApiError::internal(&error),
        refused => ApiError::bad(refused.to_string()),
    }
}

impl Service {
    fn record(&self, caller: &Caller, action: &str, target: &str, detail: Option<String>) -> Answer<()> {
        self.audit
            .record(&caller.name, action, target, detail)
            .map_err(|e| ApiError::internal(&e))
    }

    fn reload(&self) {
        let _ = self.scheduler.send(Command::Reload);
    }

    pub fn definition_file(&self, name: &str) -> Answer<PathBuf> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(ApiError::bad(format!(
                "`{name}` is not an export name: use letters, digits, `_` and `-`, at most 64"
            )));
        }
        Ok(self.dir.join(format!("{name}.toml")))
    }

    /// Export `name` as saved, with who may use its connection (admins only when the
    /// connection is gone).
    fn export(&self, name: &str) -> Answer<(Pipeline, UsableBy)> {
        let file = self.definition_file(name)?;
        if !file.is_file() {
            return Err(ApiError::not_found(format!("there is no export `{name}`")));
        }
        let pipeline = Pipeline::load(&file).map_err(|e| ApiError::bad(chain(&e)))?;
        let usable_by = self.usable_by(&pipeline.destination.connection)?;
        Ok((pipeline, usable_by))
    }

    /// Who may change or remove export `name` as it stands: those who may use its
    /// connection; admins alone when the definition no longer parses.
    fn standing_usable_by(&self, name: &str) -> Answer<UsableBy> {
        match self.export(name) {
            Ok((_, usable_by)) => Ok(usable_by),
            Err(e) if e.status == StatusCode::BAD_REQUEST => Ok(UsableBy::Admins),
            Err(e) => Err(e),
        }
    }

    fn usable_by(&self, connection: &str) -> Answer<UsableBy> {
        let connections = self.vault.load().map_err(|e| ApiError::internal(&e))?;
        Ok(connections
            .connections
            .get(connection)
            .map_or(UsableBy::Admins, |c| c.usable_by))
    }

    /// The export, when the caller may use its connection.
    fn usable(&self, caller: &Caller, name: &str, what: &str) -> Answer<Pipeline> {
        let (pipeline, usable_by) = self.export(name)?;
        caller.may(Action::UseConnection(usable_by), &format!("{what} export `{name}`"))?;
        Ok(pipeline)
    }

    pub fn users(&self, caller: &Caller) -> Answer<Vec<UserView>> {
        caller.may(Action::Administer, "see the users")?;
        let users = Users::load(&self.users).map_err(|e| ApiError::internal(&e))?;
        Ok(users
            .list()
            .iter()
            .map(|u| UserView {
                name: u.name.clone(),
                role: u.role,
                created_at: u.created_at.clone(),
                password: u.has_password(),
            })
            .collect())
    }

    pub fn audit_log(&self, caller: &Caller) -> Answer<Vec<AuditEntry>> {
        caller.may(Action::Administer, "read the audit log")?;
        self.audit.newest(1000).map_err(|e| ApiError::internal(&e))
    }

    pub fn connections(&self) -> Answer<Vec<ConnectionView>> {
        let connections = self.vault.load().map_err(|e| ApiError::internal(&e))?;
        Ok(connections.connections.values().map(ConnectionView::from).collect())
    }

    /// Adds (or replaces) a connection; `true` when it was new.
    pub fn add_connection(&self, caller: &Caller, new: NewConnection) -> Answer<(bool, ConnectionView)> {
        caller.may(Action::ManageConnections, "add or change a connection")?;
        let (name, usable_by) = (new.name.clone(), new.usable_by);
        let replaced = self.vault.put(new).map_err(vault_error)?;
        let action = if replaced {
            "connection.changed"
        } else {
            "connection.added"
        };
        self.record(
            caller,
            action,
            &name,
            Some(format!("usable by {}", describe(usable_by))),
        )?;
        self.record(caller, "consent.given", &name, None)?;
        self.reload();
        let view = self
            .connections()?
            .into_iter()
            .find(|c| c.name == name)
            .ok_or_else(|| ApiError::not_found(format!("there is no connection `{name}`")))?;
        Ok((!replaced, view))
    }

    pub fn set_usable_by(&self, caller: &Caller, name: &str, usable_by: UsableBy) -> Answer<()> {
        caller.may(Action::ManageConnections, "change a connection")?;
        self.vault.set_usable_by(name, usable_by).map_err(vault_error)?;
        let detail = format!("usable by {}", describe(usable_by));
        self.record(caller, "connection.changed", name, Some(detail))?;
        self.reload();
        Ok(())
    }

    /// Asks Campaign Monitor whether connection `name`'s key is accepted: what it said, in words.
    pub async fn test_connection(&self, caller: &Caller, name: &str) -> Answer<String> {
        caller.may(Action::ManageConnections, "test a connection")?;
        let connections = self.vault.load().map_err(|e| ApiError::internal(&e))?;
        let connection = connections
            .connections
            .get(name)
            .ok_or_else(|| ApiError::not_found(format!("there is no connection `{name}`")))?;
        let failed = |why: String| ApiError::new(StatusCode::BAD_GATEWAY, format!("connection `{name}`: {why}"));
        let credentials = connection.resolve_credentials().map_err(|e| failed(chain(&e)))?;
        let client = Client::new(connection.base_url.clone(), &credentials, ClientOptions::default())
            .map_err(|e| failed(chain(&e)))?;
        let backoff = Backoff {
            max_retries: 3,
            ..Backoff::default()
        };
        match retry_call(&backoff, || client.system_date()).await {
            Ok(date) => Ok(format!(
                "Connection {name} works: Campaign Monitor at {} accepted its key (its clock reads {}).",
                connection.base_url, date.system_date
            )),
            Err(CmError::Api(failure)) => Err(failed(format!(
                "Campaign Monitor refused the key: \"{}\" (code {})",
                failure.message, failure.code
            ))),
            Err(error) => Err(failed(format!(
                "Campaign Monitor at {} could not be reached: {}",
                connection.base_url,
                chain(&error)
            ))),
        }
    }

    pub fn remove_connection(&self, caller: &Caller, name: &str) -> Answer<()> {
        caller.may(Action::ManageConnections, "remove a connection")?;
        self.vault.remove(name).map_err(vault_error)?;
        self.record(caller, "connection.removed", name, None)?;
        self.reload();
        Ok(())
    }

    fn view(&self, name: &str, file: &Path) -> ExportView {
        let parsed = Pipeline::load(file).map_err(|e| chain(&e));
        let pipeline = parsed.as_ref().ok();
        let schedule = pipeline.and_then(|p| p.schedule.as_ref());
        ExportView {
            name: name.to_owned(),
            description: pipeline.and_then(|p| p.description.clone()),
            connection: pipeline.map(|p| p.destination.connection.clone()),
            list_id: pipeline.map(|p| p.destination.list_id.clone()),
            mode: pipeline.map(|p| p.destination.mode.as_str()),
            schedule: schedule.map(|s| format!("{} ({})", s.expression, s.timezone.name())),
            next_run: schedule
                .filter(|s| s.enabled)
                .and_then(|s| s.next_after(chrono::Utc::now()))
                .map(|at| at.to_rfc3339()),
            problem: parsed.err(),
            saved_by: self.owners.get(name),
            last_run: self.history(name, 1).ok().and_then(|mut e| e.pop()),
        }
    }

    pub fn exports(&self) -> Answer<Vec<ExportView>> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| ApiError::internal(&e))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.is_file())
            .collect();
        files.sort();
        Ok(files
            .iter()
            .filter_map(|file| Some(self.view(file.file_stem()?.to_str()?, file)))
            .collect())
    }

    /// An export's summary and its definition's text.
    pub fn one_export(&self, name: &str) -> Answer<(ExportView, String)> {
        let file = self.definition_file(name)?;
        let text =
            std::fs::read_to_string(&file).map_err(|_| ApiError::not_found(format!("there is no export `{name}`")))?;
        Ok((self.view(name, &file), text))
    }

    /// Saves `text` as export `name` once it checks as `validate` checks; `true` when new.
    pub async fn save_export(&self, caller: &Caller, name: &str, text: &str) -> Answer<bool> {
        let file = self.definition_file(name)?;
        let existed = file.is_file();
        if existed {
            let usable_by = self.standing_usable_by(name)?;
            caller.may(Action::UseConnection(usable_by), &format!("change export `{name}`"))?;
        }
        let pipeline = Pipeline::parse(&file, text).map_err(|e| ApiError::bad(chain(&e)))?;
        let connection = &pipeline.destination.connection;
        let connections = self.vault.load().map_err(|e| ApiError::internal(&e))?;
        let Some(usable_by) = connections.connections.get(connection).map(|c| c.usable_by) else {
            return Err(ApiError::bad(format!(
                "connection `{connection}` is not defined (an admin adds connections)"
            )));
        };
        caller.may(
            Action::UseConnection(usable_by),
            &format!(
                "save an export on connection `{connection}`, which is usable by {}",
                describe(usable_by)
            ),
        )?;
        export::validate(&pipeline)
            .await
            .map_err(|e| ApiError::bad(chain(&e)))?;
        // The owner first: the scheduler may read the folder between the two writes, and
        // must never see the new definition under an old owner.
        let owner = Owner {
            user: caller.name.clone(),
            role: caller.role,
            saved_at: export::now_rfc3339(),
        };
        self.owners.set(name, Some(owner)).map_err(|e| ApiError::internal(&e))?;
        crate::state::write_atomic(&file, text.as_bytes()).map_err(|e| ApiError::internal(&e))?;
        self.record(
            caller,
            "export.saved",
            name,
            Some(format!("on connection `{connection}`")),
        )?;
        self.reload();
        Ok(!existed)
    }

    pub fn remove_export(&self, caller: &Caller, name: &str) -> Answer<()> {
        let usable_by = self.standing_usable_by(name)?;
        caller.may(Action::UseConnection(usable_by), &format!("remove export `{name}`"))?;
        std::fs::remove_file(self.definition_file(name)?).map_err(|e| ApiError::internal(&e))?;
        self.owners.set(name, None).map_err(|e| ApiError::internal(&e))?;
        self.record(caller, "export.removed", name, None)?;
        self.reload();
        Ok(())
    }

    pub async fn plan(&self, caller: &Caller, name: &str) -> Answer<export::Plan> {
        let pipeline = self.usable(caller, name, "plan")?;
        let options = RunOptions {
            state_dir: Some(self.state_dir.clone()),
            progress: ProgressMode::Never,
            ..RunOptions::default()
        };
        let mut plan = export::plan(&pipeline, &options)
            .await
            .map_err(|e| ApiError::bad(chain(&e)))?;
        plan.connection = Some(format!("`{}`", pipeline.destination.connection));
        Ok(plan)
    }

    pub async fn run_now(&self, caller: &Caller, name: &str) -> Answer<Started> {
        self.usable(caller, name, "run")?;
        let stopping = || ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the scheduler is stopping");
        let (reply, answer) = tokio::sync::oneshot::channel();
        let export = name.to_owned();
        self.scheduler
            .send(Command::RunNow { export, reply })
            .map_err(|_| stopping())?;
        let run_id = answer
            .await
            .map_err(|_| stopping())?
            .map_err(|why| ApiError::new(StatusCode::CONFLICT, format!("export `{name}` cannot run now: {why}")))?;
        self.record(caller, "run.started", name, Some(run_id.clone()))?;
        Ok(Started { run_id })
    }

    /// The newest `limit` runs of export `name`.
    pub fn history(&self, name: &str, limit: usize) -> Answer<Vec<HistoryEntry>> {
        self.definition_file(name)?;
        let history = History::new(&self.state_dir);
        if !history.exists() {
            return Ok(Vec::new());
        }
        history.list(Some(name), limit).map_err(|e| ApiError::internal(&e))
    }

    /// Whether export `name` has a run going.
    pub fn running(&self, name: &str) -> bool {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .any(|(export, _)| export == name)
    }

    /// Run `run_id`'s report (or its history line when it has none), or its progress while
    /// it runs.
    pub fn one_run(&self, name: &str, run_id: &str) -> Answer<serde_json::Value> {
        self.definition_file(name)?;
        let history = History::new(&self.state_dir);
        let entries = match history.exists() {
            true => history.run(name, run_id).map_err(|e| ApiError::internal(&e))?,
            false => Vec::new(),
        };
        let live = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(name.to_owned(), run_id.to_owned()))
            .cloned();
        match entries.last() {
            Some(entry) => {
                let report = entry
                    .report
                    .as_ref()
                    .and_then(|path| std::fs::read_to_string(path).ok())
                    .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok());
                Ok(report.unwrap_or_else(|| serde_json::json!(entry)))
            }
            None => match live {
                Some(live) => Ok(serde_json::json!({
                    "export": name,
                    "run_id": run_id,
                    "status": "running",
                    "progress": live.snapshot(),
                })),
                None => Err(ApiError::not_found(format!("export `{name}` has no run `{run_id}`"))),
            },
        }
    }
}
