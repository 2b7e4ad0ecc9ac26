//! Prometheus text metrics: requests by route and status, engine reply latency, engine counters.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::AppState;
use engine_core::command::{CommandKind, MarketId, MarketMode};
use engine_core::event::{Item, ReplyData};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
    status: u16,
}

/// A method as a label from a closed set: every other method is `other` (each distinct method
/// name once became its own series: 300k requests grew `/metrics` from 4 KB to 24 MB).
fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// A status as a label: the statuses this server sends, every other one `0`.
fn status_label(s: u16) -> u16 {
    if (100..600).contains(&s) { s } else { 0 }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CounterLabels {
    counter: &'static str,
}

/// A market (a closed set: the configured symbols).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MarketLabels {
    market: String,
}

/// A market and one of its three modes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabels {
    market: String,
    mode: &'static str,
}

/// One of the house's lines.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LineLabels {
    line: &'static str,
}

/// A price source's counter: the venue (a closed set, from the feed's configuration) and the
/// counter's name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
    counter: &'static str,
}

/// The registry and the handles the API updates.
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteLabels, Counter>,
    request_seconds: Histogram,
    reply_seconds: Histogram,
    engine: Family<CounterLabels, Gauge>,
    in_flight: Gauge,
    events_dropped: Gauge,
    feed_counters: Family<CounterLabels, Gauge>,
    feed_sources: Family<SourceLabels, Gauge>,
    edge: Family<CounterLabels, Gauge>,
    history: Family<CounterLabels, Gauge>,
    push: Family<CounterLabels, Gauge>,
    /// The configured markets' symbols, by engine market id (the `market` label's set).
    symbols: Vec<String>,
    price_age: Family<MarketLabels, Gauge>,
    market_mode: Family<ModeLabels, Gauge>,
    house: Family<LineLabels, Gauge>,
    book: Family<CounterLabels, Gauge>,
    source: Arc<dyn ground::ports::EngineClient>,
    feed: Option<Arc<dyn crate::FeedStatus>>,
    hasher: crate::auth::Hasher,
    server: Arc<crate::server::ServerStats>,
    table: Arc<crate::server::ConnTable>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Metrics reading engine counters through `source`.
    pub fn new(
        source: Arc<dyn ground::ports::EngineClient>,
        feed: Option<Arc<dyn crate::FeedStatus>>,
        hasher: crate::auth::Hasher,
        (edge, symbols): (&crate::server::Edge, Vec<String>),
    ) -> Metrics {
        let (server, table) = (Arc::clone(&edge.stats), Arc::clone(&edge.table));
        let mut registry = Registry::with_prefix("hundredx");
        let requests = Family::<RouteLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests by route and status", requests.clone());
        let request_seconds = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        registry.register("http_request_seconds", "HTTP request latency", request_seconds.clone());
        let reply_seconds = Histogram::new(exponential_buckets(0.000_005, 2.0, 20));
        registry.register(
            "engine_reply_seconds",
            "Engine reply latency seen by the API",
            reply_seconds.clone(),
        );
        let engine = Family::<CounterLabels, Gauge>::default();
        registry.register(
            "engine_events",
            "Engine counters (ticks, opens, liquidations, ...)",
            engine.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "engine_requests_in_flight",
            "Requests awaiting the engine's reply",
            in_flight.clone(),
        );
        let events_dropped = Gauge::default();
        registry.register(
            "engine_events_dropped",
            "Events lost by slow subscribers",
            events_dropped.clone(),
        );
        let feed_counters = Family::<CounterLabels, Gauge>::default();
        registry.register(
            "feed",
            "Price feed counters (ticks, reconnects, errors, ...)",
            feed_counters.clone(),
        );
        let feed_sources = Family::<SourceLabels, Gauge>::default();
        registry.register(
            "feed_source",
            "Each price source's counters (connected, ticks, reconnects, rejects by cause, ...)",
            feed_sources.clone(),
        );
        let edge = Family::<CounterLabels, Gauge>::default();
        registry.register(
            "edge",
            "Connections (HTTP open, sockets held with push, refused, refused per address, shed, accept errors, idle closed) and password hashing (in flight, max, rejected)",
            edge.clone(),
        );
        let history = Family::<CounterLabels, Gauge>::default();
        registry.register(
            "history_writer",
            "History store writer (written_seq, written, batches, errors, lag_ms, stalled, degraded, dropped)",
            history.clone(),
        );
        let push = Family::<CounterLabels, Gauge>::default();
        registry.register(
            "push",
            "Push API (open, sent, slow_closed, idle_closed, refused, replayed)",
            push.clone(),
        );
        let price_age = Family::<MarketLabels, Gauge>::default();
        registry.register(
            "market_price_age_ms",
            "Milliseconds since each market's latest applied price (the engine's receive time)",
            price_age.clone(),
        );
        let market_mode = Family::<ModeLabels, Gauge>::default();
        registry.register(
            "market_mode",
            "1 for each market's effective mode (open, reduce_only, halted: the operators' or the price guard's, whichever is stricter), 0 for the others",
            market_mode.clone(),
        );
        let house = Family::<LineLabels, Gauge>::default();
        registry.register(
            "house_micro_usdc",
            "The house's lines in micro-USDC, exact (insurance_fund, house_balance, spread_revenue, commission_revenue)",
            house.clone(),
        );
        let book = Family::<CounterLabels, Gauge>::default();
        registry.register("book", "The book's size (open_positions, accounts)", book.clone());
        Metrics {
            symbols,
            price_age,
            market_mode,
            house,
            book,
            edge,
            history,
            push,
            hasher,
            server,
            table,
            feed_counters,
            feed_sources,
            feed,
            registry,
            requests,
            request_seconds,
            reply_seconds,
            engine,
            in_flight,
            events_dropped,
            source,
        }
    }

    /// Records one engine round trip.
    pub fn observe_reply(&self, d: Duration) {
        self.reply_seconds.observe(d.as_secs_f64());
    }

    fn encode(
        &self,
        history: Option<&ground::history::WriterStatus>,
        push: &crate::push::PushStats,
        (markets, book): (Option<&engine_core::processor::Response>, Option<&ReplyData>),
    ) -> String {
        if let Some(m) = markets {
            self.fill_markets(&m.items);
        }
        if let Some(b) = book {
            self.fill_book(b);
        }
        let push_open = push.open.load(Relaxed) as u64;
        let pushed = [
            ("open", push_open),
            ("sent", push.sent.load(Relaxed)),
            ("slow_closed", push.slow_closed.load(Relaxed)),
            ("idle_closed", push.idle_closed.load(Relaxed)),
            ("refused", push.refused.load(Relaxed)),
            ("replayed", push.replayed.load(Relaxed)),
        ];
        set_all(&self.push, pushed);
        self.fill_engine();
        self.fill_edge();
        if let Some(feed) = &self.feed {
            set_all(&self.feed_counters, feed.counters());
            for (source, counters) in feed.source_counters() {
                for (counter, v) in counters {
                    let labels = SourceLabels { source, counter };
                    self.feed_sources
                        .get_or_create(&labels)
                        .set(i64::try_from(v).unwrap_or(i64::MAX));
                }
            }
        }
        if let Some(w) = history {
            let written = [
                ("written_seq", w.written_seq.load(Relaxed)),
                ("written", w.written.load(Relaxed)),
                ("batches", w.batches.load(Relaxed)),
                ("errors", w.errors.load(Relaxed)),
                ("lag_ms", w.lag_ms.load(Relaxed)),
                ("stalled", u64::from(w.stalled.load(Relaxed))),
                ("degraded", u64::from(w.degraded.load(Relaxed))),
                ("dropped", w.dropped.load(Relaxed)),
            ];
            set_all(&self.history, written);
        }
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    fn fill_engine(&self) {
        let source = &self.source;
        let c = source.counters().unwrap_or_default();
        let counters = [
            ("commands", c.commands),
            ("rejections", c.rejections),
            ("ticks_applied", c.ticks_applied),
            ("ticks_rejected", c.ticks_rejected),
            ("positions_opened", c.opened),
            ("take_profits", c.take_profits),
            ("stop_losses", c.stop_losses),
            ("liquidations", c.liquidations),
            ("bad_debts", c.bad_debts),
            ("duplicates", c.duplicates),
            ("stop_outs", c.stop_outs),
            ("cross_checks", c.cross_checks),
            ("cross_band_crossings", c.band_crossings),
        ];
        set_all(&self.engine, counters);
        self.in_flight.set(i64::try_from(source.in_flight()).unwrap_or(i64::MAX));
        self.events_dropped.set(i64::try_from(source.events_dropped()).unwrap_or(i64::MAX));
    }

    /// Each market's price age and effective mode, from a `QueryMarkets` answer.
    fn fill_markets(&self, items: &[Item]) {
        let now_ns = ground::time::now_ns();
        let mut modes: Vec<(MarketId, MarketMode)> = Vec::new();
        for item in items {
            match *item {
                Item::Market(v) => {
                    let Some(symbol) = self.symbols.get(usize::from(v.market.0)) else { continue };
                    if v.updated_at_ns > 0 {
                        let age_ms = now_ns.saturating_sub(v.updated_at_ns) / 1_000_000;
                        let age_ms = i64::try_from(age_ms).unwrap_or(i64::MAX);
                        self.price_age
                            .get_or_create(&MarketLabels { market: symbol.clone() })
                            .set(age_ms);
                    }
                    modes.push((v.market, v.mode));
                }
                Item::MarketSources { market, guard, .. } => {
                    if let Some(m) = modes.iter_mut().find(|(id, _)| *id == market) {
                        m.1 = m.1.stricter(guard);
                    }
                }
                _ => {}
            }
        }
        for (market, mode) in modes {
            let Some(symbol) = self.symbols.get(usize::from(market.0)) else { continue };
            for m in [MarketMode::Open, MarketMode::ReduceOnly, MarketMode::Halted] {
                let labels = ModeLabels { market: symbol.clone(), mode: m.as_str() };
                self.market_mode.get_or_create(&labels).set(i64::from(m == mode));
            }
        }
    }

    /// The house's lines and the book's size, from a `QueryBook` answer.
    fn fill_book(&self, book: &ReplyData) {
        let ReplyData::Book {
            insurance_fund,
            house_balance,
            spread_revenue,
            commission_revenue,
            open_positions,
            accounts,
        } = *book
        else {
            return;
        };
        // Every amount is below MAX_AMOUNT (2^62 micro-USDC): an i64 holds it exactly.
        let usdc = |v: engine_core::num::Usdc| i64::try_from(v.0).unwrap_or(i64::MAX);
        for (line, v) in [
            ("insurance_fund", insurance_fund),
            ("house_balance", house_balance),
            ("spread_revenue", spread_revenue),
            ("commission_revenue", commission_revenue),
        ] {
            self.house.get_or_create(&LineLabels { line }).set(usdc(v));
        }
        set_all(
            &self.book,
            [("open_positions", u64::from(open_positions)), ("accounts", u64::from(accounts))],
        );
    }

    fn fill_edge(&self) {
        let (h, server) = (self.hasher.stats(), &self.server);
        let edge = [
            ("connections_open", server.open.load(Relaxed)),
            // Every socket held against max_connections: HTTP and upgraded push sockets.
            ("sockets_held", self.table.open() as u64),
            ("connections_refused", server.refused.load(Relaxed)),
            ("connections_refused_per_address", server.refused_per_address.load(Relaxed)),
            ("connections_shed", server.shed.load(Relaxed)),
            ("accept_errors", server.accept_errors.load(Relaxed)),
            ("connections_idle_closed", server.idle_closed.load(Relaxed)),
            ("hash_in_flight", h.in_flight as u64),
            ("hash_in_flight_max", h.in_flight_max as u64),
            ("hash_rejected", h.rejected),
        ];
        set_all(&self.edge, edge);
    }
}

/// Sets each named gauge of `family` (names are a closed set: bounded labels).
fn set_all(
    family: &Family<CounterLabels, Gauge>,
    values: impl IntoIterator<Item = (&'static str, u64)>,
) {
    for (name, v) in values {
        family
            .get_or_create(&CounterLabels { counter: name })
            .set(i64::try_from(v).unwrap_or(i64::MAX));
    }
}

/// `GET /metrics`.
pub async fn render(State(state): State<Arc<AppState>>) -> Response {
    let writer = state.history.get().and_then(|h| h.writer.as_deref());
    // Two O(1)-per-market engine reads; an engine that does not answer leaves the last values.
    let markets = state.markets_snapshot().await.ok();
    let book = state.call(CommandKind::QueryBook).await.ok().and_then(|r| r.result.ok());
    let engine = (markets.as_deref(), book.as_ref());
    let body = state.metrics.encode(writer, &state.hub().stats, engine);
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
        .into_response()
}

/// Middleware: counts every request by matched route and status, and times it.
pub async fn track(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    // Matched routes come from the route table (a closed set); anything else is one label.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let resp = next.run(req).await;
    let status = status_label(resp.status().as_u16());
    state
        .metrics
        .requests
        .get_or_create(&RouteLabels { method, route: route.clone(), status })
        .inc();
    state.metrics.request_seconds.observe(started.elapsed().as_secs_f64());
    if status >= 500 {
        tracing::warn!(%method, %route, status, "request failed");
    } else {
        tracing::debug!(%method, %route, status, elapsed = ?started.elapsed(), "request");
    }
    resp
}
