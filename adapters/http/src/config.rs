//! The API's settings ([`ApiConfig`]) and every limit of the edge ([`Limits`]: connections,
//! timeouts, rate limits, hashing pools, push), each configurable and validated at start.

use std::time::Duration;

use engine_core::config::{Bracket, GroupConfig, MarketConfig};

use crate::{push, server};

/// Settings of the API.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// HS256 secret.
    pub jwt_secret: Vec<u8>,
    /// Token lifetime.
    pub token_ttl: Duration,
    /// `POST /user/deposit` is allowed.
    pub demo_deposits: bool,
    /// Markets, in engine id order (from the engine's configuration).
    pub markets: Vec<MarketConfig>,
    /// Every operator limit of the edge.
    pub limits: Limits,
    /// The client groups' names, in the engine's order (from its configuration; `default`
    /// when none is configured).
    pub groups: Vec<String>,
    /// Each group's own leverage brackets per market, `[group][market]` (empty: the market's).
    pub group_brackets: Vec<Vec<Vec<Bracket>>>,
}

impl ApiConfig {
    /// Defaults: 24 h tokens, demo deposits on, [`Limits::default`].
    pub fn new(jwt_secret: Vec<u8>, markets: Vec<MarketConfig>) -> ApiConfig {
        ApiConfig {
            jwt_secret,
            token_ttl: Duration::from_secs(24 * 3600),
            demo_deposits: true,
            markets,
            limits: Limits::default(),
            groups: vec!["default".to_owned()],
            group_brackets: Vec::new(),
        }
    }

    /// The engine's client groups: their names and brackets (none configured: one `default`
    /// group on the markets' terms).
    pub fn set_groups(&mut self, groups: &[GroupConfig]) {
        if groups.is_empty() {
            return;
        }
        self.groups = groups.iter().map(|g| g.name.clone()).collect();
        let brackets_of = |g: &GroupConfig, m: &MarketConfig| {
            let own = g.markets.iter().find(|t| t.symbol == m.symbol);
            own.map_or(Vec::new(), |t| t.brackets.clone())
        };
        self.group_brackets = groups
            .iter()
            .map(|g| self.markets.iter().map(|m| brackets_of(g, m)).collect())
            .collect();
    }
}

/// The edge's limits, all configurable (`--config FILE`, section `http`; a few also as flags).
/// Times are in milliseconds in the file.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Connections and timeouts of the server loop.
    pub server: server::ServerLimits,
    /// Largest request body accepted (413 above).
    pub body_limit_bytes: usize,
    /// How long to wait for the engine's reply before 504.
    #[serde(deserialize_with = "millis", rename = "reply_timeout_ms")]
    pub reply_timeout: Duration,
    /// Password hashes computed at once (default: the number of cores).
    pub hash_concurrency: usize,
    /// Password hashes waiting for a slot; more are refused with 503 `busy`.
    pub hash_queue: usize,
    /// Sign-in attempts per (login, client IP) per minute: slows one guesser without touching
    /// the owner, who signs in from another address.
    pub signin_per_login_ip_per_minute: u32,
    /// Sign-in attempts per login per minute from all addresses together: a looser ceiling
    /// against guessing from many addresses.
    pub signin_per_login_per_minute: u32,
    /// Sign-in attempts per client IP per minute, all logins together.
    pub signin_per_ip_per_minute: u32,
    /// Sign-in attempts per login per minute that carry a device token of that login (from an
    /// earlier sign-in): they skip `signin_per_login_per_minute` and hash on a lane of their
    /// own, so a guessing flood from many addresses or a flood of unknown logins filling the
    /// hash pool cannot keep the owner out. A guesser has no device token of the login.
    pub signin_remembered_per_login_per_minute: u32,
    /// How long a device token stays valid (days): a device unused for longer signs in like a
    /// new one.
    pub remembered_device_days: u32,
    /// Sign-ups per client IP per minute.
    pub signup_per_ip_per_minute: u32,
    /// Trading requests per user per second (burst the same); per IP, ten times that.
    pub trading_per_second: u32,
    /// Unauthenticated reads (`/markets`, `/healthz`) per client IP per second.
    pub public_per_ip_per_second: u32,
    /// Every request, whatever its route (the page, `/favicon.ico`, the OpenAPI document
    /// included), per client address per second, burst the same; a 429 also closes the
    /// connection so a flooder pays a new handshake.
    pub any_per_ip_per_second: u32,
    /// Authenticated requests (reads included) per account per second, burst the same: one
    /// user cannot load the engine's query path for everyone else.
    pub authed_per_second: u32,
    /// How long `/markets` and `/healthz` reuse the engine's last market answer: unauthenticated
    /// readers cannot load the engine's ring beyond one query per this period.
    #[serde(deserialize_with = "millis", rename = "markets_cache_ms")]
    pub markets_cache: Duration,
    /// Read-your-writes on the history routes (closed positions, the statement): how long a
    /// read waits for the store to hold the caller's own last change (0: never waits).
    #[serde(deserialize_with = "millis", rename = "history_read_wait_ms")]
    pub history_read_wait: Duration,
    /// Weight an account may spend a minute over all its sessions and keys (docs/API.md, "Rate
    /// limits"; a query weighs 1, a statement 50, a batch one per order).
    pub weight_per_minute_account: u32,
    /// Weight one API key may spend a minute (within its account's).
    pub weight_per_minute_key: u32,
    /// Most orders one `POST /orders/batch` places (each weighs one trading request).
    pub batch_orders_max: usize,
    /// Most lines one statement file holds (`GET /user/statement`): it is read whole before it
    /// is sent, so it is never cut short; a longer range is refused `statement_too_large`.
    /// 100 000 lines are about 8 MB of CSV.
    pub statement_lines_max: usize,
    /// Statements read at once (each reads up to `statement_lines_max` lines from the store);
    /// more are refused 503 `busy`.
    pub statements_concurrent: usize,
    /// Reverse proxies (CIDRs) whose `X-Forwarded-For` is believed; everyone else's is ignored.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Origins allowed by CORS (`*` for any); empty (the default) sends no CORS headers.
    pub cors_origins: Vec<String>,
    /// The push API's limits (`GET /api/v1/ws`).
    pub push: push::PushLimits,
}

fn millis<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    <u64 as serde::Deserialize>::deserialize(d).map(Duration::from_millis)
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            server: server::ServerLimits::default(),
            body_limit_bytes: 16 * 1024,
            reply_timeout: Duration::from_secs(5),
            hash_concurrency: std::thread::available_parallelism().map_or(2, usize::from),
            hash_queue: 16,
            signin_per_login_ip_per_minute: 5,
            signin_per_login_per_minute: 120,
            signin_per_ip_per_minute: 30,
            signin_remembered_per_login_per_minute: 10,
            remembered_device_days: 90,
            signup_per_ip_per_minute: 5,
            trading_per_second: 50,
            public_per_ip_per_second: 20,
            any_per_ip_per_second: 1_000,
            authed_per_second: 200,
            markets_cache: Duration::from_millis(250),
            history_read_wait: Duration::from_secs(2),
            batch_orders_max: 10,
            weight_per_minute_account: 6_000,
            weight_per_minute_key: 3_000,
            statement_lines_max: 100_000,
            statements_concurrent: 2,
            trusted_proxies: Vec::new(),
            cors_origins: Vec::new(),
            push: push::PushLimits::default(),
        }
    }
}

impl Limits {
    /// Checks every limit at start; returns what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        self.server.validate()?;
        self.push.validate()?;
        let checks = [
            (
                self.body_limit_bytes >= 1024 && self.body_limit_bytes <= 1 << 20,
                "body_limit_bytes must be 1024..=1048576",
            ),
            (
                self.reply_timeout >= Duration::from_millis(100)
                    && self.reply_timeout <= Duration::from_secs(60),
                "reply_timeout_ms must be 100..=60000",
            ),
            (
                self.hash_concurrency >= 1 && self.hash_concurrency <= 256,
                "hash_concurrency must be 1..=256",
            ),
            (self.hash_queue <= 10_000, "hash_queue must be at most 10000"),
            (
                self.remembered_device_days >= 1 && self.remembered_device_days <= 400,
                "remembered_device_days must be 1..=400",
            ),
            (
                self.markets_cache <= Duration::from_secs(10),
                "markets_cache_ms must be at most 10000",
            ),
            (
                self.history_read_wait <= Duration::from_secs(10),
                "history_read_wait_ms must be at most 10000",
            ),
            ((1..=50).contains(&self.batch_orders_max), "batch_orders_max must be 1..=50"),
            (
                (1..=1_000_000).contains(&self.statement_lines_max),
                "statement_lines_max must be 1..=1000000",
            ),
            (
                (1..=64).contains(&self.statements_concurrent),
                "statements_concurrent must be 1..=64",
            ),
            (
                self.cors_origins
                    .iter()
                    .all(|o| o == "*" || axum::http::HeaderValue::from_str(o).is_ok()),
                "cors_origins must be origins or *",
            ),
        ];
        for (ok, what) in checks {
            if !ok {
                return Err(format!("http.{what}"));
            }
        }
        for (n, what) in [
            (self.signin_per_login_ip_per_minute, "signin_per_login_ip_per_minute"),
            (self.signin_per_login_per_minute, "signin_per_login_per_minute"),
            (self.signin_per_ip_per_minute, "signin_per_ip_per_minute"),
            (self.signin_remembered_per_login_per_minute, "signin_remembered_per_login_per_minute"),
            (self.signup_per_ip_per_minute, "signup_per_ip_per_minute"),
            (self.trading_per_second, "trading_per_second"),
            (self.public_per_ip_per_second, "public_per_ip_per_second"),
            (self.any_per_ip_per_second, "any_per_ip_per_second"),
            (self.authed_per_second, "authed_per_second"),
            (self.weight_per_minute_account, "weight_per_minute_account"),
            (self.weight_per_minute_key, "weight_per_minute_key"),
        ] {
            if n == 0 {
                return Err(format!("http.{what} must be at least 1"));
            }
        }
        Ok(())
    }
}
