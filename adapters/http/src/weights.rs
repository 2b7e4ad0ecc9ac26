//! Request weights a program can pace itself by (docs/API.md, "Rate limits"): every
//! authenticated request costs its route's weight from a budget per minute of its account and,
//! when signed with an API key, of that key too (a key cannot spend its account's whole
//! budget, nor one account another's). Every answer says what is left in the IETF
//! `RateLimit-Policy` / `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers) and
//! Binance-style `X-Weight-Used-1m`; a request over budget is 429 `rate_limited` with
//! `Retry-After`, and costs nothing.
//!
//! The per-second limits (`authed_per_second`, `trading_per_second`) stay: they bound bursts;
//! these bound a minute's work, weighted by what it costs the engine and the stores.

use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter, clock::DefaultClock};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::KeyAuth;

type Limiter<K> =
    RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

/// The budgets: per account and per API key, in weight units per minute.
#[derive(Debug)]
pub struct Budgets {
    account: Limiter<u32>,
    key: Limiter<u64>,
    account_per_minute: u32,
    key_per_minute: u32,
}

impl Budgets {
    /// Budgets of `account_per_minute` per account and `key_per_minute` per key (each ≥ 1).
    pub fn new(account_per_minute: u32, key_per_minute: u32) -> Budgets {
        let quota = |n: u32| Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        Budgets {
            account: RateLimiter::keyed(quota(account_per_minute)).with_middleware(),
            key: RateLimiter::keyed(quota(key_per_minute)).with_middleware(),
            account_per_minute: account_per_minute.max(1),
            key_per_minute: key_per_minute.max(1),
        }
    }

    /// Forgets keys back at full budget (bounds memory).
    pub fn sweep(&self) {
        self.account.retain_recent();
        self.key.retain_recent();
    }
}

/// What a route costs. Reads from the engine weigh 1; list and history reads that walk a
/// store 5; a statement file or a daily report 50; bulk controls 10; a batch 1 per order plus 1 (counted by its
/// handler: [`batch_weight`]).
pub fn weight_of(method: &Method, path: &str) -> u32 {
    let p = path.strip_prefix(crate::API_PREFIX).unwrap_or(path);
    match (method.as_str(), p) {
        ("GET", "/user/statement") => 50,
        ("GET", "/user/ledger" | "/positions" | "/candles" | "/admin/audit") => 5,
        ("GET", "/admin/reports/daily") | ("POST", "/admin/stress") => 50,
        ("GET", p) if p.starts_with("/admin/accounts/") && p.ends_with("/statement") => 50,
        ("DELETE", "/orders") | ("POST", "/positions/close-all") => 10,
        // A batch's orders are charged by its handler once its body is read.
        _ => 1,
    }
}

/// A batch of `n` orders weighs one more per order than its route's base weight.
pub fn batch_weight(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// What is left after a charge, for the answer's headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// The budget charged (the key's when signed, else the account's).
    pub policy: &'static str,
    /// Its size per minute.
    pub quota: u32,
    /// What is left.
    pub remaining: u32,
}

impl Usage {
    /// Seconds until the budget is whole again.
    fn reset_secs(self) -> u64 {
        let used = u64::from(self.quota.saturating_sub(self.remaining));
        (used * 60).div_ceil(u64::from(self.quota.max(1)))
    }

    fn headers(self, resp: &mut Response) {
        let h = resp.headers_mut();
        let policy = format!("\"{}\";q={};w=60", self.policy, self.quota);
        let now = format!("\"{}\";r={};t={}", self.policy, self.remaining, self.reset_secs());
        let used = self.quota.saturating_sub(self.remaining).to_string();
        for (name, value) in
            [("ratelimit-policy", policy), ("ratelimit", now), ("x-weight-used-1m", used)]
        {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        }
    }
}

impl AppState {
    /// Charges `weight` to `account`'s budget and, when signed, to `key`'s; refused (nothing
    /// charged to the key) when either is spent.
    pub fn charge_weight(
        &self,
        account: u32,
        key: Option<u64>,
        weight: u32,
    ) -> Result<Usage, ApiError> {
        let b = &self.budgets;
        let n = NonZeroU32::new(weight).unwrap_or(NonZeroU32::MIN);
        let spent = |quota: u32, wait: Option<std::time::Duration>| {
            let secs = wait.map_or(60, |w| w.as_secs() + 1);
            let mut e = ApiError::rate_limited(secs);
            e.message = format!("over the budget of {quota} weight a minute: retry in {secs} s");
            e
        };
        let now = governor::clock::Clock::now(&DefaultClock::default());
        let account_left = match b.account.check_key_n(&account, n) {
            Ok(Ok(s)) => s.remaining_burst_capacity(),
            Ok(Err(not_until)) => {
                return Err(spent(b.account_per_minute, Some(not_until.wait_time_from(now))));
            }
            Err(_) => return Err(spent(b.account_per_minute, None)),
        };
        let Some(key) = key else {
            let quota = b.account_per_minute;
            return Ok(Usage { policy: "account", quota, remaining: account_left });
        };
        match b.key.check_key_n(&key, n) {
            Ok(Ok(s)) => {
                let quota = b.key_per_minute;
                Ok(Usage { policy: "key", quota, remaining: s.remaining_burst_capacity() })
            }
            Ok(Err(not_until)) => Err(spent(b.key_per_minute, Some(not_until.wait_time_from(now)))),
            Err(_) => Err(spent(b.key_per_minute, None)),
        }
    }
}

/// The middleware: charges an authenticated request its route's weight before it runs, and
/// writes the budget left into its answer (a 429 included). Unauthenticated requests have the
/// per-address limits instead.
pub async fn charge(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let caller = match req.extensions().get::<KeyAuth>() {
        Some(k) => Some((k.0.0, Some(k.1.0))),
        None => {
            let verified =
                crate::extract::bearer_of(req.headers()).and_then(|t| state.tokens.verify(t).ok());
            // The route's extractor takes it from here instead of verifying the token again.
            if let Some(v) = verified {
                req.extensions_mut().insert(v);
            }
            verified.map(|v| (v.account, None))
        }
    };
    let Some((account, key)) = caller else { return next.run(req).await };
    let weight = weight_of(req.method(), req.uri().path());
    match state.charge_weight(account, key, weight) {
        Ok(usage) => {
            let mut resp = next.run(req).await;
            // A batch charged more in its handler: its answer carries the later figure.
            if !resp.headers().contains_key("ratelimit") {
                usage.headers(&mut resp);
            }
            resp
        }
        Err(e) => {
            let mut resp = e.into_response();
            let quota = if key.is_some() {
                state.budgets.key_per_minute
            } else {
                state.budgets.account_per_minute
            };
            let policy = if key.is_some() { "key" } else { "account" };
            Usage { policy, quota, remaining: 0 }.headers(&mut resp);
            resp
        }
    }
}

/// The headers of `usage` on `resp` (for a handler that charged more, like a batch).
pub fn with_usage(mut resp: Response, usage: Usage) -> Response {
    usage.headers(&mut resp);
    resp
}
