//! The engine side of the bridge: the consumer group on `engine-stream` and `price-stream` into
//! the in-ring (signatures, the replay guard, dead letters, pending entries reclaimed), and the
//! out-ring to the reply streams and `engine-events`. The API side is [`crate::client`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ground::time::now_ns;

use engine_core::command::CommandKind;
use engine_core::event::{Output, Reason};
use engine_core::processor::{EngineError, Response, Submitter};
use redis::streams::StreamReadReply;
use redis::{RedisResult, cmd};
use tracing::{info, warn};

use crate::entries::{BridgeError, Entry, ensure_group, signed_xadd};
use crate::link::{Link, blocking_connection};
use crate::signing::{Admitted, BridgeKey, ReplayGuard, SigError};
use crate::target::RedisTarget;
use crate::wire::{self};
use crate::{ENGINE_EVENTS_MAXLEN, ENGINE_EVENTS_STREAM, ENGINE_STREAM, PRICE_STREAM};
use ground::backoff::Backoff;
use ground::time::now_ms;

/// The stream malformed requests are moved to.
pub const DEAD_LETTER_STREAM: &str = "engine-dead-letter";

pub use crate::entries::ENGINE_GROUP;

/// Entries the engine side refused, by cause (each also dead-lettered).
#[derive(Debug, Default)]
pub struct BridgeStats {
    /// No `ts`/`sig`.
    pub unsigned: AtomicU64,
    /// A signature that does not match.
    pub bad_signature: AtomicU64,
    /// Signed, but older (or newer) than `max_age`.
    pub stale: AtomicU64,
    /// A second entry carrying a request id already seen.
    pub replayed: AtomicU64,
}

impl BridgeStats {
    fn count(&self, e: SigError) -> u64 {
        let c = match e {
            SigError::Unsigned | SigError::ShortSecret => &self.unsigned,
            SigError::BadSignature => &self.bad_signature,
            SigError::Stale => &self.stale,
            SigError::Replayed => &self.replayed,
        };
        c.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// All refused entries.
    pub fn refused(&self) -> u64 {
        [&self.unsigned, &self.bad_signature, &self.stale, &self.replayed]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

/// Settings of the engine side.
#[derive(Debug, Clone)]
pub struct EngineBridgeConfig {
    /// The Redis server.
    pub target: RedisTarget,
    /// Signs what the engine writes, checks what it reads.
    pub key: BridgeKey,
    /// Entries signed longer ago than this (or this far in the future) are refused.
    pub max_age: Duration,
    /// Request ids remembered against replays (see [`ReplayGuard`]).
    pub replay_capacity: usize,
    /// What was refused, by cause.
    pub stats: Arc<BridgeStats>,
    /// This engine's stable consumer name (its pending entries are re-read after a restart).
    pub consumer: String,
    /// Entries per read.
    pub batch: usize,
    /// Approximate length kept in reply streams and `engine-events`.
    pub maxlen: usize,
    /// Reclaim entries pending on other consumers for longer than this.
    pub claim_idle: Duration,
    /// `(request id, ms)` of requests another engine applied (a takeover: the old leader's
    /// journal): refused as replays if their entries come back.
    pub applied: Vec<(u64, u64)>,
    /// Claim every entry pending on other consumers at once, not after `claim_idle` (a
    /// takeover: the consumer that held them has been deposed).
    pub claim_at_start: bool,
}

impl EngineBridgeConfig {
    /// Defaults: consumer `engine-1`, 1024 per read, 100k kept, reclaim after 30 s, entries
    /// accepted up to 30 s old, 1M request ids remembered against replays.
    pub fn new(target: RedisTarget, key: BridgeKey) -> EngineBridgeConfig {
        EngineBridgeConfig {
            target,
            key,
            max_age: Duration::from_secs(30),
            replay_capacity: 1_000_000,
            stats: Arc::default(),
            consumer: "engine-1".into(),
            batch: 1_024,
            maxlen: 100_000,
            claim_idle: Duration::from_secs(30),
            applied: Vec::new(),
            claim_at_start: false,
        }
    }
}

/// A reply the engine produced, to write and acknowledge.
struct Done {
    entry: String,
    reply_to: String,
    body: String,
}

/// Runs the engine side until `shutdown` resolves, reconnecting with backoff on errors.
/// `events` is the engine's event subscription (copied to `engine-events`).
pub async fn run_engine_bridge(
    cfg: EngineBridgeConfig,
    submitter: Submitter,
    events: crossbeam_channel::Receiver<Output>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), BridgeError> {
    let (done_tx, done_rx) = tokio::sync::mpsc::unbounded_channel::<Done>();
    let submitter = Arc::new(Mutex::new(submitter));
    tokio::pin!(shutdown);

    // Events: a blocking receiver drained on the blocking pool, written on its own connection.
    let (ev_tx, ev_rx) = tokio::sync::mpsc::channel::<String>(4096);
    tokio::task::spawn_blocking(move || {
        for o in events {
            if let Output::Event(e) = o
                && ev_tx.blocking_send(serde_json::to_string(&e).unwrap_or_default()).is_err()
            {
                break;
            }
        }
    });

    // Replies and events are written as they come, by their own task on a reconnecting
    // connection; an item is retried until written (a reply is never dropped for a blip).
    // Redis may start after the engine, or be restarting: wait for it (shutdown still works).
    let connect = || Link::connect(&cfg.target);
    let Some(manager) = cfg.target.retry("engine", connect, shutdown.as_mut()).await else {
        return Ok(());
    };
    let writer = tokio::spawn(write_replies_and_events(
        manager.clone(),
        cfg.key.clone(),
        cfg.maxlen,
        done_rx,
        ev_rx,
    ));
    let mut backoff = Backoff::connect();
    let mut gate =
        Gate { guard: ReplayGuard::new(millis(cfg.max_age), cfg.replay_capacity), cfg: &cfg };
    for &(id, ts_ms) in &cfg.applied {
        gate.guard.remember_applied(id, ts_ms);
    }
    let result = loop {
        let session = consume(&cfg.target, &manager, &mut gate, &submitter, &done_tx);
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            r = session => {
                if let Err(e) = r {
                    warn!(error = %e, retry_in = ?backoff.peek(), "bridge: redis connection lost");
                }
            }
        }
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            () = tokio::time::sleep(backoff.next()) => {}
        }
    };
    writer.abort();
    result
}

/// The writer: replies (then one XACK for their requests) and events, signed, each batch in one
/// pipelined round trip on a reconnecting connection; an item is retried until written (a reply
/// is never dropped for a blip), and one Redis refuses for good is dead-lettered.
async fn write_replies_and_events(
    mut con: Link,
    key: BridgeKey,
    maxlen: usize,
    mut done_rx: tokio::sync::mpsc::UnboundedReceiver<Done>,
    mut ev_rx: tokio::sync::mpsc::Receiver<String>,
) {
    loop {
        let first = tokio::select! {
            d = done_rx.recv() => d.map(|d| (d.reply_to, d.body, Some(d.entry))),
            e = ev_rx.recv() => e.map(|e| (ENGINE_EVENTS_STREAM.to_owned(), e, None)),
        };
        let Some(first) = first else { return };
        // Whatever else is ready goes in the same round trip: one pipeline of XADDs and
        // one XACK for the batch (two round trips per reply capped the bridge near 7k/s).
        let mut batch = vec![first];
        while batch.len() < 1_024 {
            match done_rx.try_recv() {
                Ok(d) => batch.push((d.reply_to, d.body, Some(d.entry))),
                Err(_) => break,
            }
        }
        while batch.len() < 2_048 {
            match ev_rx.try_recv() {
                Ok(e) => batch.push((ENGINE_EVENTS_STREAM.to_owned(), e, None)),
                Err(_) => break,
            }
        }
        let mut pipe = redis::pipe();
        let mut acks: Vec<&str> = Vec::new();
        for (stream, body, entry) in &batch {
            // engine-events is shared with the state changes, which readers need for longer.
            let keep = if stream == ENGINE_EVENTS_STREAM { ENGINE_EVENTS_MAXLEN } else { maxlen };
            pipe.add_command(signed_xadd(&key, stream, keep, body)).ignore();
            if let Some(e) = entry {
                acks.push(e);
            }
        }
        if !acks.is_empty() {
            // After the replies: journaled, applied, and answered.
            pipe.cmd("XACK").arg(ENGINE_STREAM).arg(ENGINE_GROUP).arg(&acks).ignore();
        }
        let mut wait = Backoff::write();
        // A retry after a partial failure may write a reply twice; the API side drops the
        // second as a late reply. Never dropping one matters more.
        loop {
            match pipe.query_async::<()>(&mut con).await {
                Ok(()) => break,
                // One entry Redis refuses for good (e.g. a `reply_to` naming a key that
                // is not a stream) once blocked every reply on every api: write the
                // batch one by one instead, dead-lettering what cannot be written.
                Err(e) if permanent(&e) => {
                    write_one_by_one(&mut con, &key, &batch, &acks, maxlen).await;
                    break;
                }
                Err(e) => {
                    warn!(error = %e, "bridge: write failed, retrying");
                    tokio::time::sleep(wait.next()).await;
                }
            }
        }
    }
}

/// One connected session of the engine side: pending entries first (after a crash), then new
/// ones, with stale entries of dead consumers reclaimed; returns only on a Redis error.
async fn consume(
    target: &RedisTarget,
    manager: &Link,
    gate: &mut Gate<'_>,
    submitter: &Mutex<Submitter>,
    done_tx: &tokio::sync::mpsc::UnboundedSender<Done>,
) -> Result<(), BridgeError> {
    let cfg = gate.cfg;
    let mut read = blocking_connection(target).await?;
    let mut write = manager.clone();
    ensure_group(&mut read, ENGINE_STREAM).await?;
    ensure_group(&mut read, PRICE_STREAM).await?;
    info!(consumer = %cfg.consumer, "bridge: connected; re-reading pending entries first");
    // After a crash: this consumer's delivered-but-unacknowledged entries first ("0"),
    // then entries other (dead) consumers left pending too long, then new ones (">").
    let mut cursor = "0";
    let mut last_claim = std::time::Instant::now();
    if cfg.claim_at_start {
        reclaim(gate, submitter, done_tx, &mut write, Duration::ZERO).await?;
    }
    loop {
        let reply: Option<StreamReadReply> = cmd("XREADGROUP")
            .arg("GROUP")
            .arg(ENGINE_GROUP)
            .arg(&cfg.consumer)
            .arg("COUNT")
            .arg(cfg.batch)
            .arg("BLOCK")
            .arg(200)
            .arg("STREAMS")
            .arg(ENGINE_STREAM)
            .arg(PRICE_STREAM)
            .arg(cursor)
            .arg(cursor)
            .query_async(&mut read)
            .await?;
        let mut got = 0;
        let mut tick_ids: Vec<String> = Vec::new();
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            for e in key.ids {
                got += 1;
                let e = Entry::from_stream_id(&e);
                if key.key == PRICE_STREAM {
                    handle_tick(gate, submitter, &mut write, &e).await?;
                    tick_ids.push(e.id);
                } else {
                    handle_request(gate, submitter, done_tx, &mut write, &e).await?;
                }
            }
        }
        if !tick_ids.is_empty() {
            // One XACK for the whole batch of ticks.
            let _: () = cmd("XACK")
                .arg(PRICE_STREAM)
                .arg(ENGINE_GROUP)
                .arg(&tick_ids)
                .query_async(&mut write)
                .await?;
        }
        if cursor == "0" && got == 0 {
            cursor = ">";
        }
        if last_claim.elapsed() >= cfg.claim_idle {
            last_claim = std::time::Instant::now();
            reclaim(gate, submitter, done_tx, &mut write, cfg.claim_idle).await?;
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What the engine side lets in: signed, fresh, and not a copy of an entry already seen.
struct Gate<'a> {
    cfg: &'a EngineBridgeConfig,
    guard: ReplayGuard,
}

impl Gate<'_> {
    /// Moves a refused entry to the dead-letter stream (with the cause, never with an error
    /// reply: its `reply_to` is the forger's choice) and acknowledges it.
    async fn refuse(
        &self,
        write: &mut Link,
        stream: &str,
        e: &Entry,
        why: SigError,
    ) -> Result<(), BridgeError> {
        let n = self.cfg.stats.count(why);
        if n.is_power_of_two() {
            // Logged at 1, 2, 4, 8, ... so a flood of forgeries cannot flood the log.
            warn!(stream, entry = %e.id, cause = why.code(), refused = n, "bridge: entry refused");
        }
        dead_letter(write, self.cfg.maxlen, stream, e, why.code()).await?;
        cmd("XACK").arg(stream).arg(ENGINE_GROUP).arg(&e.id).query_async::<()>(write).await?;
        Ok(())
    }
}

async fn dead_letter(
    write: &mut Link,
    maxlen: usize,
    stream: &str,
    e: &Entry,
    error: &str,
) -> RedisResult<()> {
    cmd("XADD")
        .arg(DEAD_LETTER_STREAM)
        .arg("MAXLEN")
        .arg("~")
        .arg(maxlen)
        .arg("*")
        .arg("data")
        .arg(&e.data)
        .arg("error")
        .arg(error)
        .arg("stream")
        .arg(stream)
        .arg("entry")
        .arg(&e.id)
        .query_async(write)
        .await
}

async fn handle_tick(
    gate: &Gate<'_>,
    submitter: &Mutex<Submitter>,
    write: &mut Link,
    e: &Entry,
) -> Result<(), BridgeError> {
    let checked = e.verify(&gate.cfg.key, PRICE_STREAM).and_then(|ts| {
        if crate::signing::fresh(ts, now_ms(), millis(gate.cfg.max_age)) {
            Ok(ts)
        } else {
            Err(SigError::Stale)
        }
    });
    if let Err(why) = checked {
        // A forged tick could liquidate every account: never applied, counted, kept aside.
        return gate.refuse(write, PRICE_STREAM, e, why).await;
    }
    match wire::decode_price(&e.data) {
        // A tick wants no reply; a lost one is superseded by the next.
        Ok(entry) => {
            submitter.lock().unwrap_or_else(|e| e.into_inner()).send(now_ns(), entry.command())
        }
        Err(err) => warn!(error = %err, "bridge: bad price-stream entry"),
    }
    Ok(())
}

/// Commands only the engine's own process may submit.
fn local_only(kind: &CommandKind) -> bool {
    matches!(kind, CommandKind::SetRole { .. } | CommandKind::ChargeFinancing { .. })
}

async fn handle_request(
    gate: &mut Gate<'_>,
    submitter: &Mutex<Submitter>,
    done: &tokio::sync::mpsc::UnboundedSender<Done>,
    write: &mut Link,
    e: &Entry,
) -> Result<(), BridgeError> {
    let ts = match e.verify(&gate.cfg.key, ENGINE_STREAM) {
        Ok(ts) => ts,
        Err(why) => return gate.refuse(write, ENGINE_STREAM, e, why).await,
    };
    let req = match wire::decode_request(&e.data) {
        Ok(req) => req,
        Err(err) => {
            // Signed by one of ours, but malformed: a bug worth an answer.
            warn!(entry = %e.id, error = %err, "bridge: malformed request moved to the dead-letter stream");
            dead_letter(write, gate.cfg.maxlen, ENGINE_STREAM, e, &err.to_string()).await?;
            if let Some((id, reply_to)) = wire::reply_to_of(&e.data) {
                let body = wire::encode_error_reply(id, Reason::InvalidRequest);
                signed_xadd(&gate.cfg.key, &reply_to, gate.cfg.maxlen, &body)
                    .query_async::<()>(write)
                    .await?;
            }
            return Ok(ack(write, &e.id).await?);
        }
    };
    if local_only(&req.kind) {
        // Commands the engine's own process issues (the operator role from its command line,
        // financing from its scheduler): never from the stream, whoever signed it.
        warn!(entry = %e.id, "bridge: a local-only command arrived on engine-stream: refused");
        let body = wire::encode_error_reply(Some(req.id), Reason::InvalidRequest);
        signed_xadd(&gate.cfg.key, &req.reply_to, gate.cfg.maxlen, &body)
            .query_async::<()>(write)
            .await?;
        return Ok(ack(write, &e.id).await?);
    }
    match gate.guard.admit(req.id.0, &e.id, ts, now_ms()) {
        Err(why) => return gate.refuse(write, ENGINE_STREAM, e, why).await,
        // Taken already (re-read after a reconnect, or claimed back): applying it again would
        // apply it twice; its reply comes, or came, from the first delivery.
        Ok(Admitted::Again) => return Ok(ack(write, &e.id).await?),
        Ok(Admitted::New) => {}
    }
    let (entry_id, reply_to, done) = (e.id.clone(), req.reply_to.clone(), done.clone());
    let on_reply = Box::new(move |r: Response| {
        let _ = done.send(Done { entry: entry_id, reply_to, body: wire::encode_reply(&r) });
    });
    let sent = submitter.lock().unwrap_or_else(|e| e.into_inner()).submit_with_id(
        req.id,
        now_ns(),
        req.kind,
        on_reply,
    );
    match sent {
        Ok(()) => {}
        // The same request is already in flight (a redelivery): its reply will come.
        Err(EngineError::DuplicateInFlight) => ack(write, &e.id).await?,
        Err(err) => {
            // Not taken: leave it pending; it is re-read after a reconnect, and new then.
            gate.guard.forget(req.id.0);
            warn!(error = %err, "bridge: engine did not take a request");
        }
    }
    Ok(())
}

/// An error Redis will answer the same way however often the command is retried (a server
/// error other than OOM or a loading/failover state); connection trouble is transient.
fn permanent(e: &redis::RedisError) -> bool {
    let transient_codes =
        ["OOM", "LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "READONLY", "CLUSTERDOWN"];
    !(e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.code().is_some_and(|c| transient_codes.contains(&c)))
}

/// Writes a batch entry by entry: an entry Redis refuses for good goes to the dead-letter stream
/// (with its destination and the error), every other one is retried until written; then the
/// batch's requests are acknowledged.
async fn write_one_by_one(
    con: &mut Link,
    key: &BridgeKey,
    batch: &[(String, String, Option<String>)],
    acks: &[&str],
    maxlen: usize,
) {
    for (stream, body, _) in batch {
        let mut wait = Backoff::write();
        let keep = if stream == ENGINE_EVENTS_STREAM { ENGINE_EVENTS_MAXLEN } else { maxlen };
        loop {
            match signed_xadd(key, stream, keep, body).query_async::<()>(con).await {
                Ok(()) => break,
                Err(e) if permanent(&e) => {
                    warn!(stream = %stream, error = %e, "bridge: reply cannot be written; dead-lettered");
                    let dead = cmd("XADD")
                        .arg(DEAD_LETTER_STREAM)
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(maxlen)
                        .arg("*")
                        .arg("undeliverable_to")
                        .arg(stream)
                        .arg("error")
                        .arg(e.code().unwrap_or("error"))
                        .arg("data")
                        .arg(body)
                        .query_async::<()>(con)
                        .await;
                    if let Err(e) = dead {
                        warn!(error = %e, "bridge: dead-lettering failed too; reply dropped");
                    }
                    break;
                }
                Err(e) => {
                    warn!(error = %e, "bridge: write failed, retrying");
                    tokio::time::sleep(wait.next()).await;
                }
            }
        }
    }
    if !acks.is_empty() {
        while let Err(e) =
            cmd("XACK").arg(ENGINE_STREAM).arg(ENGINE_GROUP).arg(acks).query_async::<()>(con).await
        {
            warn!(error = %e, "bridge: ack failed, retrying");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn reclaim(
    gate: &mut Gate<'_>,
    submitter: &Mutex<Submitter>,
    done: &tokio::sync::mpsc::UnboundedSender<Done>,
    write: &mut Link,
    idle: Duration,
) -> Result<(), BridgeError> {
    let r: redis::Value = cmd("XAUTOCLAIM")
        .arg(ENGINE_STREAM)
        .arg(ENGINE_GROUP)
        .arg(&gate.cfg.consumer)
        .arg(millis(idle))
        .arg("0-0")
        .arg("COUNT")
        .arg(gate.cfg.batch)
        .query_async(write)
        .await?;
    // Reply: [next-cursor, [[id, [field, value, ...]], ...], [deleted ids]]
    let redis::Value::Array(parts) = r else { return Ok(()) };
    let Some(redis::Value::Array(entries)) = parts.get(1) else { return Ok(()) };
    for entry in entries {
        let redis::Value::Array(pair) = entry else { continue };
        let (Some(id), Some(redis::Value::Array(fields))) = (pair.first(), pair.get(1)) else {
            continue;
        };
        let mut e = Entry {
            id: redis::from_redis_value(id.clone()).unwrap_or_default(),
            ..Entry::default()
        };
        for kv in fields.chunks(2) {
            let (Some(k), Some(v)) = (kv.first(), kv.get(1)) else { continue };
            let (Ok(k), Ok(v)) = (
                redis::from_redis_value::<String>(k.clone()),
                redis::from_redis_value::<String>(v.clone()),
            ) else {
                continue;
            };
            match k.as_str() {
                "data" => e.data = v,
                "ts" => e.ts = Some(v),
                "sig" => e.sig = Some(v),
                _ => {}
            }
        }
        info!(entry = %e.id, "bridge: reclaimed a stale pending entry");
        handle_request(gate, submitter, done, write, &e).await?;
    }
    Ok(())
}

async fn ack(write: &mut impl redis::aio::ConnectionLike, entry: &str) -> RedisResult<()> {
    cmd("XACK").arg(ENGINE_STREAM).arg(ENGINE_GROUP).arg(entry).query_async(write).await
}
