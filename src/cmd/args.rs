//! Flags shared by several subcommands (`#[command(flatten)]`), and what they resolve to.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use engine_core::config::EngineConfig;
use engine_core::processor::SnapshotPolicy;
use hundredx::DurableOptions;
use hundredx::durability::{JournalPruning, SyncPolicy};
use tracing::{info, warn};

#[derive(clap::Args, Debug)]
pub struct DataArgs {
    /// Data directory (journal, snapshots).
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// The JSON configuration `serve` ran with, if any (markets must match the data).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

impl DataArgs {
    pub fn engine_config(&self) -> Result<EngineConfig> {
        hundredx::config_file::load_engine(self.config.as_deref())
    }
}

#[derive(clap::Args, Debug)]
pub struct DurabilityArgs {
    /// Data directory (journal, snapshots).
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Journal sync policy: `fsync` (every batch: no reply before its command is on disk),
    /// `interval:<ms>`, or `none`.
    #[arg(long, default_value = "fsync")]
    pub sync: SyncPolicy,
    /// Snapshot at every multiple of this many commands (journal sequence), so a leader and its
    /// standby snapshot at the same points and compare state hashes there.
    #[arg(long, default_value_t = 1_000_000)]
    pub snapshot_every: u64,
    /// Snapshot after this many seconds (of command time).
    #[arg(long, default_value_t = 300)]
    pub snapshot_secs: u64,
    /// Snapshots kept; older ones and the journal they cover are pruned.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub keep_snapshots: u64,
    /// Keep the whole journal (no pruning), so `replay --from-scratch` can audit everything.
    #[arg(long)]
    pub keep_journal: bool,
    /// Write the journal on the engine thread, before each batch is applied, instead of on a
    /// thread of its own: one busy thread fewer (for machines with fewer cores than busy
    /// threads; see docs/BENCHMARKS.md), at the price of the engine waiting for each write.
    #[arg(long)]
    pub journal_on_engine_thread: bool,
    /// Journal segment size in MiB.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub segment_mib: u64,
}

impl DurabilityArgs {
    pub fn options(&self) -> DurableOptions {
        DurableOptions {
            data_dir: self.data_dir.clone(),
            sync: self.sync,
            segment_bytes: self.segment_mib << 20,
            snapshots: SnapshotPolicy {
                every_commands: Some(self.snapshot_every.max(1)),
                every_ns: Some(self.snapshot_secs.max(1).saturating_mul(1_000_000_000)),
                aligned: true,
            },
            keep_snapshots: usize::try_from(self.keep_snapshots).unwrap_or(3),
            pruning: if self.keep_journal { JournalPruning::Keep } else { JournalPruning::Prune },
            exit_on_fail_stop: true,
            runtime: engine_core::config::RuntimeConfig {
                inline_input_stage: self.journal_on_engine_thread,
                ..engine_core::config::RuntimeConfig::default()
            },
            changes: None,
            replication: None,
        }
    }
}

/// How service-mode processes reach Redis and trust each other (secrets: `hundredx::secrets`).
#[derive(clap::Args, Debug)]
pub struct RedisArgs {
    /// Redis URL: `redis://host:port/`, `rediss://host:port/` (TLS), `redis://user@host/` (ACL
    /// user), or `redis+sentinel://s1:26379,s2:26379/<master>` (the master found through
    /// Sentinel on each connection; docs/REPLICATION.md). A URL with a password goes in
    /// HUNDREDX_REDIS_URL or --redis-url-file, not here.
    #[arg(long, env = "HUNDREDX_REDIS_URL", hide_env_values = true)]
    pub redis: Option<String>,
    /// A file holding the Redis URL (e.g. with an ACL user's password).
    #[arg(long)]
    pub redis_url_file: Option<PathBuf>,
    /// CA certificate (PEM) trusted for `rediss://` instead of the system's roots.
    #[arg(long, env = "HUNDREDX_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,
    /// A file holding the bridge secret (else HUNDREDX_BRIDGE_SECRET): engine, api and feed
    /// sign and check every stream entry with it (HMAC-SHA256). At least 32 bytes.
    #[arg(long)]
    pub bridge_secret_file: Option<PathBuf>,
}

impl RedisArgs {
    pub fn given(&self) -> bool {
        self.redis.is_some() || self.redis_url_file.is_some()
    }

    pub fn link(
        &self,
    ) -> Result<(redis_bridge::target::RedisTarget, redis_bridge::signing::BridgeKey)> {
        let target = hundredx::secrets::redis_target(
            self.redis.as_deref(),
            self.redis_url_file.as_deref(),
            self.redis_ca_file.as_deref(),
        )?;
        let key = hundredx::secrets::bridge_key(self.bridge_secret_file.as_deref())?;
        Ok((target, key))
    }
}

/// The HTTP edge's most-used limits as flags; every limit is in `--config FILE`, section `http`.
#[derive(clap::Args, Debug)]
pub struct EdgeArgs {
    /// Connections served at once (the next one gets 503); lowered to fit the descriptor limit.
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Reverse proxies whose X-Forwarded-For is believed, comma-separated CIDRs (e.g. 10.0.0.0/8).
    #[arg(long, value_delimiter = ',')]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Origins allowed by CORS, comma-separated (`*` for any). Default: no CORS.
    #[arg(long, value_delimiter = ',')]
    pub cors_origins: Vec<String>,
}

impl EdgeArgs {
    /// The limits from `config` (section `http`) with these flags on top, fitted to the
    /// descriptor limit (raised to the hard limit first).
    pub fn limits(&self, config: Option<&std::path::Path>) -> Result<hundredx_http::Limits> {
        let mut l = hundredx::config_file::load_http(config)?;
        if let Some(n) = self.max_connections {
            l.server.max_connections = n;
        }
        if !self.trusted_proxies.is_empty() {
            l.trusted_proxies.clone_from(&self.trusted_proxies);
        }
        if !self.cors_origins.is_empty() {
            l.cors_origins.clone_from(&self.cors_origins);
        }
        l.validate().map_err(|e| anyhow::anyhow!(e))?;
        fit_to_descriptors(&mut l);
        Ok(l)
    }
}

/// Descriptors kept for everything but client connections: journal segments, snapshots,
/// Redis, the feed, logs.
const RESERVED_FDS: u64 = 64;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, then keeps the connection cap below it, so
/// client sockets can never take the descriptors the journal and the rest need.
pub fn fit_to_descriptors(l: &mut hundredx_http::Limits) {
    let soft = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            warn!(error = %e, "could not read or raise the descriptor limit");
            return;
        }
    };
    let room = usize::try_from(soft.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX).max(1);
    if l.server.max_connections > room {
        warn!(
            max_connections = l.server.max_connections,
            fd_limit = soft,
            lowered_to = room,
            "connection cap lowered to fit the descriptor limit"
        );
        l.server.max_connections = room;
    }
    info!(fd_limit = soft, max_connections = l.server.max_connections, "connection limits");
}

/// The JWT secret from `--jwt-secret-file` or HUNDREDX_JWT_SECRET (at least 16 bytes), if any.
pub fn jwt_secret(file: Option<&std::path::Path>) -> Result<Option<Vec<u8>>> {
    match hundredx::secrets::read(hundredx::secrets::JWT_SECRET_ENV, file)? {
        Some(s) if s.len() < 16 => {
            bail!(
                "the JWT secret (HUNDREDX_JWT_SECRET / --jwt-secret-file) must be at least 16 bytes"
            )
        }
        other => Ok(other),
    }
}

/// 32 random bytes, hex: the JWT secret when none is configured.
pub fn random_secret() -> Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for a JWT secret")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>().into_bytes())
}

/// `--feed-url` values: one bare URL (the venue's), and `VENUE=URL` pairs (several venues).
pub fn feed_urls(
    values: &[String],
) -> Result<(Option<String>, std::collections::BTreeMap<String, String>)> {
    let mut bare = None;
    let mut named = std::collections::BTreeMap::new();
    for v in values {
        let pair = v.split_once('=').filter(|(venue, _)| {
            !venue.is_empty() && venue.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
        match pair {
            Some((venue, url)) => {
                named.insert(venue.to_owned(), url.to_owned());
            }
            None if bare.is_none() => bare = Some(v.clone()),
            None => bail!("--feed-url {v:?}: a second URL needs its venue (VENUE=URL)"),
        }
    }
    Ok((bare, named))
}

/// One `ENGINE=VENUE` pair of `--feed-symbols` (`BTC_USDC=BTC-USD`).
pub fn symbol_pair(s: &str) -> Result<(String, String), String> {
    let ok = |p: &str| !p.is_empty() && p.len() <= 32 && p.bytes().all(|b| b.is_ascii_graphic());
    match s.split_once('=') {
        Some((engine, venue)) if ok(engine) && ok(venue) => {
            Ok((engine.to_owned(), venue.to_owned()))
        }
        _ => Err(format!("{s:?}: expected ENGINE_SYMBOL=VENUE_SYMBOL, e.g. BTC_USDC=BTC-USD")),
    }
}

/// The history store (see the `history` crate): where the engine's changes are kept in SQL.
#[derive(clap::Args, Debug)]
pub struct HistoryArgs {
    /// The store: `sqlite://PATH` or `postgres://…` (a URL with a password goes in
    /// HUNDREDX_HISTORY_DATABASE). Default for `serve`: `history.sqlite` in the data directory.
    #[arg(long = "history-database", env = "HUNDREDX_HISTORY_DATABASE", hide_env_values = true)]
    pub database: Option<String>,
    /// Run without a history store (closed positions come from the engine's bounded history
    /// and there is no statement).
    #[arg(long = "no-history")]
    pub disabled: bool,
    /// Changes waiting for the writer; when full, the engine waits (nothing is dropped).
    #[arg(long = "history-queue", default_value_t = 65_536,
        value_parser = clap::value_parser!(u64).range(1_024..=16_777_216))]
    pub queue: u64,
    /// Most changes committed in one transaction.
    #[arg(long = "history-batch", default_value_t = 4_096,
        value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub batch: u64,
    /// Connections the API uses to read the store.
    #[arg(long = "history-read-connections", default_value_t = 4,
        value_parser = clap::value_parser!(u32).range(1..=256))]
    pub read_connections: u32,
}

impl HistoryArgs {
    /// The store's URL: the flag, else SQLite in `data_dir` (`None`: disabled).
    pub fn url(&self, data_dir: &std::path::Path) -> Result<Option<String>> {
        if self.disabled {
            return Ok(None);
        }
        if let Some(url) = &self.database {
            if !(url.starts_with("sqlite:")
                || url.starts_with("postgres:")
                || url.starts_with("postgresql:"))
            {
                anyhow::bail!("--history-database must be a sqlite:// or postgres:// URL");
            }
            if url_has_password(url) && std::env::var_os("HUNDREDX_HISTORY_DATABASE").is_none() {
                anyhow::bail!(
                    "a database URL with a password must not be on the command line (it shows in \
                     the process list): put it in HUNDREDX_HISTORY_DATABASE"
                );
            }
            return Ok(Some(url.clone()));
        }
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        Ok(Some(history::Store::sqlite_url(&data_dir.join("history.sqlite"))))
    }
}

/// A history store URL, checked: SQLite or PostgreSQL, and a password only from the environment
/// (`HUNDREDX_HISTORY_DATABASE`), never the command line.
pub fn check_database_url(url: &str) -> Result<String> {
    if !(url.starts_with("sqlite:")
        || url.starts_with("postgres:")
        || url.starts_with("postgresql:"))
    {
        bail!("the history database must be a sqlite:// or postgres:// URL");
    }
    let from_env = std::env::var("HUNDREDX_HISTORY_DATABASE").is_ok_and(|e| e == url);
    if url_has_password(url) && !from_env {
        bail!(
            "a database URL with a password must not be on the command line (it shows in the \
             process list): put it in HUNDREDX_HISTORY_DATABASE"
        );
    }
    Ok(sqlite_creating(url))
}

/// A `sqlite:` URL creates its file when missing (`mode=rwc`), as `serve`'s own store does:
/// without it sqlx refuses a new file, and `history rebuild --database sqlite:///new.sqlite`
/// failed. An explicit `mode=` is kept.
fn sqlite_creating(url: &str) -> String {
    if !url.starts_with("sqlite:") || url.contains("mode=") {
        return url.to_owned();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}mode=rwc")
}

/// `scheme://user:password@host…`: a password between `:` and `@` in the authority.
fn url_has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    authority.rsplit_once('@').is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// Replicated mode (docs/REPLICATION.md): the same flags on every engine; whichever holds the
/// lease leads, the others follow `engine-journal` as hot standbys.
#[derive(clap::Args, Debug)]
pub struct ReplicationArgs {
    /// Join the replicated journal: follow `engine-journal` as a standby, lead when the lease
    /// is free (the first engine leads at once). `--consumer` names this engine; give each
    /// engine its own, and its own data directory.
    #[arg(long, visible_alias = "replicated")]
    pub standby: bool,
    /// The leader's lease: a standby takes over this long after the leader's last renewal.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(500..=60_000))]
    pub lease_ms: u64,
    /// Replicas (of Redis) that must hold a batch before it is applied: `WAIT <n>`.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=5))]
    pub replicas: u32,
    /// How long one `WAIT` may take before the batch is tried again (the engine waits).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub replica_wait_ms: u64,
    /// Keep the replicated journal and the lease on NATS JetStream instead of Redis:
    /// `nats://host:4222[,nats://host2:4222…]` (a quorum-replicated stream: an append counts once
    /// a majority of the cluster stored it). With credentials, set it in HUNDREDX_JOURNAL, not
    /// on the command line. Requests and replies stay on Redis.
    #[arg(long, env = "HUNDREDX_JOURNAL", hide_env_values = true, requires = "standby")]
    pub journal: Option<String>,
    /// Replicas of the JetStream journal and lease bucket when this engine creates them (3 on a
    /// three-node cluster: one node may fail without stopping appends or losing any).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=5))]
    pub journal_replicas: u64,
}

impl ReplicationArgs {
    /// Replicated mode's options (`None` unless `--standby`), for engine `consumer`.
    pub fn options(
        &self,
        target: &redis_bridge::target::RedisTarget,
        key: &redis_bridge::signing::BridgeKey,
        consumer: &str,
        trim: bool,
    ) -> anyhow::Result<Option<hundredx::replication::ReplicationOptions>> {
        use hundredx::replication::{NatsJournal, ReplicationOptions};
        if self.journal.is_some() && !nats_key_safe(consumer) {
            anyhow::bail!(
                "--consumer {consumer:?}: with --journal nats:// an engine's name is a key in \
                 JetStream: use letters, digits, '-' and '_' only"
            );
        }
        Ok(self.standby.then(|| ReplicationOptions {
            lease: Duration::from_millis(self.lease_ms),
            wait: Duration::from_millis(self.replica_wait_ms),
            replicas: self.replicas,
            trim,
            nats: self.journal.as_ref().map(|url| NatsJournal {
                url: url.clone(),
                replicas: usize::try_from(self.journal_replicas).unwrap_or(3),
            }),
            ..ReplicationOptions::new(target.clone(), key.clone(), consumer)
        }))
    }
}

/// Can `name` be part of a JetStream key (`node.<name>`, `seen.<name>`)?
fn nats_key_safe(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
