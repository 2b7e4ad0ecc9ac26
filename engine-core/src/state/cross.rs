//! Cross margin (docs/DESIGN.md, "Cross margin"): an account whose balance, position margins
//! and unrealized PnL defend each other, warned at the margin-call level and stopped out, most
//! losing position first, at the stop-out level.
//!
//! A cross account's danger depends on every market it holds, yet a quiet tick must not look at
//! any account. Each market keeps a band around its price; each cross account keeps, in each
//! market it holds, one trigger key: the price of that market at which the account would reach
//! its level if every other market stood at the adverse edge of its band. A tick costs two
//! comparisons with the band and two with the nearest keys. An account is checked exactly
//! ("reviewed") only when its key fires (a false alarm is re-keyed, never closed), when a market
//! it holds leaves its band (the band is re-centred and the market's cross accounts re-keyed,
//! counted as `band_crossings`), or when the account itself changes.

use super::{
    AccountId, Change, CloseReason, Engine, Event, Output, PosRef, Position, Price, Side, Sink,
};
use crate::event::CrossLevel;
use crate::index::{OrderKey, OrderedSet};
use crate::num::{PPM_ONE, Ppm, Usdc};

/// Not in a market's holders.
const NOT_HELD: u32 = u32::MAX;

/// A cross account's entries in the markets' trigger sets: 24 bytes in the account and 16 a
/// market in one allocation (a cross account holding positions in 3 markets over 10 positions
/// costs about 9 bytes a position).
#[derive(Debug, Clone, Default)]
pub(crate) struct CrossBook {
    /// Per market: its key and its place among the market's holders.
    slots: Box<[CrossSlot]>,
    /// The margin call goes out at the next crossing.
    pub(crate) armed: bool,
    /// Waiting to be reviewed.
    pub(crate) dirty: bool,
    /// The account itself changed since its last review (a command, a close, a fill,
    /// financing): only then may a review re-arm its margin call, so that when a call goes out
    /// never depends on when reviews happened (which depends on the bands).
    pub(crate) changed: bool,
}

/// One market's: the trigger key (side 0: none) and the place among its holders.
#[derive(Debug, Clone, Copy)]
struct CrossSlot {
    key: i64,
    held_at: u32,
    /// 0: no key, 1: on the bid (a long key), 2: on the ask.
    side: u8,
    /// The side margined at the market's hedged-margin rate (the smaller by quantity while the
    /// account holds both): 0 none, 1 long, 2 short. Set by each review and re-key.
    hedged: u8,
}

const _: () = assert!(std::mem::size_of::<CrossSlot>() == 16);

impl CrossSlot {
    const EMPTY: CrossSlot = CrossSlot { key: 0, held_at: NOT_HELD, side: 0, hedged: 0 };

    fn key(self) -> Option<(Side, i64)> {
        match self.side {
            1 => Some((Side::Long, self.key)),
            2 => Some((Side::Short, self.key)),
            _ => None,
        }
    }

    fn set_key(&mut self, key: Option<(Side, i64)>) {
        (self.side, self.key) = match key {
            None => (0, 0),
            Some((Side::Long, k)) => (1, k),
            Some((Side::Short, k)) => (2, k),
        };
    }
}

impl CrossBook {
    pub(crate) fn new(markets: usize) -> CrossBook {
        let slots = vec![CrossSlot::EMPTY; markets].into_boxed_slice();
        CrossBook { slots, armed: true, dirty: false, changed: false }
    }
}

/// A market's side of cross margin: its band and the cross accounts' trigger keys.
#[derive(Debug, Clone)]
pub(crate) struct CrossMarket {
    /// (lowest bid, highest ask) of a tick that needs nothing here: inside the band and short
    /// of every key. The quiet tick's two comparisons; (MIN, MAX) while nobody holds the market.
    quiet: (i64, i64),
    /// Keys `(price, account index)` of accounts that fire when the bid falls to the price.
    pub(crate) on_bid: OrderedSet<OrderKey>,
    /// Keys of accounts that fire when the ask rises to the price.
    pub(crate) on_ask: OrderedSet<OrderKey>,
    /// (low, high): while bid ≥ low and ask ≤ high, every key computed with this band holds.
    /// Kept around the price while some cross account holds the market; re-centred when the
    /// first one arrives.
    pub(crate) band: (Price, Price),
    /// Indices of the cross accounts holding a position here.
    pub(crate) holders: Vec<u32>,
}

impl Default for CrossMarket {
    fn default() -> CrossMarket {
        CrossMarket {
            quiet: (i64::MIN, i64::MAX),
            on_bid: OrderedSet::default(),
            on_ask: OrderedSet::default(),
            band: (Price(0), Price(0)),
            holders: Vec::new(),
        }
    }
}

impl CrossMarket {
    /// The quiet range again, after the band, a key or the holders changed. O(1).
    fn refresh_quiet(&mut self) {
        if self.holders.is_empty() {
            // Keys exist only in markets an account holds.
            debug_assert!(self.on_bid.last_key().is_none() && self.on_ask.len() == 0);
            self.quiet = (i64::MIN, i64::MAX);
            return;
        }
        let bid_min = self.on_bid.last_key().map_or(i64::MIN, |k| k.0.saturating_add(1));
        let ask_max = self.on_ask.first_key().map_or(i64::MAX, |k| k.0.saturating_sub(1));
        self.quiet = (bid_min.max(self.band.0.0), ask_max.min(self.band.1.0));
    }
}

/// Per (market, side) sums of one account's positions, for its keys (one pass over them).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Legs {
    /// Σ quantity.
    qty: i128,
    /// Σ of the positions' terms at the band's adverse edge (F units, below).
    at_edge: i128,
    /// Σ q × num × (10^12 ∓ level × mmr): the slope of F in this market's price.
    slope: i128,
    /// Σ q × entry × num.
    entry_value: i128,
}

/// `level` applied to an amount in F units: F = 10^6 × equity − level × maintenance margin,
/// in millionths of a micro-USDC; the account is at or below `level` exactly when F ≤ 0.
pub(super) fn below(l: &CrossLevel, level: Ppm) -> bool {
    l.equity.0 * i128::from(PPM_ONE) <= i128::from(level.0) * l.maintenance_margin.0
}

impl Engine {
    /// Marks a cross account for review at the end of the command (`changed`: the account
    /// itself changed, so its margin call may re-arm).
    pub(super) fn cross_touch(&mut self, ai: usize, changed: bool) {
        if !self.is_cross(ai) {
            return;
        }
        let book = &mut self.accounts[ai].cross;
        book.changed |= changed;
        if !book.dirty {
            book.dirty = true;
            self.cross_dirty.push(u32::try_from(ai).expect("accounts fit u32"));
        }
    }

    /// Reviews every account marked, ascending, until none is (a review's closes mark its own
    /// account again, which the flag skips).
    pub(super) fn cross_settle<S: Sink>(&mut self, ts: u64, sink: &mut S) {
        while !self.cross_dirty.is_empty() {
            let mut work = std::mem::take(&mut self.cross_work);
            std::mem::swap(&mut work, &mut self.cross_dirty);
            work.sort_unstable();
            for &ai in &work {
                let ai = super::usize_from(ai);
                if self.accounts[ai].cross.dirty {
                    self.cross_review(ts, ai, sink);
                }
            }
            work.clear();
            self.cross_work = work;
        }
    }

    /// A tick on market `mi`: nothing when it is inside the quiet range (two comparisons);
    /// else see [`Engine::cross_tick_reached`].
    #[inline]
    pub(super) fn cross_tick(&mut self, mi: usize) {
        let m = &self.markets[mi];
        if m.bid.0 < m.cross.quiet.0 || m.ask.0 > m.cross.quiet.1 {
            self.cross_tick_reached(mi);
        }
    }

    /// Re-centres a band the prices left and marks every cross account holding the market
    /// (keys exist only for holders, so that covers every key the prices reached); else marks
    /// the accounts whose keys the prices reached.
    #[cold]
    fn cross_tick_reached(&mut self, mi: usize) {
        let m = &mut self.markets[mi];
        let (bid, ask) = (m.bid, m.ask);
        let (lo, hi) = m.cross.band;
        if bid < lo || ask > hi {
            m.cross.band = band(bid, ask, m.cfg.cross_band_bps);
            m.cross.refresh_quiet();
            self.counters.band_crossings += 1;
            let holders = std::mem::take(&mut self.markets[mi].cross.holders);
            for &ai in &holders {
                self.cross_touch(super::usize_from(ai), false);
            }
            self.markets[mi].cross.holders = holders;
            return;
        }
        let c = &self.markets[mi].cross;
        let fired =
            c.on_bid.last_key().is_some_and(|k| k.0 >= bid.0) || c.on_ask.any_at_or_below(ask.0);
        if !fired {
            return;
        }
        let mut keys = std::mem::take(&mut self.key_scratch);
        keys.clear();
        c.on_bid.extend_at_or_above(bid.0, &mut keys);
        c.on_ask.extend_at_or_below(ask.0, &mut keys);
        for &(_, ai) in &keys {
            self.cross_touch(usize::try_from(ai).expect("an account index"), false);
        }
        keys.clear();
        self.key_scratch = keys;
    }

    /// After a restore: every cross account keyed (each market's band centred on its price
    /// when its first holder arrives).
    pub(crate) fn cross_restore(&mut self) {
        for ai in 0..self.accounts.len() {
            if self.is_cross(ai) {
                self.refresh_hedges(ai);
                self.cross_rekey(ai);
            }
        }
    }

    /// The account's margin level now, exactly: each position's PnL rounded down and its
    /// maintenance margin rounded up at its mark. O(its positions).
    pub(crate) fn cross_level(&self, ai: usize) -> CrossLevel {
        let a = &self.accounts[ai];
        let (mut equity, mut mm) = (a.available.0, 0i128);
        for &r in &a.open {
            let p = self.positions.get(r);
            let m = &self.markets[usize::from(p.market.0)];
            let mark = m.mark(p.side);
            equity += p.margin().0 + m.scale.pnl_floor(p.side, p.entry, mark, p.qty).0;
            let (rate, cum) = self.maintenance_terms(ai, p);
            mm += m.scale.rate_of_value_ceil(rate, mark, p.qty).0 - cum.0;
        }
        CrossLevel {
            equity: Usdc(equity),
            maintenance_margin: Usdc(mm),
            level: level_of(equity, mm),
        }
    }

    /// Checks the account exactly: stops it out at the stop-out level (most losing position
    /// first, until it recovers), warns it at the margin-call level, re-keys it.
    fn cross_review<S: Sink>(&mut self, ts: u64, ai: usize, sink: &mut S) {
        self.counters.cross_checks += 1;
        let account = AccountId::at(ai);
        let (stop, call) = (self.stop_out_level(ai), self.margin_call_level(ai));
        self.refresh_hedges(ai);
        let mut level = self.cross_level(ai);
        let held = !self.accounts[ai].open.is_empty();
        if held && below(&level, stop) {
            self.record(sink, Change::StopOut { account, level });
            while let Some(r) = self.most_losing(ai) {
                let p = *self.positions.get(r);
                self.explain(&p, (crate::event::Trigger::StopOut, Price(0)), sink);
                let qty = p.qty;
                let view = self.close_part(ts, r, qty, CloseReason::StopOut, sink);
                sink.emit(Output::Event(Event::PositionClosed(view)));
                self.counters.stop_outs += 1;
                self.refresh_hedges(ai);
                level = self.cross_level(ai);
                if !below(&level, stop) {
                    break;
                }
            }
            self.accounts[ai].cross.armed = false;
        } else if call.0 > 0 && held && self.accounts[ai].cross.armed && below(&level, call) {
            self.record(sink, Change::AccountMarginCall { account, level });
            self.accounts[ai].cross.armed = false;
        }
        let book = &mut self.accounts[ai].cross;
        if book.changed && (call.0 == 0 || !below(&level, call)) {
            book.armed = true;
        }
        book.changed = false;
        book.dirty = false;
        self.cross_rekey(ai);
    }

    /// The `top` cross accounts nearest their stop-out, lowest level first (the risk view): the
    /// candidates are the accounts whose keys are nearest each market's price (an account is
    /// nearest its level in the market where its key is nearest), checked exactly. O(markets ×
    /// top × their positions); a query, not the hot path.
    pub(super) fn cross_nearest(&self, top: usize) -> Vec<(AccountId, CrossLevel)> {
        let mut candidates: Vec<u64> = Vec::new();
        for m in &self.markets {
            let (bid, ask) = (m.cross.on_bid.iter().rev(), m.cross.on_ask.iter());
            candidates.extend(bid.take(top).chain(ask.take(top)).map(|(_, ai)| ai));
        }
        candidates.sort_unstable();
        candidates.dedup();
        let mut levels: Vec<(AccountId, CrossLevel)> = candidates
            .into_iter()
            .map(|ai| {
                let ai = usize::try_from(ai).expect("an account index");
                let id = AccountId::at(ai);
                (id, self.cross_level(ai))
            })
            .collect();
        levels.sort_by_key(|(id, l)| (l.level, *id));
        levels.truncate(top);
        levels
    }

    /// The open position with the largest loss at its mark (lowest id among equals).
    fn most_losing(&self, ai: usize) -> Option<PosRef> {
        let pnl = |r: &PosRef| {
            let p = self.positions.get(*r);
            let m = &self.markets[usize::from(p.market.0)];
            m.scale.pnl_floor(p.side, p.entry, m.mark(p.side), p.qty)
        };
        // `min_by_key` keeps the first of equal keys: the open list ascends by id.
        self.accounts[ai].open.iter().copied().min_by_key(pnl)
    }

    /// A position's maintenance rate and amount in its cross account: its bracket's, or on the
    /// hedged (smaller) side of a market where the account holds both, the market's
    /// `hedged_margin_rate` of them (the rate rounded up, the amount down: the house's favour).
    pub(super) fn maintenance_terms(&self, ai: usize, p: &Position) -> (Ppm, Usdc) {
        let m = &self.markets[usize::from(p.market.0)];
        let (rate, cum) = (p.mmr(), m.cum(p));
        let hedged = self.accounts[ai].cross.slots[usize::from(p.market.0)].hedged;
        if hedged != 1 + u8::try_from(side_index(p.side)).expect("0 or 1") {
            return (rate, cum);
        }
        let (h, one) = (i128::from(m.cfg.hedged_margin_rate.0), i128::from(PPM_ONE));
        let rate = crate::num::div_ceil(i128::from(rate.0) * h, one);
        let rate = Ppm(i64::try_from(rate).expect("at most the rate"));
        (rate, Usdc(crate::num::div_floor(cum.0 * h, one)))
    }

    /// Which side of each market is hedged in the account (see [`CrossSlot::hedged`]), from
    /// its positions now. O(its positions + markets).
    fn refresh_hedges(&mut self, ai: usize) {
        if self.markets.iter().all(|m| m.cfg.hedged_margin_rate.0 == PPM_ONE) {
            return; // no market gives relief: every slot stays 0
        }
        let mut legs = std::mem::take(&mut self.legs_scratch);
        legs.clear();
        legs.resize(self.markets.len() * 2, Legs::default());
        for &r in &self.accounts[ai].open {
            let p = self.positions.get(r);
            legs[usize::from(p.market.0) * 2 + side_index(p.side)].qty += i128::from(p.qty.0);
        }
        for (mi, m) in self.markets.iter().enumerate() {
            let (long, short) = (legs[mi * 2].qty, legs[mi * 2 + 1].qty);
            let relief = m.cfg.hedged_margin_rate.0 < PPM_ONE && long > 0 && short > 0;
            self.accounts[ai].cross.slots[mi].hedged = match (relief, long >= short) {
                (false, _) => 0,
                (true, true) => 2,
                (true, false) => 1,
            };
        }
        self.legs_scratch = legs;
    }

    /// Replaces the account's keys and its places among the markets' holders, in O(its
    /// positions and the markets). The hedged sides must be current (`refresh_hedges`: a review
    /// does it first).
    pub(super) fn cross_rekey(&mut self, ai: usize) {
        // A market nobody else holds has a stale band: centre it on the price first.
        for &r in &self.accounts[ai].open {
            let m = &mut self.markets[usize::from(self.positions.get(r).market.0)];
            if m.cross.holders.is_empty() {
                m.cross.band = band(m.bid, m.ask, m.cfg.cross_band_bps);
            }
        }
        let a = &self.accounts[ai];
        let call = self.margin_call_level(ai);
        let level = if a.cross.armed && call.0 > 0 { call } else { self.stop_out_level(ai) };
        let mut legs = std::mem::take(&mut self.legs_scratch);
        legs.clear();
        legs.resize(self.markets.len() * 2, Legs::default());
        // F at the edges of every position, and the constant part: 10^6 × (available + Σ
        // margins) + level × Σ maintenance amounts − the rounding slack.
        let l = i128::from(level.0);
        let one = i128::from(PPM_ONE);
        let mut base = a.available.0 * one;
        for &r in &a.open {
            let p = self.positions.get(r);
            let m = &self.markets[usize::from(p.market.0)];
            let edge = match p.side {
                Side::Long => m.cross.band.0,
                Side::Short => m.cross.band.1,
            };
            let pnl = m.scale.pnl_floor(p.side, p.entry, edge, p.qty).0;
            let (mmr, cum) = self.maintenance_terms(ai, p);
            let mm = m.scale.rate_of_value_ceil(mmr, edge, p.qty).0;
            let at_edge = pnl * one - l * mm;
            base += p.margin().0 * one + l * cum.0 - (one + l);
            let leg = &mut legs[usize::from(p.market.0) * 2 + side_index(p.side)];
            let (num, q) = (m.scale.num(), i128::from(p.qty.0));
            let rate = l * i128::from(mmr.0);
            leg.qty += q;
            leg.at_edge += at_edge;
            leg.slope += q * num * (one * one - if p.side == Side::Long { rate } else { -rate });
            leg.entry_value += q * i128::from(p.entry.0) * num;
        }
        let all_edges: i128 = legs.iter().map(|g| g.at_edge).sum();
        for mi in 0..self.markets.len() {
            let (long, short) = (legs[mi * 2], legs[mi * 2 + 1]);
            let key = if long.qty == 0 && short.qty == 0 {
                None
            } else {
                let (side, leg) =
                    if long.qty >= short.qty { (Side::Long, long) } else { (Side::Short, short) };
                let rest = base + all_edges - leg.at_edge;
                Some((side, self.key_price(mi, side, rest, leg)))
            };
            self.set_cross_key(ai, mi, key, long.qty + short.qty > 0);
        }
        self.legs_scratch = legs;
    }

    /// The price of market `mi` at which F reaches 0 with the leg priced there and everything
    /// else at `rest`, rounded toward the mark and clamped to it (an account already within
    /// reach fires at the next adverse tick); `i64::MAX` / 0 for never. Overflow (amounts far
    /// beyond any real account) clamps to the mark too: conservative, never late.
    fn key_price(&self, mi: usize, side: Side, rest: i128, leg: Legs) -> i64 {
        let m = &self.markets[mi];
        if leg.slope <= 0 {
            // Configuration keeps level × rate < 1, so this is unreachable; conservative anyway.
            return if side == Side::Long { m.bid.0 } else { m.ask.0 };
        }
        let den_one = m.scale.den() * i128::from(PPM_ONE);
        let scaled = rest.checked_mul(den_one);
        let entry = leg.entry_value.checked_mul(i128::from(PPM_ONE) * i128::from(PPM_ONE));
        match side {
            // F(p) ≤ 0 ⇔ p ≤ (10^12 × E − den × 10^6 × rest) / slope: fires when bid ≤ key.
            Side::Long => {
                let x = entry.zip(scaled).and_then(|(e, s)| e.checked_sub(s));
                let key = x.map(|x| crate::num::div_ceil(x, leg.slope));
                match key {
                    Some(k) if k <= 0 => 0,
                    Some(k) if k < i128::from(m.bid.0) => i64::try_from(k).expect("below the bid"),
                    _ => m.bid.0,
                }
            }
            // F(p) ≤ 0 ⇔ p ≥ (den × 10^6 × rest + 10^12 × E) / slope: fires when ask ≥ key.
            Side::Short => {
                let y = entry.zip(scaled).and_then(|(e, s)| e.checked_add(s));
                let key = y.map(|y| crate::num::div_floor(y, leg.slope));
                match key {
                    Some(k) if k > i128::from(m.ask.0) => i64::try_from(k).unwrap_or(i64::MAX),
                    _ => m.ask.0,
                }
            }
        }
    }

    fn set_cross_key(&mut self, ai: usize, mi: usize, key: Option<(Side, i64)>, holds: bool) {
        let tag = u64::try_from(ai).expect("indices fit u64");
        let (a, m) = (&mut self.accounts[ai], &mut self.markets[mi]);
        let old = a.cross.slots[mi].key();
        if old != key {
            if let Some((side, k)) = old {
                let set =
                    if side == Side::Long { &mut m.cross.on_bid } else { &mut m.cross.on_ask };
                assert!(set.remove(&(k, tag)), "a cross key is in its market's set");
            }
            // A long's key of 0 never fires (bids are positive): not stored.
            let key = key.filter(|&(side, k)| side == Side::Short || k > 0);
            if let Some((side, k)) = key {
                let set =
                    if side == Side::Long { &mut m.cross.on_bid } else { &mut m.cross.on_ask };
                set.insert((k, tag));
            }
            a.cross.slots[mi].set_key(key);
        }
        let at = a.cross.slots[mi].held_at;
        if holds && at == NOT_HELD {
            a.cross.slots[mi].held_at =
                u32::try_from(m.cross.holders.len()).expect("accounts fit u32");
            m.cross.holders.push(u32::try_from(ai).expect("accounts fit u32"));
        } else if !holds && at != NOT_HELD {
            a.cross.slots[mi].held_at = NOT_HELD;
            let at = super::usize_from(at);
            m.cross.holders.swap_remove(at);
            if let Some(&moved) = m.cross.holders.get(at) {
                self.accounts[super::usize_from(moved)].cross.slots[mi].held_at =
                    u32::try_from(at).expect("accounts fit u32");
            }
        }
        self.markets[mi].cross.refresh_quiet();
    }
}

fn side_index(side: Side) -> usize {
    match side {
        Side::Long => 0,
        Side::Short => 1,
    }
}

/// `equity / mm` in millionths, rounded down; `i64::MAX` when there is no maintenance margin
/// or the ratio does not fit.
fn level_of(equity: i128, mm: i128) -> Ppm {
    if mm <= 0 {
        return Ppm(i64::MAX);
    }
    let level = crate::num::div_floor(equity * i128::from(PPM_ONE), mm);
    Ppm(i64::try_from(level).unwrap_or(if level < 0 { i64::MIN } else { i64::MAX }))
}

/// The band around a new price: `bid − ⌈bid × w⌉` to `ask + ⌈ask × w⌉`, at least one tick.
fn band(bid: Price, ask: Price, bps: u32) -> (Price, Price) {
    let w = |p: Price| {
        let d = crate::num::div_ceil(i128::from(p.0) * i128::from(bps), 10_000);
        i64::try_from(d).expect("at most 20 % of a price").max(1)
    };
    (Price((bid.0 - w(bid)).max(1)), Price(ask.0 + w(ask)))
}
