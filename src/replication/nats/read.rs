//! Reading the journal stream: which messages are genuine batches, where a record is (a
//! binary search over the batches' ranges), and the records of the messages read one by one.

use engine_core::persist::RecordReader;
use tracing::error;

use super::{
    Batch, FORGED_REPORTED_MAX, JOURNAL_DOMAIN, Msg, NatsLog, SCAN_MAX, STREAM, Transport,
};
use crate::replication::journal::{Entry, LogError, Read};

impl<T: Transport> NatsLog<T> {
    /// The message as a genuine batch, or `None` (with an `ALERT`, once) when it is not signed
    /// by the bridge key.
    pub(super) fn batch(&mut self, m: Msg) -> Option<Batch> {
        let h = |name: &str| m.headers.get(name).map(|v| v.as_str().to_owned());
        let num = |name: &str| h(name).and_then(|v| v.parse::<u64>().ok());
        let checked =
            match (num("Hx-First"), num("Hx-Last"), h("Hx-Token"), h("Hx-Sig")) {
                (Some(first), Some(last), Some(token), Some(sig)) if last + 1 >= first => {
                    let data = Self::signed(&token, last, &m.payload);
                    self.key.verify_bytes(JOURNAL_DOMAIN, first, &sig, &data).is_ok().then_some(
                        Batch { stream_seq: m.sequence, first, last, token, payload: m.payload },
                    )
                }
                _ => None,
            };
        if checked.is_none() && !self.reported.contains(&m.sequence) {
            error!(
                stream_seq = m.sequence,
                "ALERT: {STREAM} holds a message not signed by the \
                bridge key (a NATS writer without the secret?); skipped, never applied"
            );
            if self.reported.len() == FORGED_REPORTED_MAX {
                self.reported.pop_front();
            }
            self.reported.push_back(m.sequence);
        }
        checked
    }

    /// The first genuine batch at or after stream sequence `from` (up to `end`, exclusive).
    pub(super) fn genuine_from(&mut self, from: u64, end: u64) -> Result<Option<Batch>, LogError> {
        for s in from..end.min(from.saturating_add(SCAN_MAX)) {
            if let Some(b) = self.link.get(s)?.and_then(|m| self.batch(m)) {
                return Ok(Some(b));
            }
        }
        Ok(None)
    }

    /// The newest genuine batch at or before stream sequence `from` (down to `stop`).
    pub(super) fn genuine_back(&mut self, from: u64, stop: u64) -> Result<Option<Batch>, LogError> {
        let mut s = from;
        while s >= stop.max(1) && from - s < SCAN_MAX {
            if let Some(b) = self.link.get(s)?.and_then(|m| self.batch(m)) {
                return Ok(Some(b));
            }
            s -= 1;
        }
        Ok(None)
    }

    /// The stream sequence to read from to find record `target` first: the smallest whose
    /// batch ends at or after it (binary search; the batches' ranges only grow).
    pub(super) fn locate(&mut self, target: u64) -> Result<u64, LogError> {
        let st = self.link.state()?;
        let (mut lo, mut hi) = (st.first_sequence.max(1), st.last_sequence + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.genuine_from(mid, hi)? {
                Some(b) if b.last >= target => hi = mid,
                Some(b) => lo = b.stream_seq + 1,
                None => hi = mid,
            }
        }
        Ok(lo)
    }

    /// Adds message `m`'s records within `keep` to `read`, or its sequence to the forged ones.
    pub(super) fn take(
        &mut self,
        m: Msg,
        keep: std::ops::RangeInclusive<u64>,
        read: &mut Read,
    ) -> Result<(), LogError> {
        let at = m.sequence;
        match self.batch(m) {
            Some(b) => {
                read.entries.extend(Self::records(&b)?.into_iter().filter(|e| keep.contains(&e.0)))
            }
            None => read.forged.push(at.to_string()),
        }
        Ok(())
    }

    /// The records of a batch, each with its own bytes.
    pub(super) fn records(b: &Batch) -> Result<Vec<Entry>, LogError> {
        let mut reader = RecordReader::new(&b.payload);
        let mut out = Vec::with_capacity(usize::try_from(b.last + 1 - b.first).unwrap_or(0));
        let mut at = 0;
        while let Some(r) = reader.next() {
            let (seq, _) =
                r.map_err(|e| LogError::Nats(format!("batch at {}: {e}", b.stream_seq)))?;
            out.push((seq, b.payload[at..reader.position()].to_vec()));
            at = reader.position();
        }
        let expected = (b.first..=b.last).eq(out.iter().map(|e| e.0));
        if !expected {
            return Err(LogError::Nats(format!(
                "batch at stream seq {} does not hold records {}..={}",
                b.stream_seq, b.first, b.last
            )));
        }
        Ok(out)
    }

    /// Reads from the cursor (or from where `after + 1` is) up to `count` records.
    pub(super) fn read_once(&mut self, after: u64, count: usize) -> Result<Read, LogError> {
        let mut s = match self.cursor {
            Some((s, next)) if next == after + 1 => s,
            _ => self.locate(after + 1)?,
        };
        let mut read = Read::default();
        while read.entries.len() < count {
            let mut got = self.link.get(s)?;
            if got.is_none() {
                // The end, a deleted or purged message — or one appended since the get: the
                // state is read after the get, so a message below its end that is still not
                // there on a second look was removed, never skipped while being written.
                let st = self.link.state()?;
                if s > st.last_sequence {
                    break;
                }
                if s < st.first_sequence {
                    s = st.first_sequence; // purged below: go on from the first
                    continue;
                }
                got = self.link.get(s)?;
            }
            if let Some(m) = got {
                self.take(m, after + 1..=u64::MAX, &mut read)?;
            } // else deleted
            s += 1;
        }
        let next = read.entries.last().map_or(after + 1, |e| e.0 + 1);
        self.cursor = Some((s, next));
        Ok(read)
    }
}
