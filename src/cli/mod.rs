//! The command line: argument types and one function per command. The binary's edge:
//! errors become `anyhow` here and exit codes in `main`.

// Printing results is this module's job; the library never prints.
#![allow(clippy::print_stdout)]

mod authorize;
mod connection;
mod emulator;
mod history;
mod run;
mod schedule;
mod serve;
mod table;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cm-export",
    version,
    about = "Export segments of customer profiles from Parquet to Campaign Monitor lists"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Export now.
    Run(run::RunArgs),
    /// Everything but sending: counts per segment, rejects by reason, batches, samples; for
    /// `changes` and `mirror`, the diff against the list and what the removal guard would decide.
    Plan(run::PlanArgs),
    /// Check definitions, connections, SQL and schema; sends nothing.
    Validate {
        #[arg(required = true)]
        pipelines: Vec<PathBuf>,
        /// The connections file (default: $CM_EXPORT_CONNECTIONS, then beside each pipeline, then its parent folder).
        #[arg(long)]
        connections: Option<PathBuf>,
    },
    /// Write synthetic unified profiles as Parquet.
    SampleData {
        #[arg(long)]
        rows: u64,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, default_value_t = 4)]
        files: u32,
    },
    /// Run each enabled export of a folder on its schedule, following the folder as it changes.
    Schedule(schedule::ScheduleArgs),
    /// Past runs, newest first; with EXPORT RUN_ID, that run's report.
    History(history::HistoryArgs),
    /// List connections, or test one against the API.
    #[command(subcommand)]
    Connection(connection::ConnectionCommand),
    /// Serve the Campaign Monitor emulator.
    Emulator(emulator::EmulatorArgs),
    /// The scheduler of a folder plus an HTTP API, where users' roles decide what each may do.
    Serve(serve::ServeArgs),
    /// The service's users: add, list, remove, a new token, a console password.
    #[command(subcommand)]
    User(serve::UserCommand),
}

pub async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Run(args) => run::run(args).await,
        Command::Plan(args) => run::plan(args).await,
        Command::Validate { pipelines, connections } => run::validate(&pipelines, connections.as_deref()).await,
        Command::SampleData { rows, out, seed, files } => {
            let written = cm_export::sample::generate(&out, rows, files, seed)?;
            println!("wrote {rows} profiles in {} files to {}", written.len(), out.display());
            Ok(0)
        }
        Command::Schedule(args) => schedule::schedule(args).await,
        Command::History(args) => history::show(args),
        Command::Connection(command) => connection::dispatch(command).await,
        Command::Emulator(args) => emulator::serve(args).await,
        Command::Serve(args) => serve::serve(args).await,
        Command::User(command) => serve::user(command),
    }
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed when this is called (not when
/// the future is first polled), so a signal during the checks before sending is caught too.
/// A second signal ends the process at once: the journal is consistent at every moment, so
/// `--resume` continues from what was accepted.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt()).ok();
        let terminate = signal(SignalKind::terminate()).ok();
        async fn recv(signal: &mut Option<Signal>) {
            match signal {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        async fn either(interrupt: &mut Option<Signal>, terminate: &mut Option<Signal>) {
            tokio::select! {
                () = recv(interrupt) => {}
                () = recv(terminate) => {}
            }
        }
        async move {
            let (mut interrupt, mut terminate) = (interrupt, terminate);
            either(&mut interrupt, &mut terminate).await;
            tokio::spawn(async move {
                either(&mut interrupt, &mut terminate).await;
                eprintln!("second signal: stopping now; `cm-export run PIPELINE --resume` continues what was accepted");
                std::process::exit(130);
            });
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
