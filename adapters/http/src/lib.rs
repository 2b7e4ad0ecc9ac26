//! The HTTP API (axum, JWT) in front of the engine, per docs/DESIGN.md's HTTP table.
//!
//! Layout:
//! - [`routes`]: one module per route group (`user`, `markets`, `positions`, `orders`,
//!   `admin`, `ops`), each with its `router()`, merged in one list that also generates the
//!   OpenAPI document;
//! - [`extract`]: the extractors (bodies, queries, paths, the caller, the client's address, the
//!   idempotency key) and the every-request rate limit;
//! - [`convert`]: exact decimal inputs, trading inputs, the engine's views as the API's shapes;
//! - [`config`]: the API's settings and every edge limit, validated;
//! - [`dto`]: the typed bodies and answers; [`openapi`]: the document's fixed parts;
//! - [`auth`]: argon2id passwords on bounded pools, HS256-only JWTs, device tokens;
//! - [`error`]: the `{"error": {code, message}}` shape and status mapping;
//! - [`push`]: the WebSocket push API; [`own_writes`]: each account's last change, for
//!   read-your-writes; [`server`]: the connection loop and its socket table;
//!   [`metrics`]: Prometheus text; [`web`]: the trading page's assets.
//!
//! The server takes a bound listener and a shutdown future ([`serve`]), so tests bind port 0.
//! The handlers reach the engine through an [`EngineClient`]: [`LocalEngine`] publishes into the
//! in-ring of an engine in this process (each call gets a request id, is awaited on a oneshot
//! with a timeout: 504 on timeout, the waiter removed); a Redis-bridged client can stand in for it
//! without the handlers changing. Reads go through the engine too, so a client always reads its
//! own writes.

pub mod auth;
pub mod config;
pub mod convert;
pub mod dto;
pub mod error;
pub mod extract;
pub mod keys;
pub mod metrics;
pub mod openapi;
pub mod own_writes;
pub mod push;
pub mod routes;
pub mod server;
pub mod sessions;
pub mod totp;
pub mod web;
pub mod weights;

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use engine_core::command::{AccountId, CommandKind, MarketId};
use engine_core::config::MarketConfig;
// The engine's reply, named apart from axum's `Response`, which the routes return.
use engine_core::processor::{Response as EngineReply, Submitter};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ground::ports::{EngineClient, LocalEngine};
use tokio::net::TcpListener;

use crate::auth::Tokens;
use crate::error::ApiError;

/// Prefix of every versioned route.
pub const API_PREFIX: &str = "/api/v1";

pub use config::{ApiConfig, Limits};

/// The price feed's health, as the API shows it (`/healthz`, `/metrics`). Implemented by the
/// binary for whatever feed runs; the API does not depend on the feed crate.
pub trait FeedStatus: Send + Sync {
    /// A JSON object for `/healthz` (e.g. connected, reconnects).
    fn health(&self) -> serde_json::Value;
    /// Named counters for `/metrics`.
    fn counters(&self) -> Vec<(&'static str, u64)>;
    /// Each price source's named counters (several venues making an index), by venue name.
    fn source_counters(&self) -> Vec<(&'static str, Vec<(&'static str, u64)>)> {
        Vec::new()
    }
}

/// Whether a sign-in carries a valid device token of its login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remembered {
    /// It does: the owner's lane.
    Device,
    /// It does not (or the token is invalid, expired, or another login's).
    No,
}

/// Shared state of the handlers.
pub struct AppState {
    feed: Option<Arc<dyn FeedStatus>>,
    cfg: ApiConfig,
    engine: Arc<dyn EngineClient>,
    tokens: Tokens,
    hasher: auth::Hasher,
    /// The remembered devices' hashing lane: one thread, its own queue.
    hasher_remembered: auth::Hasher,
    symbols: HashMap<String, MarketId>,
    signin_remembered: DefaultKeyedRateLimiter<String>,
    signin_login_ip: DefaultKeyedRateLimiter<(String, IpAddr)>,
    signin_login: DefaultKeyedRateLimiter<String>,
    signin_ip: DefaultKeyedRateLimiter<IpAddr>,
    signup_ip: DefaultKeyedRateLimiter<IpAddr>,
    trading: DefaultKeyedRateLimiter<u32>,
    trading_ip: DefaultKeyedRateLimiter<IpAddr>,
    public_ip: DefaultKeyedRateLimiter<IpAddr>,
    any_ip: DefaultKeyedRateLimiter<IpAddr>,
    authed: DefaultKeyedRateLimiter<u32>,
    markets_cache: tokio::sync::Mutex<Option<(Instant, Arc<EngineReply>)>>,
    edge: server::Edge,
    metrics: metrics::Metrics,
    started: Instant,
    history: std::sync::OnceLock<History>,
    /// The stress runner (embedded `serve` only: it reads the data directory).
    pub(crate) stress: std::sync::OnceLock<Arc<dyn ground::ports::StressRunner>>,
    /// The hedger's status, when one is linked (`serve --hedger-url`).
    pub(crate) hedger: std::sync::OnceLock<Arc<dyn ground::ports::HedgeStatus>>,
    /// A venue's recent candles, read at start: the chart's history before the engine's own.
    venue_candles: std::sync::RwLock<VenueCandles>,
    hub: Arc<push::Hub>,
    /// Signatures of signed requests within their window (replays are refused).
    signatures: keys::SeenSignatures,
    /// Statement files being read (`limits.statements_concurrent`).
    statements: tokio::sync::Semaphore,
    /// Weight budgets per account and per API key (`limits.weight_per_minute_*`).
    budgets: weights::Budgets,
}

/// Candles a venue's public endpoint gave at start, per market and span: at most markets × 6
/// spans × `price_feed`'s 300 candles.
#[derive(Debug, Default)]
pub(crate) struct VenueCandles {
    /// The venue's name.
    pub(crate) venue: &'static str,
    /// Oldest first.
    pub(crate) candles: HashMap<(MarketId, &'static str), Arc<[ground::history::Candle]>>,
}

/// The history store as the API sees it: where closed positions and the statement are read,
/// and (in `serve`) the writer's progress.
#[derive(Debug)]
pub(crate) struct History {
    pub(crate) store: Arc<dyn ground::history::HistoryReader>,
    pub(crate) writer: Option<Arc<ground::history::WriterStatus>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("markets", &self.cfg.markets.len()).finish_non_exhaustive()
    }
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN))
}

fn per_second(n: u32) -> Quota {
    Quota::per_second(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN))
}

/// The account whose state a trader's command changes (for read-your-writes), if it is one.
fn own_account(kind: &CommandKind) -> Option<AccountId> {
    match *kind {
        CommandKind::Deposit { account, .. }
        | CommandKind::Withdraw { account, .. }
        | CommandKind::ClosePosition { account, .. }
        | CommandKind::AddMargin { account, .. }
        | CommandKind::CancelOrder { account, .. }
        | CommandKind::SetTriggers { account, .. }
        | CommandKind::SetTrailingStop { account, .. } => Some(account),
        CommandKind::OpenPosition(r) => Some(r.account),
        CommandKind::PlaceOrder(r) => Some(r.account),
        _ => None,
    }
}

pub use ground::time::now_ns;

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
        let client = Arc::new(LocalEngine::new(engine, cfg.limits.reply_timeout));
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
        let l = &cfg.limits;
        let (markets, lag) = (cfg.markets.clone(), l.push.lag_capacity);
        let hasher = auth::Hasher::new(l.hash_concurrency.max(1), l.hash_queue, l.reply_timeout);
        let statements = tokio::sync::Semaphore::new(l.statements_concurrent);
        let budgets = weights::Budgets::new(l.weight_per_minute_account, l.weight_per_minute_key);
        let edge =
            server::Edge { trusted_proxies: l.trusted_proxies.clone(), ..server::Edge::default() };
        Arc::new(AppState {
            metrics: metrics::Metrics::new(
                Arc::clone(&engine),
                feed.clone(),
                hasher.clone(),
                (&edge, cfg.markets.iter().map(|m| m.symbol.clone()).collect()),
            ),
            feed,
            tokens: Tokens::new(
                &cfg.jwt_secret,
                cfg.token_ttl.as_secs(),
                u64::from(l.remembered_device_days) * 86_400,
            ),
            hasher,
            hasher_remembered: auth::Hasher::new(1, l.hash_queue, l.reply_timeout),
            signin_remembered: RateLimiter::keyed(per_minute(
                l.signin_remembered_per_login_per_minute,
            )),
            symbols,
            signin_login_ip: RateLimiter::keyed(per_minute(l.signin_per_login_ip_per_minute)),
            signin_login: RateLimiter::keyed(per_minute(l.signin_per_login_per_minute)),
            signin_ip: RateLimiter::keyed(per_minute(l.signin_per_ip_per_minute)),
            signup_ip: RateLimiter::keyed(per_minute(l.signup_per_ip_per_minute)),
            trading: RateLimiter::keyed(per_second(l.trading_per_second)),
            // Several users may share an address (NAT): the per-IP allowance is 10 users' worth.
            trading_ip: RateLimiter::keyed(per_second(l.trading_per_second.saturating_mul(10))),
            public_ip: RateLimiter::keyed(per_second(l.public_per_ip_per_second)),
            any_ip: RateLimiter::keyed(per_second(l.any_per_ip_per_second)),
            authed: RateLimiter::keyed(per_second(l.authed_per_second)),
            markets_cache: tokio::sync::Mutex::new(None),
            edge,
            engine,
            cfg,
            started: Instant::now(),
            history: std::sync::OnceLock::new(),
            stress: std::sync::OnceLock::new(),
            hedger: std::sync::OnceLock::new(),
            venue_candles: std::sync::RwLock::default(),
            hub: Arc::new(push::Hub::new(markets, lag)),
            signatures: keys::SeenSignatures::default(),
            statements,
            budgets,
        })
    }

    /// The push API's fan-out: feed it the engine's state changes with [`push::Hub::publish`].
    pub fn hub(&self) -> Arc<push::Hub> {
        Arc::clone(&self.hub)
    }

    /// The push API's limits.
    pub fn push_limits(&self) -> &push::PushLimits {
        &self.cfg.limits.push
    }

    /// The caller a JWT names, once the engine confirms its session is live
    /// ([`AppState::check_session`]), and how long the token stays valid from now.
    pub async fn verify_token(&self, token: &str) -> Result<(auth::Verified, Duration), ApiError> {
        self.confirm_token(self.tokens.verify(token)?).await
    }

    /// A token already verified ([`auth::Tokens::verify`]), once its session is confirmed live;
    /// how long it stays valid from now.
    pub async fn confirm_token(
        &self,
        v: auth::Verified,
    ) -> Result<(auth::Verified, Duration), ApiError> {
        let sid = engine_core::command::SessionId(v.sid);
        self.check_session(AccountId(v.account), sid).await?;
        let life = Duration::from_secs(v.exp.saturating_sub(ground::time::now_secs()));
        Ok((v, life))
    }

    /// Is session `sid` of `account` live? Confirmed by the engine at most once per
    /// [`sessions::CONFIRMED_FOR`]; a sign-out forgets it at once (docs/DESIGN.md, "Sessions").
    pub async fn check_session(
        &self,
        account: AccountId,
        sid: engine_core::command::SessionId,
    ) -> Result<(), ApiError> {
        if self.hub.sessions.confirmed(account, sid) {
            return Ok(());
        }
        match self.call(CommandKind::QuerySession { account, session: sid }).await?.result {
            Ok(engine_core::event::ReplyData::Session(s))
                if s.account == account && s.id == sid =>
            {
                self.hub.sessions.confirm(account, sid);
                Ok(())
            }
            Ok(other) => Err(convert::unexpected(&other)),
            Err(reason) => Err(ApiError::from_reason(reason)),
        }
    }

    /// Shows the hedger's status on the console (once; later calls are ignored).
    pub fn attach_hedger(&self, link: Arc<dyn ground::ports::HedgeStatus>) {
        let _ = self.hedger.set(link);
    }

    /// Runs the console's stress scenarios with `runner` (once; later calls are ignored).
    pub fn attach_stress(&self, runner: Arc<dyn ground::ports::StressRunner>) {
        let _ = self.stress.set(runner);
    }

    /// Serves closed positions, closed-position details and the statement from `store` (once;
    /// later calls are ignored). `writer`: the in-process writer's status, for `/healthz`.
    pub fn attach_history(
        &self,
        store: Arc<dyn ground::history::HistoryReader>,
        writer: Option<Arc<ground::history::WriterStatus>>,
    ) {
        let _ = self.history.set(History { store, writer });
    }

    /// Shows `candles` (oldest first) of `venue` for `market` and `span` (one of
    /// `ground::history::SPANS`; another is ignored) before the engine's own candles.
    pub fn attach_venue_candles(
        &self,
        venue: &'static str,
        (market, span): (MarketId, &str),
        candles: Vec<ground::history::Candle>,
    ) {
        let Some(&(span, _)) = ground::history::SPANS.iter().find(|(s, _)| *s == span) else {
            return;
        };
        let mut held =
            self.venue_candles.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        held.venue = venue;
        held.candles.insert((market, span), candles.into());
    }

    /// The venue's candles of `market` and `span`, with the venue's name.
    pub(crate) fn venue_candles(
        &self,
        market: MarketId,
        span: &str,
    ) -> Option<(&'static str, Arc<[ground::history::Candle]>)> {
        let held = self.venue_candles.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let span = ground::history::SPANS.iter().find(|(s, _)| *s == span)?.0;
        held.candles.get(&(market, span)).map(|c| (held.venue, Arc::clone(c)))
    }

    /// Sends `kind` to the engine and awaits its reply. A trader's accepted change is remembered
    /// with the reply's sequence: the history routes wait for the store to reach it.
    pub async fn call(&self, kind: CommandKind) -> Result<EngineReply, ApiError> {
        let started = Instant::now();
        let writer = own_account(&kind);
        let reply = self.engine.call(kind).await.map_err(ApiError::from);
        self.metrics.observe_reply(started.elapsed());
        if let (Ok(r), Some(account)) = (&reply, writer)
            && r.result.is_ok()
            && r.seq > 0
        {
            self.hub.own_writes.record(account, r.seq);
        }
        reply
    }

    /// The engine's market list, reused for `limits.markets_cache`: one engine query per period
    /// however many unauthenticated readers ask (they wait for the one in flight).
    pub async fn markets_snapshot(&self) -> Result<Arc<EngineReply>, ApiError> {
        let mut cached = self.markets_cache.lock().await;
        if let Some((at, r)) = cached.as_ref()
            && at.elapsed() < self.cfg.limits.markets_cache
        {
            return Ok(Arc::clone(r));
        }
        let fresh = Arc::new(self.call(CommandKind::QueryMarkets).await?);
        *cached = Some((Instant::now(), Arc::clone(&fresh)));
        Ok(fresh)
    }

    /// Looks up a market by symbol.
    pub fn market(&self, symbol: &str) -> Result<(MarketId, &MarketConfig), ApiError> {
        let id = *self
            .symbols
            .get(symbol)
            .ok_or_else(|| ApiError::bad_request("unknown_market", "unknown market"))?;
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
        self.signin_login_ip.retain_recent();
        self.signin_login.retain_recent();
        self.signin_remembered.retain_recent();
        self.signin_ip.retain_recent();
        self.signup_ip.retain_recent();
        self.trading.retain_recent();
        self.trading_ip.retain_recent();
        self.public_ip.retain_recent();
        self.any_ip.retain_recent();
        self.authed.retain_recent();
        self.budgets.sweep();
    }

    /// Per-user and per-IP limits of the trading endpoints.
    pub fn limit_trading(&self, account: u32, ip: IpAddr) -> Result<(), ApiError> {
        self.limit_trading_n(account, ip, 1)
    }

    /// As [`AppState::limit_trading`] for a request that weighs `n` (a batch of `n` orders).
    pub fn limit_trading_n(&self, account: u32, ip: IpAddr, n: u32) -> Result<(), ApiError> {
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        AppState::limited_n(&self.trading_ip, &ip, n)?;
        AppState::limited_n(&self.trading, &account, n)
    }

    fn limited_n<K: std::hash::Hash + Eq + Clone>(
        limiter: &DefaultKeyedRateLimiter<K>,
        key: &K,
        n: NonZeroU32,
    ) -> Result<(), ApiError> {
        match limiter.check_key_n(key, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                let now = governor::clock::Clock::now(&governor::clock::DefaultClock::default());
                Err(ApiError::rate_limited(not_until.wait_time_from(now).as_secs() + 1))
            }
            // More than the whole burst: never allowed at once, whatever the wait.
            Err(_) => Err(ApiError::rate_limited(1)),
        }
    }

    /// Sign-in limits: per IP, per (login, IP), and the looser per-login ceiling — or, for a
    /// sign-in with a device token of the login (`remembered`), that device lane's own.
    pub fn limit_signin(
        &self,
        login: &str,
        ip: IpAddr,
        remembered: Remembered,
    ) -> Result<(), ApiError> {
        AppState::limited(&self.signin_ip, &ip)?;
        AppState::limited(&self.signin_login_ip, &(login.to_owned(), ip))?;
        match remembered {
            Remembered::Device => AppState::limited(&self.signin_remembered, &login.to_owned()),
            Remembered::No => AppState::limited(&self.signin_login, &login.to_owned()),
        }
    }

    /// Guesses of a signed-in account's password or one-time code (a password change, a
    /// two-factor confirm or disable, a key creation's code): the sign-in limiter per (account,
    /// address), so they come no faster than a sign-in's.
    pub fn limit_code_guess(&self, account: AccountId, ip: IpAddr) -> Result<(), ApiError> {
        self.limit_signin(&format!("account:{}", account.0), ip, Remembered::No)
    }

    /// The password hasher (bounded).
    pub fn hasher(&self) -> &auth::Hasher {
        &self.hasher
    }

    /// The hasher of sign-ins from remembered devices, or the common one.
    pub fn hasher_for(&self, remembered: Remembered) -> &auth::Hasher {
        match remembered {
            Remembered::Device => &self.hasher_remembered,
            Remembered::No => &self.hasher,
        }
    }

    /// Counters of the server loop.
    pub fn server_stats(&self) -> Arc<server::ServerStats> {
        Arc::clone(&self.edge.stats)
    }

    /// The server loop's shared parts (counters, the socket table, exempt proxies).
    pub fn edge(&self) -> server::Edge {
        self.edge.clone()
    }
}

/// The router with every route of [`routes::api_router`] (which also generates the OpenAPI document), the body limit and deadline, security
/// headers, CORS (if configured) and metrics.
pub fn router(state: Arc<AppState>) -> Router {
    use axum::http::{HeaderValue, header};
    use tower_http::set_header::SetResponseHeaderLayer;
    let l = &state.cfg.limits;
    let mut app = routes::routes()
        .layer(axum::middleware::from_fn_with_state(state.clone(), weights::charge))
        .layer(axum::middleware::from_fn_with_state(state.clone(), keys::verify_signed))
        .layer(axum::middleware::from_fn_with_state(state.clone(), extract::limit_every_request))
        .layer(axum::middleware::from_fn_with_state(state.clone(), metrics::track))
        .layer(DefaultBodyLimit::max(l.body_limit_bytes))
        .layer(tower_http::timeout::RequestBodyDeadlineLayer::new(l.server.body_timeout))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
    if !l.cors_origins.is_empty() {
        app = app.layer(cors(&l.cors_origins));
    }
    app.with_state(state)
}

fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use axum::http::{HeaderName, HeaderValue, Method, header};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("x-api-key"),
            HeaderName::from_static("x-timestamp"),
            HeaderName::from_static("x-window"),
            HeaderName::from_static("x-signature"),
        ])
        // A page on another origin paces itself by these (docs/API.md, "Rate limits").
        .expose_headers([
            HeaderName::from_static("ratelimit"),
            HeaderName::from_static("ratelimit-policy"),
            HeaderName::from_static("x-weight-used-1m"),
            header::RETRY_AFTER,
        ])
        .max_age(Duration::from_secs(600))
}

/// Serves `router(state)` on `listener` until `shutdown` resolves, within the configured
/// connection cap and timeouts ([`server::run`]).
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
    let limits = state.cfg.limits.server.clone();
    let edge = state.edge();
    let result = server::run(listener, router(state), limits, edge, shutdown).await;
    sweeper.abort();
    result
}
