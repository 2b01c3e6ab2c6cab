use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use cm_export::campaign_monitor::{BaseUrl, Credentials, Secret};
use cm_export::config::{Connection, Connections, Engine, Pipeline};
use cm_export::emulator::{Emulator, EmulatorConfig};
use cm_export::export::{self, ProgressMode, RunOptions, StopReason};

#[derive(Debug, Args)]
pub struct RunArgs {
    pipeline: PathBuf,
    /// Start a Campaign Monitor emulator in this process and export to it.
    #[arg(long)]
    sandbox: bool,
    /// Where to write the report (default: the run's state folder).
    #[arg(long)]
    report: Option<PathBuf>,
    /// The connections file (default: $CM_EXPORT_CONNECTIONS, then beside the pipeline, then its parent folder).
    #[arg(long)]
    connections: Option<PathBuf>,
    /// The state folder (default: `.cm-export/` beside the pipeline).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    progress: ProgressMode,
    /// Continue the last unfinished run of this export; members already accepted are not sent again.
    #[arg(long)]
    resume: bool,
    /// `changes` and `mirror`: send every member (a full resync) and rebuild the synced state.
    #[arg(long)]
    full: bool,
    /// `mirror`: let this run remove up to N members past `options.max-removals` (or, when the
    /// segment is empty, remove up to N at all).
    #[arg(long, value_name = "N", default_value_t = 0)]
    allow_removals: u64,
    #[command(flatten)]
    engine: EngineArg,
    /// How often the run checks that its definition, connection and consent still exist.
    #[arg(long, default_value_t = 2000, hide = true)]
    watch_every_ms: u64,
}

#[derive(Debug, Args)]
struct EngineArg {
    /// Run the queries on this Ballista scheduler (`df://HOST:PORT`), or `in-process`;
    /// overrides the definition's `[engine]`.
    #[arg(long, value_name = "ENGINE", value_parser = Engine::parse)]
    engine: Option<Engine>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    pipeline: PathBuf,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    progress: ProgressMode,
    /// The connections file (default: $CM_EXPORT_CONNECTIONS, then beside the pipeline, then its parent folder).
    #[arg(long)]
    connections: Option<PathBuf>,
    /// The state folder holding the synced state the diff is made against (default:
    /// `.cm-export/` beside the pipeline).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Plan a full resync (`changes`, `mirror`).
    #[arg(long)]
    full: bool,
    /// Plan with this many removals allowed past `options.max-removals`.
    #[arg(long, value_name = "N", default_value_t = 0)]
    allow_removals: u64,
    #[command(flatten)]
    engine: EngineArg,
}

/// The definition at `path`, its queries on `engine` when one is given.
fn definition(path: &Path, engine: Option<Engine>) -> anyhow::Result<Pipeline> {
    let mut pipeline = Pipeline::load(path)?;
    if let Some(engine) = engine {
        engine
            .reads(pipeline.source.cloud)
            .map_err(|why| anyhow::anyhow!("--engine {why}"))?;
        pipeline.engine = engine;
    }
    Ok(pipeline)
}

fn load(pipeline: &Path, connections: Option<&Path>, engine: Option<Engine>) -> anyhow::Result<(Pipeline, Connection)> {
    let pipeline = definition(pipeline, engine)?;
    let file = Connections::locate(connections, pipeline.dir())?;
    let all = Connections::load(&file)?;
    let connection = all.usable(&pipeline.destination.connection)?.clone();
    Ok((pipeline, connection))
}

/// Starts an emulator holding the pipeline's list (with its custom fields), and points the
/// connection at it with a throwaway key.
async fn sandbox(pipeline: &Pipeline, connection: &mut Connection) -> anyhow::Result<(Emulator, Credentials)> {
    let key = format!("sandbox-{:032x}", rand::random::<u128>());
    let list_id = pipeline.destination.list_id.clone();
    let config = EmulatorConfig {
        api_keys: vec![key.clone()],
        lists: vec![(list_id.clone(), format!("Sandbox: {}", pipeline.name))],
        ..EmulatorConfig::default()
    };
    let emulator = Emulator::start(config, ([127, 0, 0, 1], 0).into())
        .await
        .context("cannot start the sandbox emulator")?;
    emulator.with_list_mut(&list_id, |list| {
        for field in &pipeline.mapping.custom_fields {
            // The sandbox list gets the fields the mapping needs, keyed as written, with
            // their types and options.
            let _ = list.add_custom_field(&field.key, field.created_as().as_str(), field.options.clone(), true);
        }
    });
    connection.base_url = BaseUrl::parse(&emulator.base_url())?;
    eprintln!("sandbox: Campaign Monitor emulator at {}", emulator.base_url());
    Ok((emulator, Credentials::ApiKey(Secret::new(key))))
}

pub async fn run(args: RunArgs) -> anyhow::Result<u8> {
    let (pipeline, mut connection) = load(&args.pipeline, args.connections.as_deref(), args.engine.engine)?;
    let (emulator, credentials) = if args.sandbox {
        let (emulator, credentials) = sandbox(&pipeline, &mut connection).await?;
        (Some(emulator), Some(credentials))
    } else {
        (None, None)
    };
    let options = RunOptions {
        report_path: args.report,
        state_dir: args.state_dir,
        progress: args.progress,
        sandbox: args.sandbox,
        resume: args.resume,
        full: args.full,
        allow_removals: args.allow_removals,
        ..RunOptions::default()
    };
    let signal = super::shutdown_signal();
    let destination = export::Destination {
        pipeline_file: pipeline.file.clone(),
        connections_file: connection.file.clone(),
        connection: connection.name.clone(),
    };
    let stop = async {
        tokio::select! {
            () = signal => StopReason::Interrupt,
            reason = export::removed(destination, std::time::Duration::from_millis(args.watch_every_ms.max(1))) => reason,
        }
    };
    let report = export::run(&pipeline, &connection, credentials.as_ref(), &options, stop).await?;
    println!("{}", report.summary());
    cm_export::alert::after_run(&pipeline, &connection, &report, &cm_export::alert::default_backoff()).await;
    if let Some(emulator) = emulator {
        let active = emulator
            .with_list(&pipeline.destination.list_id, |list| {
                list.members
                    .values()
                    .filter(|m| m.state == cm_export::emulator::MemberState::Active)
                    .count()
            })
            .unwrap_or(0);
        println!(
            "  sandbox list {} now holds {active} active members",
            pipeline.destination.list_id
        );
    }
    if let Some(error) = &report.error {
        eprintln!("error: {error}");
    }
    Ok(report.status.exit_code())
}

pub async fn plan(args: PlanArgs) -> anyhow::Result<u8> {
    let PlanArgs {
        pipeline,
        json,
        progress,
        connections,
        state_dir,
        full,
        allow_removals,
        engine,
    } = args;
    let connections = connections.as_deref();
    let pipeline = definition(&pipeline, engine.engine)?;
    // An analyst may plan without the connections file; when there is one, the connection
    // must be usable, as a run would need it.
    let connection = match Connections::locate(connections, pipeline.dir()) {
        Ok(file) => Some(
            Connections::load(&file)?
                .usable(&pipeline.destination.connection)?
                .clone(),
        ),
        Err(_) if connections.is_none() => None,
        Err(error) => return Err(error.into()),
    };
    let options = RunOptions {
        progress,
        state_dir,
        full,
        allow_removals,
        ..RunOptions::default()
    };
    let mut plan = export::plan(&pipeline, &options).await?;
    plan.connection = Some(match connection {
        Some(c) => format!("`{}` ({})", c.name, c.display_name),
        None => format!(
            "`{}` (not checked: no connections file)",
            pipeline.destination.connection
        ),
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        println!("{}", plan.summary());
    }
    Ok(0)
}

pub async fn validate(pipelines: &[PathBuf], connections: Option<&Path>) -> anyhow::Result<u8> {
    let mut failed = 0;
    for path in pipelines {
        let checked = async {
            let (pipeline, connection) = load(path, connections, None)?;
            connection.resolve_credentials()?;
            export::validate(&pipeline).await?;
            anyhow::Ok((pipeline, connection))
        }
        .await;
        match checked {
            Ok((pipeline, connection)) => println!(
                "ok `{}`: {} segment(s), sends {} to list {} on `{}` ({}); {}",
                path.display(),
                pipeline.segments.len(),
                pipeline.destination.segments.join(" + "),
                pipeline.destination.list_id,
                connection.name,
                connection.display_name,
                schedule(&pipeline)
            ),
            Err(error) => {
                failed += 1;
                eprintln!("error: `{}`: {error:#}", path.display());
            }
        }
    }
    Ok(if failed == 0 { 0 } else { 2 })
}

/// When the scheduler would run it, in words.
fn schedule(pipeline: &Pipeline) -> String {
    match &pipeline.schedule {
        None => "on demand only (no [schedule])".to_owned(),
        Some(s) if !s.enabled => format!("schedule `{}` disabled", s.expression),
        Some(s) => match s.next_after(chrono::Utc::now()) {
            Some(next) => format!(
                "scheduled `{}` ({}), next {}",
                s.expression,
                s.timezone.name(),
                next.with_timezone(&s.timezone).to_rfc3339()
            ),
            None => format!("scheduled `{}`, which matches no future time", s.expression),
        },
    }
}
