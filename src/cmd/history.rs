//! The history store beside the engine: its writer in `serve`, and `hundredx history rebuild`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use engine_core::config::{EngineConfig, MarketConfig};
use engine_core::event::Output;
use history::{RunningWriter, Store, WriterStatus};
use hundredx::durability::{DataDir, Start, TornTail, recover_into};
use hundredx::{ChangesTap, EXIT_FAIL_STOP, now_ns};
use tracing::{error, info};

use super::args::{DataArgs, HistoryArgs};

/// The history writer of a running `serve`, and what the engine needs to feed it.
#[derive(Debug)]
pub struct Embedded {
    /// Give to [`hundredx::DurableOptions::changes`].
    pub tap: ChangesTap,
    /// The store's URL (the API opens its own reading pool).
    pub url: String,
    /// The writer's progress.
    pub status: Arc<WriterStatus>,
    thread: std::thread::JoinHandle<history::Result<()>>,
}

/// Starts the writer when the history is enabled. Its thread exits the process if the store
/// and the engine ever disagree: the engine would otherwise wait forever on a full queue.
pub fn start(
    args: &HistoryArgs,
    data_dir: &std::path::Path,
    markets: &[MarketConfig],
) -> Result<Option<Embedded>> {
    let Some(url) = args.url(data_dir)? else {
        info!("history store disabled (--no-history)");
        return Ok(None);
    };
    let (tx, rx) = crossbeam_channel::bounded(usize::try_from(args.queue).unwrap_or(65_536));
    let batch = usize::try_from(args.batch).unwrap_or(4_096);
    let RunningWriter { cursor, status, thread } =
        history::spawn_writer(&url, markets, batch, rx, now_ns)
            .with_context(|| format!("opening the history store {}", redact(&url)))?;
    info!(store = %redact(&url), seq = cursor.seq, "history store open");
    let tap = ChangesTap {
        after_seq: cursor.seq,
        after_n: cursor.n,
        tx,
        retain_seq: Arc::clone(&status.written_seq),
    };
    Ok(Some(Embedded { tap, url, status, thread }))
}

impl Embedded {
    /// Waits for the writer to commit what it has; call after the engine stopped (its
    /// subscription, the last sender, is gone).
    pub fn finish(self) -> Result<()> {
        let Embedded { tap, thread, .. } = self;
        drop(tap);
        match thread.join() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e).context("history writer"),
            Err(_) => bail!("history writer panicked"),
        }
    }

    /// Exits the process (fail-stop) when the writer thread ends with an error while the
    /// engine runs.
    pub fn watch(&self) -> Result<()> {
        let status = Arc::clone(&self.status);
        std::thread::Builder::new().name("hundredx-history-watch".into()).spawn(move || {
            while !status.failed.load(std::sync::atomic::Ordering::Acquire) {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            error!(exit_code = EXIT_FAIL_STOP,
                "FAIL-STOP: the history store and the engine disagree; exiting (see the error above)");
            std::process::exit(EXIT_FAIL_STOP);
        })?;
        Ok(())
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db` for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum HistoryCommand {
    /// Rebuild a store from a stopped engine's whole journal (kept with `--keep-journal`).
    Rebuild(RebuildArgs),
}

/// `hundredx history …`.
pub fn run(command: HistoryCommand) -> Result<()> {
    match command {
        HistoryCommand::Rebuild(args) => rebuild(args),
    }
}

#[derive(clap::Args, Debug)]
pub struct RebuildArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The store to build (empty or new); default: `history.sqlite` in the data directory,
    /// which must not exist yet.
    #[arg(long = "database", env = "HUNDREDX_HISTORY_DATABASE", hide_env_values = true)]
    pub database: Option<String>,
    /// Changes per transaction.
    #[arg(long, default_value_t = 4_096, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub batch: u64,
}

/// `hundredx history rebuild`: replays the whole journal (kept with `--keep-journal`) from an
/// empty engine and writes every change to a new store. The engine is deterministic, so the
/// store equals the one written live.
pub fn rebuild(args: RebuildArgs) -> Result<()> {
    let cfg: EngineConfig = args.data.engine_config()?;
    let url = match &args.database {
        Some(u) => u.clone(),
        None => {
            let path: PathBuf = args.data.data_dir.join("history.sqlite");
            if path.exists() {
                bail!("{} exists: move it away first, or pass --database", path.display());
            }
            Store::sqlite_url(&path)
        }
    };
    if !args.data.data_dir.is_dir() {
        bail!("no data directory at {}", args.data.data_dir.display());
    }
    let data = DataDir::create(&args.data.data_dir)?;
    let _lock = data.lock().context("the data directory is in use: stop the engine first")?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let store = rt.block_on(Store::open(&url, &cfg.markets, 1))?;
    if rt.block_on(store.cursor())? != history::Cursor::START {
        bail!("the store {} is not empty", redact(&url));
    }
    let mut sink =
        Batches { rt: &rt, store: &store, batch: Vec::new(), max: args.batch, err: None };
    let (engine, report) = recover_into(&data, &cfg, Start::Scratch, TornTail::Report, &mut sink)?;
    sink.flush();
    if let Some(e) = sink.err {
        return Err(e).context("writing the store");
    }
    let cursor = rt.block_on(store.cursor())?;
    info!(replayed = report.replayed, last_seq = report.last_seq, store_seq = cursor.seq,
        hash = %engine_core::hash::hex(&engine.state_hash()), "history rebuilt");
    println!(
        "rebuilt {} from {} journal records (last seq {})",
        redact(&url),
        report.replayed,
        report.last_seq
    );
    Ok(())
}

/// Collects replayed changes and writes them a batch at a time.
struct Batches<'a> {
    rt: &'a tokio::runtime::Runtime,
    store: &'a Store,
    batch: Vec<history::ChangeRecord>,
    max: u64,
    err: Option<history::HistoryError>,
}

impl Batches<'_> {
    fn flush(&mut self) {
        if self.err.is_none()
            && !self.batch.is_empty()
            && let Err(e) = self.rt.block_on(self.store.write(&self.batch))
        {
            self.err = Some(e);
        }
        self.batch.clear();
    }
}

impl engine_core::event::Sink for Batches<'_> {
    fn emit(&mut self, output: Output) {
        if let Output::Change(c) = output {
            self.batch.push(c);
            if self.batch.len() as u64 >= self.max {
                self.flush();
            }
        }
    }
}
