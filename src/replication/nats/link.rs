//! The connection under [`super::NatsLog`]: its own runtime (the callers are plain threads),
//! the journal stream and the lease bucket (created on first use), and one blocking call per
//! JetStream operation, each within the reply timeout.

use std::future::Future;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::{Ordered, OrderedConfig};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::kv::{self, Operation};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, LastRawMessageErrorKind};
use async_nats::jetstream::{self as js};
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt, TryStreamExt};

use super::transport::{Msg, StreamState, Transport};
use super::{BUCKET, DUPLICATE_WINDOW, STREAM, SUBJECT};
use crate::replication::NatsJournal;
use crate::replication::journal::LogError;

/// The connection, its runtime, and the two JetStream objects.
pub struct Link {
    pub(super) cfg: NatsJournal,
    pub(super) timeout: Duration,
    pub(super) rt: Option<tokio::runtime::Runtime>,
    pub(super) conn: Option<(js::Context, stream::Stream, kv::Store)>,
    /// An ordered consumer delivering the journal from a stream sequence (the standby's way of
    /// following: the server pushes each batch, no request per message), and the next
    /// sequence it will deliver.
    pub(super) follower: Option<(u64, Ordered)>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("journal", &self.cfg).finish_non_exhaustive()
    }
}

impl Link {
    /// Runs `fut` to completion on this log's runtime, within the reply timeout.
    pub(super) fn block<T>(&self, fut: impl Future<Output = T>) -> Result<T, LogError> {
        let rt = self.rt.as_ref().expect("connected before use");
        rt.block_on(async { tokio::time::timeout(self.timeout, fut).await })
            .map_err(|_| LogError::Nats(format!("no answer within {:?}", self.timeout)))
    }

    /// The connection, the stream and the bucket, made on first use (the first engine of a
    /// deployment creates the stream and the bucket with the configured replicas). Borrowed by
    /// each call: the append's path copies nothing.
    pub(super) fn connect(&mut self) -> Result<(), LogError> {
        if self.conn.is_some() {
            return Ok(());
        }
        if self.rt.is_none() {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("hundredx-nats")
                .enable_all()
                .build()
                .map_err(|e| LogError::Nats(format!("runtime: {e}")))?;
            self.rt = Some(rt);
        }
        let (url, replicas, timeout) = (self.cfg.url.clone(), self.cfg.replicas, self.timeout);
        let servers: Vec<String> = url.split(',').map(str::to_owned).collect();
        let made = self.block(async move {
            let client = async_nats::ConnectOptions::new()
                .connection_timeout(Duration::from_secs(2))
                .request_timeout(Some(timeout))
                .connect(servers)
                .await
                .map_err(nats)?;
            let mut ctx = js::new(client);
            ctx.set_timeout(timeout);
            let stream = ctx
                .get_or_create_stream(stream::Config {
                    name: STREAM.into(),
                    subjects: vec![SUBJECT.into()],
                    storage: stream::StorageType::File,
                    num_replicas: replicas,
                    duplicate_window: DUPLICATE_WINDOW,
                    ..Default::default()
                })
                .await
                .map_err(nats)?;
            // The bucket's stream made as the client library would (`KV_<bucket>`), but
            // directly: its `create_key_value` first asks for account details in a form
            // nats-server 2.9 (Debian's) does not answer. Reads go through the stream's leader
            // (no direct gets from a replica that may lag).
            ctx.get_or_create_stream(stream::Config {
                name: format!("KV_{BUCKET}"),
                subjects: vec![format!("$KV.{BUCKET}.>")],
                max_messages_per_subject: 1,
                storage: stream::StorageType::File,
                num_replicas: replicas,
                allow_rollup: true,
                deny_delete: true,
                discard: stream::DiscardPolicy::New,
                ..Default::default()
            })
            .await
            .map_err(nats)?;
            let store = ctx.get_key_value(BUCKET).await.map_err(nats)?;
            Ok::<_, LogError>((ctx, stream, store))
        })??;
        self.conn = Some(made);
        Ok(())
    }

    /// The connection, made by [`Link::connect`] just before.
    fn made(&self) -> &(js::Context, stream::Stream, kv::Store) {
        self.conn.as_ref().expect("connected before use")
    }
}

impl Transport for Link {
    fn state(&mut self) -> Result<StreamState, LogError> {
        self.connect()?;
        let s = &self.made().1;
        let st = self.block(async { s.get_info().await.map(|i| i.state) })?.map_err(nats)?;
        Ok(StreamState {
            messages: st.messages,
            first_sequence: st.first_sequence,
            last_sequence: st.last_sequence,
        })
    }

    /// The message at `seq`; `None` when there is none (never written, deleted or purged).
    fn get(&mut self, seq: u64) -> Result<Option<Msg>, LogError> {
        self.connect()?;
        let s = &self.made().1;
        match self.block(s.get_raw_message(seq))? {
            Ok(m) => Ok(Some(Msg { sequence: m.sequence, headers: m.headers, payload: m.payload })),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(nats(e)),
        }
    }

    /// Up to `max` journal messages from stream sequence `from` on, waiting up to `wait` for
    /// the first: through an ordered consumer kept open between calls (made again when asked
    /// for another position, or after it failed).
    fn follow(&mut self, from: u64, max: usize, wait: Duration) -> Result<Vec<Msg>, LogError> {
        if self.follower.as_ref().is_none_or(|(next, _)| *next != from) {
            self.follower = None;
            self.connect()?;
            let s = self.made().1.clone();
            let config = OrderedConfig {
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: from.max(1) },
                filter_subject: SUBJECT.into(),
                ..Default::default()
            };
            let ordered = self.block(async move {
                let consumer = s.create_consumer(config).await.map_err(nats)?;
                consumer.messages().await.map_err(nats)
            })??;
            self.follower = Some((from, ordered));
        }
        let (_, mut ordered) = self.follower.take().expect("made above");
        let rt = self.rt.as_ref().expect("connected before use");
        let got = rt.block_on(async {
            let mut out = Vec::new();
            let first = tokio::time::timeout(wait, ordered.next()).await;
            let mut next = match first {
                Ok(Some(m)) => Some(m),
                Ok(None) => return Err(LogError::Nats("the journal consumer ended".into())),
                Err(_) => None, // nothing within the wait
            };
            while let Some(m) = next {
                let m = m.map_err(nats)?;
                let info = m.info().map_err(nats)?;
                out.push(Msg {
                    sequence: info.stream_sequence,
                    headers: m.headers.clone().unwrap_or_default(),
                    payload: m.payload.clone(),
                });
                if out.len() >= max {
                    break;
                }
                next = ordered.next().now_or_never().flatten();
            }
            Ok(out)
        });
        if let Ok(got) = &got {
            let next = got.last().map_or(from, |m| m.sequence + 1);
            self.follower = Some((next, ordered));
        }
        got
    }

    /// Publishes `msg` if the stream's last sequence is `after`; `Ok(None)`: it was not.
    fn publish(
        &mut self,
        headers: HeaderMap,
        payload: Bytes,
        id: &str,
        after: u64,
    ) -> Result<Option<u64>, LogError> {
        self.connect()?;
        let ctx = &self.made().0;
        let msg = PublishMessage::build()
            .payload(payload)
            .headers(headers)
            .message_id(id)
            .expected_last_sequence(after);
        let r = self.block(async { ctx.send_publish(SUBJECT, msg).await?.await })?;
        match r {
            Ok(ack) => Ok(Some(ack.sequence)),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Ok(None),
            Err(e) => Err(nats(e)),
        }
    }

    fn delete(&mut self, seq: u64) -> Result<(), LogError> {
        self.connect()?;
        self.block(self.made().1.delete_message(seq))?.map_err(nats)?;
        Ok(())
    }

    /// Removes every message below stream sequence `seq`.
    fn purge_below(&mut self, seq: u64) -> Result<(), LogError> {
        self.connect()?;
        self.block(self.made().1.purge().sequence(seq).into_future())?.map_err(nats)?;
        Ok(())
    }

    /// A key's value and revision (`None`: absent or deleted).
    fn entry(&mut self, key: &str) -> Result<Option<(Bytes, u64)>, LogError> {
        self.connect()?;
        let e = self.block(self.made().2.entry(key))?.map_err(nats)?;
        Ok(e.filter(|e| e.operation == Operation::Put).map(|e| (e.value, e.revision)))
    }

    /// Writes `key` only if it is absent (`revision` 0) or still at `revision`; `false`: it
    /// changed.
    fn swap(&mut self, key: &str, value: Bytes, revision: u64) -> Result<bool, LogError> {
        self.connect()?;
        let kv = &self.made().2;
        if revision == 0 {
            let r = self.block(kv.create(key, value))?;
            return match r {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(nats(e)),
            };
        }
        match self.block(kv.update(key, value, revision))? {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(nats(e)),
        }
    }

    fn put(&mut self, key: &str, value: Bytes) -> Result<(), LogError> {
        self.connect()?;
        self.block(self.made().2.put(key, value))?.map_err(nats)?;
        Ok(())
    }

    fn remove(&mut self, key: &str, revision: Option<u64>) -> Result<(), LogError> {
        self.connect()?;
        self.block(self.made().2.delete_expect_revision(key, revision))?.map_err(nats)?;
        Ok(())
    }

    fn keys(&mut self) -> Result<Vec<String>, LogError> {
        self.connect()?;
        let kv = &self.made().2;
        self.block(async {
            let keys = kv.keys().await.map_err(nats)?;
            keys.try_collect::<Vec<String>>().await.map_err(nats)
        })?
    }
}

/// `nats://user:password@host` with the password hidden, for logs.
pub fn redacted(url: &str) -> String {
    url.split(',')
        .map(|u| match (u.find("://"), u.rfind('@')) {
            (Some(s), Some(at)) if at > s => format!("{}***{}", &u[..s + 3], &u[at..]),
            (None, Some(at)) => format!("***{}", &u[at..]),
            _ => u.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

pub(super) fn nats(e: impl std::fmt::Display) -> LogError {
    LogError::Nats(e.to_string())
}
