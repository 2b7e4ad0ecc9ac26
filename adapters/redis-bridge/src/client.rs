//! The API side of the bridge: [`RedisEngineClient`] registers each request's waiter (the one
//! registry, [`engine_core::waiters::Waiters`]) before its `XADD` to `engine-stream`, reads its
//! own reply stream (`callback-queue:<instance>`) on a connection of its own, checks every
//! reply's signature, and implements [`ground::ports::EngineClient`], whose `call` is written
//! once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use engine_core::command::{CommandKind, RequestId};
use engine_core::processor::Response;
use redis::streams::StreamReadReply;
use redis::{RedisResult, cmd};
use tracing::warn;

use crate::ENGINE_STREAM;
use crate::entries::{BridgeError, Entry, signed_xadd};
use crate::link::{Link, blocking_connection};
use crate::signing::BridgeKey;
use crate::target::RedisTarget;
use crate::wire::{self};
use engine_core::waiters::{Delivery, Waiters};
use ground::backoff::Backoff;

/// The API side: sends requests to `engine-stream` and waits for their replies on this process's
/// own reply stream.
pub struct RedisEngineClient {
    /// Reconnects by itself after a Redis restart.
    write: Link,
    key: BridgeKey,
    reply_to: String,
    /// The same registry the engine's reply thread uses ([`Waiters`]).
    waiters: Arc<Waiters<Response>>,
    next: AtomicU64,
    id_base: u64,
    timeout: Duration,
    refused: Arc<AtomicU64>,
    reader: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for RedisEngineClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisEngineClient")
            .field("reply_to", &self.reply_to)
            .finish_non_exhaustive()
    }
}

impl RedisEngineClient {
    /// Connects as API instance `instance` (its replies go to `callback-queue:<instance>`).
    /// `id_base` (e.g. random, shifted left 40 bits) keeps request ids unique across instances.
    /// `key` signs the requests and checks the replies (see [`crate::signing`]).
    pub async fn connect(
        target: &RedisTarget,
        key: BridgeKey,
        instance: &str,
        id_base: u64,
        timeout: Duration,
    ) -> Result<RedisEngineClient, BridgeError> {
        let mut write = Link::connect(target).await?;
        let reply_to = format!("callback-queue:{instance}");
        // Start after the reply stream's current last entry, resolved now: with "$" the reader's
        // first XREAD (in its task, later) would miss replies written in between.
        let newest: redis::streams::StreamRangeReply = cmd("XREVRANGE")
            .arg(&reply_to)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut write)
            .await?;
        let start = newest.ids.first().map_or_else(|| "0-0".to_owned(), |e| e.id.clone());
        let waiters: Arc<Waiters<Response>> = Arc::new(Waiters::new(65_536));
        let refused = Arc::new(AtomicU64::new(0));
        let reader = tokio::spawn(read_replies(
            target.clone(),
            ReplyCheck { key: key.clone(), refused: Arc::clone(&refused) },
            reply_to.clone(),
            start,
            Arc::clone(&waiters),
        ));
        Ok(RedisEngineClient {
            write,
            key,
            reply_to,
            waiters,
            next: AtomicU64::new(1),
            id_base,
            timeout,
            refused,
            reader,
        })
    }

    /// Registers `on_reply` in the waiter registry (before the XADD, so a fast reply finds it),
    /// then sends `kind`; returns the request id, for [`RedisEngineClient::cancel`].
    pub async fn submit(
        &self,
        kind: CommandKind,
        on_reply: Box<dyn FnOnce(Response) + Send>,
    ) -> Result<RequestId, BridgeError> {
        let id = self.id_base | self.next.fetch_add(1, Ordering::Relaxed);
        // Ids come from this instance's counter, so a duplicate cannot happen; either refusal
        // means the registry is full.
        self.waiters
            .register(id, Delivery::Callback(on_reply))
            .map_err(|_| BridgeError::TooManyInFlight)?;
        let body = wire::encode_request(RequestId(id), &self.reply_to, &kind);
        let mut write = self.write.clone();
        let sent = signed_xadd(&self.key, ENGINE_STREAM, 1_000_000, &body);
        if let Err(e) = sent.query_async::<()>(&mut write).await {
            self.forget(id);
            return Err(e.into());
        }
        Ok(RequestId(id))
    }

    /// Stops waiting for `id` (a reply that still comes is counted as late).
    pub fn cancel(&self, id: RequestId) {
        self.forget(id.0);
    }

    /// How long [`ground::ports::EngineClient::call`] waits for a reply.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn forget(&self, id: u64) {
        self.waiters.cancel(id);
    }

    /// Requests awaiting replies now.
    pub fn in_flight(&self) -> usize {
        self.waiters.len()
    }

    /// Replies that arrived after their waiter timed out (dropped).
    pub fn late_replies(&self) -> u64 {
        self.waiters.late()
    }

    /// Entries on the reply stream that were not signed by the engine (dropped unread).
    pub fn refused_replies(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

impl Drop for RedisEngineClient {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The one contract an API calls (`call` is written once, in the ground crate); failures in
/// transport-neutral terms ([`crate::http_client::bridge_error`]).
impl ground::ports::EngineClient for RedisEngineClient {
    fn submit(
        &self,
        kind: CommandKind,
        on_reply: Box<dyn FnOnce(Response) + Send>,
    ) -> ground::ports::BoxFuture<'_, Result<RequestId, ground::ports::PortError>> {
        Box::pin(async move {
            RedisEngineClient::submit(self, kind, on_reply)
                .await
                .map_err(crate::http_client::bridge_error)
        })
    }

    fn cancel(&self, id: RequestId) {
        RedisEngineClient::cancel(self, id);
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn in_flight(&self) -> usize {
        RedisEngineClient::in_flight(self)
    }
}

/// One reader per process, on its own connection, reading its reply stream from the last id it
/// saw (starting where the stream ended when the client connected), reconnecting with backoff.
/// How the reply reader tells the engine's replies from forgeries.
struct ReplyCheck {
    key: BridgeKey,
    refused: Arc<AtomicU64>,
}

async fn read_replies(
    target: RedisTarget,
    check: ReplyCheck,
    stream: String,
    start: String,
    waiters: Arc<Waiters<Response>>,
) {
    let mut last = start;
    let mut backoff = Backoff::connect();
    loop {
        let Ok(mut con) = blocking_connection(&target).await else {
            tokio::time::sleep(backoff.next()).await;
            continue;
        };
        backoff.reset();
        loop {
            let r: RedisResult<Option<StreamReadReply>> = cmd("XREAD")
                .arg("BLOCK")
                .arg(1000)
                .arg("COUNT")
                .arg(1024)
                .arg("STREAMS")
                .arg(&stream)
                .arg(&last)
                .query_async(&mut con)
                .await;
            let Ok(reply) = r else { break };
            for key in reply.map(|r| r.keys).unwrap_or_default() {
                for e in key.ids {
                    last = e.id.clone();
                    let e = Entry::from_stream_id(&e);
                    // A forged reply (e.g. to sign someone in) never reaches a waiter. No
                    // freshness check: a copied reply names a request id nobody waits for.
                    if let Err(why) = e.verify(&check.key, &stream) {
                        let n = check.refused.fetch_add(1, Ordering::Relaxed) + 1;
                        if n.is_power_of_two() {
                            warn!(stream = %stream, cause = why.code(), refused = n, "api: reply refused");
                        }
                        continue;
                    }
                    let Ok(resp) = wire::decode_reply(&e.data) else { continue };
                    // Nobody waiting any more (timed out): counted as late by the registry.
                    waiters.complete(resp.request_id.0, |()| resp);
                }
            }
        }
    }
}
