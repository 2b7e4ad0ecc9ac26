//! What the venue should hold, and the order that gets it there. Pure: no I/O.

use crate::Exposure;

/// A market's hedging policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The B-book net exposure the house keeps unhedged, in steps (its band: within it, nothing
    /// is traded; beyond it, the excess is hedged).
    pub band: i64,
    /// The smallest order worth sending, in steps (the venue's minimum; also the dust the hedge
    /// may differ from its target by).
    pub min_order: i64,
}

/// The hedge position the venue should hold: the A-book one-for-one, plus the B-book's excess
/// beyond the band (its sign: long when the clients are net long, as the house is then short).
pub fn target(e: Exposure, p: Policy) -> i64 {
    let band = p.band.max(0);
    let excess = if e.b_book > band {
        e.b_book - band
    } else if e.b_book < -band {
        e.b_book + band
    } else {
        0
    };
    e.a_book.saturating_add(excess)
}

/// The signed quantity to trade (positive: buy) to move the venue's `held` position to
/// `target`; `None` when the difference is under the minimum order.
pub fn order(target: i64, held: i64, p: Policy) -> Option<i64> {
    let d = target.saturating_sub(held);
    (d.unsigned_abs() >= p.min_order.max(1).unsigned_abs()).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Policy = Policy { band: 100, min_order: 10 };

    #[test]
    fn the_a_book_is_hedged_one_for_one_and_the_b_book_beyond_its_band() {
        let e = |a_book, b_book| Exposure { a_book, b_book };
        assert_eq!(target(e(300, 0), P), 300);
        assert_eq!(target(e(0, 90), P), 0, "within the band: kept");
        assert_eq!(target(e(0, 250), P), 150, "the excess beyond the band");
        assert_eq!(target(e(0, -250), P), -150);
        assert_eq!(target(e(-40, 130), P), -10);
    }

    #[test]
    fn an_order_moves_the_hedge_to_its_target_unless_it_is_dust() {
        assert_eq!(order(300, 0, P), Some(300));
        assert_eq!(order(300, 295, P), None, "5 steps: under the minimum");
        assert_eq!(order(-150, 100, P), Some(-250));
        assert_eq!(order(0, 0, P), None);
    }
}
