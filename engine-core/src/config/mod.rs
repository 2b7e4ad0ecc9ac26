//! Engine and market configuration, validated once at start.
//!
//! Every collection the engine thread owns has a limit here. [`EngineConfig::validate`] checks them
//! together so that nothing inside the engine can overflow: with the price and quantity limits below,
//! every intermediate product of the risk math fits an `i128` (see [`crate::math`]).

use crate::num::{PPM_ONE, Ppm, Usdc};

pub use crate::limits::{MAX_AMOUNT, MAX_DECIMALS_SUM, MAX_PRICE_TICKS_LIMIT, MAX_QTY_STEPS_LIMIT};

mod error;
mod groups;
mod market;

pub use error::ConfigError;
pub use groups::{GroupConfig, GroupMarket, GroupTerms, MAX_GROUPS};
pub use market::{BRACKETS_MAX, Bracket, MarketConfig, check_brackets, maintenance_amounts};

/// How the engine thread waits for work when its ring is empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WaitMode {
    /// Spin without pause: lowest latency, burns a whole core. For benchmarks.
    BusySpin,
    /// Spin briefly, then yield, then park until a producer publishes (producers pay a fence and
    /// a load per publish to check): an idle engine uses no CPU. The default.
    #[default]
    Adaptive,
}

/// Everything the engine needs to start. [`EngineConfig::validate`] runs in
/// [`crate::Engine::new`] and [`crate::processor::EngineHandle::start`].
///
/// Deserializes from an operator's file: every field is optional and keeps its default, unknown
/// fields are refused (a typo is not silently ignored), money is a decimal string and the
/// idempotency window's age is in seconds. Deserializing does not validate: call
/// [`EngineConfig::validate`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Markets in index order: `MarketId(i)` is `markets[i]`.
    pub markets: Vec<MarketConfig>,
    /// Credit `initial_balance` to every new account.
    pub demo_deposits: bool,
    /// Balance of a new account when `demo_deposits` is on.
    #[serde(deserialize_with = "serde_file::usdc")]
    pub initial_balance: Usdc,
    /// Most accounts the engine will hold.
    pub max_accounts: u32,
    /// Most open positions across all accounts (at most 16 777 215: a position's slab slot is
    /// 24 bits). The slab is reserved at this size, virtual memory only until used (96 bytes a
    /// position).
    pub max_open_positions: u32,
    /// Most open positions one account may hold.
    pub max_positions_per_account: u32,
    /// Closed positions kept per account (newest kept).
    pub closed_history_per_account: u32,
    /// How many recent idempotency keys (client order ids included) each account's window holds;
    /// only the account's own requests can evict them. 0 turns idempotency keys off.
    pub idempotency_keys_per_account: u32,
    /// How long (command time, ns) an idempotency key is remembered.
    #[serde(rename = "idempotency_ttl_secs", deserialize_with = "serde_file::secs_as_ns")]
    pub idempotency_ttl_ns: u64,
    /// How many recent request ids of state-changing commands are remembered: a repeated request
    /// id gets the first reply again instead of being applied twice (e.g. a redelivered stream
    /// entry after a crash).
    pub request_id_window: u32,
    /// Most pending entry orders across all accounts.
    pub max_pending_orders: u32,
    /// Most pending entry orders one account may hold.
    pub max_orders_per_account: u32,
    /// Most API keys across all accounts (the engine's table is reserved at it).
    pub max_api_keys: u32,
    /// Most API keys one account may hold.
    pub max_api_keys_per_account: u32,
    /// Most live sessions across all accounts (a sign-in beyond: `session_capacity`).
    pub max_sessions: u32,
    /// Most live sessions one account holds: a sign-in beyond signs its oldest out.
    pub max_sessions_per_account: u32,
    /// Margin-call level as a ratio of equity to maintenance margin (`"2"`: warn when a
    /// position's equity falls below twice its maintenance margin); `"0"` turns margin calls off.
    /// Must be above 1 (at 1 the position is already being liquidated).
    #[serde(deserialize_with = "serde_file::ppm")]
    pub margin_call_level: Ppm,
    /// Cross accounts' stop-out level, a ratio of equity to maintenance margin (`"1"`: stopped
    /// out when equity falls to the maintenance margin, where an isolated position is
    /// liquidated). At least 1, below the margin-call level when that is on, and with
    /// mmr × level < 1.
    #[serde(deserialize_with = "serde_file::ppm")]
    pub stop_out_level: Ppm,
    /// Logins of swap-free accounts: financing is never charged to or paid to them.
    pub swap_free_logins: Vec<String>,
    /// Client groups (a broker's account types): `groups[0]` is every new account's; none
    /// configured is one group without markup or commission (docs/DESIGN.md, "Client groups").
    pub groups: Vec<GroupConfig>,
}

/// How the engine runs, not what it decides: rings, waits, pinning. Kept apart from
/// [`EngineConfig`] (business limits, part of the state's meaning) because none of it changes
/// an output or the state hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// In-ring slots (power of two).
    pub in_ring_size: usize,
    /// Out-ring slots (power of two).
    pub out_ring_size: usize,
    /// Most requests awaiting a reply at once through one engine handle set.
    pub max_in_flight: usize,
    /// Pin the engine thread to this core.
    pub pin_core: Option<usize>,
    /// How the engine and reply threads wait when idle.
    pub wait: WaitMode,
    /// Run the input stage (the journaller) on the engine thread, before the engine applies
    /// each batch, instead of on a thread of its own: one busy thread fewer, for machines with
    /// fewer cores than busy threads; the journal's write (and fsync) then no longer overlaps
    /// the engine's work on the previous batch.
    pub inline_input_stage: bool,
}

impl Default for RuntimeConfig {
    /// 64k-slot rings, 65 536 requests in flight, no pinning, the adaptive wait, the input stage on
    /// its own thread.
    fn default() -> Self {
        RuntimeConfig {
            in_ring_size: 1 << 16,
            out_ring_size: 1 << 16,
            max_in_flight: 65_536,
            pin_core: None,
            wait: WaitMode::Adaptive,
            inline_input_stage: false,
        }
    }
}

impl RuntimeConfig {
    /// Checks the ring sizes and the in-flight bound (the pin core is checked when the thread
    /// starts, against the cores that exist).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !ring_size_ok(self.in_ring_size) || !ring_size_ok(self.out_ring_size) {
            return Err(ConfigError::Limit("ring sizes"));
        }
        if self.max_in_flight == 0 || self.max_in_flight > 10_000_000 {
            return Err(ConfigError::Limit("max_in_flight"));
        }
        Ok(())
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            markets: MarketConfig::defaults(),
            demo_deposits: true,
            initial_balance: Usdc::from_whole(5_000),
            max_accounts: 100_000,
            max_open_positions: 1_000_000,
            max_positions_per_account: 100,
            closed_history_per_account: 100,
            idempotency_keys_per_account: 100,
            idempotency_ttl_ns: 24 * 3_600 * 1_000_000_000,
            request_id_window: 100_000,
            max_pending_orders: 1_000_000,
            max_orders_per_account: 100,
            max_api_keys: 100_000,
            max_api_keys_per_account: 10,
            max_sessions: 1_000_000,
            max_sessions_per_account: 20,
            margin_call_level: Ppm(3 * PPM_ONE / 2),
            stop_out_level: Ppm(PPM_ONE),
            swap_free_logins: Vec::new(),
            groups: Vec::new(),
        }
    }
}

impl EngineConfig {
    /// Each group's terms per market, dense: `[group][market]`; at least one group (the
    /// default, without charges).
    pub fn group_terms(&self) -> Vec<Vec<GroupTerms>> {
        let mut terms: Vec<Vec<GroupTerms>> = self
            .groups
            .iter()
            .map(|g| {
                self.markets
                    .iter()
                    .map(|m| {
                        let t = g.markets.iter().find(|t| t.symbol == m.symbol);
                        t.map_or(GroupTerms::default(), |t| t.terms(m))
                    })
                    .collect()
            })
            .collect();
        if terms.is_empty() {
            terms.push(vec![GroupTerms::default(); self.markets.len()]);
        }
        terms
    }

    fn validate_groups(&self) -> Result<(), ConfigError> {
        if self.groups.len() > MAX_GROUPS {
            return Err(ConfigError::Limit("groups (at most 256)"));
        }
        for (i, g) in self.groups.iter().enumerate() {
            let bad = |why: &'static str| Err(ConfigError::Market { symbol: g.name.clone(), why });
            if g.name.is_empty()
                || g.name.len() > 32
                || self.groups[..i].iter().any(|o| o.name == g.name)
            {
                return bad("a group's name must be 1..=32 bytes and unique");
            }
            for t in &g.markets {
                let Some(m) = self.markets.iter().find(|m| m.symbol == t.symbol) else {
                    return bad("a group names a market that is not configured");
                };
                if let Some(why) = t.terms(m).out_of_range(m.max_price_ticks) {
                    return bad(why);
                }
                if t.max_leverage == Some(0) {
                    return bad("a group's max_leverage must be at least 1");
                }
                if let Some(why) = market::check_brackets(&t.brackets, m.max_leverage) {
                    return bad(why);
                }
            }
        }
        Ok(())
    }

    /// Checks every limit. Called before anything is allocated.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_groups()?;
        if self.markets.is_empty() || self.markets.len() > usize::from(u16::MAX) {
            return Err(ConfigError::Limit("markets must hold 1..=65535 markets"));
        }
        for (i, m) in self.markets.iter().enumerate() {
            m.validate()?;
            if self.markets[..i].iter().any(|o| o.symbol == m.symbol) {
                return Err(ConfigError::Market {
                    symbol: m.symbol.clone(),
                    why: "duplicate symbol",
                });
            }
        }
        // Every rate a position may carry, brackets included, times a level stays below 1: the
        // margin-call price's formula and a cross account's trigger keys (a long's slope is
        // 1 − level × rate) need it (docs/DESIGN.md, "Cross margin").
        let one2 = i128::from(PPM_ONE) * i128::from(PPM_ONE);
        let rates_below = |level: i128| {
            let groups = self.groups.iter().flat_map(|g| &g.markets).flat_map(|t| &t.brackets);
            let mut group_rates = groups.map(|b| b.maintenance_margin_rate);
            self.markets.iter().all(|m| {
                let rates = m.brackets.iter().map(|b| b.maintenance_margin_rate);
                std::iter::once(m.maintenance_margin_rate)
                    .chain(rates)
                    .all(|r| i128::from(r.0) * level < one2)
            }) && group_rates.all(|r| i128::from(r.0) * level < one2)
        };
        let level_fits = |level: Ppm| {
            let level = i128::from(level.0);
            level == 0
                || (level > i128::from(PPM_ONE)
                    && level <= 100 * i128::from(PPM_ONE)
                    && rates_below(level))
        };
        let level_ok = level_fits(self.margin_call_level)
            && self.groups.iter().filter_map(|g| g.margin_call_level).all(level_fits);
        let stop_fits = |stop: Ppm, call: Ppm| {
            let s = i128::from(stop.0);
            s >= i128::from(PPM_ONE)
                && s <= 100 * i128::from(PPM_ONE)
                && rates_below(s)
                && (call.0 == 0 || stop < call)
        };
        let stop_ok = stop_fits(self.stop_out_level, self.margin_call_level)
            && self.groups.iter().all(|g| {
                stop_fits(
                    g.stop_out_level.unwrap_or(self.stop_out_level),
                    g.margin_call_level.unwrap_or(self.margin_call_level),
                )
            });
        let limits: [(bool, &'static str); 17] = [
            (self.swap_free_logins.len() > 100_000, "swap_free_logins (at most 100 000)"),
            (self.initial_balance.0 < 0 || self.initial_balance > MAX_AMOUNT, "initial_balance"),
            (self.max_accounts == 0 || self.max_accounts > 50_000_000, "max_accounts"),
            (
                self.max_open_positions == 0 || self.max_open_positions > crate::limits::SLOTS_MAX,
                "max_open_positions (at most 16 777 215: a slot is 24 bits)",
            ),
            (
                self.max_positions_per_account == 0 || self.max_positions_per_account > 10_000,
                "max_positions_per_account",
            ),
            (self.closed_history_per_account > 100_000, "closed_history_per_account"),
            (self.idempotency_keys_per_account > 10_000, "idempotency_keys_per_account"),
            (self.idempotency_ttl_ns == 0, "idempotency_ttl_ns"),
            (self.request_id_window > 10_000_000, "request_id_window"),
            (
                self.max_pending_orders == 0 || self.max_pending_orders > 100_000_000,
                "max_pending_orders",
            ),
            (
                self.max_orders_per_account == 0 || self.max_orders_per_account > 10_000,
                "max_orders_per_account",
            ),
            (self.max_api_keys == 0 || self.max_api_keys > 10_000_000, "max_api_keys"),
            (
                self.max_api_keys_per_account == 0 || self.max_api_keys_per_account > 100,
                "max_api_keys_per_account",
            ),
            (self.max_sessions == 0 || self.max_sessions > 100_000_000, "max_sessions"),
            (
                self.max_sessions_per_account == 0 || self.max_sessions_per_account > 1_000,
                "max_sessions_per_account",
            ),
            (!level_ok, "margin_call_level must be 0 (off) or in (1, 100] with mmr * level < 1"),
            (
                !stop_ok,
                "stop_out_level (the engine's and each group's) must be in [1, 100], below the margin_call_level, with mmr * level < 1",
            ),
        ];
        if let Some((_, what)) = limits.iter().find(|(bad, _)| *bad) {
            return Err(ConfigError::Limit(what));
        }
        Ok(())
    }
}

fn ring_size_ok(n: usize) -> bool {
    n.is_power_of_two() && (64..=(1 << 24)).contains(&n)
}

/// How the configuration reads from an operator's file: the defaults each field falls back to,
/// and exact conversions of decimal strings and coarser time units (nothing rounds or saturates:
/// what does not fit is an error).
pub mod serde_file;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(EngineConfig::default().validate(), Ok(()));
        assert_eq!(RuntimeConfig::default().validate(), Ok(()));
    }

    #[test]
    fn bad_limits_are_rejected() {
        let r = RuntimeConfig { in_ring_size: 1000, ..RuntimeConfig::default() };
        assert_eq!(r.validate(), Err(ConfigError::Limit("ring sizes")));
        let r = RuntimeConfig { max_in_flight: 0, ..RuntimeConfig::default() };
        assert_eq!(r.validate(), Err(ConfigError::Limit("max_in_flight")));
        let mut c = EngineConfig::default();
        c.markets[0].max_leverage = 0;
        assert!(matches!(c.validate(), Err(ConfigError::Market { .. })));
        c.markets[0].max_leverage = 300; // 300 * 0.005 >= 1: unopenable at max leverage
        assert!(matches!(c.validate(), Err(ConfigError::Market { .. })));
        c.markets[0].max_leverage = 100;
        c.markets[1].symbol = "BTC_USDC".into();
        assert!(matches!(c.validate(), Err(ConfigError::Market { why: "duplicate symbol", .. })));
    }
}
