//! The hedger's own durable state: one JSON line per event in `hedger.jsonl`, fsynced before
//! the hedger acts on it. An order's intent (its client id, market and quantity) is written
//! before it is sent; its result once known. Reading the file back gives the hedge position
//! per market, the cash it cost, the next client id and the orders whose outcome is unknown.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The journal's file name in the state directory.
pub const FILE: &str = "hedger.jsonl";

/// One line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// An order about to be sent.
    Intent {
        /// Its client id at the venue (unique: the journal never reuses one).
        client_id: u32,
        /// The engine's market symbol.
        symbol: String,
        /// Signed quantity in steps (positive: buy).
        qty: i64,
        /// When (ms since the epoch).
        at_ms: u64,
    },
    /// What came of it.
    Result {
        /// The intent's client id.
        client_id: u32,
        /// `filled`, `partially_filled`, `rejected`, `not_found` (never reached the venue),
        /// `cancelled`, `expired`.
        status: String,
        /// Signed quantity executed, in steps.
        executed: i64,
        /// Signed quote amount, micro-USDC: negative when it bought (cash paid). An i64 (9.2
        /// trillion USDC an order): an internally tagged record cannot hold an i128.
        quote_micros: i64,
        /// The venue's reason for a refusal, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// When (ms since the epoch).
        at_ms: u64,
    },
}

/// An order whose outcome is not known yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// Its client id.
    pub client_id: u32,
    /// The engine's market symbol.
    pub symbol: String,
    /// Signed quantity in steps.
    pub qty: i64,
}

/// Why the journal cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The file system.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On what.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A line other than the last is not a record (a torn last line is a crash mid-write).
    #[error("{path} line {line}: not a journal record")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Its line number (from 1).
        line: usize,
    },
    /// Every client id has been used.
    #[error("client ids exhausted")]
    Exhausted,
}

/// The journal and the state it holds.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    next_client_id: u32,
    positions: BTreeMap<String, i64>,
    cash_micros: i128,
    pending: BTreeMap<u32, Pending>,
    orders: u64,
}

impl Journal {
    /// Opens (or creates) the journal in `dir` and reads its state.
    pub fn open(dir: &Path) -> Result<Journal, JournalError> {
        let io = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| JournalError::Io { what, path, source }
        };
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
        let path = dir.join(FILE);
        let mut j = Journal {
            file: OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .open(&path)
                .map_err(io("opening", &path))?,
            path: path.clone(),
            next_client_id: 1,
            positions: BTreeMap::new(),
            cash_micros: 0,
            pending: BTreeMap::new(),
            orders: 0,
        };
        let lines: Vec<String> = BufReader::new(File::open(&path).map_err(io("reading", &path))?)
            .lines()
            .collect::<Result<_, _>>()
            .map_err(io("reading", &path))?;
        let last = lines.len();
        let mut good_bytes = 0u64;
        for (i, line) in lines.iter().enumerate() {
            match serde_json::from_str::<Record>(line) {
                Ok(r) => {
                    j.apply(&r);
                    good_bytes += line.len() as u64 + 1;
                }
                // A crash mid-write leaves a torn last line: the action it began never happened
                // (an intent is sent only once written whole).
                Err(_) if i + 1 == last => break,
                Err(_) => return Err(JournalError::Corrupt { path, line: i + 1 }),
            }
        }
        // The next line starts on a line of its own: a torn tail is cut, a missing last
        // newline added.
        let len = j.file.metadata().map_err(io("reading", &path))?.len();
        if len > good_bytes {
            j.file.set_len(good_bytes).map_err(io("truncating", &path))?;
        } else if len + 1 == good_bytes {
            j.file.write_all(b"\n").map_err(io("writing", &path))?;
        }
        Ok(j)
    }

    fn apply(&mut self, r: &Record) {
        match r {
            Record::Intent { client_id, symbol, qty, .. } => {
                self.next_client_id = self.next_client_id.max(client_id.saturating_add(1));
                self.orders += 1;
                let p = Pending { client_id: *client_id, symbol: symbol.clone(), qty: *qty };
                self.pending.insert(*client_id, p);
            }
            Record::Result { client_id, executed, quote_micros, .. } => {
                if let Some(p) = self.pending.remove(client_id) {
                    *self.positions.entry(p.symbol).or_default() += executed;
                    self.cash_micros += i128::from(*quote_micros);
                }
            }
        }
    }

    /// Writes `r` and syncs it to disk, then applies it.
    pub fn append(&mut self, r: &Record) -> Result<(), JournalError> {
        let mut line = serde_json::to_string(r).unwrap_or_default();
        line.push('\n');
        let io = |what| {
            let path = self.path.clone();
            move |source| JournalError::Io { what, path, source }
        };
        self.file.write_all(line.as_bytes()).map_err(io("writing"))?;
        self.file.sync_data().map_err(io("syncing"))?;
        self.apply(r);
        Ok(())
    }

    /// The next order's client id (not yet used: taken by its intent).
    pub fn next_client_id(&self) -> Result<u32, JournalError> {
        if self.next_client_id == u32::MAX {
            Err(JournalError::Exhausted)
        } else {
            Ok(self.next_client_id)
        }
    }

    /// The hedge position per market, in steps.
    pub fn positions(&self) -> &BTreeMap<String, i64> {
        &self.positions
    }

    /// The hedge's position in `symbol`.
    pub fn position(&self, symbol: &str) -> i64 {
        self.positions.get(symbol).copied().unwrap_or(0)
    }

    /// Σ quote amounts: the cash the hedge trades cost (negative) or brought (positive).
    pub fn cash_micros(&self) -> i128 {
        self.cash_micros
    }

    /// Orders whose outcome is unknown, oldest first.
    pub fn pending(&self) -> Vec<Pending> {
        self.pending.values().cloned().collect()
    }

    /// Orders sent so far.
    pub fn orders(&self) -> u64 {
        self.orders
    }
}

/// One UTC day of the hedge: the cash its fills cost or brought that day and the position per
/// market at the day's end.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Day {
    /// Days since the Unix epoch.
    pub day: u64,
    /// Σ quote amounts of the day's fills, micro-USDC (negative: bought).
    pub cash_micros: i64,
    /// The hedge per market at the day's end, in steps.
    pub positions: BTreeMap<String, i64>,
}

/// Each UTC day `from_day..=to_day` of the journal at `dir` (read again from the file: the
/// report is rare and the journal two lines an order), plus the day before `from_day` as the
/// first row (its positions value the first day's start).
pub fn days(dir: &Path, from_day: u64, to_day: u64) -> Result<Vec<Day>, JournalError> {
    const DAY_MS: u64 = 86_400_000;
    let path = dir.join(FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| JournalError::Io {
        what: "reading",
        path: path.clone(),
        source,
    })?;
    let mut pending: BTreeMap<u32, String> = BTreeMap::new();
    let mut positions: BTreeMap<String, i64> = BTreeMap::new();
    let first = from_day.saturating_sub(1);
    let mut out: Vec<Day> = (first..=to_day).map(|day| Day { day, ..Day::default() }).collect();
    // Which days have ended (their positions set), so a later fill never changes them.
    let mut closed = vec![false; out.len()];
    let mut close_until = |out: &mut Vec<Day>, upto_day: u64, positions: &BTreeMap<String, i64>| {
        for (d, done) in out.iter_mut().zip(closed.iter_mut()) {
            if d.day < upto_day && !*done {
                d.positions = positions.clone();
                *done = true;
            }
        }
    };
    for line in text.lines() {
        let Ok(r) = serde_json::from_str::<Record>(line) else { break };
        match r {
            Record::Intent { client_id, symbol, .. } => {
                pending.insert(client_id, symbol);
            }
            Record::Result { client_id, executed, quote_micros, at_ms, .. } => {
                let Some(symbol) = pending.remove(&client_id) else { continue };
                let day = at_ms / DAY_MS;
                // Days before this one ended with the positions as they were.
                close_until(&mut out, day, &positions);
                *positions.entry(symbol).or_default() += executed;
                if let Some(d) = out.iter_mut().find(|d| d.day == day) {
                    d.cash_micros += quote_micros;
                }
            }
        }
    }
    close_until(&mut out, u64::MAX, &positions);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_survives_a_reopen_and_a_torn_last_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        let intent =
            |client_id, qty| Record::Intent { client_id, symbol: "BTC_USDC".into(), qty, at_ms: 1 };
        j.append(&intent(1, 300)).unwrap();
        let filled = Record::Result {
            client_id: 1,
            status: "filled".into(),
            executed: 300,
            quote_micros: -180_000_000,
            reason: None,
            at_ms: 2,
        };
        j.append(&filled).unwrap();
        j.append(&intent(2, -100)).unwrap();
        drop(j);
        let mut f = OpenOptions::new().append(true).open(dir.path().join(FILE)).unwrap();
        f.write_all(b"{\"kind\":\"res").unwrap(); // a crash mid-write
        let mut j = Journal::open(dir.path()).unwrap();
        assert_eq!(
            (j.position("BTC_USDC"), j.cash_micros(), j.next_client_id().unwrap()),
            (300, -180_000_000, 3)
        );
        assert_eq!(
            j.pending(),
            vec![Pending { client_id: 2, symbol: "BTC_USDC".into(), qty: -100 }]
        );
        // The torn tail was cut: what follows reads back.
        j.append(&intent(3, 5)).unwrap();
        drop(j);
        assert_eq!(Journal::open(dir.path()).unwrap().pending().len(), 2);
    }

    #[test]
    fn each_day_has_its_fills_cash_and_its_closing_positions() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        let day = 86_400_000u64;
        let fill = |j: &mut Journal, id, qty, cash, at_ms| {
            j.append(&Record::Intent { client_id: id, symbol: "BTC_USDC".into(), qty, at_ms })
                .unwrap();
            let r = Record::Result {
                client_id: id,
                status: "filled".into(),
                executed: qty,
                quote_micros: cash,
                reason: None,
                at_ms,
            };
            j.append(&r).unwrap();
        };
        fill(&mut j, 1, 100, -60_000, 10 * day + 5);
        fill(&mut j, 2, -40, 25_000, 12 * day + 7);
        let days = days(dir.path(), 11, 12).unwrap();
        let at = |i: usize| (days[i].day, days[i].cash_micros, days[i].positions["BTC_USDC"]);
        // Day 10 (the one before) closes long 100; 11 has no fill; 12 sells 40.
        assert_eq!((at(0), at(1), at(2)), ((10, -60_000, 100), (11, 0, 100), (12, 25_000, 60)));
    }
}
