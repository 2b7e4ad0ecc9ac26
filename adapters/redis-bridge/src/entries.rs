//! What both ends of the bridge share: a signed stream entry (written with [`signed_xadd`],
//! read back as an `Entry` and checked), the consumer groups, and the errors of the Redis path.

use ground::time::now_ms;

use redis::aio::MultiplexedConnection;
use redis::{RedisResult, cmd};

use crate::signing::{BridgeKey, SigError};
use crate::wire::WireError;

/// The consumer group of the engine.
pub const ENGINE_GROUP: &str = "engine";

/// Why the bridge could not do something.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// Redis said no, or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// No reply within the timeout (the waiter was removed).
    #[error("timed out waiting for the engine")]
    Timeout,
    /// The reply could not be decoded.
    #[error("bad reply: {0}")]
    Wire(#[from] WireError),
    /// Too many requests awaiting replies in this process.
    #[error("too many requests in flight")]
    TooManyInFlight,
}

/// A signed `XADD <stream> MAXLEN ~ <maxlen> * data <body> ts <now> sig <hmac>` (see
/// [`crate::signing`]): the only way the bridge writes an entry another component will trust.
pub fn signed_xadd(key: &BridgeKey, stream: &str, maxlen: usize, body: &str) -> redis::Cmd {
    let ts = now_ms();
    let mut c = cmd("XADD");
    c.arg(stream)
        .arg("MAXLEN")
        .arg("~")
        .arg(maxlen)
        .arg("*")
        .arg("data")
        .arg(body)
        .arg("ts")
        .arg(ts)
        .arg("sig")
        .arg(key.sign(stream, ts, body));
    c
}

/// One entry as read from a stream.
#[derive(Debug, Default)]
pub(crate) struct Entry {
    pub(crate) id: String,
    pub(crate) data: String,
    pub(crate) ts: Option<String>,
    pub(crate) sig: Option<String>,
}

impl Entry {
    pub(crate) fn from_stream_id(e: &redis::streams::StreamId) -> Entry {
        Entry {
            id: e.id.clone(),
            data: e.get("data").unwrap_or_default(),
            ts: e.get("ts"),
            sig: e.get("sig"),
        }
    }

    pub(crate) fn verify(&self, key: &BridgeKey, stream: &str) -> Result<u64, SigError> {
        key.verify(stream, self.ts.as_deref(), self.sig.as_deref(), &self.data)
    }
}

pub(crate) async fn ensure_group(con: &mut MultiplexedConnection, stream: &str) -> RedisResult<()> {
    ensure_named_group(con, stream, ENGINE_GROUP).await
}

/// Creates consumer group `group` on `stream` (and the stream) unless it exists.
pub(crate) async fn ensure_named_group(
    con: &mut MultiplexedConnection,
    stream: &str,
    group: &str,
) -> RedisResult<()> {
    // From the start of the stream: a request written before the engine first ran is still one.
    let r: RedisResult<()> = cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(con)
        .await;
    match r {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}
