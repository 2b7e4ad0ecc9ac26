//! `hundredx`: parses the command line and runs one subcommand (each in `cmd/`).
//!
//! - `serve`: the whole system in one process — the engine thread between its rings, its journal
//!   and snapshots under `--data-dir`, the HTTP API on `--listen`, and a price feed.
//! - `engine`, `api`, `feed --redis`: service mode, three kinds of process over Redis streams.
//! - `feed --record FILE`: records Backpack's frames for later replay.
//! - `replay`, `snapshot`, `explain`: offline tools over a data directory.
//! - `history --redis URL --database URL`: service mode's history writer; `history rebuild`:
//!   the SQL history store rebuilt from the journal.

mod cmd;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "hundredx", version, about = "A leveraged-trading engine built the LMAX way")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the engine embedded, with a price feed, in one process (no Redis).
    Serve(cmd::serve::ServeArgs),
    /// Re-apply a data directory's journal offline; print the final state hash and a summary.
    Replay(cmd::offline::ReplayArgs),
    /// Why a position was closed or called: each triggered close and margin call with the
    /// rule's inputs, replayed from the journal to check the same inputs give the same close and
    /// the same state hash.
    Explain(cmd::explain::ExplainArgs),
    /// Stress replay: a recorded or synthetic crash applied to a copy of the current state by
    /// the production engine; prints who would be liquidated or stopped out, the bad debt and
    /// who pays it. Reads the data directory only (a running `serve` goes on).
    Stress(cmd::stress::StressArgs),
    /// A-book hedging: follows the clients' exposure in the history store and keeps the
    /// house's net exposure per market within its band by trading on a venue (Backpack).
    Hedger(cmd::hedger::HedgerArgs),
    /// Recover a stopped engine's state and write a snapshot of it (prunes old journal).
    Snapshot(cmd::args::DataArgs),
    /// Price feed on its own: `--redis URL` writes `price-stream` (service mode); `--record FILE`
    /// writes Backpack's raw bookTicker frames (JSON lines, playable with `--feed replay:FILE`).
    Feed(cmd::feed::FeedArgs),
    /// Service mode: the engine (with its journal) serving `engine-stream` and `price-stream`.
    Engine(cmd::service::EngineArgs),
    /// Service mode: the HTTP API reaching the engine through Redis (several may run at once).
    Api(cmd::service::ApiArgs),
    /// Service mode: the history store (SQL) fed from `engine-events`; or `history rebuild`
    /// from the journal.
    History(cmd::history::HistoryCli),
    /// Grant or revoke the operator role (offline, against a stopped engine's data directory;
    /// the public API cannot).
    Admin(cmd::admin::AdminCli),
    /// Crash drill for the durability tests: a steady workload printing `ACK <request id>` for
    /// every applied state change, until killed.
    #[command(hide = true)]
    Drill(cmd::drill::DrillArgs),
}

/// Runs the command; an error prints its message and causes on one line, never a backtrace
/// (`anyhow`'s `Debug` adds one whenever `RUST_BACKTRACE` is set, as it often is on a
/// developer's machine), and exits 1.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => cmd::serve::run(args),
        Command::Replay(args) => cmd::offline::replay(args),
        Command::Snapshot(args) => cmd::offline::snapshot(args),
        Command::Explain(args) => cmd::explain::run(args),
        Command::Stress(args) => cmd::stress::run(args),
        Command::Hedger(args) => cmd::hedger::run(args),
        Command::Feed(args) => cmd::feed::run(args),
        Command::Engine(args) => cmd::service::run_engine(args),
        Command::Api(args) => cmd::service::run_api(args),
        Command::History(cli) => cmd::history::run(cli),
        Command::Admin(cli) => cmd::admin::run(cli),
        Command::Drill(args) => cmd::drill::run(args),
    }
}
