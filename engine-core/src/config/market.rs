//! A market's configuration: its steps, limits, fees, financing, price sources, risk limits
//! and leverage brackets, with the rules each must follow.

use super::error::ConfigError;
use super::serde_file;
use crate::limits::{MAX_AMOUNT, MAX_DECIMALS_SUM, MAX_PRICE_TICKS_LIMIT, MAX_QTY_STEPS_LIMIT};
use crate::num::{PPM_ONE, Ppm, Usdc};

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
    /// The longs' cap instead of `open_interest_cap_steps` (0: that one).
    #[serde(default)]
    pub open_interest_cap_long_steps: i64,
    /// The shorts' cap instead of `open_interest_cap_steps` (0: that one).
    #[serde(default)]
    pub open_interest_cap_short_steps: i64,
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
    /// Leverage brackets by position notional (docs/DESIGN.md, "Tiered margin"), ascending; the
    /// first is the market's own `max_leverage` and `maintenance_margin_rate`. Empty: one
    /// bracket, as before brackets existed.
    #[serde(default)]
    pub brackets: Vec<Bracket>,
    /// Half-width of the band, in basis points of the price, within which cross accounts'
    /// trigger prices on other markets assume this market may move (docs/DESIGN.md, "Cross
    /// margin"): wider re-keys less often but checks accounts earlier (false alarms); a move
    /// out of it re-keys every cross account holding this market.
    #[serde(default = "serde_file::cross_band_bps")]
    pub cross_band_bps: u32,
    /// In a cross account holding both sides of this market, the smaller side's maintenance
    /// margin counts at this rate of itself (docs/DESIGN.md, "Cross margin"): `"0"` margins
    /// only the larger side, `"1"` (the default) both in full.
    #[serde(default = "serde_file::one", deserialize_with = "serde_file::ppm")]
    pub hedged_margin_rate: Ppm,
}

/// One leverage bracket: positions whose notional at entry is at most `notional_cap` (and above
/// the previous bracket's) may use up to `max_leverage` and are maintained at
/// `maintenance_margin_rate`, less the maintenance amount that keeps maintenance margin
/// continuous across brackets (Binance's `cum`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bracket {
    /// The largest notional (USDC, whole) in this bracket; the last bracket's is none
    /// (unbounded).
    #[serde(default, deserialize_with = "serde_file::opt_usdc")]
    pub notional_cap: Option<Usdc>,
    /// Highest leverage in this bracket.
    pub max_leverage: u32,
    /// Maintenance margin rate in this bracket.
    #[serde(deserialize_with = "serde_file::ppm")]
    pub maintenance_margin_rate: Ppm,
}

/// Most brackets per market (and per group on a market).
pub const BRACKETS_MAX: usize = 16;

/// Why `b` is not a list of brackets, or `None`: ascending whole-USDC caps, the last without
/// one; leverage not rising (the first at most `max_leverage`) and the rate not falling from one
/// to the next; each bracket's rate × leverage below 1; at most [`BRACKETS_MAX`].
pub fn check_brackets(b: &[Bracket], max_leverage: u32) -> Option<&'static str> {
    if b.len() > BRACKETS_MAX {
        return Some("at most 16 brackets");
    }
    if b.first().is_some_and(|f| f.max_leverage > max_leverage) {
        return Some("the first bracket's leverage must be at most the market's max_leverage");
    }
    for (i, t) in b.iter().enumerate() {
        let last = i + 1 == b.len();
        let cap_ok = match t.notional_cap {
            None => last,
            Some(c) => !last && c.0 > 0 && c.0 % 1_000_000 == 0 && c <= crate::limits::MAX_AMOUNT,
        };
        if !cap_ok {
            return Some("every bracket but the last has a whole-USDC notional_cap; the last none");
        }
        let rate = i128::from(t.maintenance_margin_rate.0);
        if t.max_leverage == 0
            || rate <= 0
            || rate * i128::from(t.max_leverage) >= i128::from(PPM_ONE)
        {
            return Some("a bracket's leverage must be at least 1 and its rate × leverage below 1");
        }
        let prev = i.checked_sub(1).map(|j| &b[j]);
        if prev.is_some_and(|prev| {
            prev.notional_cap >= t.notional_cap && t.notional_cap.is_some()
                || t.max_leverage > prev.max_leverage
                || t.maintenance_margin_rate < prev.maintenance_margin_rate
        }) {
            return Some("brackets must rise in cap and rate and not in leverage");
        }
    }
    None
}

/// Each bracket's maintenance amount (docs/DESIGN.md, "Tiered margin"): `cum[0] = 0`,
/// `cum[i] = cum[i−1] + cap[i−1] × (rate[i] − rate[i−1])`, exact (caps are whole USDC), so
/// maintenance margin `rate × notional − cum` is continuous at every cap.
pub fn maintenance_amounts(brackets: &[Bracket]) -> Vec<Usdc> {
    let mut out: Vec<Usdc> = Vec::with_capacity(brackets.len());
    for (i, b) in brackets.iter().enumerate() {
        let cum = i.checked_sub(1).map_or(Usdc::ZERO, |j| {
            let p = &brackets[j];
            let cap = p.notional_cap.map_or(0, |c| c.0);
            let step = cap * i128::from(b.maintenance_margin_rate.0 - p.maintenance_margin_rate.0);
            Usdc(out[j].0 + step / i128::from(PPM_ONE))
        });
        out.push(cum);
    }
    out
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
            open_interest_cap_long_steps: 0,
            open_interest_cap_short_steps: 0,
            skew_cap_steps: 0,
            skew_financing_rate: Ppm(0),
            brackets: Vec::new(),
            cross_band_bps: serde_file::cross_band_bps(),
            hedged_margin_rate: serde_file::one(),
        }
    }

    /// Each bracket's maintenance amount: see [`maintenance_amounts`].
    pub fn maintenance_amounts(&self) -> Vec<Usdc> {
        maintenance_amounts(&self.brackets)
    }

    /// The cap on `side`'s open quantity, in steps (0: none): its own, else the market's.
    pub fn open_interest_cap(&self, side: crate::math::Side) -> i64 {
        let own = match side {
            crate::math::Side::Long => self.open_interest_cap_long_steps,
            crate::math::Side::Short => self.open_interest_cap_short_steps,
        };
        if own > 0 { own } else { self.open_interest_cap_steps }
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

    /// The market's brackets follow [`check_brackets`], the first being the market's own
    /// leverage and rate.
    fn validate_brackets(&self) -> Result<(), ConfigError> {
        let bad = |why: &'static str| Err(ConfigError::Market { symbol: self.symbol.clone(), why });
        let b = &self.brackets;
        if b.first().is_some_and(|f| {
            f.max_leverage != self.max_leverage
                || f.maintenance_margin_rate != self.maintenance_margin_rate
        }) {
            return bad(
                "the first bracket must be the market's max_leverage and maintenance_margin_rate",
            );
        }
        check_brackets(b, self.max_leverage).map_or(Ok(()), bad)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let bad = |why: &'static str| Err(ConfigError::Market { symbol: self.symbol.clone(), why });
        self.validate_brackets()?;
        if [
            self.open_interest_cap_steps,
            self.open_interest_cap_long_steps,
            self.open_interest_cap_short_steps,
            self.skew_cap_steps,
        ]
        .iter()
        .any(|c| *c < 0)
        {
            return bad("open-interest and skew caps must be 0 (none) or positive");
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
        if !(0..=PPM_ONE).contains(&self.hedged_margin_rate.0) {
            return bad("hedged_margin_rate must be in 0..=1");
        }
        if !(1..=crate::limits::CROSS_BAND_BPS_MAX).contains(&self.cross_band_bps) {
            return bad("cross_band_bps must be in 1..=2000");
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
