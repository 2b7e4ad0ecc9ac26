//! A seeded random walk of best bid/ask per market, in exact integer ticks.
//!
//! Each step moves one market's mid by a uniform random amount of at most `volatility_ppm` of
//! the mid (at least one tick when the walk moves), keeps a spread of `spread_ppm` (at least one
//! tick), and gives the tick the next update id. The same seed gives the same prices.
//! [`drive`] paces it into a sink.

use std::future::Future;
use std::time::Duration;

use engine_core::command::{MarketId, Tick};
use engine_core::config::MarketConfig;
use engine_core::num::Price;
use ground::ports::TickSink;
use ground::time::now_ns;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};

use crate::health::FeedHealth;

/// Settings of the walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyntheticConfig {
    /// RNG seed.
    pub seed: u64,
    /// Largest move of one step, in parts per million of the mid (1000 = 0.1%).
    pub volatility_ppm: i64,
    /// Spread between bid and ask, in parts per million of the mid.
    pub spread_ppm: i64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig { seed: 42, volatility_ppm: 500, spread_ppm: 20 }
    }
}

#[derive(Clone, Debug)]
struct Walk {
    market: MarketId,
    mid: i64,
    max_price: i64,
    update_id: u64,
}

/// The generator: call [`SyntheticFeed::next_tick`] for the next tick, markets in turn.
#[derive(Clone, Debug)]
pub struct SyntheticFeed {
    cfg: SyntheticConfig,
    rng: Xoshiro256PlusPlus,
    walks: Vec<Walk>,
    turn: usize,
}

/// A plausible starting price for well-known symbols, in whole USDC.
fn start_price(symbol: &str) -> i64 {
    match symbol.split('_').next().unwrap_or("") {
        "BTC" => 60_000,
        "ETH" => 3_000,
        "SOL" => 150,
        _ => 100,
    }
}

impl SyntheticFeed {
    /// A walk over `markets` (in engine market-id order).
    pub fn new(cfg: SyntheticConfig, markets: &[MarketConfig]) -> SyntheticFeed {
        let walks = markets
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let scale = 10i64.saturating_pow(m.price_decimals);
                Walk {
                    market: MarketId(u16::try_from(i).unwrap_or(u16::MAX)),
                    mid: start_price(&m.symbol)
                        .saturating_mul(scale)
                        .min(m.max_price_ticks / 2)
                        .max(1),
                    max_price: m.max_price_ticks,
                    update_id: 0,
                }
            })
            .collect();
        SyntheticFeed { rng: Xoshiro256PlusPlus::seed_from_u64(cfg.seed), cfg, walks, turn: 0 }
    }

    /// Continues where a previous run left `market`: after its last update id (the engine
    /// refuses an update id it has seen, as `stale_update`) and from its last bid.
    pub fn resume(&mut self, market: MarketId, update_id: u64, bid: Price) {
        if let Some(w) = self.walks.iter_mut().find(|w| w.market == market) {
            w.update_id = w.update_id.max(update_id);
            if bid.0 > 0 {
                w.mid = bid.0.min(w.max_price);
            }
        }
    }

    /// The next tick, for the markets in turn; `exchange_time_us` is stamped on it.
    pub fn next_tick(&mut self, exchange_time_us: u64) -> Option<Tick> {
        if self.walks.is_empty() {
            return None;
        }
        let i = self.turn % self.walks.len();
        self.turn = self.turn.wrapping_add(1);
        let vol = self.cfg.volatility_ppm.max(0);
        let step_ppm = if vol == 0 { 0 } else { self.rng.random_range(-vol..=vol) };
        let w = &mut self.walks[i];
        let step = i128::from(w.mid) * i128::from(step_ppm) / 1_000_000;
        let step = i64::try_from(step).unwrap_or(0);
        let step = if step == 0 && step_ppm != 0 { step_ppm.signum() } else { step };
        let spread = (i128::from(w.mid) * i128::from(self.cfg.spread_ppm) / 1_000_000).max(1);
        let spread = i64::try_from(spread).unwrap_or(1);
        w.mid = (w.mid + step).clamp(1, (w.max_price - spread).max(1));
        w.update_id += 1;
        Some(Tick {
            market: w.market,
            bid: Price(w.mid),
            ask: Price(w.mid + spread),
            update_id: w.update_id,
            exchange_time_us,
        })
    }
}

/// Publishes one tick of `feed` into `sink` every `pause` until `shutdown`. A late timer does
/// not burst to catch up: prices supersede each other.
pub async fn drive<S: TickSink>(
    mut feed: SyntheticFeed,
    pause: Duration,
    health: &FeedHealth,
    sink: &mut S,
    shutdown: impl Future<Output = ()>,
) {
    let mut every = tokio::time::interval(pause);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = every.tick() => {
                let now = now_ns();
                if let Some(tick) = feed.next_tick(now / 1_000) {
                    health.count_tick(&tick, now);
                    sink.publish(tick);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_walk_continues_after_the_last_update_id_and_price() {
        let markets = vec![MarketConfig::new("BTC_USDC", 2, 5)];
        let mut feed = SyntheticFeed::new(SyntheticConfig::default(), &markets);
        feed.resume(MarketId(0), 500, Price(6_100_000));
        let t = feed.next_tick(0).unwrap();
        assert_eq!(t.update_id, 501);
        assert!((t.bid.0 - 6_100_000).abs() <= 6_100_000 / 1_000, "{t:?}");
    }

    #[test]
    fn same_seed_same_prices_and_valid_ticks() {
        let markets = MarketConfig::defaults();
        let mut a = SyntheticFeed::new(SyntheticConfig::default(), &markets);
        let mut b = SyntheticFeed::new(SyntheticConfig::default(), &markets);
        let mut last = [0u64; 3];
        for i in 0..3_000 {
            let t = a.next_tick(i).unwrap();
            assert_eq!(Some(t), b.next_tick(i));
            assert!(t.bid.0 > 0 && t.ask > t.bid, "{t:?}");
            let m = usize::from(t.market.0);
            assert!(t.update_id > last[m]);
            last[m] = t.update_id;
        }
        let other = SyntheticConfig { seed: 7, ..SyntheticConfig::default() };
        let mut c = SyntheticFeed::new(other, &markets);
        let differs = (0..30).any(|i| c.next_tick(i) != a.next_tick(i));
        assert!(differs, "a different seed gives a different walk");
    }

    #[test]
    fn starts_near_real_prices() {
        let mut f = SyntheticFeed::new(SyntheticConfig::default(), &MarketConfig::defaults());
        let btc = f.next_tick(0).unwrap();
        assert!((5_900_000..6_100_000).contains(&btc.bid.0), "{btc:?}");
    }
}
