//! The command line: global options, the subcommands (one file each), and output helpers.
//! Data goes to stdout (as a table, or JSON with `--json`); logs go to stderr.

/// `println!` for data: a closed stdout (`sluice jobs | head -3`) ends the command quietly.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::write_line(format_args!($($arg)*))
    };
}

mod audit;
mod batch;
mod bench;
mod breaker;
mod config;
mod cron;
mod enqueue;
mod job;
mod jobs;
mod migrate;
mod modules;
mod progress;
mod queue;
mod queues;
mod retention;
mod run;
mod serve;
mod target;
mod token;
mod topic;
mod upload;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use sluice::app::App;
use sluice::settings::{Layers, Settings, Synchronous};
use sluice::store::StoreOptions;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Background jobs, each attempt in its own WebAssembly sandbox"
)]
struct Cli {
    /// The config file. Default: sluice.toml in this directory, if there is one.
    #[arg(long, global = true, env = "SLUICE_CONFIG")]
    config: Option<PathBuf>,
    /// The store: sqlite://PATH (embedded; default sqlite://sluice.db) or
    /// postgres://USER@HOST/DB. Also `database_url` in the file, or SLUICE_DATABASE_URL.
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// A node's API (http://HOST:PORT): upload, enqueue, jobs, job, modules, queues, queue,
    /// token and audit go through it instead of the database. Also SLUICE_URL.
    #[arg(long, global = true, env = "SLUICE_URL")]
    url: Option<String>,
    /// The bearer token for --url (`sluice token create`). Also SLUICE_TOKEN, which keeps it
    /// out of the process list.
    #[arg(long, global = true, env = "SLUICE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print data as JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// How logs are written to stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a job module (a wasm32-wasip2 component) and store it as a new version.
    Upload(upload::Args),
    /// Enqueue a call of a module's job function.
    Enqueue(enqueue::Args),
    /// Run the engine: pull jobs from the queues and run them (and serve the HTTP API).
    Run(run::Args),
    /// Serve the HTTP API without running jobs.
    Serve(serve::Args),
    /// List jobs.
    Jobs(jobs::Args),
    /// Show a job with its attempts (or its tree: parent, children, dependencies, batch),
    /// or retry or cancel it.
    Job(job::Args),
    /// Show a batch's progress and callbacks.
    Batch(batch::Args),
    /// Subscribe job functions to topics, and publish events to them.
    Topic(topic::Args),
    /// List modules (latest version of each).
    Modules,
    /// List queues with their job counts.
    Queues,
    /// Pause or resume a queue.
    Queue(queue::Args),
    /// Add, list and remove periodic jobs.
    Cron(cron::Args),
    /// List, set, remove and reset circuit breakers.
    Breaker(breaker::Args),
    /// Show or set how long finished jobs are kept, by state (every node alike).
    Retention(retention::Args),
    /// Make, list and revoke the API's bearer tokens.
    Token(token::Args),
    /// Who did what, when: every action but enqueueing.
    Audit(audit::Args),
    /// Apply database migrations (also done by every other command).
    Migrate,
    /// Print the effective settings and where each came from (default, file, env or flag);
    /// `sluice config apply` stores the config file's cron entries, replacing the store's.
    Config(config::Args),
    /// Measure bulk enqueue, drain throughput and enqueue-to-start latency on this store.
    Bench(bench::Args),
}

/// What every command gets: where it acts, the settings and how to print.
pub struct Context {
    /// The opened store, or a node's API (`--url`).
    pub target: target::Target,
    pub json: bool,
    /// The layers of settings, for a command to add its own flags over.
    pub layers: Layers,
    /// The settings without any command's own flags.
    pub settings: Settings,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(
        cli.log_format,
        matches!(cli.command, Command::Run(_) | Command::Serve(_)),
    );
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let layers = Layers::load(cli.config.as_deref())?.flag(
        "database_url",
        "--database-url",
        cli.database_url,
    );
    if let Command::Config(config::Args { action: None }) = cli.command {
        // Works with a database that is down: it is about settings only.
        return config::run(&layers, cli.json);
    }
    let settings = layers.settings()?;
    let options = StoreOptions {
        pool_size: settings.database.pool_size,
        sqlite_full_sync: settings.database.sqlite_synchronous == Synchronous::Full,
    };
    let target = match &cli.url {
        Some(url) => target::Target::Api(target::Api::new(url, cli.token)?),
        None => target::Target::Store(App::open_with(&settings.database_url, &options).await?),
    };
    let context = Context {
        target,
        json: cli.json,
        layers,
        settings,
    };
    match cli.command {
        Command::Upload(args) => upload::run(&context, args).await,
        Command::Enqueue(args) => enqueue::run(&context, args).await,
        Command::Run(args) => run::run(&context, args).await,
        Command::Serve(args) => serve::run(&context, args).await,
        Command::Jobs(args) => jobs::run(&context, args).await,
        Command::Job(args) => job::run(&context, args).await,
        Command::Batch(args) => batch::run(&context, args).await,
        Command::Topic(args) => topic::run(&context, args).await,
        Command::Modules => modules::run(&context).await,
        Command::Queues => queues::run(&context).await,
        Command::Queue(args) => queue::run(&context, args).await,
        Command::Cron(args) => cron::run(&context, args).await,
        Command::Breaker(args) => breaker::run(&context, args).await,
        Command::Retention(args) => retention::run(&context, args).await,
        Command::Token(args) => token::run(&context, args).await,
        Command::Audit(args) => audit::run(&context, args).await,
        Command::Migrate => migrate::run(&context).await,
        Command::Config(args) => config::apply(&context, args).await,
        Command::Bench(args) => bench::run(&context, args).await,
    }
}

fn init_logging(format: LogFormat, engine: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if engine { "warn,sluice=info" } else { "warn" };
    let filter = EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes only where a person reads them, never in a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Writes one line of data to stdout. When the reader has gone (a closed pipe), the command
/// has nothing left to do: it exits at once and quietly, as Unix tools do, instead of
/// panicking as `println!` would.
pub fn write_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = writeln!(stdout, "{line}") {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {error}");
        std::process::exit(1);
    }
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json(value: &serde_json::Value) {
    out!(
        "{}",
        serde_json::to_string_pretty(value).expect("JSON values always serialize")
    );
}

impl Context {
    /// The opened store, for the commands that work on the database only.
    pub fn app(&self) -> anyhow::Result<&App> {
        self.target.app()
    }
}

/// Prints rows as an aligned table on stdout.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out!("{}", padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

/// Prints a view (what the API answers) as pretty JSON on stdout.
pub fn print_view(view: &impl serde::Serialize) {
    print_json(&serde_json::to_value(view).expect("views always serialize"));
}

/// Parses a duration such as `3s`, `250ms` or `1h 30m`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration (like 3s, 250ms, 1h): {e}"))
}

/// Shortens text for a table cell.
pub fn ellipsize(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{cut}…")
}
