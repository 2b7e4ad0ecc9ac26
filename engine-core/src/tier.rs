//! Leverage brackets as the engine applies them (docs/DESIGN.md, "Tiered margin"): each with
//! its cap on notional, leverage, maintenance rate and maintenance amount.

use crate::config::MarketConfig;
use crate::limits::MAX_AMOUNT;
use crate::num::Usdc;

/// A leverage bracket as the engine applies it (docs/DESIGN.md, "Tiered margin").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tier {
    /// The largest notional in it (the last: `MAX_AMOUNT`).
    pub(crate) cap: Usdc,
    pub(crate) max_leverage: u32,
    pub(crate) mmr: crate::num::Ppm,
    /// Maintenance amount: maintenance margin is `mmr × notional − cum`, continuous at caps.
    pub(crate) cum: Usdc,
}

/// The brackets of `cfg` as the engine applies them, with their maintenance amounts.
pub(crate) fn tiers(cfg: &MarketConfig) -> Vec<Tier> {
    let cums = cfg.maintenance_amounts();
    cfg.brackets
        .iter()
        .zip(cums)
        .map(|(b, cum)| Tier {
            cap: b.notional_cap.unwrap_or(MAX_AMOUNT),
            max_leverage: b.max_leverage,
            mmr: b.maintenance_margin_rate,
            cum,
        })
        .collect()
}
