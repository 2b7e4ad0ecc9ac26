//! What an API is told when the Redis path fails ([`bridge_error`]): the
//! [`crate::client::RedisEngineClient`]'s errors in the transport-neutral terms of
//! [`ground::ports::EngineClient`], which it implements.

use ground::ports::PortError;

/// What a client is told when the Redis path fails: what is actually wrong, in our words (never
/// Redis's own error text), and whether the request may still have been applied.
pub fn bridge_error(e: crate::entries::BridgeError) -> PortError {
    use crate::entries::BridgeError;
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
