//! The hedger against a local mock of Backpack's order API (from its public documentation:
//! signed requests, `POST /api/v1/order`, `GET /api/v1/order`, the order history, positions),
//! which checks every signature and can fill, fill in part, refuse, fail, or take an order and
//! not answer. What must hold: the hedge follows its target; an order whose outcome is unknown
//! is found by its client id and recorded once — never sent twice, across a restart too; the
//! hedger stops when the venue keeps failing or holds something else than the journal.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hedger::journal::Journal;
use hedger::plan::Policy;
use hedger::run::{Config, Hedger, MarketHedge};
use hedger::venue::backpack::Backpack;
use hedger::{Book, BoxFuture, Exposure};

use hedger::mock::{Mode, PRICE, SEED, start as mock};

/// The clients' exposure, set by the test.
#[derive(Clone, Default)]
struct Fixed(Arc<Mutex<BTreeMap<String, Exposure>>>);

impl Fixed {
    fn set(&self, a_book: i64, b_book: i64) {
        self.0.lock().unwrap().insert("BTC_USDC".into(), Exposure { a_book, b_book });
    }
}

impl Book for Fixed {
    fn exposure(&self) -> BoxFuture<'_, Result<BTreeMap<String, Exposure>, String>> {
        let e = self.0.lock().unwrap().clone();
        Box::pin(async move { Ok(e) })
    }
}

fn config() -> Config {
    let btc = MarketHedge {
        venue_symbol: "BTC_USDC_PERP".into(),
        qty_decimals: 5,
        policy: Policy { band: 50_000, min_order: 1_000 }, // 0.5 BTC kept, 0.01 BTC minimum
    };
    Config { markets: BTreeMap::from([("BTC_USDC".to_owned(), btc)]), max_errors: 3 }
}

fn hedger(url: &str, dir: &std::path::Path, book: &Fixed) -> Hedger<Backpack, Fixed> {
    let venue = Backpack::new(url, SEED, Duration::from_millis(500)).unwrap();
    Hedger::new(venue, book.clone(), Journal::open(dir).unwrap(), config())
}

#[tokio::test]
async fn the_hedge_follows_the_a_book_and_the_b_books_excess_with_signed_orders() {
    let (url, venue) = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let book = Fixed::default();
    let mut h = hedger(&url, dir.path(), &book);
    book.set(300_000, 20_000); // 3 BTC A-booked; 0.2 BTC B-book, within its band
    h.step(1).await;
    assert_eq!(venue.lock().unwrap().position, 300_000, "bought 3 BTC");
    h.step(2).await;
    assert_eq!(venue.lock().unwrap().posts, 1, "at its target: nothing sent");
    book.set(300_000, -120_000); // the B-book 1.2 BTC short: 0.7 beyond the band
    h.step(3).await;
    let s = h.status().lock().unwrap().clone();
    assert_eq!((s.positions["BTC_USDC"], venue.lock().unwrap().position), (230_000, 230_000));
    // 3 BTC bought, 0.7 sold at 60 000.
    assert_eq!(s.cash_micros, -i128::from(300_000 - 70_000) * PRICE);
    assert_eq!((s.halted, venue.lock().unwrap().bad_signatures), (None, 0));
}

#[tokio::test]
async fn a_partial_fill_is_recorded_and_the_rest_traded_next_round() {
    let (url, venue) = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let book = Fixed::default();
    let mut h = hedger(&url, dir.path(), &book);
    venue.lock().unwrap().mode = Mode::Partial(400);
    book.set(100_000, 0);
    h.step(1).await;
    assert_eq!(h.status().lock().unwrap().positions["BTC_USDC"], 40_000);
    venue.lock().unwrap().mode = Mode::Fill;
    h.step(2).await;
    let v = venue.lock().unwrap();
    assert_eq!((v.position, v.posts), (100_000, 2));
}

#[tokio::test]
async fn an_order_taken_without_an_answer_is_found_by_its_client_id_not_sent_again_across_a_restart()
 {
    let (url, venue) = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let book = Fixed::default();
    book.set(200_000, 0);
    {
        let mut h = hedger(&url, dir.path(), &book);
        venue.lock().unwrap().mode = Mode::TakeThenHang;
        h.step(1).await; // the client gives up at 500 ms; the venue took the order
        let s = h.status().lock().unwrap().clone();
        assert_eq!((s.pending, s.consecutive_errors), (1, 1), "{s:?}");
    } // the hedger stops (a crash, a deploy)
    venue.lock().unwrap().mode = Mode::Fill;
    let mut h = hedger(&url, dir.path(), &book);
    h.step(2).await;
    let s = h.status().lock().unwrap().clone();
    assert_eq!((s.pending, s.positions["BTC_USDC"]), (0, 200_000), "{s:?}");
    assert_eq!(venue.lock().unwrap().posts, 1, "found by its client id, never sent twice");
    h.step(3).await;
    assert_eq!(venue.lock().unwrap().posts, 1);
}

#[tokio::test]
async fn refusals_and_failures_in_a_row_stop_the_hedger_and_it_says_why() {
    let (url, venue) = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let book = Fixed::default();
    let mut h = hedger(&url, dir.path(), &book);
    book.set(100_000, 0);
    venue.lock().unwrap().mode = Mode::Refuse;
    h.step(1).await;
    assert!(h.status().lock().unwrap().halted.is_none(), "one refusal is retried");
    venue.lock().unwrap().mode = Mode::Fail;
    h.step(2).await;
    h.step(3).await;
    let s = h.status().lock().unwrap().clone();
    assert!(s.halted.as_deref().is_some_and(|w| w.contains("unavailable")), "{s:?}");
    // A 503 took nothing: the order was settled as not found, not counted as a fill.
    venue.lock().unwrap().mode = Mode::Fill;
    let posts = venue.lock().unwrap().posts;
    h.step(4).await;
    assert_eq!(venue.lock().unwrap().posts, posts, "stopped: nothing more is sent");
    assert_eq!(venue.lock().unwrap().position, 0);
}

#[tokio::test]
async fn a_venue_holding_something_else_than_the_journal_stops_the_hedger() {
    let (url, venue) = mock().await;
    let dir = tempfile::tempdir().unwrap();
    let book = Fixed::default();
    let mut h = hedger(&url, dir.path(), &book);
    book.set(100_000, 0);
    h.step(1).await;
    venue.lock().unwrap().phantom = 5_000; // someone traded on the hedge account
    book.set(300_000, 0);
    h.step(2).await;
    let s = h.status().lock().unwrap().clone();
    assert!(s.halted.as_deref().is_some_and(|w| w.contains("the venue holds 105000")), "{s:?}");
    assert_eq!(venue.lock().unwrap().posts, 1, "nothing sent once it diverged");
}
