//! Engine and market configuration, validated once at start.
//!
//! Every collection the engine thread owns has a limit here. [`EngineConfig::validate`] checks them
//! together so that nothing inside the engine can overflow: with the price and quantity limits below,
//! every intermediate product of the risk math fits an `i128` (see [`crate::math`]).

use crate::num::{PPM_ONE, Ppm, Usdc};

pub use crate::limits::{MAX_AMOUNT, MAX_DECIMALS_SUM, MAX_PRICE_TICKS_LIMIT, MAX_QTY_STEPS_LIMIT};

/// One tradable market.
///
/// Deserializes from an operator's file (see [`serde_file`]): `symbol`, `price_decimals` and
/// `qty_decimals` are required, every other field keeps [`MarketConfig::new`]'s default; rates
/// and money are decimal strings parsed exactly, the price age is in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketConfig {
    /// Exchange symbol, e.g. `BTC_USDC`. Only adapters use it: the engine uses the market's index.
    pub symbol: String,
    /// Price step is `10^-price_decimals` USDC.
    pub price_decimals: u32,
    /// Quantity step is `10^-qty_decimals` base units.
    pub qty_decimals: u32,
    /// Highest leverage a position may use (integer, >= 1).
    #[serde(default = "serde_file::max_leverage")]
    pub max_leverage: u32,
    /// Maintenance margin rate.
    #[serde(default = "serde_file::mmr", deserialize_with = "serde_file::ppm")]
    pub maintenance_margin_rate: Ppm,
    /// Share of the notional taken into the insurance fund on liquidation (capped by equity).
    #[serde(default = "serde_file::liquidation_fee", deserialize_with = "serde_file::ppm")]
    pub liquidation_fee_rate: Ppm,
    /// Fee on the notional when opening.
    #[serde(default, deserialize_with = "serde_file::ppm")]
    pub open_fee_rate: Ppm,
    /// Fee on the notional when closing (manual, TP, SL).
    #[serde(default, deserialize_with = "serde_file::ppm")]
    pub close_fee_rate: Ppm,
    /// A price older than this (by command receive time) cannot be traded on.
    #[serde(rename = "max_price_age_ms", default = "serde_file::max_price_age_ns")]
    #[serde(deserialize_with = "serde_file::ms_as_ns")]
    pub max_price_age_ns: u64,
    /// Smallest quantity a position (or what remains of it) may have.
    #[serde(default = "serde_file::min_qty")]
    pub min_qty: i64,
    /// Smallest margin a position may lock.
    #[serde(default = "serde_file::min_margin", deserialize_with = "serde_file::usdc")]
    pub min_margin: Usdc,
    /// Highest accepted price, in ticks (ticks above are rejected as `price_out_of_range`).
    #[serde(default = "serde_file::max_price_ticks")]
    pub max_price_ticks: i64,
    /// Largest quantity of one position, in steps.
    #[serde(default = "serde_file::max_qty_steps")]
    pub max_qty_steps: i64,
    /// Financing (swap) charged to each open long per financing period, as a share of its
    /// notional at the mark; negative pays the long. 0: none.
    #[serde(default, deserialize_with = "serde_file::ppm")]
    pub financing_long_rate: Ppm,
    /// The same for shorts.
    #[serde(default, deserialize_with = "serde_file::ppm")]
    pub financing_short_rate: Ppm,
    /// Price sources (venues) whose quotes make this market's index (`SourceQuote`); 0: the
    /// market takes one feed's ticks as they come (`PriceTick`), as before there were sources.
    #[serde(default)]
    pub sources: u8,
    /// Fresh sources that must agree for the index to move and the market to stay open; 0:
    /// a majority of `sources`.
    #[serde(default)]
    pub min_sources: u8,
    /// A source quote older than this (by command receive time) is stale: left out of the index.
    #[serde(rename = "max_source_age_ms", default = "serde_file::max_source_age_ns")]
    #[serde(deserialize_with = "serde_file::ms_as_ns")]
    pub max_source_age_ns: u64,
    /// A source whose mid is further than this from the median of the others' is left out.
    #[serde(default = "serde_file::max_deviation_bps")]
    pub max_deviation_bps: u32,
    /// After a guard (too few agreeing sources), the market reopens once they have agreed for
    /// this long.
    #[serde(rename = "guard_quiet_ms", default = "serde_file::guard_quiet_ns")]
    #[serde(deserialize_with = "serde_file::ms_as_ns")]
    pub guard_quiet_ns: u64,
    /// Most open quantity on each side, in steps (longs together, shorts together); an open or
    /// a fill past it is refused `open_interest_cap`. 0: none.
    #[serde(default)]
    pub open_interest_cap_steps: i64,
    /// Most difference between the longs' and the shorts' open quantity, in steps; an open or
    /// a fill that takes the difference past it (and makes it larger) is refused `skew_cap`.
    /// 0: none.
    #[serde(default)]
    pub skew_cap_steps: i64,
    /// Financing per period the heavier side pays on top of its rate, scaled by the skew:
    /// `skew_financing_rate × |long − short| / (long + short)` of the notional, rounded up; the
    /// lighter side pays nothing more. 0: none.
    #[serde(default, deserialize_with = "serde_file::ppm")]
    pub skew_financing_rate: Ppm,
}

impl MarketConfig {
    /// A market with docs/DESIGN.md's defaults: 100x, mmr 0.5%, liquidation fee 0.5%, no open/close
    /// fees, 5 s price age, min quantity one step, min margin 1 USDC.
    pub fn new(symbol: &str, price_decimals: u32, qty_decimals: u32) -> MarketConfig {
        MarketConfig {
            symbol: symbol.to_owned(),
            price_decimals,
            qty_decimals,
            max_leverage: serde_file::max_leverage(),
            maintenance_margin_rate: serde_file::mmr(),
            liquidation_fee_rate: serde_file::liquidation_fee(),
            open_fee_rate: Ppm(0),
            close_fee_rate: Ppm(0),
            max_price_age_ns: serde_file::max_price_age_ns(),
            min_qty: serde_file::min_qty(),
            min_margin: serde_file::min_margin(),
            max_price_ticks: serde_file::max_price_ticks(),
            max_qty_steps: serde_file::max_qty_steps(),
            financing_long_rate: Ppm(0),
            financing_short_rate: Ppm(0),
            sources: 0,
            min_sources: 0,
            max_source_age_ns: serde_file::max_source_age_ns(),
            max_deviation_bps: serde_file::max_deviation_bps(),
            guard_quiet_ns: serde_file::guard_quiet_ns(),
            open_interest_cap_steps: 0,
            skew_cap_steps: 0,
            skew_financing_rate: Ppm(0),
        }
    }

    /// Fresh, agreeing sources the index needs: `min_sources`, or a majority of `sources`.
    pub fn sources_needed(&self) -> u8 {
        if self.min_sources > 0 { self.min_sources } else { self.sources / 2 + 1 }
    }

    /// BTC_USDC, ETH_USDC and SOL_USDC as in docs/DESIGN.md.
    pub fn defaults() -> Vec<MarketConfig> {
        vec![
            MarketConfig::new("BTC_USDC", 2, 5),
            MarketConfig::new("ETH_USDC", 2, 4),
            MarketConfig::new("SOL_USDC", 2, 2),
        ]
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |why: &'static str| Err(ConfigError::Market { symbol: self.symbol.clone(), why });
        if self.open_interest_cap_steps < 0 || self.skew_cap_steps < 0 {
            return bad("open_interest_cap_steps and skew_cap_steps must be 0 (none) or positive");
        }
        if !(0..=PPM_ONE / 100).contains(&self.skew_financing_rate.0) {
            return bad("skew_financing_rate must be within 0..=0.01 per period");
        }
        if self.symbol.is_empty() || self.symbol.len() > 32 {
            return bad("symbol must be 1..=32 bytes");
        }
        if self.price_decimals + self.qty_decimals > MAX_DECIMALS_SUM {
            return bad("price_decimals + qty_decimals must be <= 18");
        }
        if self.max_leverage == 0 || self.max_leverage > 1_000 {
            return bad("max_leverage must be 1..=1000");
        }
        // mmr must leave the long liquidation formula's denominator positive and must make a
        // position at max leverage openable at all (mmr * max_leverage < 1).
        let mmr = self.maintenance_margin_rate.0;
        if mmr <= 0 || i128::from(mmr) * i128::from(self.max_leverage) >= i128::from(PPM_ONE) {
            return bad("maintenance_margin_rate must be > 0 and below 1 / max_leverage");
        }
        for (rate, name) in [
            (self.liquidation_fee_rate, "liquidation_fee_rate must be in 0..1"),
            (self.open_fee_rate, "open_fee_rate must be in 0..1"),
            (self.close_fee_rate, "close_fee_rate must be in 0..1"),
        ] {
            if rate.0 < 0 || rate.0 >= PPM_ONE {
                return bad(name);
            }
        }
        // At most 1 % of the notional per period either way: a typo of 100x must not drain
        // every margin at the next charge.
        let financing_ok = |r: Ppm| r.0.abs() <= PPM_ONE / 100;
        if !financing_ok(self.financing_long_rate) || !financing_ok(self.financing_short_rate) {
            return bad("financing rates must be within -0.01..=0.01 per period");
        }
        if self.max_price_age_ns == 0 {
            return bad("max_price_age must be > 0");
        }
        if usize::from(self.sources) > crate::limits::SOURCES_MAX {
            return bad("sources must be at most 8");
        }
        if self.min_sources > self.sources {
            return bad("min_sources must be at most sources");
        }
        if self.sources > 0
            && (self.max_source_age_ns == 0
                || self.max_deviation_bps == 0
                || self.max_deviation_bps > 10_000)
        {
            return bad("max_source_age must be > 0 and max_deviation_bps in 1..=10000");
        }
        if self.min_qty < 1 || self.min_qty > self.max_qty_steps {
            return bad("min_qty must be in 1..=max_qty_steps");
        }
        if self.min_margin.0 < 0 || self.min_margin > MAX_AMOUNT {
            return bad("min_margin must be in 0..=10^12 USDC");
        }
        if !(1..=MAX_PRICE_TICKS_LIMIT).contains(&self.max_price_ticks) {
            return bad("max_price_ticks must be in 1..=10^12");
        }
        if !(1..=MAX_QTY_STEPS_LIMIT).contains(&self.max_qty_steps) {
            return bad("max_qty_steps must be in 1..=10^12");
        }
        Ok(())
    }
}

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
    /// Margin-call level as a ratio of equity to maintenance margin (`"2"`: warn when a
    /// position's equity falls below twice its maintenance margin); `"0"` turns margin calls off.
    /// Must be above 1 (at 1 the position is already being liquidated).
    #[serde(deserialize_with = "serde_file::ppm")]
    pub margin_call_level: Ppm,
    /// Logins of swap-free accounts: financing is never charged to or paid to them.
    pub swap_free_logins: Vec<String>,
    /// Client groups (a broker's account types): `groups[0]` is every new account's; none
    /// configured is one group without markup or commission (docs/DESIGN.md, "Client groups").
    pub groups: Vec<GroupConfig>,
}

/// A client group: what its accounts pay per market on top of the market's fees.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// Its name (`standard`, `pro`, …), 1..=32 bytes, unique.
    pub name: String,
    /// Its terms per market (a market not listed: no markup, no commission).
    #[serde(default)]
    pub markets: Vec<GroupMarket>,
    /// Its accounts are never charged or paid financing (an Islamic / swap-free account type).
    #[serde(default)]
    pub swap_free: bool,
    /// Its positions' margin-call level instead of the engine's `margin_call_level` (`"0"`:
    /// none), fixed when a position opens or is resized.
    #[serde(default, deserialize_with = "serde_file::opt_ppm")]
    pub margin_call_level: Option<Ppm>,
}

/// A group's terms on one market.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupMarket {
    /// The market's symbol.
    pub symbol: String,
    /// Spread markup, in price ticks, on each side: every open and every close (manual, TP/SL,
    /// trailing, an order's fill; not a liquidation) pays `markup_ticks × quantity`, rounded up
    /// to the micro-USDC, to the house's spread revenue.
    #[serde(default)]
    pub markup_ticks: i64,
    /// Spread markup in basis points of the fill price, on each side, added to `markup_ticks`'s:
    /// `markup_bps / 10 000 × price × quantity`, rounded up (0..=1000).
    #[serde(default)]
    pub markup_bps: u32,
    /// Commission on the notional at every open and close (not a liquidation), rounded up, to
    /// the house's commission revenue.
    #[serde(default, deserialize_with = "serde_file::ppm")]
    pub commission_rate: Ppm,
    /// Commission per lot (one whole unit of the base asset: 1 BTC) at every open and close (not
    /// a liquidation), on top of `commission_rate`'s: `commission_per_lot × quantity`, rounded
    /// up (0..=1000 USDC).
    #[serde(default, deserialize_with = "serde_file::usdc")]
    pub commission_per_lot: Usdc,
    /// Highest leverage its new positions and orders may use on this market, below the
    /// market's own (none: the market's).
    #[serde(default)]
    pub max_leverage: Option<u32>,
    /// Financing rate per period for its longs on this market instead of the market's
    /// `financing_long_rate` (a swap-free group pays and earns none whatever this says).
    #[serde(default, deserialize_with = "serde_file::opt_ppm")]
    pub financing_long_rate: Option<Ppm>,
    /// The same for its shorts.
    #[serde(default, deserialize_with = "serde_file::opt_ppm")]
    pub financing_short_rate: Option<Ppm>,
}

/// A group's terms on one market, as the engine applies them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupTerms {
    /// Spread markup a side, in price ticks.
    pub markup_ticks: i64,
    /// Commission on the notional a side.
    pub commission_rate: Ppm,
    /// Leverage cap of new positions (`u32::MAX`: the market's).
    pub max_leverage: u32,
    /// Spread markup a side in basis points of the fill price.
    pub markup_bps: u32,
    /// Commission a side per lot, one whole base unit.
    pub commission_per_lot: Usdc,
    /// Financing rates per period (long, short) instead of the market's; `None`: the market's.
    pub financing: Option<(Ppm, Ppm)>,
}

impl Default for GroupTerms {
    fn default() -> Self {
        GroupTerms {
            markup_ticks: 0,
            commission_rate: Ppm(0),
            max_leverage: u32::MAX,
            markup_bps: 0,
            commission_per_lot: Usdc::ZERO,
            financing: None,
        }
    }
}

/// Most client groups an engine holds (an account's group is a `u16`; a broker has a handful).
pub const MAX_GROUPS: usize = 256;

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
            margin_call_level: Ppm(3 * PPM_ONE / 2),
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
                        t.map_or(GroupTerms::default(), |t| GroupTerms {
                            markup_ticks: t.markup_ticks,
                            commission_rate: t.commission_rate,
                            max_leverage: t.max_leverage.unwrap_or(u32::MAX),
                            markup_bps: t.markup_bps,
                            commission_per_lot: t.commission_per_lot,
                            financing: (t.financing_long_rate.is_some()
                                || t.financing_short_rate.is_some())
                            .then(|| {
                                (
                                    t.financing_long_rate.unwrap_or(m.financing_long_rate),
                                    t.financing_short_rate.unwrap_or(m.financing_short_rate),
                                )
                            }),
                        })
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
                if t.markup_ticks < 0 || t.markup_ticks > m.max_price_ticks / 2 {
                    return bad("markup_ticks must be in 0..=max_price_ticks / 2");
                }
                if t.commission_rate.0 < 0 || t.commission_rate.0 >= PPM_ONE / 10 {
                    return bad("commission_rate must be in 0..0.1");
                }
                if t.max_leverage == Some(0) {
                    return bad("a group's max_leverage must be at least 1");
                }
                if t.markup_bps > 1000 {
                    return bad("markup_bps must be in 0..=1000");
                }
                if t.commission_per_lot.0 < 0 || t.commission_per_lot.0 > 1_000_000_000 {
                    return bad("commission_per_lot must be in 0..=1000 USDC");
                }
                let financing_ok = |r: Option<Ppm>| r.is_none_or(|r| r.0.abs() <= PPM_ONE / 100);
                if !financing_ok(t.financing_long_rate) || !financing_ok(t.financing_short_rate) {
                    return bad("a group's financing rates must be within -0.01..=0.01 per period");
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
        let level_fits = |level: Ppm| {
            let level = i128::from(level.0);
            level == 0
                || (level > i128::from(PPM_ONE)
                    && level <= 100 * i128::from(PPM_ONE)
                    && self.markets.iter().all(|m| {
                        i128::from(m.maintenance_margin_rate.0) * level
                            < i128::from(PPM_ONE) * i128::from(PPM_ONE)
                    }))
        };
        let level_ok = level_fits(self.margin_call_level)
            && self.groups.iter().filter_map(|g| g.margin_call_level).all(level_fits);
        let limits: [(bool, &'static str); 12] = [
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
            (!level_ok, "margin_call_level must be 0 (off) or in (1, 100] with mmr * level < 1"),
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

/// A configuration that cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A market's parameters are inconsistent or out of range.
    #[error("market {symbol}: {why}")]
    Market {
        /// The offending market.
        symbol: String,
        /// What is wrong.
        why: &'static str,
    },
    /// An engine limit is out of its allowed range.
    #[error("engine limit out of range: {0}")]
    Limit(&'static str),
    /// The engine thread cannot be pinned to the requested core.
    #[error("cannot pin the engine thread to core {0}: not in this process's affinity mask")]
    NoSuchCore(usize),
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
