//! The risk math, as pure functions with explicit rounding in the house's favour.
//!
//! Units: a price `p` in ticks times a quantity `q` in steps is worth `p * q * num / den` micro-USDC,
//! where `num / den = 10^6 / 10^(price_decimals + qty_decimals)` reduced to integers ([`Scale`]).
//!
//! Rounding rules (docs/DESIGN.md, "Units and arithmetic"):
//! - margin required, fees and maintenance margin round **up**;
//! - a trader's PnL rounds toward **negative infinity**;
//! - a quantity derived from margin rounds **down**;
//! - a liquidation price rounds **toward the mark** (long: up, short: down), so liquidation is never
//!   later than the exact formula says.
//!
//! Bounds: callers guarantee `0 < p <= 10^12`, `0 < q <= 10^12`, `|m| <= 10^18`, rates `< 10^6` ppm
//! (checked by [`crate::config::EngineConfig::validate`] and the command validation). Then the
//! largest intermediate, `p * q * num * 10^6`, is below `10^12 * 10^12 * 10^6 * 10^6 = 10^36`,
//! inside `i128` (1.7 * 10^38). The functions still use checked arithmetic where a caller-supplied
//! amount enters, and return `None` instead of wrapping.

use crate::num::{PPM_ONE, Ppm, Price, Qty, Usdc, div_ceil, div_floor};

/// Long or short.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Profits when the price rises; valued at the bid; opened at the ask.
    #[default]
    Long,
    /// Profits when the price falls; valued at the ask; opened at the bid.
    Short,
}

impl Side {
    /// `"long"` / `"short"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Side::Long => "long",
            Side::Short => "short",
        }
    }

    /// The other side: the side a position of this side trades against (a long buys at the
    /// ask, which is where a short is valued).
    pub const fn opposite(self) -> Side {
        match self {
            Side::Long => Side::Short,
            Side::Short => Side::Long,
        }
    }
}

/// Conversion between `price * qty` and micro-USDC for one market.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scale {
    num: i128,
    den: i128,
}

impl Scale {
    /// The scale for a market with the given decimals (`pd + qd <= 18`).
    pub fn new(price_decimals: u32, qty_decimals: u32) -> Scale {
        let d = price_decimals + qty_decimals;
        assert!(d <= crate::limits::MAX_DECIMALS_SUM, "validated by config");
        if d >= 6 {
            Scale { num: 1, den: 10i128.pow(d - 6) }
        } else {
            Scale { num: 10i128.pow(6 - d), den: 1 }
        }
    }

    /// The numerator of the micros a `price × qty` unit is worth.
    #[inline]
    pub fn num(self) -> i128 {
        self.num
    }

    /// Its denominator.
    #[inline]
    pub fn den(self) -> i128 {
        self.den
    }

    /// `p * q` in micros, exactly, as the fraction `(numerator, denominator)`.
    #[inline]
    fn value(self, p: Price, q: Qty) -> (i128, i128) {
        (i128::from(p.0) * i128::from(q.0) * self.num, self.den)
    }

    /// Notional `p * q`, rounded up (used for fees and maintenance margin bases).
    pub fn notional_ceil(self, p: Price, q: Qty) -> Usdc {
        let (n, d) = self.value(p, q);
        Usdc(div_ceil(n, d))
    }

    /// Whether the notional `p * q`, rounded up, is at most `cap` — without a division
    /// (`⌈n / d⌉ ≤ c ⇔ n ≤ c × d`): a bracket's lookup at every open and resize.
    #[inline]
    pub fn notional_at_most(self, p: Price, q: Qty, cap: Usdc) -> bool {
        let (n, d) = self.value(p, q);
        n <= cap.0 * d
    }

    /// `rate * p * q`, rounded up: fees and maintenance margin.
    #[inline]
    pub fn rate_of_value_ceil(self, rate: Ppm, p: Price, q: Qty) -> Usdc {
        let (n, d) = self.value(p, q);
        Usdc(div_ceil(n * i128::from(rate.0), d * i128::from(PPM_ONE)))
    }

    /// `rate * p * q`, rounded down: what the house pays.
    #[inline]
    pub fn rate_of_value_floor(self, rate: Ppm, p: Price, q: Qty) -> Usdc {
        let (n, d) = self.value(p, q);
        Usdc(div_floor(n * i128::from(rate.0), d * i128::from(PPM_ONE)))
    }

    /// Unrealized PnL of `q` entered at `entry` and marked at `mark`, rounded toward -infinity.
    #[inline]
    pub fn pnl_floor(self, side: Side, entry: Price, mark: Price, q: Qty) -> Usdc {
        let diff = match side {
            Side::Long => i128::from(mark.0) - i128::from(entry.0),
            Side::Short => i128::from(entry.0) - i128::from(mark.0),
        };
        Usdc(div_floor(diff * i128::from(q.0) * self.num, self.den))
    }

    /// Quantity bought with margin `m` at leverage `l` and price `e`: `floor(m * l / e)` in steps.
    /// `None` if it does not fit.
    pub fn qty_from_margin(self, m: Usdc, leverage: u32, e: Price) -> Option<Qty> {
        let notional = m.0.checked_mul(i128::from(leverage))?;
        let q = div_floor(notional.checked_mul(self.den)?, self.num * i128::from(e.0));
        i64::try_from(q).ok().map(Qty)
    }

    /// Margin for quantity `q` at leverage `l` and price `e`: `ceil(q * e / l)`.
    pub fn margin_from_qty(self, q: Qty, leverage: u32, e: Price) -> Usdc {
        let (n, d) = self.value(e, q);
        Usdc(div_ceil(n, d * i128::from(leverage)))
    }

    /// Fee `rate * notional` on a notional already in micros, rounded up.
    pub fn fee_on_notional(notional: Usdc, rate: Ppm) -> Option<Usdc> {
        let n = notional.0.checked_mul(i128::from(rate.0))?;
        Some(Usdc(div_ceil(n, i128::from(PPM_ONE))))
    }

    /// The liquidation price of a position: where equity equals maintenance margin, rounded toward
    /// the mark. Long: `ceil((e*q - m) / (q * (1 - mmr)))`, at least 0 (0 means "never": a bid is
    /// always positive). Short: `floor((e*q + m) / (q * (1 + mmr)))`.
    ///
    /// In integer units, with `m` in micros converted to `price*qty` units by `den / num`:
    /// long `(e*q*num - m*den) * 10^6 / (num * q * (10^6 - mmr))`.
    pub fn liquidation_price(self, side: Side, e: Price, q: Qty, m: Usdc, mmr: Ppm) -> Price {
        debug_assert!(q.0 > 0 && e.0 > 0 && m.0 >= 0);
        let eq = i128::from(e.0) * i128::from(q.0) * self.num;
        let md = m.0 * self.den;
        let one = i128::from(PPM_ONE);
        let liq = match side {
            Side::Long => {
                div_ceil((eq - md) * one, self.num * i128::from(q.0) * (one - i128::from(mmr.0)))
                    .max(0)
            }
            Side::Short => {
                div_floor((eq + md) * one, self.num * i128::from(q.0) * (one + i128::from(mmr.0)))
            }
        };
        // A short's liquidation price can exceed i64 only for absurd margins; clamp to "never".
        Price(i64::try_from(liq).unwrap_or(i64::MAX))
    }

    /// Exact comparison of equity against maintenance margin at mark `p`, without rounding:
    /// returns `sign(equity - MM)` scaled; negative or zero means liquidatable by the exact formula.
    /// Used by tests and debug assertions to check the rounded liquidation price.
    pub fn exact_equity_minus_mm(
        self,
        side: Side,
        e: Price,
        p: Price,
        q: Qty,
        m: Usdc,
        mmr: Ppm,
    ) -> i128 {
        // All terms in micros * den * 10^6.
        let one = i128::from(PPM_ONE);
        let diff = match side {
            Side::Long => i128::from(p.0) - i128::from(e.0),
            Side::Short => i128::from(e.0) - i128::from(p.0),
        };
        let upnl = diff * i128::from(q.0) * self.num * one;
        let mm = i128::from(mmr.0) * i128::from(p.0) * i128::from(q.0) * self.num;
        m.0 * self.den * one + upnl - mm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BTC: Scale = Scale { num: 1, den: 10 }; // 2 + 5 decimals
    const MMR: Ppm = Ppm(5_000);

    #[test]
    fn scale_matches_decimals() {
        assert_eq!(Scale::new(2, 5), BTC);
        assert_eq!(Scale::new(2, 4), Scale { num: 1, den: 1 });
        assert_eq!(Scale::new(2, 2), Scale { num: 100, den: 1 });
    }

    #[test]
    fn notional_at_most_agrees_with_the_rounded_up_notional() {
        for scale in [BTC, Scale::new(2, 4), Scale::new(2, 2), Scale::new(6, 8)] {
            for (p, q) in [(5_000_000, 100_000), (5_000_000, 100_001), (1, 1), (123_457, 9_999)] {
                let n = scale.notional_ceil(Price(p), Qty(q));
                for cap in [n.0 - 1, n.0, n.0 + 1] {
                    let want = n.0 <= cap;
                    assert_eq!(scale.notional_at_most(Price(p), Qty(q), Usdc(cap)), want);
                }
            }
        }
    }

    /// Long and short liquidation prices at 1x, 10x and 100x, BTC at 60 000.00, 1 BTC.
    /// Exact values by hand: long (e*q - m) / (q * 0.995), short (e*q + m) / (q * 1.005).
    #[test]
    fn liquidation_prices_table() {
        let e = Price(6_000_000); // 60 000.00
        let q = Qty(100_000); // 1.00000 BTC
        let cases: &[(u32, Side, i64)] = &[
            // 1x long: m = 60 000, numerator 0 -> never.
            (1, Side::Long, 0),
            // 10x long: m = 6 000 -> 54 000 / 0.995 = 54 271.356783.. -> up to 54 271.36
            (10, Side::Long, 5_427_136),
            // 100x long: m = 600 -> 59 400 / 0.995 = 59 698.492462.. -> 59 698.50
            (100, Side::Long, 5_969_850),
            // 1x short: 120 000 / 1.005 = 119 402.985074.. -> down to 119 402.98
            (1, Side::Short, 11_940_298),
            // 10x short: 66 000 / 1.005 = 65 671.641791.. -> 65 671.64
            (10, Side::Short, 6_567_164),
            // 100x short: 60 600 / 1.005 = 60 298.507462.. -> 60 298.50
            (100, Side::Short, 6_029_850),
        ];
        for &(lev, side, want) in cases {
            let m = BTC.margin_from_qty(q, lev, e);
            let liq = BTC.liquidation_price(side, e, q, m, MMR);
            assert_eq!(liq, Price(want), "{side:?} {lev}x");
            if want == 0 {
                continue;
            }
            // At the rounded price: liquidatable by at most one tick of rounding toward the mark;
            // one tick beyond it (away from the mark) the exact formula agrees.
            let beyond = match side {
                Side::Long => Price(want - 1),
                Side::Short => Price(want + 1),
            };
            assert!(BTC.exact_equity_minus_mm(side, e, beyond, q, m, MMR) <= 0);
            let before = match side {
                Side::Long => Price(want + 1),
                Side::Short => Price(want - 1),
            };
            assert!(BTC.exact_equity_minus_mm(side, e, before, q, m, MMR) > 0);
        }
    }

    #[test]
    fn pnl_rounds_toward_negative_infinity() {
        // 0.00001 BTC moving 0.01 USD is 10^-7 USD = 0.1 micro.
        let q = Qty(1);
        assert_eq!(BTC.pnl_floor(Side::Long, Price(100), Price(101), q), Usdc(0));
        assert_eq!(BTC.pnl_floor(Side::Long, Price(101), Price(100), q), Usdc(-1));
        assert_eq!(BTC.pnl_floor(Side::Short, Price(100), Price(101), q), Usdc(-1));
        assert_eq!(BTC.pnl_floor(Side::Short, Price(101), Price(100), q), Usdc(0));
        // 1 BTC from 60 000 to 61 000.55 long: +1 000.55 exactly.
        let one = Qty(100_000);
        assert_eq!(
            BTC.pnl_floor(Side::Long, Price(6_000_000), Price(6_100_055), one),
            Usdc(1_000_550_000)
        );
    }

    #[test]
    fn margin_and_quantity_rounding() {
        // margin 100 USDC at 10x on 60 000.00: 1000 / 60000 = 0.0166666.. BTC -> 0.01666 down.
        let q = BTC.qty_from_margin(Usdc::from_whole(100), 10, Price(6_000_000));
        assert_eq!(q, Some(Qty(1_666)));
        // quantity 0.00001 BTC at 60 000.00, 7x: 0.6 / 7 = 0.0857142.. -> 0.085715 up.
        assert_eq!(BTC.margin_from_qty(Qty(1), 7, Price(6_000_000)), Usdc(85_715));
        // fee 0.1% on 0.6 USDC = 0.0006 -> 600 micros exactly; on 1 micro -> 1 (up).
        assert_eq!(Scale::fee_on_notional(Usdc(600_000), Ppm(1_000)), Some(Usdc(600)));
        assert_eq!(Scale::fee_on_notional(Usdc(1), Ppm(1_000)), Some(Usdc(1)));
        // maintenance margin on 0.00001 BTC at 0.01: tiny, but rounds up to 1 micro.
        assert_eq!(BTC.rate_of_value_ceil(MMR, Price(1), Qty(1)), Usdc(1));
        assert_eq!(BTC.qty_from_margin(Usdc(i128::MAX / 2), 100, Price(1)), None);
    }
}
