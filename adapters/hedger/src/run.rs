//! The hedging loop: each round settles orders whose outcome is unknown, checks that the venue
//! holds what the journal says, then trades each market's hedge toward its target.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tracing::{error, info, warn};

use crate::journal::{Journal, JournalError, Record};
use crate::plan::{self, Policy};
use crate::venue::{Order, Venue, VenueError};
use crate::{Book, Exposure};

/// How one market is hedged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarketHedge {
    /// The venue's symbol for it.
    pub venue_symbol: String,
    /// Its quantity decimals (the engine's and the venue's steps agree).
    pub qty_decimals: u32,
    /// Band and minimum order.
    pub policy: Policy,
}

/// The hedger's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The hedged markets, by the engine's symbol.
    pub markets: BTreeMap<String, MarketHedge>,
    /// Consecutive failed rounds before it stops.
    pub max_errors: u32,
}

/// What the hedger is doing, for `/status` and `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Status {
    /// Why it stopped hedging (it then sends nothing until restarted).
    pub halted: Option<String>,
    /// Failed rounds in a row.
    pub consecutive_errors: u32,
    /// The last failure.
    pub last_error: Option<String>,
    /// The hedge position per market, in steps.
    pub positions: BTreeMap<String, i64>,
    /// What the hedge trades cost (negative) or brought, micro-USDC.
    pub cash_micros: i128,
    /// Orders sent.
    pub orders: u64,
    /// Orders whose outcome is not known yet.
    pub pending: usize,
    /// Rounds completed.
    pub rounds: u64,
}

/// Why a round ended early.
#[derive(Debug, thiserror::Error)]
pub enum RoundError {
    /// The venue failed; the round is tried again.
    #[error("venue: {0}")]
    Venue(#[from] VenueError),
    /// The clients' exposure could not be read.
    #[error("book: {0}")]
    Book(String),
    /// The journal could not be written: the hedger stops (it must not act unrecorded).
    #[error("journal: {0}")]
    Journal(#[from] JournalError),
    /// The venue's position differs from the journal's: the hedger stops.
    #[error("{0}")]
    Diverged(String),
    /// An order is still working at the venue: the round waits for it.
    #[error("order {0} still working")]
    Working(u32),
}

/// The hedger.
pub struct Hedger<V: Venue, B: Book> {
    venue: V,
    book: B,
    journal: Journal,
    cfg: Config,
    status: Arc<Mutex<Status>>,
}

impl<V: Venue, B: Book> std::fmt::Debug for Hedger<V, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hedger")
            .field("journal", &self.journal)
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl<V: Venue, B: Book> Hedger<V, B> {
    /// A hedger trading on `venue` from `book`'s exposure, recording in `journal`.
    pub fn new(venue: V, book: B, journal: Journal, cfg: Config) -> Hedger<V, B> {
        let h = Hedger { venue, book, journal, cfg, status: Arc::default() };
        h.publish(|_| {});
        h
    }

    /// Its status, shared (the metrics listener reads it).
    pub fn status(&self) -> Arc<Mutex<Status>> {
        Arc::clone(&self.status)
    }

    fn publish(&self, f: impl FnOnce(&mut Status)) {
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        s.positions = self.journal.positions().clone();
        s.cash_micros = self.journal.cash_micros();
        s.orders = self.journal.orders();
        s.pending = self.journal.pending().len();
        f(&mut s);
    }

    fn halted(&self) -> bool {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).halted.is_some()
    }

    /// One round at `now_ms`. A failure is counted; `max_errors` in a row, a divergence or a
    /// journal failure stop the hedger.
    pub async fn step(&mut self, now_ms: u64) {
        if self.halted() {
            return;
        }
        match self.round(now_ms).await {
            Ok(()) => self.publish(|s| {
                s.consecutive_errors = 0;
                s.rounds += 1;
            }),
            Err(RoundError::Working(id)) => {
                info!(client_id = id, "hedger: an order is still working")
            }
            Err(e) => {
                let stop = matches!(e, RoundError::Diverged(_) | RoundError::Journal(_));
                let max = self.cfg.max_errors;
                self.publish(|s| {
                    s.consecutive_errors += 1;
                    s.last_error = Some(e.to_string());
                    if stop || s.consecutive_errors >= max {
                        s.halted = Some(e.to_string());
                    }
                });
                if self.halted() {
                    error!(error = %e, "ALERT: hedger stopped hedging: restart it once the venue and the journal agree");
                } else {
                    warn!(error = %e, "hedger round failed; retrying");
                }
            }
        }
    }

    async fn round(&mut self, now_ms: u64) -> Result<(), RoundError> {
        self.settle(now_ms).await?;
        for (symbol, m) in &self.cfg.markets {
            let theirs = self.venue.position(&m.venue_symbol, m.qty_decimals).await?;
            let ours = self.journal.position(symbol);
            if theirs != ours {
                return Err(RoundError::Diverged(format!(
                    "{symbol}: the venue holds {theirs} steps, the journal {ours}"
                )));
            }
        }
        let exposure = self.book.exposure().await.map_err(RoundError::Book)?;
        let markets: Vec<(String, MarketHedge)> =
            self.cfg.markets.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        for (symbol, m) in markets {
            let e = exposure.get(&symbol).copied().unwrap_or(Exposure::default());
            let target = plan::target(e, m.policy);
            if let Some(qty) = plan::order(target, self.journal.position(&symbol), m.policy) {
                self.trade(&symbol, &m, qty, now_ms).await?;
            }
        }
        Ok(())
    }

    /// Orders whose outcome is unknown are looked up at the venue by client id: a fill is
    /// recorded once, an order the venue never had is recorded as such; nothing is sent before.
    async fn settle(&mut self, now_ms: u64) -> Result<(), RoundError> {
        for p in self.journal.pending() {
            let Some(m) = self.cfg.markets.get(&p.symbol) else {
                return Err(RoundError::Diverged(format!(
                    "order {} of an unhedged market {}",
                    p.client_id, p.symbol
                )));
            };
            let found = self.venue.find(&m.venue_symbol, p.client_id, m.qty_decimals).await?;
            let result = match found {
                Some(f) if f.status == "new" => return Err(RoundError::Working(p.client_id)),
                Some(f) => Record::Result {
                    client_id: p.client_id,
                    status: f.status,
                    executed: f.executed,
                    quote_micros: f.quote_micros,
                    reason: None,
                    at_ms: now_ms,
                },
                None => Record::Result {
                    client_id: p.client_id,
                    status: "not_found".into(),
                    executed: 0,
                    quote_micros: 0,
                    reason: Some("the venue has no order with this client id".into()),
                    at_ms: now_ms,
                },
            };
            info!(client_id = p.client_id, ?result, "hedger: settled an order of unknown outcome");
            self.journal.append(&result)?;
        }
        Ok(())
    }

    /// Writes the intent, sends the order, records what came of it.
    async fn trade(
        &mut self,
        symbol: &str,
        m: &MarketHedge,
        qty: i64,
        now_ms: u64,
    ) -> Result<(), RoundError> {
        let client_id = self.journal.next_client_id()?;
        let intent = Record::Intent { client_id, symbol: symbol.to_owned(), qty, at_ms: now_ms };
        self.journal.append(&intent)?;
        let order =
            Order { client_id, symbol: m.venue_symbol.clone(), qty, qty_decimals: m.qty_decimals };
        match self.venue.place(&order).await {
            Ok(f) => {
                info!(client_id, symbol, qty, executed = f.executed, status = %f.status, "hedger: order done");
                self.journal.append(&Record::Result {
                    client_id,
                    status: f.status,
                    executed: f.executed,
                    quote_micros: f.quote_micros,
                    reason: None,
                    at_ms: now_ms,
                })?;
                Ok(())
            }
            Err(VenueError::Refused(why)) => {
                self.journal.append(&Record::Result {
                    client_id,
                    status: "rejected".into(),
                    executed: 0,
                    quote_micros: 0,
                    reason: Some(why.clone()),
                    at_ms: now_ms,
                })?;
                Err(RoundError::Venue(VenueError::Refused(why)))
            }
            // Unknown outcome: stays pending, settled by client id next round.
            Err(e) => Err(RoundError::Venue(e)),
        }
    }

    /// Rounds every `interval` until `stop` resolves.
    pub async fn run(mut self, interval: Duration, stop: impl std::future::Future<Output = ()>) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = tick.tick() => self.step(ground::time::now_ns() / 1_000_000).await,
            }
        }
    }
}
