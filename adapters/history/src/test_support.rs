//! For tests and benchmarks: a throwaway PostgreSQL cluster, and a random trading session that
//! produces every kind of change.

use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use engine_core::prelude::*;

/// A PostgreSQL cluster of its own: `initdb` in a temp dir, a free port, trust auth on
/// 127.0.0.1 only, stopped (immediately) and removed on drop. As root, the server runs as the
/// `postgres` user (PostgreSQL refuses root), which Debian's package creates.
#[derive(Debug)]
pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub url: String,
}

fn pg_bin() -> PathBuf {
    let on_path = Process::new("sh").args(["-c", "command -v initdb"]).output();
    if let Ok(out) = on_path
        && out.status.success()
    {
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let real = std::fs::canonicalize(&p).unwrap_or(p);
        if let Some(dir) = real.parent() {
            return dir.to_path_buf();
        }
    }
    // Debian installs the server's programs off PATH, one directory per major version.
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.retain(|b| b.join("initdb").exists());
    versions.sort();
    versions.pop().unwrap_or_else(|| {
        panic!("PostgreSQL's initdb not found: install it with `apt-get install postgresql`")
    })
}

fn is_root() -> bool {
    Process::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Runs a server program, as `postgres` when we are root.
fn run(bin: &Path, program: &str, args: &[&str]) -> std::process::Output {
    let exe = bin.join(program);
    let mut cmd = if is_root() {
        let mut c = Process::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&exe);
        c
    } else {
        Process::new(&exe)
    };
    cmd.args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} ({e}): install `postgresql`", exe.display()))
}

impl PgServer {
    /// Initialises and starts a cluster.
    pub fn start() -> PgServer {
        let bin = pg_bin();
        let dir = tempfile::tempdir().expect("temp dir");
        if is_root() {
            let status = Process::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown to postgres failed: does the postgres user exist?");
        }
        let data = dir.path().join("data");
        let data_s = data.to_string_lossy().into_owned();
        let out =
            run(&bin, "initdb", &["-D", &data_s, "-U", "postgres", "--auth=trust", "-E", "UTF8"]);
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free local port");
        let pg = PgServer {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            dir,
            bin,
            port,
        };
        pg.start_again();
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").to_string_lossy().into_owned()
    }

    /// Starts the (stopped or killed) server again on the same port and data.
    pub fn start_again(&self) {
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={} -c fsync=on",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").to_string_lossy().into_owned();
        // After a kill -9 the old backends may hold the shared memory for a moment: retry.
        let args = ["-D", &self.data(), "-o", &opts, "-l", &log, "-w", "start"];
        let mut tries = 0;
        while !run(&self.bin, "pg_ctl", &args).status.success() {
            tries += 1;
            let log_text = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(tries < 20, "pg_ctl start failed:\n{log_text}");
            std::thread::sleep(Duration::from_millis(250));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "postgres did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9` of the postmaster: no shutdown, no checkpoint (its children exit after it).
    pub fn kill_9(&self) {
        let pid_file = self.dir.path().join("data").join("postmaster.pid");
        let text = std::fs::read_to_string(&pid_file).expect("postmaster.pid");
        let pid = text.lines().next().expect("pid line").trim().to_owned();
        let status = Process::new("kill").args(["-9", &pid]).status().expect("kill");
        assert!(status.success());
        // Wait for the children to notice and the port to free up.
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "postgres still listening after kill -9");
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_file(pid_file);
        // Children of a killed postmaster linger briefly holding shared memory; let them go.
        std::thread::sleep(Duration::from_millis(500));
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = run(&self.bin, "pg_ctl", &["-D", &self.data(), "-m", "immediate", "stop"]);
    }
}

/// A deterministic pseudo-random trading session on a fresh engine: accounts, deposits,
/// withdrawals, opens with TP/SL, pending limit and stop orders (some expiring, some cancelled),
/// TP/SL edits, partial and full closes, added margin, and price swings that trigger TP, SL,
/// orders, margin calls and liquidations (with bad debt). Returns the engine and every change.
pub fn session(seed: u64, commands: usize) -> (Engine, Vec<ChangeRecord>) {
    let mut cfg = EngineConfig::default();
    cfg.markets[0].close_fee_rate = Ppm(500);
    cfg.markets[0].open_fee_rate = Ppm(300);
    let mut e = Engine::new(cfg).expect("valid config");
    let mut rng = seed | 1;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n.max(1)
    };
    let mut out = Vec::new();
    let mut mid: i64 = 6_000_000; // 60 000.00
    let (mut t, mut rid, mut update) = (1_000_000_000u64, 0u64, 0u64);
    let mut positions: Vec<(AccountId, PositionId)> = Vec::new();
    let mut orders: Vec<(AccountId, OrderId)> = Vec::new();
    let mut apply = |e: &mut Engine, t: u64, kind: CommandKind, out: &mut Vec<Output>| {
        rid += 1;
        let before = out.len();
        e.apply(&Command::new(RequestId(rid), t, kind), out);
        out[before..].iter().find_map(|o| match o {
            Output::Reply { result: Ok(d), .. } => Some(*d),
            _ => None,
        })
    };
    for i in 0..10 {
        let login = Login::new(&format!("trader{i}@x")).expect("login");
        apply(
            &mut e,
            t,
            CommandKind::CreateAccount { login, credential: Credential::empty() },
            &mut out,
        );
    }
    // Two accounts net (one position a market: additions, netted closes and reversals).
    for account in [AccountId(9), AccountId(10)] {
        let mode = PositionMode::Netting;
        apply(&mut e, t, CommandKind::SetPositionMode { account, mode }, &mut out);
    }
    for _ in 0..commands {
        t += 20_000_000; // 20 ms a command: a session spans several one-minute candles
        let account = AccountId(1 + u32::try_from(next(10)).unwrap_or(0));
        let kind = match next(100) {
            0..=39 => {
                // A swing of up to ±3%, sometimes ±12% (liquidations, bad debt).
                let range = if next(20) == 0 { 1_200 } else { 300 };
                let bps = i64::try_from(next(2 * range + 1)).unwrap_or(0)
                    - i64::try_from(range).unwrap_or(0);
                mid = (mid + mid * bps / 10_000).clamp(1_000_000, 20_000_000);
                update += 1;
                let tick = Tick {
                    market: MarketId(0),
                    bid: Price(mid),
                    ask: Price(mid + 100),
                    update_id: update,
                    exchange_time_us: 0,
                };
                CommandKind::PriceTick(tick)
            }
            40..=49 => {
                let side = if next(2) == 0 { Side::Long } else { Side::Short };
                let kind = if next(2) == 0 { OrderKind::Limit } else { OrderKind::Stop };
                // A limit 1% better than the mid, a stop 1% worse: each fills on a later swing.
                let better =
                    if (side == Side::Long) == (kind == OrderKind::Limit) { -1 } else { 1 };
                let expires_at_ns = (next(3) == 0).then_some(t + 2_000_000_000);
                CommandKind::PlaceOrder(OrderRequest {
                    account,
                    market: MarketId(0),
                    side,
                    kind,
                    price: Price(mid + better * mid / 100),
                    leverage: [2, 10, 50][usize::try_from(next(3)).unwrap_or(0)],
                    size: Size::Margin(Usdc(i128::from(20 + next(200)) * 1_000_000)),
                    take_profit: None,
                    stop_loss: None,
                    expires_at_ns,
                    client_order_id: None,
                })
            }
            50..=52 if !orders.is_empty() => {
                let (owner, order) =
                    orders.remove(usize::try_from(next(orders.len() as u64)).unwrap_or(0));
                CommandKind::CancelOrder { account: owner, order, key: None }
            }
            53..=55 if !positions.is_empty() => {
                let (owner, position) =
                    positions[usize::try_from(next(positions.len() as u64)).unwrap_or(0)];
                // Removing both is always valid; a long's wide TP/SL is refused for a short.
                let set = next(2) == 0;
                let take_profit = set.then(|| Price(mid * 3 / 2));
                let stop_loss = set.then_some(Price(mid / 2));
                CommandKind::SetTriggers {
                    account: owner,
                    position,
                    take_profit,
                    stop_loss,
                    key: None,
                }
            }
            50..=64 => {
                let side = if next(2) == 0 { Side::Long } else { Side::Short };
                let leverage = [1, 5, 20, 50, 100][usize::try_from(next(5)).unwrap_or(0)];
                let sign = if side == Side::Long { 1 } else { -1 };
                let tp = (next(3) == 0).then(|| Price(mid + sign * mid / 50));
                let sl = (next(3) == 0).then(|| Price(mid - sign * mid / 40));
                let margin = Usdc(i128::from(50 + next(400)) * 1_000_000);
                CommandKind::OpenPosition(OpenRequest {
                    account,
                    market: MarketId(0),
                    side,
                    leverage,
                    size: Size::Margin(margin),
                    expected_price: None,
                    max_slippage_bps: 0,
                    take_profit: tp,
                    stop_loss: sl,
                    client_order_id: None,
                })
            }
            65..=79 if !positions.is_empty() => {
                let (owner, position) =
                    positions[usize::try_from(next(positions.len() as u64)).unwrap_or(0)];
                let quantity = (next(2) == 0).then_some(CloseSize::Steps(Qty(1_000)));
                CommandKind::ClosePosition { account: owner, position, quantity, key: None }
            }
            80..=86 if !positions.is_empty() => {
                let (owner, position) =
                    positions[usize::try_from(next(positions.len() as u64)).unwrap_or(0)];
                CommandKind::AddMargin {
                    account: owner,
                    position,
                    amount: Usdc(10_000_000),
                    key: None,
                }
            }
            87..=93 => CommandKind::Deposit {
                account,
                amount: Usdc(i128::from(1 + next(1_000)) * 1_000_000),
                key: None,
            },
            _ => CommandKind::Withdraw {
                account,
                amount: Usdc(i128::from(1 + next(800)) * 1_000_000),
                key: None,
            },
        };
        match apply(&mut e, t, kind, &mut out) {
            Some(ReplyData::Opened(v)) => positions.push((v.account, v.id)),
            Some(ReplyData::Order(o)) if matches!(kind, CommandKind::PlaceOrder(_)) => {
                orders.push((o.account, o.id))
            }
            _ => {}
        }
        if orders.len() > 100 {
            orders.remove(0);
        }
        if positions.len() > 200 {
            positions.remove(0);
        }
    }
    let changes = out
        .iter()
        .filter_map(|o| if let Output::Change(c) = o { Some(*c) } else { None })
        .collect();
    (e, changes)
}

/// The stored kind of a change (`opened`, `closed`, …), as in the `changes` table.
pub fn kind_name(change: &Change) -> &'static str {
    crate::project::kind(change)
}

type PositionRow = (
    i64,
    i64,
    String,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<i64>,
);
type LedgerRow = (i64, i64, i64, String, i64, i64, Option<i64>, i64);
type CandleRow = (i64, String, i64, i64, i64, i64, i64, i64);

/// Every table, rendered in key order: two stores with the same dump hold the same history.
pub async fn dump(store: &crate::Store) -> Vec<String> {
    let p = store.pool();
    let mut out = Vec::new();
    let rows: Vec<(i64, i64, i64, i64)> =
        sqlx::query_as("SELECT seq, n, insurance_fund, house_balance FROM history_cursor")
            .fetch_all(p)
            .await
            .unwrap();
    out.extend(rows.iter().map(|r| format!("cursor {r:?}")));
    let rows: Vec<(i64, i64, i64, i64)> =
        sqlx::query_as("SELECT account_id, created_at_ns, balance, locked_margin FROM accounts ORDER BY account_id")
            .fetch_all(p)
            .await
            .unwrap();
    out.extend(rows.iter().map(|r| format!("account {r:?}")));
    let rows: Vec<PositionRow> =
        sqlx::query_as(
            "SELECT position_id, of_position, status, quantity, margin, liquidation_price, exit_price, \
             realized_pnl, payout, close_reason, bad_debt, close_seq FROM positions ORDER BY position_id",
        )
        .fetch_all(p)
        .await
        .unwrap();
    out.extend(rows.iter().map(|r| format!("position {r:?}")));
    let rows: Vec<LedgerRow> = sqlx::query_as(
        "SELECT seq, n, account_id, kind, amount, balance, position_id, at_ns FROM ledger ORDER BY seq, n",
    )
    .fetch_all(p)
    .await
    .unwrap();
    out.extend(rows.iter().map(|r| format!("ledger {r:?}")));
    let rows: Vec<(i64, i64, String, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT seq, n, kind, insurance_delta, house_delta, insurance_fund, house_balance \
         FROM house_ledger ORDER BY seq, n",
    )
    .fetch_all(p)
    .await
    .unwrap();
    out.extend(rows.iter().map(|r| format!("house {r:?}")));
    let rows: Vec<CandleRow> = sqlx::query_as(
        "SELECT market, span, start_ns, open, high, low, close, ticks FROM candles \
         ORDER BY market, span, start_ns",
    )
    .fetch_all(p)
    .await
    .unwrap();
    out.extend(rows.iter().map(|r| format!("candle {r:?}")));
    let rows: Vec<(i64, i64, String, String)> =
        sqlx::query_as("SELECT seq, n, kind, body FROM changes ORDER BY seq, n")
            .fetch_all(p)
            .await
            .unwrap();
    out.extend(rows.iter().map(|r| format!("change {r:?}")));
    out
}
