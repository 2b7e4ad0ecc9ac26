//! An API's engine client over Redis (`hundredx api`): [`RedisApi`] puts
//! [`crate::bridge::RedisEngineClient`] behind [`ground::ports::EngineClient`], the one contract
//! an API calls, and says what failed in transport-neutral terms ([`bridge_error`]).

use ground::ports::{BoxFuture, PortError};

/// What a client is told when the Redis path fails: what is actually wrong, in our words (never
/// Redis's own error text), and whether the request may still have been applied.
pub fn bridge_error(e: crate::bridge::BridgeError) -> PortError {
    use crate::bridge::BridgeError;
    use tracing::warn;
    let unavailable =
        |msg: &str| PortError::Unavailable { code: "redis_unavailable", message: msg.to_owned() };
    match e {
        BridgeError::Timeout => PortError::Timeout,
        BridgeError::TooManyInFlight => PortError::Busy("too many requests awaiting the engine"),
        BridgeError::Redis(e) => {
            warn!(error = %e, "api: Redis refused a request");
            match e.code() {
                Some("OOM") => unavailable(
                    "Redis is out of memory (maxmemory reached): the request was not sent",
                ),
                Some("NOPERM" | "NOAUTH" | "WRONGPASS") => {
                    unavailable("Redis refused this api's user (ACL): the request was not sent")
                }
                Some("LOADING" | "MASTERDOWN" | "READONLY" | "TRYAGAIN") => {
                    unavailable("Redis is starting or failing over: the request was not sent")
                }
                _ if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() => {
                    unavailable(
                        "the connection to Redis is down, reconnecting: the request was not sent",
                    )
                }
                _ => unavailable("Redis refused the request: it was not sent"),
            }
        }
        BridgeError::Wire(_) => unavailable("the engine's reply could not be read"),
    }
}

/// The HTTP adapter's engine client over Redis (`hundredx api`).
#[derive(Debug)]
pub struct RedisApi(pub crate::bridge::RedisEngineClient);

impl ground::ports::EngineClient for RedisApi {
    fn submit(
        &self,
        kind: engine_core::command::CommandKind,
        on_reply: Box<dyn FnOnce(engine_core::processor::Response) + Send>,
    ) -> BoxFuture<'_, Result<engine_core::command::RequestId, PortError>> {
        Box::pin(async move { self.0.submit(kind, on_reply).await.map_err(bridge_error) })
    }

    fn cancel(&self, id: engine_core::command::RequestId) {
        self.0.cancel(id);
    }

    fn timeout(&self) -> std::time::Duration {
        self.0.timeout()
    }

    fn in_flight(&self) -> usize {
        self.0.in_flight()
    }
}
