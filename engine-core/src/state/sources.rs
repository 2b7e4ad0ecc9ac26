//! The index price of a market with several price sources (docs/DESIGN.md, "Index price"),
//! and its guards.
//!
//! Each source's latest quote is kept with its receive time. On every quote (and every
//! `SourceCheck`) the index is made again, in integers, from the quotes alone:
//!
//! 1. **fresh**: a source whose quote is at most `max_source_age` old;
//! 2. **agreeing**: a fresh source whose mid is within `max_deviation_bps` of the median of all
//!    fresh sources' mids — with three, the median is a middle source, so one wick cannot pull
//!    it (the median of the *others* would be the mean of a good source and the wick); of two
//!    that disagree, the median is their mean and neither agrees: neither can be told right;
//! 3. with at least `sources_needed` agreeing: index = the median of their mids, spread = the
//!    median of their spreads, and the market's quote is `bid = ⌊index − spread/2⌋`,
//!    `ask = ⌈index + spread/2⌉` — rounded away from the index, in the house's favour. One
//!    source gives back its own bid and ask exactly.
//!
//! The quote goes through the same path as a venue's tick (`Engine::tick`): fills, TP/SL,
//! liquidation, margin calls and trailing stops all see the index's quote and nothing else, so
//! a price that failed the guards never reaches a trigger. Too few agreeing (stale sources
//! included): the market keeps its last quote and goes `reduce_only`; no source heard from for
//! twice `max_source_age`: `halted`; it reopens by itself after `guard_quiet` of agreement. Everything is a function of the journaled quotes and their
//! receive times: replay gives the same index and the same state hash.

use super::{Engine, Event, Item, MarketId, Outcome, Output, Price, Reason, ReplyData, Sink, Tick};
use crate::command::{MarketMode, SourceId};
use crate::config::MarketConfig;
use crate::limits::SOURCES_MAX;

/// One source's latest quote; `update_id` 0: none yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Quote {
    pub(crate) bid: Price,
    pub(crate) ask: Price,
    pub(crate) update_id: u64,
    pub(crate) at_ns: u64,
}

/// A market's sources and guard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sources {
    pub(crate) quotes: [Quote; SOURCES_MAX],
    /// The guard's mode (the market's effective mode is the stricter of it and the operators').
    pub(crate) guard: MarketMode,
    /// Since when enough sources agree (0: they do not now).
    pub(crate) agreed_since_ns: u64,
}

/// What the quotes say at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Index {
    /// Sources heard from within twice `max_source_age` (none: the market halts).
    pub(crate) recent: u8,
    /// Fresh sources.
    pub(crate) fresh: u8,
    /// Fresh sources that agree.
    pub(crate) agreeing: u8,
    /// The market's quote, if enough agree.
    pub(crate) quote: Option<(Price, Price)>,
}

/// The median of `v` (sorted in place), doubled so that it is an integer: the middle value
/// twice, or the sum of the two middle values.
fn median2(v: &mut [i64]) -> i64 {
    v.sort_unstable();
    let n = v.len();
    debug_assert!(n > 0);
    if n % 2 == 1 { 2 * v[n / 2] } else { v[n / 2 - 1] + v[n / 2] }
}

/// The index of `quotes` at `now_ns` under `cfg` (see the module's documentation).
pub(crate) fn index(quotes: &[Quote], now_ns: u64, cfg: &MarketConfig) -> Index {
    // Mids and spreads are kept doubled (bid + ask, 2·(ask − bid)/2) so every step is exact.
    let mut mid2 = [0i64; SOURCES_MAX];
    let mut spread = [0i64; SOURCES_MAX];
    let (mut fresh, mut recent) = (0, 0);
    for q in quotes.iter().filter(|q| q.update_id > 0) {
        let age = now_ns.saturating_sub(q.at_ns);
        if age <= cfg.max_source_age_ns.saturating_mul(2) {
            recent += 1;
        }
        if age <= cfg.max_source_age_ns {
            mid2[fresh] = q.bid.0 + q.ask.0;
            spread[fresh] = q.ask.0 - q.bid.0;
            fresh += 1;
        }
    }
    let mut agree_mid = [0i64; SOURCES_MAX];
    let mut agree_spread = [0i64; SOURCES_MAX];
    let mut agreeing = 0;
    if fresh > 0 {
        let mut sorted = mid2;
        // |mid_i − median| ≤ bps/10⁴ · median, with mid_i = mid2/2 and median = med4/4.
        let med4 = i128::from(median2(&mut sorted[..fresh]));
        for i in 0..fresh {
            let dev4 = (2 * i128::from(mid2[i]) - med4).abs();
            if dev4 * 10_000 <= i128::from(cfg.max_deviation_bps) * med4 {
                agree_mid[agreeing] = mid2[i];
                agree_spread[agreeing] = spread[i];
                agreeing += 1;
            }
        }
    }
    let needed = usize::from(cfg.sources_needed());
    let quote = (agreeing >= needed && agreeing > 0).then(|| {
        let index4 = i128::from(median2(&mut agree_mid[..agreeing])); // 4 × index
        let spread2 = i128::from(median2(&mut agree_spread[..agreeing])); // 2 × spread
        let bid = (index4 - spread2).div_euclid(4);
        let ask = -(-(index4 + spread2)).div_euclid(4);
        let fit = |v: i128| i64::try_from(v).unwrap_or(i64::MAX);
        (Price(fit(bid)), Price(fit(ask)))
    });
    let count = |n: usize| u8::try_from(n).unwrap_or(u8::MAX);
    Index { recent: count(recent), fresh: count(fresh), agreeing: count(agreeing), quote }
}

impl Engine {
    /// A source's quote: checked like a tick, kept, and the market's index made again.
    pub(super) fn source_quote<S: Sink>(
        &mut self,
        ts: u64,
        source: SourceId,
        tick: Tick,
        sink: &mut S,
    ) -> Outcome {
        if let Err(reason) = self.validate_source_quote(source, &tick) {
            self.counters.ticks_rejected += 1;
            let ev =
                Event::PriceRejected { market: tick.market, reason, update_id: tick.update_id };
            sink.emit(Output::Event(ev));
            return Err(reason);
        }
        let m = &mut self.markets[usize::from(tick.market.0)];
        m.sources.quotes[usize::from(source.0)] =
            Quote { bid: tick.bid, ask: tick.ask, update_id: tick.update_id, at_ns: ts };
        self.apply_index(ts, tick.market, tick.exchange_time_us, sink);
        Ok(ReplyData::PriceApplied)
    }

    fn validate_source_quote(&self, source: SourceId, tick: &Tick) -> Result<(), Reason> {
        let m = self.market(tick.market)?;
        if source.0 >= m.cfg.sources {
            return Err(Reason::UnknownSource);
        }
        if tick.bid.0 <= 0 || tick.ask < tick.bid {
            return Err(Reason::InvalidPrice);
        }
        if tick.ask.0 > m.cfg.max_price_ticks {
            return Err(Reason::PriceOutOfRange);
        }
        if tick.update_id <= m.sources.quotes[usize::from(source.0)].update_id {
            return Err(Reason::StaleUpdate);
        }
        Ok(())
    }

    /// `market`'s guard and sources at `ts`, for the markets list (`None` without sources).
    pub(super) fn sources_item(&self, market: MarketId, ts: u64) -> Option<Item> {
        let m = self.markets.get(usize::from(market.0))?;
        (m.cfg.sources > 0).then(|| {
            let idx = index(&m.sources.quotes[..usize::from(m.cfg.sources)], ts, &m.cfg);
            Item::MarketSources {
                market,
                guard: m.sources.guard,
                sources: m.cfg.sources,
                fresh: idx.fresh,
                agreeing: idx.agreeing,
            }
        })
    }

    /// Every source's latest quote on `market`.
    pub(super) fn list_sources<S: Sink>(
        &self,
        rid: crate::command::RequestId,
        market: MarketId,
        sink: &mut S,
    ) -> Outcome {
        let m = self.market(market)?;
        let n = m.cfg.sources;
        for (i, q) in m.sources.quotes[..usize::from(n)].iter().enumerate() {
            let source = crate::command::SourceId(u8::try_from(i).expect("sources fit u8"));
            let item = Item::SourceQuote { market, source, bid: q.bid, ask: q.ask, at_ns: q.at_ns };
            sink.emit(Output::Item { request_id: rid, item });
        }
        Ok(ReplyData::List { count: u32::from(n) })
    }

    /// Time passes: every market with sources looks at which are still fresh.
    pub(super) fn source_check<S: Sink>(&mut self, ts: u64, sink: &mut S) -> Outcome {
        for i in 0..self.markets.len() {
            if self.markets[i].cfg.sources > 0 {
                let market = MarketId(u16::try_from(i).expect("market ids fit u16"));
                self.apply_index(ts, market, 0, sink);
            }
        }
        Ok(ReplyData::PriceApplied)
    }

    /// Makes `market`'s index again at `ts`: moves the guard, and applies the index's quote as
    /// a tick when it changed (or only marks the price fresh when it did not).
    fn apply_index<S: Sink>(&mut self, ts: u64, market: MarketId, exchange_us: u64, sink: &mut S) {
        let mi = usize::from(market.0);
        let m = &mut self.markets[mi];
        let idx = index(&m.sources.quotes[..usize::from(m.cfg.sources)], ts, &m.cfg);
        if !m.has_price && idx.quote.is_none() {
            return; // never priced: nothing to guard (opens are refused `no_price`)
        }
        let s = &mut m.sources;
        let target = if idx.recent == 0 {
            MarketMode::Halted
        } else if idx.quote.is_none() {
            MarketMode::ReduceOnly
        } else {
            if s.agreed_since_ns == 0 {
                s.agreed_since_ns = ts.max(1);
            }
            let quiet = ts.saturating_sub(s.agreed_since_ns) >= m.cfg.guard_quiet_ns;
            if quiet { MarketMode::Open } else { s.guard }
        };
        if idx.quote.is_none() {
            s.agreed_since_ns = 0;
        }
        if target != s.guard {
            s.guard = target;
            let ev = Event::PriceGuard {
                market,
                mode: target,
                fresh: idx.fresh,
                agreeing: idx.agreeing,
            };
            sink.emit(Output::Event(ev));
        }
        let Some((bid, ask)) = idx.quote else { return };
        if m.has_price && (bid, ask) == (m.bid, m.ask) {
            m.updated_at_ns = ts; // the index is confirmed: the price is fresh
            return;
        }
        let tick =
            Tick { market, bid, ask, update_id: m.update_id + 1, exchange_time_us: exchange_us };
        // The index's quote is within every source's checks, so a tick of it is always valid.
        let applied = self.tick(ts, tick, sink);
        debug_assert!(applied.is_ok(), "{applied:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(sources: u8, min: u8) -> MarketConfig {
        MarketConfig { sources, min_sources: min, ..MarketConfig::new("BTC_USDC", 2, 5) }
    }

    fn q(bid: i64, ask: i64, at_ns: u64) -> Quote {
        Quote { bid: Price(bid), ask: Price(ask), update_id: 1, at_ns }
    }

    #[test]
    fn one_source_gives_back_its_own_bid_and_ask() {
        for (bid, ask) in [(100, 101), (100, 100), (99, 104), (6_199_950, 6_200_050)] {
            let i = index(&[q(bid, ask, 0)], 0, &cfg(1, 1));
            assert_eq!(i.quote, Some((Price(bid), Price(ask))));
        }
    }

    #[test]
    fn a_wick_on_one_of_three_changes_nothing() {
        let quotes = [q(10_000, 10_002, 0), q(10_001, 10_003, 0), q(5_000, 5_002, 0)];
        let i = index(&quotes, 0, &cfg(3, 2));
        assert_eq!((i.fresh, i.agreeing), (3, 2));
        // median of mids 10_001 and 10_002 = 10_001.5, spread 2: bid ⌊10_000.5⌋, ask ⌈10_002.5⌉
        assert_eq!(i.quote, Some((Price(10_000), Price(10_003))));
    }

    #[test]
    fn two_agreeing_carry_the_index_and_two_disagreeing_guard() {
        let i = index(&[q(100, 102, 0), q(200, 202, 0)], 0, &cfg(2, 1));
        assert_eq!((i.agreeing, i.quote), (0, None), "neither of two can be told right");
        let i = index(&[q(100, 102, 0), q(100, 102, 0), q(200, 202, 0)], 0, &cfg(3, 2));
        assert_eq!((i.agreeing, i.quote), (2, Some((Price(100), Price(102)))));
    }

    #[test]
    fn stale_sources_are_left_out() {
        let c = cfg(3, 2);
        let age = c.max_source_age_ns;
        let quotes = [q(100, 102, 0), q(100, 102, 10), q(100, 102, age + 20)];
        let i = index(&quotes, age + 20, &c);
        assert_eq!((i.fresh, i.agreeing, i.quote), (1, 1, None), "one fresh of two needed");
        let i = index(&quotes, 3 * age, &c);
        assert_eq!((i.fresh, i.quote), (0, None));
        assert_eq!(i.recent, 1, "the last one is still recent");
        assert_eq!(index(&quotes, 4 * age, &c).recent, 0);
    }

    proptest::proptest! {
        /// Whatever the quotes, the index's quote lies within the agreeing sources' spread of
        /// prices, bid ≤ ask, and the order of sources does not matter.
        #[test]
        fn the_index_is_bounded_and_order_free(raw in proptest::collection::vec((1i64..1_000_000, 0i64..1_000), 1..8)) {
            let quotes: Vec<Quote> = raw.iter().map(|&(b, s)| q(b, b + s, 0)).collect();
            let n = u8::try_from(quotes.len()).unwrap();
            let c = MarketConfig { max_deviation_bps: 10_000, ..cfg(n, 1) };
            let i = index(&quotes, 0, &c);
            let mut reversed = quotes.clone();
            reversed.reverse();
            proptest::prop_assert_eq!(i, index(&reversed, 0, &c));
            if let Some((bid, ask)) = i.quote {
                let lo = quotes.iter().map(|q| q.bid.0).min().unwrap();
                let hi = quotes.iter().map(|q| q.ask.0).max().unwrap();
                proptest::prop_assert!(bid <= ask && lo <= bid.0 && ask.0 <= hi, "{:?} {:?}", i, quotes);
            }
        }
    }
}
