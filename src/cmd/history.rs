//! The history store beside the engine: its writer in `serve`, and `hundredx history rebuild`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use engine_core::config::{EngineConfig, MarketConfig};
use engine_core::event::Output;
use history::{RunningWriter, Store, WriterStatus};
use hundredx::durability::{DataDir, Start, TornTail, recover_into};
use hundredx::{ChangesTap, now_ns};
use tracing::{info, warn};

use super::args::{DataArgs, HistoryArgs, RedisArgs, check_database_url};

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

/// Starts the writer when the history is enabled. It never holds the engine back: a store that
/// fails degrades history (503 on its routes, `history_writer{counter="degraded"}` in
/// metrics, `degraded` in `/healthz`) while
/// trading goes on, and the next start catches it up from the kept journal.
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

/// `hundredx history --redis URL --database URL` (service mode), or `history rebuild …`.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct HistoryCli {
    #[command(subcommand)]
    pub command: Option<HistoryCommand>,
    #[command(flatten)]
    pub service: ServiceArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum HistoryCommand {
    /// Rebuild a store from a stopped engine's whole journal (kept with `--keep-journal`).
    Rebuild(RebuildArgs),
}

/// Service mode: the history writer as a process of its own, reading `engine-events`.
#[derive(clap::Args, Debug)]
pub struct ServiceArgs {
    #[command(flatten)]
    pub redis: RedisArgs,
    /// The store, `postgres://…` (or `sqlite://PATH`); with a password, in
    /// HUNDREDX_HISTORY_DATABASE.
    #[arg(
        long = "database",
        env = "HUNDREDX_HISTORY_DATABASE",
        hide_env_values = true,
        required = true
    )]
    pub database: Option<String>,
    /// This process's consumer name in the `history` group (its pending entries are re-read
    /// after a restart).
    #[arg(long, default_value = "history-1")]
    pub consumer: String,
    /// JSON configuration (markets), as the engine's.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Most entries read and committed at once.
    #[arg(long, default_value_t = 4_096, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub batch: u64,
}

/// `hundredx history …`.
pub fn run(cli: HistoryCli) -> Result<()> {
    match cli.command {
        Some(HistoryCommand::Rebuild(args)) => rebuild(args),
        None => run_service(cli.service),
    }
}

/// Consumer group of history writers on `engine-events`.
const HISTORY_GROUP: &str = "history";

/// Reads change entries from `engine-events` and writes them to the store, exactly once: the
/// store's cursor skips what it holds, an entry is acknowledged only after its batch committed,
/// and the `prev` chain must be unbroken — a gap stops the process (rebuild the store).
fn run_service(args: ServiceArgs) -> Result<()> {
    let cfg = hundredx::config_file::load_engine(args.config.as_deref())?;
    let url = check_database_url(args.database.as_deref().context("--database is required")?)?;
    let (target, key) = args.redis.link()?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        let store = Store::open(&url, &cfg.markets, 2)
            .await
            .with_context(|| format!("opening the history store {}", redact(&url)))?;
        info!(store = %redact(&url), seq = store.cursor().await?.seq, "history: store open");
        let writer = history::Writer::new(store.clone(), usize::try_from(args.batch)?);
        let stop = hundredx::shutdown_signal();
        tokio::pin!(stop);
        loop {
            let connect = || {
                redis_bridge::changes::ChangeReader::connect(
                    &target,
                    key.clone(),
                    HISTORY_GROUP,
                    &args.consumer,
                )
            };
            let Some(mut reader) = target.retry("history", connect, stop.as_mut()).await else {
                return Ok(());
            };
            info!(consumer = %args.consumer, "history: reading engine-events");
            match follow(&store, &writer, &mut reader, args.batch, stop.as_mut()).await? {
                Followed::Stopped => return Ok(()),
                Followed::Lost(e) => {
                    warn!(error = %e, "history: Redis connection lost; reconnecting")
                }
            }
        }
    })
}

enum Followed {
    Stopped,
    Lost(redis::RedisError),
}

/// Reads, writes and acknowledges until `stop` or a Redis error; a store that disagrees or a
/// gap in the chain is an error for the caller (the process stops).
async fn follow(
    store: &Store,
    writer: &history::Writer,
    reader: &mut redis_bridge::changes::ChangeReader,
    batch: u64,
    mut stop: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Result<Followed> {
    let count = usize::try_from(batch)?;
    loop {
        let (ids, entries) = tokio::select! {
            () = &mut stop => return Ok(Followed::Stopped),
            r = reader.next(count, 1_000) => match r {
                Ok(x) => x,
                Err(e) => return Ok(Followed::Lost(e)),
            },
        };
        if ids.is_empty() {
            continue;
        }
        let records = chain(store.cursor().await?, &entries)?;
        // A store that refuses the batch is retried (up to 30 s apart) and alerted on, never a
        // reason to stop: the entries stay pending in the group until they commit.
        if writer.write_retrying(&records, now_ns, stop.as_mut()).await.is_err() {
            return Ok(Followed::Stopped);
        }
        if let Err(e) = reader.ack(&ids).await {
            // Written but not acknowledged: they come again and the cursor skips them.
            return Ok(Followed::Lost(e));
        }
    }
}

/// The entries after `cursor`, checked to follow on from it one by one.
fn chain(
    cursor: history::Cursor,
    entries: &[redis_bridge::changes::ChangeEntry],
) -> Result<Vec<history::ChangeRecord>> {
    let mut last = cursor;
    let mut out = Vec::new();
    for e in entries {
        if !last.precedes(&e.change) {
            continue; // held already: a redelivery, or republished after an engine restart
        }
        let follows = e.prev.is_some_and(|(seq, n)| history::Cursor { seq, n } == last);
        if !follows {
            bail!(
                "engine-events has a gap: the store holds up to ({}, {}) but the next change \
                 ({}, {}) follows {:?}; the stream was trimmed past this reader or Redis lost \
                 data. Rebuild the store from the engine's journal (hundredx history rebuild)",
                last.seq,
                last.n,
                e.change.seq,
                e.change.n,
                e.prev
            );
        }
        out.push(e.change);
        last = history::Cursor { seq: e.change.seq, n: i64::from(e.change.n) };
    }
    Ok(out)
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
        Some(u) => check_database_url(u)?,
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

#[cfg(test)]
mod tests {
    use engine_core::prelude::*;
    use history::Cursor;
    use redis_bridge::changes::ChangeEntry;

    use super::chain;

    fn entry(seq: u64, n: u32, prev: Option<(u64, i64)>) -> ChangeEntry {
        let change = Change::Deposited { account: AccountId(1), amount: Usdc(1) };
        ChangeEntry { change: ChangeRecord { seq, n, at_ns: 0, change }, prev }
    }

    #[test]
    fn the_chain_skips_what_is_held_and_refuses_a_gap() {
        let start = Cursor { seq: 5, n: 0 };
        let held = entry(5, 0, Some((4, 0)));
        let next = entry(9, 0, Some((5, 0)));
        let then = entry(9, 1, Some((9, 0)));
        let got = chain(start, &[held, next, then]).unwrap();
        assert_eq!(got.iter().map(|c| (c.seq, c.n)).collect::<Vec<_>>(), vec![(9, 0), (9, 1)]);
        // An entry whose predecessor is not what the store holds: something in between is lost.
        assert!(chain(start, &[entry(9, 1, Some((9, 0)))]).is_err());
        // The publisher lost its record: unknown predecessor, refused unless already held.
        assert!(chain(start, &[entry(9, 0, None)]).is_err());
        assert!(chain(start, &[entry(4, 0, None)]).unwrap().is_empty());
        // A new store and a new engine: the first entry follows the start.
        assert_eq!(chain(Cursor::START, &[entry(1, 0, Some((0, -1)))]).unwrap().len(), 1);
    }
}
