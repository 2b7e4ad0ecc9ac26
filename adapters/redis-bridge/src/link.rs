//! A reconnecting connection that follows the master: [`Link`].
//!
//! redis-rs's `ConnectionManager` reconnects to the address it was built with; after a Sentinel
//! promotion that address is a dead process or a read-only replica. A [`Link`] drops its
//! connection on any connection error (and on `READONLY` / `MASTERDOWN`, which is what a demoted
//! master answers) and resolves the master again ([`RedisTarget::resolve`]) on the next command.
//! It is cheap to clone (one shared multiplexed connection) and usable wherever redis-rs takes an
//! async connection.

use std::sync::Arc;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, RedisResult, Value};

use crate::target::RedisTarget;

/// A connection to the current master, re-resolved after a failure.
#[derive(Clone)]
pub struct Link {
    target: RedisTarget,
    current: Arc<tokio::sync::Mutex<Option<MultiplexedConnection>>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("target", &self.target).finish_non_exhaustive()
    }
}

/// Does this error mean the connection (or the server behind it) is no longer the master's?
pub fn lost_master(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.code().is_some_and(|c| matches!(c, "READONLY" | "MASTERDOWN" | "LOADING"))
}

impl Link {
    /// Connects now (so that a caller's retry loop sees an unreachable Redis at once).
    pub async fn connect(target: &RedisTarget) -> RedisResult<Link> {
        let link =
            Link { target: target.clone(), current: Arc::new(tokio::sync::Mutex::new(None)) };
        link.connection().await?;
        Ok(link)
    }

    async fn connection(&self) -> RedisResult<MultiplexedConnection> {
        let mut current = self.current.lock().await;
        if let Some(c) = current.as_ref() {
            return Ok(c.clone());
        }
        let client = self.target.resolve().await?;
        // A reply slower than this is a hung server (stopped, or partitioned away): drop the
        // connection and find the master again rather than wait forever.
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(std::time::Duration::from_secs(2)))
            .set_response_timeout(Some(std::time::Duration::from_secs(5)));
        let c = client.get_multiplexed_async_connection_with_config(&cfg).await?;
        *current = Some(c.clone());
        Ok(c)
    }

    async fn check<T>(&self, r: RedisResult<T>) -> RedisResult<T> {
        if let Err(e) = &r
            && lost_master(e)
        {
            *self.current.lock().await = None;
        }
        r
    }
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut con = self.connection().await?;
            let r = con.req_packed_command(cmd).await;
            self.check(r).await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut con = self.connection().await?;
            let r = con.req_packed_commands(pipeline, offset, count).await;
            self.check(r).await
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// A connection for blocking reads (`XREADGROUP … BLOCK`) to the current master: redis-rs times
/// replies out after 500 ms by default, which a blocking read would always hit.
pub async fn blocking_connection(target: &RedisTarget) -> RedisResult<MultiplexedConnection> {
    let client = target.resolve().await?;
    let cfg = AsyncConnectionConfig::new().set_response_timeout(None);
    client.get_multiplexed_async_connection_with_config(&cfg).await
}
