//! What the engine has done, counted for metrics (not state: not hashed).

/// Counts of what the engine has done, for metrics. Not part of the state hash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    /// Commands applied (including no-ops).
    pub commands: u64,
    /// Commands rejected with a reason.
    pub rejections: u64,
    /// Ticks applied.
    pub ticks_applied: u64,
    /// Ticks rejected.
    pub ticks_rejected: u64,
    /// Positions opened.
    pub opened: u64,
    /// Take-profit closes.
    pub take_profits: u64,
    /// Stop-loss closes.
    pub stop_losses: u64,
    /// Liquidations.
    pub liquidations: u64,
    /// Closes that left bad debt.
    pub bad_debts: u64,
    /// Commands whose request id was already applied (answered with the first reply).
    pub duplicates: u64,
    /// Positions closed by cross accounts' stop-outs. (This and the two below are kept in a
    /// snapshot's `cross`, so older snapshots' counters still decode.)
    #[serde(skip)]
    pub stop_outs: u64,
    /// Exact margin-level checks of cross accounts (a trigger fired, a band crossed, or the
    /// account changed); those that found the account above its level were false alarms.
    #[serde(skip)]
    pub cross_checks: u64,
    /// Times a market left its cross band (each re-keys the cross accounts holding it).
    #[serde(skip)]
    pub band_crossings: u64,
}

impl Counters {
    /// Number of counters.
    pub const LEN: usize = 13;

    /// The counters in declaration order (for lock-free publication as atomics).
    pub fn to_array(&self) -> [u64; Counters::LEN] {
        let c = self;
        [
            c.commands,
            c.rejections,
            c.ticks_applied,
            c.ticks_rejected,
            c.opened,
            c.take_profits,
            c.stop_losses,
            c.liquidations,
            c.bad_debts,
            c.duplicates,
            c.stop_outs,
            c.cross_checks,
            c.band_crossings,
        ]
    }

    /// Inverse of [`Counters::to_array`].
    pub fn from_array(a: [u64; Counters::LEN]) -> Counters {
        let [
            commands,
            rejections,
            ticks_applied,
            ticks_rejected,
            opened,
            take_profits,
            stop_losses,
            liquidations,
            bad_debts,
            duplicates,
            stop_outs,
            cross_checks,
            band_crossings,
        ] = a;
        Counters {
            commands,
            rejections,
            ticks_applied,
            ticks_rejected,
            opened,
            take_profits,
            stop_losses,
            liquidations,
            bad_debts,
            duplicates,
            stop_outs,
            cross_checks,
            band_crossings,
        }
    }
}
