//! Reads from the history port shared by the route groups: whether the store can answer, the
//! wait for the caller's own last change (read-your-writes), its errors in our words.

use std::time::Duration;

use engine_core::command::AccountId;

use crate::AppState;
use crate::error::ApiError;

/// The history store, or 404 `history_disabled` when this server keeps none, or 503
/// `history_unavailable` while its writer is degraded (the store would answer, but with a past
/// that stops short: trading goes on meanwhile).
pub(crate) fn history_of(state: &AppState) -> Result<&crate::History, ApiError> {
    let h = state.history.get().ok_or_else(|| {
        ApiError::not_found("history_disabled", "this server keeps no history store")
    })?;
    if h.writer.as_ref().is_some_and(|w| w.degraded.load(std::sync::atomic::Ordering::Acquire)) {
        return Err(ApiError::unavailable(
            "history_unavailable",
            "history is degraded: the store cannot be written right now; trading is unaffected",
        ));
    }
    Ok(h)
}

/// Read-your-writes: waits, at most `history_read_wait_ms`, until the store holds the caller's
/// own last change (a trader who just closed a position finds it in the list; the store is
/// written a moment behind the engine). Polls the in-process writer's progress when there is
/// one, else the store's cursor, 5 ms doubling to 100 ms apart. Gives up silently: the answer's
/// `consistent_to` still says how far the store is.
pub(crate) async fn caught_up(state: &AppState, h: &crate::History, account: AccountId) {
    let Some(want) = state.hub().own_writes.last(account) else { return };
    let deadline = tokio::time::Instant::now() + state.cfg.limits.history_read_wait;
    let mut pause = Duration::from_millis(5);
    loop {
        let at = match &h.writer {
            Some(w) => w.written_seq.load(std::sync::atomic::Ordering::Acquire),
            None => match h.store.consistent_to().await {
                Ok(at) => at,
                Err(_) => return,
            },
        };
        if at >= want || tokio::time::Instant::now() + pause > deadline {
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// A query's time in ms as the store's ns: a time that does not fit is refused, not clamped.
pub(crate) fn query_ns(ms: Option<u64>) -> Result<Option<u64>, ApiError> {
    ms.map(|ms| {
        ms.checked_mul(1_000_000)
            .filter(|ns| i64::try_from(*ns).is_ok())
            .ok_or_else(|| ApiError::bad_request("invalid_query", "time out of range"))
    })
    .transpose()
}

/// Rows per page when the client does not say.
pub(crate) const PAGE_DEFAULT: u32 = 100;

/// A history store failure in our words: a bad cursor or limit is the client's; anything else
/// is logged and reported as unavailable (never the database's own text).
pub(crate) fn history_error(e: ground::history::ReadError) -> ApiError {
    use ground::history::ReadError;
    match e {
        ReadError::InvalidCursor => {
            ApiError::bad_request("invalid_query", "cursor is not one this server issued")
        }
        ReadError::InvalidLimit => ApiError::bad_request("invalid_query", "limit must be 1..=500"),
        ReadError::InvalidQuery(why) => ApiError::bad_request("invalid_query", why),
        other => {
            tracing::warn!(error = %other, "history store read failed");
            ApiError::unavailable("history_unavailable", "the history store is not answering")
        }
    }
}
