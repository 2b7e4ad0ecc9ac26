//! The store against real databases: SQLite in a temp dir and a PostgreSQL cluster of its own.
//! Exactly once (split and redelivered batches, a kill -9 of PostgreSQL mid-stream), the books
//! equal the engine's, pages stay stable while rows arrive, and an account sees only its rows.

use std::time::{Duration, Instant};

use engine_core::prelude::*;
use history::test_support::{PgServer, dump, session};
use history::{LedgerQuery, Store, Writer};

async fn sqlite(dir: &tempfile::TempDir) -> Store {
    let url = Store::sqlite_url(&dir.path().join("history.sqlite"));
    Store::open(&url, &MarketConfig::defaults(), 2).await.unwrap()
}

async fn postgres(pg: &PgServer) -> Store {
    Store::open(&pg.url, &MarketConfig::defaults(), 2).await.unwrap()
}

/// The store's books equal the engine's: each account's balance (available + locked margin),
/// its statement sums to it and ends at it, and the insurance fund and house balance match.
async fn assert_books_match(store: &Store, engine: &mut Engine) {
    let p = store.pool();
    let summary = engine.summary();
    let accounts = summary.accounts;
    assert!(accounts > 0);
    for id in 1..=accounts {
        let account = AccountId(id);
        let view = match engine.apply_collect(&Command::new(
            RequestId(u64::MAX - 1),
            0,
            CommandKind::QueryAccount { account },
        ))[..]
        {
            [Output::Reply { result: Ok(ReplyData::Account(v)), .. }] => v,
            ref o => panic!("{o:?}"),
        };
        let (balance, locked): (i64, i64) =
            sqlx::query_as("SELECT balance, locked_margin FROM accounts WHERE account_id = $1")
                .bind(i64::from(id))
                .fetch_one(p)
                .await
                .unwrap();
        let held = view.locked_margin.0 + view.order_margin.0;
        assert_eq!(i128::from(balance), view.available.0 + held, "balance of {id}");
        assert_eq!(i128::from(locked), held, "locked and order margin of {id}");
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT amount, balance FROM ledger WHERE account_id = $1 ORDER BY seq, n",
        )
        .bind(i64::from(id))
        .fetch_all(p)
        .await
        .unwrap();
        let sum: i128 = rows.iter().map(|r| i128::from(r.0)).sum();
        assert_eq!(sum, i128::from(balance), "statement of {id} sums to its balance");
        assert_eq!(
            rows.last().map(|r| r.1),
            Some(balance),
            "statement of {id} ends at its balance"
        );
    }
    let (ins, house): (i64, i64) =
        sqlx::query_as("SELECT insurance_fund, house_balance FROM history_cursor WHERE id = 1")
            .fetch_one(p)
            .await
            .unwrap();
    assert_eq!(
        (i128::from(ins), i128::from(house)),
        (summary.insurance_fund.0, summary.house_balance.0)
    );
}

/// The session written in uneven batches, each batch then delivered again together with the
/// next one (as a redelivery after a crash would), equals the session written at once.
async fn exactly_once_and_books(store: &Store, reference: &Store) {
    let (mut engine, changes) = session(7, 4_000);
    let kinds = |k: &str| {
        changes.iter().filter(|c| history::test_support::kind_name(&c.change) == k).count()
    };
    let all = [
        "opened",
        "closed",
        "margin_added",
        "deposited",
        "withdrawn",
        "order_placed",
        "order_ended",
        "triggers_set",
        "margin_call",
        "increased",
    ];
    for k in all {
        assert!(kinds(k) > 5, "the session exercises {k}: {}", kinds(k));
    }
    let liquidations = changes
        .iter()
        .filter(|c| matches!(c.change, Change::Closed { reason: CloseReason::Liquidation, .. }))
        .count();
    assert!(liquidations > 0, "the session liquidates");
    let netted = changes
        .iter()
        .filter(|c| matches!(c.change, Change::Closed { reason: CloseReason::Netted, .. }))
        .count();
    assert!(netted > 5, "the session nets: {netted}");
    reference.write(&changes).await.unwrap();
    let mut at = 0;
    let mut size = 1;
    while at < changes.len() {
        let end = (at + size).min(changes.len());
        let from = at.saturating_sub(size / 2); // part of the previous batch again
        store.write(&changes[from..end]).await.unwrap();
        at = end;
        size = size * 3 % 997 + 1;
    }
    assert_eq!(store.write(&changes).await.unwrap(), None, "everything again: nothing new");
    assert_eq!(dump(store).await, dump(reference).await);
    assert_books_match(store, &mut engine).await;
    let last = changes.last().unwrap();
    assert_eq!(store.consistent_to().await.unwrap(), last.seq);
    operator_queries_run(store, &mut engine).await;
    candles_are_the_applied_bids(store, &changes).await;
}

/// Every span's candles equal OHLC folded here from the applied prices in the changes.
async fn candles_are_the_applied_bids(store: &Store, changes: &[ChangeRecord]) {
    for (span, secs) in history::SPANS {
        let len = u64::try_from(secs).unwrap() * 1_000_000_000;
        let mut expected: Vec<history::Candle> = Vec::new();
        for c in changes {
            let Change::PriceApplied { market: MarketId(0), bid, .. } = c.change else { continue };
            let start = c.at_ns - c.at_ns % len;
            match expected.last_mut() {
                Some(k) if k.start_ns == start => {
                    k.high = k.high.max(bid);
                    k.low = k.low.min(bid);
                    k.close = bid;
                    k.ticks += 1;
                }
                _ => expected.push(history::Candle {
                    start_ns: start,
                    open: bid,
                    high: bid,
                    low: bid,
                    close: bid,
                    ticks: 1,
                }),
            }
        }
        assert!(!expected.is_empty());
        let got = store.candles(MarketId(0), span, 500).await.unwrap();
        let tail = &expected[expected.len().saturating_sub(500)..];
        assert_eq!(got, tail, "span {span}");
    }
    assert!(matches!(
        store.candles(MarketId(0), "2m", 10).await,
        Err(history::HistoryError::InvalidQuery(_))
    ));
}

/// The example queries of docs/HISTORY.md run on this database and agree with the engine.
async fn operator_queries_run(store: &Store, engine: &mut Engine) {
    use sqlx::Row;
    // Wrapped: sqlx's Any driver cannot decode PostgreSQL's NUMERIC (psql can).
    let exposure = concat!(
        "SELECT CAST(SUM(positions) AS BIGINT) FROM (",
        include_str!("../queries/exposure.sql"),
        ") q"
    );
    let open: i64 = sqlx::query(exposure).fetch_one(store.pool()).await.unwrap().get(0);
    assert_eq!(open, i64::from(engine.summary().open_positions));
    let funds =
        concat!("SELECT hour FROM (", include_str!("../queries/funds_over_time.sql"), ") q");
    let funds = sqlx::query(funds).fetch_all(store.pool()).await.unwrap();
    assert!(!funds.is_empty());
    let hours: Vec<i64> = funds.iter().map(|r| r.try_get::<i64, _>(0).unwrap()).collect();
    assert!(hours.windows(2).all(|w| w[0] < w[1]), "one row per hour, in order");
}

#[tokio::test]
async fn sqlite_exactly_once_and_books_match_the_engine() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    exactly_once_and_books(&sqlite(&a).await, &sqlite(&b).await).await;
}

#[tokio::test]
async fn postgres_exactly_once_and_books_match_the_engine() {
    let pg = PgServer::start();
    let store = postgres(&pg).await;
    let b = tempfile::tempdir().unwrap();
    // The PostgreSQL store equals a SQLite store fed the same changes: one schema, one set of
    // queries, the same history.
    exactly_once_and_books(&store, &sqlite(&b).await).await;
}

async fn pages_are_stable_and_private(store: &Store) {
    let (_, changes) = session(11, 3_000);
    let half = changes.len() / 2;
    store.write(&changes[..half]).await.unwrap();
    let account = AccountId(3);
    // Page through account 3's closed positions while the second half arrives mid-way.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store.closed_positions(account, cursor.as_deref(), 7).await.unwrap();
        assert!(page.items.iter().all(|v| v.account == account), "another account's row");
        seen.extend(page.items.iter().map(|v| v.id));
        pages += 1;
        if pages == 2 {
            store.write(&changes[half..]).await.unwrap();
        }
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    // Newest first from when paging started: the pages hold exactly the closes of the first
    // half, none twice, none skipped, although newer rows arrived in between.
    let first_half_closed: Vec<PositionId> = changes[..half]
        .iter()
        .rev()
        .filter_map(|c| match c.change {
            Change::Closed { position, account: a, .. } if a == account => Some(position),
            _ => None,
        })
        .collect();
    assert!(first_half_closed.len() > 14, "enough for several pages: {}", first_half_closed.len());
    assert_eq!(seen, first_half_closed);
    // Another account's position is not found through this one.
    let other = changes.iter().find_map(|c| match c.change {
        Change::Closed { position, account: a, .. } if a != account => Some(position),
        _ => None,
    });
    let other = other.expect("another account closed something");
    assert_eq!(store.closed_position(account, other).await.unwrap(), None);
    assert!(store.closed_position(AccountId(99), seen[0]).await.unwrap().is_none());
    // The statement pages forward, in order, without repeats, and sums to the balance.
    let mut q = LedgerQuery { limit: 50, ..LedgerQuery::default() };
    let mut rows = Vec::new();
    loop {
        let page = store.ledger(account, &q).await.unwrap();
        rows.extend(page.items);
        match page.next {
            Some(n) => q.cursor = Some(n),
            None => break,
        }
    }
    let sum: i128 = rows.iter().map(|r| r.amount.0).sum();
    assert_eq!(Some(Usdc(sum)), rows.last().map(|r| r.balance));
    assert!(rows.windows(2).all(|w| w[0].seq <= w[1].seq));
    // A time window keeps only its rows.
    let mid = rows[rows.len() / 2].at_ns;
    let q = LedgerQuery {
        from_ns: Some(mid),
        to_ns: Some(mid + 1),
        limit: 500,
        ..LedgerQuery::default()
    };
    let window = store.ledger(account, &q).await.unwrap();
    assert!(!window.items.is_empty() && window.items.iter().all(|r| r.at_ns == mid));
    assert!(matches!(
        store
            .ledger(
                account,
                &LedgerQuery { cursor: Some("x".into()), limit: 5, ..LedgerQuery::default() }
            )
            .await,
        Err(history::HistoryError::InvalidCursor)
    ));
}

#[tokio::test]
async fn sqlite_pages_are_stable_and_private() {
    let dir = tempfile::tempdir().unwrap();
    pages_are_stable_and_private(&sqlite(&dir).await).await;
}

#[tokio::test]
async fn postgres_pages_are_stable_and_private() {
    let pg = PgServer::start();
    pages_are_stable_and_private(&postgres(&pg).await).await;
}

/// The writer keeps its batch through a kill -9 of PostgreSQL and a restart: nothing lost,
/// nothing twice.
#[test]
fn postgres_killed_mid_stream_loses_and_repeats_nothing() {
    let pg = PgServer::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (mut engine, changes) = session(23, 6_000);
    let reference_dir = tempfile::tempdir().unwrap();
    let reference = rt.block_on(async {
        let r = sqlite(&reference_dir).await;
        r.write(&changes).await.unwrap();
        r
    });
    let (tx, rx) = crossbeam_channel::bounded(256);
    let url = pg.url.clone();
    let changes_len = changes.len();
    let (status_tx, status_rx) = std::sync::mpsc::channel();
    let writer = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let store = rt.block_on(Store::open(&url, &MarketConfig::defaults(), 1)).unwrap();
        drop(rt);
        // A backlog that holds the whole outage (the default, 16 batches, would give up on
        // this process's run and leave the rest to the journal replay at the next start).
        let w = Writer::new(store, 64).with_backlog(changes_len);
        status_tx.send(w.status()).unwrap();
        w.run(rx, || 0)
    });
    let status = status_rx.recv().unwrap();
    let half = changes.len() / 2;
    for c in &changes[..half] {
        tx.send(Output::Change(*c)).unwrap();
    }
    pg.kill_9();
    // Changes keep coming while PostgreSQL is down: the writer holds them in its backlog (its
    // pool waits for a connection, or a write fails and is retried); PostgreSQL comes back
    // after 1 s.
    let held_at = std::thread::scope(|scope| {
        let restart = scope.spawn(|| {
            std::thread::sleep(Duration::from_secs(1));
            let held_at = status.written_seq.load(std::sync::atomic::Ordering::Relaxed);
            pg.start_again();
            held_at
        });
        for c in &changes[half..] {
            tx.send(Output::Change(*c)).unwrap();
        }
        restart.join().unwrap()
    });
    drop(tx);
    writer.join().unwrap().unwrap();
    // The outage really held the stream back (a kill that left PostgreSQL serving would not).
    assert!(held_at < changes.last().unwrap().seq, "the writer was held by the outage");
    rt.block_on(async {
        let store = postgres(&pg).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while store.consistent_to().await.unwrap() < changes.last().unwrap().seq {
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(dump(&store).await, dump(&reference).await);
        assert_books_match(&store, &mut engine).await;
    });
}

/// A read model can never stop the engine: a batch the store refuses for good (here a balance
/// past its 64-bit columns) degrades history — counted, flagged, retried — while the sender
/// (the engine's reply thread) is never held back; once the backlog passes its bound the writer
/// drops what follows (the journal replays it at the next start) and still never blocks.
#[test]
fn a_store_that_refuses_a_batch_degrades_history_and_never_blocks_the_sender() {
    let dir = tempfile::tempdir().unwrap();
    let url = Store::sqlite_url(&dir.path().join("history.sqlite"));
    let (tx, rx) = crossbeam_channel::bounded(8);
    let (status_tx, status_rx) = std::sync::mpsc::channel();
    let writer = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let store = rt.block_on(Store::open(&url, &MarketConfig::defaults(), 1)).unwrap();
        drop(rt);
        let w = Writer::new(store, 4).with_backlog(100);
        status_tx.send(w.status()).unwrap();
        w.run(rx, || 0)
    });
    let status = status_rx.recv().unwrap();
    let too_big = Usdc(i128::from(i64::MAX) + 1);
    let poison = Change::AccountCreated { account: AccountId(1), initial_deposit: too_big };
    use std::sync::atomic::Ordering::Relaxed;
    // First the batch the store refuses: history is flagged degraded, the failure counted.
    tx.send(Output::Change(ChangeRecord { seq: 1, n: 0, at_ns: 0, change: poison })).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while status.errors.load(Relaxed) == 0 || !status.degraded.load(Relaxed) {
        assert!(Instant::now() < deadline, "the refused batch was never reported");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Then a flood while it retries: 5,000 changes through a channel of 8, each send finding
    // room whatever the store does; past the backlog's 100 they are dropped and counted.
    for seq in 2..=5_001u64 {
        let change = Change::Deposited { account: AccountId(1), amount: Usdc(1) };
        tx.send_timeout(
            Output::Change(ChangeRecord { seq, n: 0, at_ns: 0, change }),
            Duration::from_secs(30),
        )
        .expect("the writer held the sender back");
    }
    drop(tx);
    writer.join().unwrap().unwrap();
    assert!(status.degraded.load(Relaxed), "history is still flagged degraded");
    assert_eq!(status.written.load(Relaxed), 0, "nothing after the refused batch is written");
    assert_eq!(
        status.dropped.load(Relaxed),
        5_001,
        "the backlog and everything after its overflow is counted as dropped"
    );
}
