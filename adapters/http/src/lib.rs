//! The HTTP API (axum, JWT) in front of the engine, per DESIGN.md's HTTP table.
//!
//! Layout:
//! - [`api`]: request/response shapes (decimals as strings, exact parsing) and the handlers;
//! - [`auth`]: argon2id passwords (on the blocking pool), HS256-only JWTs;
//! - [`error`]: the `{"error": {code, message}}` shape and status mapping;
//! - [`metrics`]: Prometheus text metrics;
//! - [`openapi`]: the route table and the OpenAPI document built from it.
//!
//! The server takes a bound listener and a shutdown future ([`serve`]), so tests bind port 0.
//! The handlers reach the engine through an [`EngineClient`]: [`LocalEngine`] publishes into the
//! in-ring of an engine in this process (each call gets a request id, is awaited on a oneshot
//! with a timeout: 504 on timeout, the waiter removed); a Redis-bridged client can stand in for it
//! without the handlers changing. Reads go through the engine too, so a client always reads its
//! own writes.

pub mod api;
pub mod auth;
pub mod error;
pub mod metrics;
pub mod openapi;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use engine_core::command::{CommandKind, MarketId};
use engine_core::config::MarketConfig;
use engine_core::processor::{EngineError, Response, Submitter};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::net::TcpListener;

use crate::auth::Tokens;
use crate::error::ApiError;

/// Prefix of every versioned route.
pub const API_PREFIX: &str = "/api/v1";

/// Settings of the API.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// HS256 secret.
    pub jwt_secret: Vec<u8>,
    /// Token lifetime.
    pub token_ttl: Duration,
    /// How long to wait for the engine's reply before 504.
    pub reply_timeout: Duration,
    /// Largest request body accepted (413 above).
    pub body_limit_bytes: usize,
    /// `POST /user/deposit` is allowed.
    pub demo_deposits: bool,
    /// Sign-in attempts per IP per minute (and per login per minute).
    pub signin_per_minute: u32,
    /// Trading requests per user per second (burst the same); per IP, ten times that.
    pub trading_per_second: u32,
    /// Markets, in engine id order (from the engine's configuration).
    pub markets: Vec<MarketConfig>,
}

impl ApiConfig {
    /// Defaults: 24 h tokens, 5 s reply timeout, 16 KiB bodies, demo deposits on, 10 sign-ins per
    /// minute per IP and per login, 50 trading requests per second per user.
    pub fn new(jwt_secret: Vec<u8>, markets: Vec<MarketConfig>) -> ApiConfig {
        ApiConfig {
            jwt_secret,
            token_ttl: Duration::from_secs(24 * 3600),
            reply_timeout: Duration::from_secs(5),
            body_limit_bytes: 16 * 1024,
            demo_deposits: true,
            signin_per_minute: 10,
            trading_per_second: 50,
            markets,
        }
    }
}

/// How the handlers reach the engine.
pub trait EngineClient: Send + Sync + 'static {
    /// Sends `kind` and awaits its reply (with the client's own timeout).
    fn call(
        &self,
        kind: CommandKind,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response, ApiError>> + Send + '_>>;
    /// The engine's counters, if this client can see them.
    fn counters(&self) -> Option<engine_core::state::Counters> {
        None
    }
    /// Requests awaiting their reply.
    fn in_flight(&self) -> usize {
        0
    }
    /// Events lost by slow subscribers.
    fn events_dropped(&self) -> u64 {
        0
    }
}

/// An engine in this process, reached through its in-ring.
pub struct LocalEngine {
    submitter: Mutex<Submitter>,
    timeout: Duration,
}

impl std::fmt::Debug for LocalEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEngine").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl LocalEngine {
    /// A client of the engine behind `submitter`, giving up on a reply after `timeout`.
    pub fn new(submitter: Submitter, timeout: Duration) -> LocalEngine {
        LocalEngine { submitter: Mutex::new(submitter), timeout }
    }

    fn submitter(&self) -> std::sync::MutexGuard<'_, Submitter> {
        self.submitter.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn call_inner(&self, kind: CommandKind) -> Result<Response, ApiError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let on_reply = Box::new(move |r| {
            let _ = tx.send(r);
        });
        let request_id = self
            .submitter()
            .submit_with(now_ns(), kind, on_reply)
            .map_err(ApiError::from_engine)?;
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => Err(ApiError::from_engine(EngineError::Shutdown)),
            Err(_) => {
                self.submitter().cancel(request_id);
                Err(ApiError::from_engine(EngineError::Timeout))
            }
        }
    }
}

impl EngineClient for LocalEngine {
    fn call(
        &self,
        kind: CommandKind,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response, ApiError>> + Send + '_>>
    {
        Box::pin(self.call_inner(kind))
    }

    fn counters(&self) -> Option<engine_core::state::Counters> {
        Some(self.submitter().counters())
    }

    fn in_flight(&self) -> usize {
        self.submitter().in_flight()
    }

    fn events_dropped(&self) -> u64 {
        self.submitter().events_dropped()
    }
}

/// The price feed's health, as the API shows it (`/healthz`, `/metrics`). Implemented by the
/// binary for whatever feed runs; the API does not depend on the feed crate.
pub trait FeedStatus: Send + Sync {
    /// A JSON object for `/healthz` (e.g. connected, reconnects).
    fn health(&self) -> serde_json::Value;
    /// Named counters for `/metrics`.
    fn counters(&self) -> Vec<(&'static str, u64)>;
}

/// Shared state of the handlers.
pub struct AppState {
    feed: Option<Arc<dyn FeedStatus>>,
    cfg: ApiConfig,
    engine: Arc<dyn EngineClient>,
    tokens: Tokens,
    symbols: HashMap<String, MarketId>,
    signin_ip: DefaultKeyedRateLimiter<IpAddr>,
    signin_login: DefaultKeyedRateLimiter<String>,
    trading: DefaultKeyedRateLimiter<u32>,
    trading_ip: DefaultKeyedRateLimiter<IpAddr>,
    metrics: metrics::Metrics,
    started: Instant,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("markets", &self.cfg.markets.len()).finish_non_exhaustive()
    }
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN))
}

/// Now, in nanoseconds since the epoch: the receive time stamped on every command.
pub fn now_ns() -> u64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl AppState {
    /// State for a router over the engine behind `engine` (in this process).
    pub fn new(cfg: ApiConfig, engine: Submitter) -> Arc<AppState> {
        AppState::with_feed(cfg, engine, None)
    }

    /// As [`AppState::new`], reporting the price feed's health too.
    pub fn with_feed(
        cfg: ApiConfig,
        engine: Submitter,
        feed: Option<Arc<dyn FeedStatus>>,
    ) -> Arc<AppState> {
        let client = Arc::new(LocalEngine::new(engine, cfg.reply_timeout));
        AppState::with_client(cfg, client, feed)
    }

    /// State over any [`EngineClient`] (e.g. one that reaches the engine through Redis).
    pub fn with_client(
        cfg: ApiConfig,
        engine: Arc<dyn EngineClient>,
        feed: Option<Arc<dyn FeedStatus>>,
    ) -> Arc<AppState> {
        let symbols = cfg
            .markets
            .iter()
            .enumerate()
            .filter_map(|(i, m)| Some((m.symbol.clone(), MarketId(u16::try_from(i).ok()?))))
            .collect();
        let trading = Quota::per_second(
            NonZeroU32::new(cfg.trading_per_second.max(1)).unwrap_or(NonZeroU32::MIN),
        );
        Arc::new(AppState {
            metrics: metrics::Metrics::new(Arc::clone(&engine), feed.clone()),
            feed,
            tokens: Tokens::new(&cfg.jwt_secret, cfg.token_ttl.as_secs()),
            symbols,
            signin_ip: RateLimiter::keyed(per_minute(cfg.signin_per_minute)),
            signin_login: RateLimiter::keyed(per_minute(cfg.signin_per_minute)),
            trading: RateLimiter::keyed(trading),
            // Several users may share an address (NAT): the per-IP allowance is 10 users' worth.
            trading_ip: RateLimiter::keyed(Quota::per_second(
                NonZeroU32::new(cfg.trading_per_second.max(1).saturating_mul(10))
                    .unwrap_or(NonZeroU32::MIN),
            )),
            engine,
            cfg,
            started: Instant::now(),
        })
    }

    /// Sends `kind` to the engine and awaits its reply.
    pub async fn call(&self, kind: CommandKind) -> Result<Response, ApiError> {
        let started = Instant::now();
        let reply = self.engine.call(kind).await;
        self.metrics.observe_reply(started.elapsed());
        reply
    }

    /// Looks up a market by symbol.
    pub fn market(&self, symbol: &str) -> Result<(MarketId, &MarketConfig), ApiError> {
        let id = *self.symbols.get(symbol).ok_or_else(|| {
            ApiError::bad_request("unknown_market", format!("unknown market {symbol:?}"))
        })?;
        Ok((id, &self.cfg.markets[usize::from(id.0)]))
    }

    /// The market config of an engine market id.
    pub fn market_cfg(&self, id: MarketId) -> Option<&MarketConfig> {
        self.cfg.markets.get(usize::from(id.0))
    }

    fn limited<K: std::hash::Hash + Eq + Clone>(
        limiter: &DefaultKeyedRateLimiter<K>,
        key: &K,
    ) -> Result<(), ApiError> {
        limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            ApiError::rate_limited(wait.as_secs() + 1)
        })
    }

    /// Forgets rate-limit keys that are back to full quota (bounds the limiters' memory).
    pub fn sweep_limiters(&self) {
        self.signin_ip.retain_recent();
        self.signin_login.retain_recent();
        self.trading.retain_recent();
        self.trading_ip.retain_recent();
    }

    /// Per-user and per-IP limits of the trading endpoints.
    pub fn limit_trading(&self, account: u32, ip: IpAddr) -> Result<(), ApiError> {
        AppState::limited(&self.trading_ip, &ip)?;
        AppState::limited(&self.trading, &account)
    }
}

/// The router with every route of [`openapi::ROUTES`], the body limit and metrics.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.cfg.body_limit_bytes;
    api::routes()
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves `router(state)` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let sweeper = {
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                every.tick().await;
                state.sweep_limiters();
            }
        })
    };
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let result = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    sweeper.abort();
    result
}
