//! How an operator's configuration file reads: defaults, decimal strings parsed exactly,
//! times in milliseconds (see [`crate::config::EngineConfig`]).

use serde::{Deserialize, Deserializer, de::Error};

use crate::num::{Ppm, Usdc};

/// Default source age: 5 s, as the price age.
pub fn max_source_age_ns() -> u64 {
    5_000_000_000
}

/// Default deviation: 1 % from the median of the other sources.
pub fn max_deviation_bps() -> u32 {
    100
}

/// 2 %: a few minutes of a volatile crypto market, so band crossings (each re-keys the market's
/// cross accounts) stay rare while trigger prices stay close to the exact ones.
pub fn cross_band_bps() -> u32 {
    200
}

/// A rate of 1 (no relief).
pub fn one() -> crate::num::Ppm {
    crate::num::Ppm(crate::num::PPM_ONE)
}

/// Default quiet period before a guarded market reopens: 10 s.
pub fn guard_quiet_ns() -> u64 {
    10_000_000_000
}

/// 100x.
pub fn max_leverage() -> u32 {
    100
}
/// 0.5 %.
pub fn mmr() -> Ppm {
    Ppm(5_000)
}
/// 0.5 %.
pub fn liquidation_fee() -> Ppm {
    Ppm(5_000)
}
/// 5 s.
pub fn max_price_age_ns() -> u64 {
    5_000_000_000
}
/// One step.
pub fn min_qty() -> i64 {
    1
}
/// 1 USDC.
pub fn min_margin() -> Usdc {
    Usdc::from_whole(1)
}
/// 10^10 ticks.
pub fn max_price_ticks() -> i64 {
    10_000_000_000
}
/// 10^10 steps.
pub fn max_qty_steps() -> i64 {
    10_000_000_000
}

/// An optional rate written as a decimal string, exactly.
pub fn opt_ppm<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Ppm>, D::Error> {
    ppm(d).map(Some)
}

/// A rate written as a decimal string (`"0.005"`), exactly.
pub fn ppm<'de, D: Deserializer<'de>>(d: D) -> Result<Ppm, D::Error> {
    let s = String::deserialize(d)?;
    Ppm::parse(&s).map_err(|e| D::Error::custom(format_args!("rate {s:?}: {e}")))
}

/// Money written as a decimal string (`"10000.5"`), exactly.
pub fn usdc<'de, D: Deserializer<'de>>(d: D) -> Result<Usdc, D::Error> {
    let s = String::deserialize(d)?;
    Usdc::parse(&s).map_err(|e| D::Error::custom(format_args!("amount {s:?}: {e}")))
}

/// An optional amount (present: a decimal string, exactly).
pub fn opt_usdc<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Usdc>, D::Error> {
    usdc(d).map(Some)
}

/// Milliseconds, held as nanoseconds.
pub fn ms_as_ns<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let ms = u64::deserialize(d)?;
    ms.checked_mul(1_000_000).ok_or_else(|| D::Error::custom("milliseconds too large"))
}

/// Seconds, held as nanoseconds.
pub fn secs_as_ns<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let secs = u64::deserialize(d)?;
    secs.checked_mul(1_000_000_000).ok_or_else(|| D::Error::custom("seconds too large"))
}
