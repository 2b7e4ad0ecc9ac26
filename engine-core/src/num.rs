//! Fixed-point units: money, prices, quantities and rates.
//!
//! Every value is an integer count of the smallest step of its unit:
//!
//! | type    | unit                                   | storage |
//! |---------|----------------------------------------|---------|
//! | [`Usdc`]  | 10^-6 USDC ("micros")                  | `i128`  |
//! | [`Price`] | 10^-price_decimals quote per base unit | `i64`   |
//! | [`Qty`]   | 10^-qty_decimals base units            | `i64`   |
//! | [`Ppm`]   | 10^-6 (parts per million)              | `i64`   |
//!
//! Money is `i128` so that no sequence of valid inputs (prices and quantities are bounded by the
//! market's limits) can overflow a balance, the insurance fund or the house: the engine thread must
//! never have to reject a liquidation because an accumulator would not fit.
//!
//! Decimal strings are parsed exactly ([`parse_fixed`]): a value with more decimals than its unit
//! allows is an error, never silently rounded.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;

/// Money in micro-USDC (10^-6 USDC). Collateral, margins, PnL, fees.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Usdc(pub i128);

/// A price in ticks of the market's `price_decimals`.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Price(pub i64);

/// A quantity in steps of the market's `qty_decimals`.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Qty(pub i64);

/// A rate in parts per million (0.005 = 5_000 ppm).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Ppm(pub i64);

/// Decimals of [`Usdc`].
pub const USDC_DECIMALS: u32 = 6;
/// One whole unit of a [`Ppm`] rate.
pub const PPM_ONE: i64 = 1_000_000;

impl Usdc {
    /// Zero micros.
    pub const ZERO: Usdc = Usdc(0);

    /// `n` whole USDC.
    pub const fn from_whole(n: i64) -> Usdc {
        Usdc(n as i128 * 1_000_000)
    }

    /// The raw micro-USDC count.
    pub const fn micros(self) -> i128 {
        self.0
    }

    /// Checked addition.
    pub fn checked_add(self, rhs: Usdc) -> Option<Usdc> {
        self.0.checked_add(rhs.0).map(Usdc)
    }

    /// Checked subtraction.
    pub fn checked_sub(self, rhs: Usdc) -> Option<Usdc> {
        self.0.checked_sub(rhs.0).map(Usdc)
    }

    /// Parses a decimal string exactly (at most 6 decimals).
    pub fn parse(s: &str) -> Result<Usdc, DecimalError> {
        parse_fixed_i128(s, USDC_DECIMALS).map(Usdc)
    }
}

impl fmt::Display for Usdc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_fixed(self.0, USDC_DECIMALS))
    }
}

impl Price {
    /// The raw tick count.
    pub const fn ticks(self) -> i64 {
        self.0
    }
}

impl Qty {
    /// The raw step count.
    pub const fn steps(self) -> i64 {
        self.0
    }
}

impl Ppm {
    /// Parses a decimal rate such as `"0.005"` exactly (at most 6 decimals).
    pub fn parse(s: &str) -> Result<Ppm, DecimalError> {
        parse_fixed(s, 6).map(Ppm)
    }
}

/// Why a decimal string could not be converted to a fixed-point integer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    /// Not a plain decimal number (`"abc"`, `"1e5"`, `""`, `"NaN"`).
    #[error("not a decimal number")]
    Malformed,
    /// More fractional digits than the unit allows.
    #[error("too many decimals: at most {max} allowed")]
    TooManyDecimals {
        /// The unit's number of decimals.
        max: u32,
    },
    /// Does not fit the integer representation.
    #[error("number out of range")]
    OutOfRange,
}

/// Parses `s` as an exact decimal with at most `decimals` fractional digits, into an `i64` count
/// of `10^-decimals` steps. Trailing zeros beyond `decimals` are accepted (`"1.50"` with 1 decimal
/// is 15); a non-zero digit beyond them is [`DecimalError::TooManyDecimals`].
pub fn parse_fixed(s: &str, decimals: u32) -> Result<i64, DecimalError> {
    let v = parse_fixed_i128(s, decimals)?;
    i64::try_from(v).map_err(|_| DecimalError::OutOfRange)
}

/// As [`parse_fixed`], into an `i128`.
pub fn parse_fixed_i128(s: &str, decimals: u32) -> Result<i128, DecimalError> {
    // Only the plain form `[-]digits[.digits]`: no spaces, no `+`, no underscores or exponents
    // (rust_decimal accepts those; they have no place at an API edge, where ` 5 ` or `+5` is more
    // likely a client bug than an intent).
    let unsigned = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty()
        || !digits(int)
        || !digits(frac)
        || (unsigned.contains('.') && frac.is_empty())
    {
        return Err(DecimalError::Malformed);
    }
    let significant_decimals = frac.trim_end_matches('0').len();
    if significant_decimals > decimals as usize {
        return Err(DecimalError::TooManyDecimals { max: decimals });
    }
    let d = Decimal::from_str(s).map_err(|_| DecimalError::OutOfRange)?.normalize();
    debug_assert!(d.scale() <= decimals);
    let factor = 10i128.checked_pow(decimals - d.scale()).ok_or(DecimalError::OutOfRange)?;
    d.mantissa().checked_mul(factor).ok_or(DecimalError::OutOfRange)
}

/// A decimal exactly as written, `units × 10^-scale` (`"0.50"` is 5 × 10^-1): for a quantity
/// whose unit (the market's step) only the engine knows, so the edge can pass it on without
/// asking the engine first. [`ExactDecimal::to_steps`] converts it, or refuses if it does not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ExactDecimal {
    /// The digits.
    pub units: i64,
    /// Fractional digits (trailing zeros removed), at most [`ExactDecimal::SCALE_MAX`].
    pub scale: u8,
}

impl ExactDecimal {
    /// The most fractional digits accepted.
    pub const SCALE_MAX: u8 = 18;

    /// Parses the plain form `[-]digits[.digits]` exactly (see [`parse_fixed`]).
    pub fn parse(s: &str) -> Result<ExactDecimal, DecimalError> {
        let unsigned = s.strip_prefix('-').unwrap_or(s);
        let frac = unsigned.split_once('.').map_or("", |(_, f)| f);
        let scale = frac.trim_end_matches('0').len();
        let scale_u8 = u8::try_from(scale)
            .ok()
            .filter(|s| *s <= Self::SCALE_MAX)
            .ok_or(DecimalError::TooManyDecimals { max: u32::from(Self::SCALE_MAX) })?;
        let units = parse_fixed(s, u32::from(scale_u8))?;
        Ok(ExactDecimal { units, scale: scale_u8 })
    }

    /// The value in steps of `10^-decimals`, if it is a whole number of them and fits.
    pub fn to_steps(self, decimals: u32) -> Option<i64> {
        let scale = u32::from(self.scale);
        if scale <= decimals {
            self.units.checked_mul(10i64.checked_pow(decimals - scale)?)
        } else {
            let div = 10i64.checked_pow(scale - decimals)?;
            (self.units % div == 0).then_some(self.units / div)
        }
    }
}

/// Formats a fixed-point integer with exactly `decimals` fractional digits (`12345, 2` → `"123.45"`).
pub fn format_fixed(v: i128, decimals: u32) -> String {
    let sign = if v < 0 { "-" } else { "" };
    let abs = v.unsigned_abs();
    if decimals == 0 {
        return format!("{sign}{abs}");
    }
    let pow = 10u128.pow(decimals);
    let width = decimals as usize;
    format!("{sign}{}.{:0width$}", abs / pow, abs % pow)
}

/// `floor(a / b)` for `b > 0`.
#[inline]
pub const fn div_floor(a: i128, b: i128) -> i128 {
    debug_assert!(b > 0);
    let q = a / b;
    if a % b != 0 && a < 0 { q - 1 } else { q }
}

/// `ceil(a / b)` for `b > 0`.
#[inline]
pub const fn div_ceil(a: i128, b: i128) -> i128 {
    debug_assert!(b > 0);
    let q = a / b;
    if a % b != 0 && a > 0 { q + 1 } else { q }
}

#[cfg(test)]
mod tests {

    #[test]
    fn exact_decimals_convert_to_steps_or_refuse() {
        let d = |s: &str| ExactDecimal::parse(s).unwrap();
        assert_eq!(d("0.50"), ExactDecimal { units: 5, scale: 1 });
        assert_eq!(d("12"), ExactDecimal { units: 12, scale: 0 });
        assert_eq!(d("0.25").to_steps(5), Some(25_000));
        assert_eq!(d("0.000001").to_steps(5), None, "finer than a step: refused, never rounded");
        assert_eq!(d("1.000000").to_steps(2), Some(100));
        assert_eq!(d("9223372036854775807").to_steps(1), None, "overflow");
        for bad in ["", "1e5", "+1", " 1", "1.", "0.0000000000000000001"] {
            assert!(ExactDecimal::parse(bad).is_err(), "{bad:?}");
        }
    }

    use super::*;

    #[test]
    fn parse_fixed_is_exact() {
        let cases: &[(&str, u32, Result<i64, DecimalError>)] = &[
            ("62000.5", 2, Ok(6_200_050)),
            ("62000.50", 2, Ok(6_200_050)),
            ("62000.500", 2, Ok(6_200_050)),
            ("62000.505", 2, Err(DecimalError::TooManyDecimals { max: 2 })),
            ("0.00001", 5, Ok(1)),
            ("0.000001", 5, Err(DecimalError::TooManyDecimals { max: 5 })),
            ("-1.5", 1, Ok(-15)),
            ("7", 0, Ok(7)),
            (" 3.1 ", 1, Err(DecimalError::Malformed)),
            ("+5", 0, Err(DecimalError::Malformed)),
            ("5 ", 0, Err(DecimalError::Malformed)),
            ("-", 0, Err(DecimalError::Malformed)),
            ("", 2, Err(DecimalError::Malformed)),
            ("abc", 2, Err(DecimalError::Malformed)),
            ("NaN", 2, Err(DecimalError::Malformed)),
            ("1e5", 2, Err(DecimalError::Malformed)),
            ("1_000", 2, Err(DecimalError::Malformed)),
            ("1..2", 2, Err(DecimalError::Malformed)),
            ("92233720368547758.08", 2, Err(DecimalError::OutOfRange)),
            ("99999999999999999999999999999999", 2, Err(DecimalError::OutOfRange)),
        ];
        for (s, d, want) in cases {
            assert_eq!(&parse_fixed(s, *d), want, "parse_fixed({s:?}, {d})");
        }
    }

    #[test]
    fn format_round_trips() {
        for (v, d, s) in [(6_200_050i128, 2, "62000.50"), (-15, 1, "-1.5"), (5, 6, "0.000005")] {
            assert_eq!(format_fixed(v, d), s);
            assert_eq!(parse_fixed_i128(s, d), Ok(v));
        }
        assert_eq!(Usdc::from_whole(5000).to_string(), "5000.000000");
    }

    #[test]
    fn division_rounding() {
        assert_eq!(div_floor(7, 2), 3);
        assert_eq!(div_floor(-7, 2), -4);
        assert_eq!(div_floor(-6, 2), -3);
        assert_eq!(div_ceil(7, 2), 4);
        assert_eq!(div_ceil(-7, 2), -3);
        assert_eq!(div_ceil(6, 2), 3);
    }
}
