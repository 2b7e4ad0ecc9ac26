//! The one error shape of the API: `{"error": {"code": "...", "message": "..."}}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use engine_core::event::Reason;
use engine_core::processor::EngineError;
use serde_json::json;

/// An error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable snake_case code.
    pub code: &'static str,
    /// Human-readable detail.
    pub message: String,
    /// Seconds to wait (429 only).
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), retry_after_secs: None }
    }

    /// 400 with a code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 404.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 429 with `Retry-After`.
    pub fn rate_limited(retry_after_secs: u64) -> ApiError {
        ApiError {
            retry_after_secs: Some(retry_after_secs.max(1)),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many requests")
        }
    }

    /// 503 `busy` with `Retry-After: 1`: bounded work is full; retrying soon is right.
    pub fn busy(message: impl Into<String>) -> ApiError {
        ApiError {
            retry_after_secs: Some(1),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message)
        }
    }

    /// 503 with `Retry-After: 1`: a dependency (the engine, Redis) cannot take the request now;
    /// `message` says what is wrong.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            retry_after_secs: Some(1),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }

    /// 504 `engine_timeout`: the request was sent but no reply came in time. It may still be
    /// applied, so the message says how to retry safely.
    pub fn engine_timeout() -> ApiError {
        ApiError::gateway_timeout(
            "engine_timeout",
            "no reply from the engine in time (it may be down or restarting); the request may \
             still be applied: retry with the same Idempotency-Key or client_order_id",
        )
    }

    /// 504: the request was sent but no reply came in time; it may still be applied.
    pub fn gateway_timeout(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::GATEWAY_TIMEOUT, code, message)
    }

    /// A business rejection from the engine: 400 for invalid input, 404 for what the caller
    /// cannot see, 409 for a taken login, 422 for the rest.
    pub fn from_reason(reason: Reason) -> ApiError {
        use Reason::*;
        let status = match reason {
            UnknownMarket | InvalidAmount | InvalidLeverage | InvalidQuantity | InvalidPrice
            | InvalidTakeProfit | InvalidStopLoss | InvalidLogin | PriceOutOfRange | Overflow
            | InvalidRequest | InvalidExpiry | InvalidTrailingStop | ReasonRequired => {
                StatusCode::BAD_REQUEST
            }
            UnknownPosition | UnknownAccount | UnknownOrder => StatusCode::NOT_FOUND,
            DuplicateLogin | ClientOrderIdReused | IdempotencyKeyReused | RequestIdReused
            | ApiKeyExists => StatusCode::CONFLICT,
            UnknownApiKey | ApiKeyExpired | UnknownSession | InvalidTotp => {
                StatusCode::UNAUTHORIZED
            }
            SessionCapacity => StatusCode::SERVICE_UNAVAILABLE,
            AccountSuspended | AccountCloseOnly => StatusCode::FORBIDDEN,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError::new(status, reason.code(), describe(reason))
    }

    /// The engine could not take or answer the request.
    pub fn from_engine(e: EngineError) -> ApiError {
        match e {
            EngineError::Timeout => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "engine_timeout", e.to_string())
            }
            _ => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "engine_unavailable", e.to_string())
            }
        }
    }
}

/// An engine client's failure in the API's terms: 503 for what was not sent (with a code naming
/// what failed), 504 `engine_timeout` for what may still apply.
impl From<ground::ports::PortError> for ApiError {
    fn from(e: ground::ports::PortError) -> ApiError {
        use ground::ports::PortError;
        match e {
            PortError::Engine(e) => ApiError::from_engine(e),
            PortError::Timeout => ApiError::engine_timeout(),
            PortError::Busy(message) => ApiError::busy(message),
            PortError::Unavailable { code, message } => ApiError::unavailable(code, message),
        }
    }
}

fn describe(reason: Reason) -> &'static str {
    match reason {
        Reason::InsufficientBalance => "available balance does not cover margin and fees",
        Reason::WouldLiquidate => "the position would be liquidatable at the current price",
        Reason::NoPrice => "no price has been received for this market yet",
        Reason::StalePrice => "the latest price is too old to trade on",
        Reason::SlippageExceeded => "the fill price is worse than expected_price allows",
        Reason::UnknownPosition => "no such position",
        Reason::DuplicateLogin => "this email is already registered",
        Reason::InvalidLeverage => {
            "leverage must be an integer from 1 to the market's maximum (GET /api/v1/markets)"
        }
        Reason::QuantityTooSmall => "the quantity is below the market's minimum",
        Reason::MarginTooSmall => "the margin is below the market's minimum",
        Reason::TooManyPositions => "too many open positions",
        Reason::InvalidTakeProfit => {
            "take_profit must lie on the profitable side of the fill (or, when edited, the mark)"
        }
        Reason::InvalidStopLoss => {
            "stop_loss must lie on the losing side of the fill (or, when edited, the mark)"
        }
        Reason::ClientOrderIdReused => {
            "this client_order_id was already used for a different order"
        }
        Reason::IdempotencyKeyReused => {
            "this Idempotency-Key was already used for a different request"
        }
        Reason::RequestIdReused => "request id conflict: retry",
        Reason::UnknownOrder => "no such pending order (filled, cancelled, expired or not yours)",
        Reason::InvalidOrderPrice => {
            "the order would fill now: a limit must be better than the current price, a stop worse"
        }
        Reason::InvalidExpiry => "expires_at must be in the future",
        Reason::InvalidTrailingStop => {
            "a trailing distance must be positive and below the mark, in bps 1..=5000 (50 %)"
        }
        Reason::TooManyOrders => "too many pending orders",
        Reason::OrderCapacity => "the engine holds its maximum of pending orders",
        Reason::BalanceLimit => {
            "the deposit would take the money held past the engine's ceiling (10^12 USDC)"
        }
        Reason::PositionsOpen => {
            "close your positions and cancel your orders before changing the margin mode"
        }
        Reason::InvalidTotp => "the code is wrong, expired or already used",
        Reason::TotpState => "two-factor sign-in is not in the state this needs (on, or pending)",
        Reason::UnknownSession => "this session was signed out or has expired: sign in again",
        Reason::SessionCapacity => "the server holds as many sessions as it can: retry later",
        Reason::AccountSuspended => {
            "this account is suspended: it may sign in and look, nothing else; contact support"
        }
        Reason::AccountCloseOnly => {
            "this account is close-only: close, cancel, deposit and withdraw, but open nothing new"
        }
        Reason::ReasonRequired => "an operator's action needs its reason",
        Reason::OwnAccount => "an operator may not act on their own account",
        _ => "the engine rejected the request",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_map_to_statuses() {
        assert_eq!(ApiError::from_reason(Reason::UnknownPosition).status, StatusCode::NOT_FOUND);
        assert_eq!(ApiError::from_reason(Reason::DuplicateLogin).status, StatusCode::CONFLICT);
        assert_eq!(ApiError::from_reason(Reason::InvalidLeverage).status, StatusCode::BAD_REQUEST);
        let e = ApiError::from_reason(Reason::InsufficientBalance);
        assert_eq!((e.status, e.code), (StatusCode::UNPROCESSABLE_ENTITY, "insufficient_balance"));
    }
}
