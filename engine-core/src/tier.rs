//! Leverage brackets as the engine applies them (docs/DESIGN.md, "Tiered margin"): each with
//! its cap on notional, leverage, maintenance rate and maintenance amount.

use crate::config::{Bracket, EngineConfig};
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

/// `brackets` as the engine applies them, with their maintenance amounts.
pub(crate) fn tiers(brackets: &[Bracket]) -> Vec<Tier> {
    let cums = crate::config::maintenance_amounts(brackets);
    brackets
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

/// Each configured group's brackets on `market` (`[group]`, empty: the market's), or none at
/// all when no group has brackets of its own there.
pub(crate) fn group_tiers(cfg: &EngineConfig, market: &str) -> Vec<Vec<Tier>> {
    let own = |g: &crate::config::GroupConfig| {
        g.markets.iter().find(|t| t.symbol == market).map_or(Vec::new(), |t| tiers(&t.brackets))
    };
    let all: Vec<Vec<Tier>> = cfg.groups.iter().map(own).collect();
    if all.iter().all(Vec::is_empty) { Vec::new() } else { all }
}
