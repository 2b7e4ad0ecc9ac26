//! On-disk formats of the journal and of snapshots. Pure: bytes in, bytes out; the file handling
//! lives in the `hundredx` crate.
//!
//! **Journal record**: `[len: u32 LE][crc32: u32 LE][payload: len bytes]`; the CRC-32C (Castagnoli; SSE4.2 hardware where available)
//! covers the payload. The payload's first byte says how the rest is encoded:
//! - `1`: postcard encoding of `(seq: u64, command: Command)` — any command;
//! - `2`: a price tick in a fixed little-endian layout (`seq, request_id, ts_ns: u64`,
//!   `market: u16`, `bid, ask: i64`, `update_id, exchange_time_us: u64`): written until the
//!   compact layout below, still read;
//! - `3`: a price tick, compact: LEB128 varints of `seq, request_id, ts_ns, market`, the bid
//!   zigzag-encoded, `ask - bid` zigzag-encoded, `update_id, exchange_time_us`. Ticks are most of
//!   the journal: a live feed tick's record is about 42 bytes instead of 67, so the journal copies,
//!   checksums and writes back half the bytes. Hand-written (no postcard: its serde path took
//!   ~50 ns a tick), and each record stands alone (no delta from the record before), so a torn
//!   tail is still cut at a record boundary.
//!
//! A record is at most [`MAX_RECORD_BYTES`]. A crash mid-write leaves a short or mismatching last
//! record, which [`RecordReader`] reports instead of decoding.
//!
//! **Snapshot file**: `"HXSNAP08"`, `seq: u64 LE` (the journal sequence of the last command it
//! contains), `state_hash: [u8; 32]`, `len: u64 LE`, `crc32: u32 LE`, then the postcard encoding of
//! [`crate::snapshot::EngineSnapshot`].

use serde::Serialize;

use crate::command::{Command, CommandKind, MarketId, RequestId, Tick};
use crate::num::Price;
use crate::snapshot::EngineSnapshot;

/// Bytes of a record header (length and CRC).
pub const RECORD_HEADER_BYTES: usize = 8;
/// Largest record, header included. A command encodes to well under 400 bytes.
pub const MAX_RECORD_BYTES: usize = crate::command::MAX_ENCODED_BYTES;
// 02: pending orders, margin-call state and the order sequence (a 01 file is refused as
// malformed, not misread).
const SNAPSHOT_MAGIC: &[u8; 8] = b"HXSNAP08";
/// Snapshots written before account controls: the same payload without the trailing
/// `controls`, read as none.
const SNAPSHOT_MAGIC_07: &[u8; 8] = b"HXSNAP07";
/// Snapshots written before the dead-man's switch, sessions and two-factor sign-in: the same
/// payload without the trailing `cancel_schedules`, `sessions`, `next_session_id` and `totp`,
/// read as none.
const SNAPSHOT_MAGIC_06: &[u8; 8] = b"HXSNAP06";
/// Snapshots written before netting: the same payload without the trailing `netting`, read as
/// none.
const SNAPSHOT_MAGIC_05: &[u8; 8] = b"HXSNAP05";
/// Snapshots written before cross margin: the same payload without the trailing `cross`, read
/// as none.
const SNAPSHOT_MAGIC_04: &[u8; 8] = b"HXSNAP04";
/// Snapshots written before the client groups' bps markup, per-lot commission and financing
/// rates: the same payload without the trailing `group_pricing`, read as if empty.
const SNAPSHOT_MAGIC_03: &[u8; 8] = b"HXSNAP03";
/// Snapshots written before price sources and client groups existed: the same payload without
/// the trailing `sources`, `groups`, `spread_revenue` and `commission_revenue`, read as if empty.
const SNAPSHOT_MAGIC_02: &[u8; 8] = b"HXSNAP02";
const FORMAT_POSTCARD: u8 = 1;
const FORMAT_TICK: u8 = 2;
const FORMAT_TICK_COMPACT: u8 = 3;
const TICK_PAYLOAD_BYTES: usize = 1 + 8 + 8 + 8 + 2 + 8 + 8 + 8 + 8;
/// Largest compact tick payload: the format byte, seven varints of at most 10 bytes, the market.
const TICK_COMPACT_BYTES_MAX: usize = 1 + 7 * 10 + 3;
const SNAPSHOT_HEADER_BYTES: usize = 8 + 8 + 32 + 8 + 4;

/// Postcard encoding of any value (deterministic for equal values). Allocates: not for the hot path.
pub fn encode_value<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).expect("in-memory serialization of plain data cannot fail")
}

/// Writes the record for `(seq, cmd)` into `buf` and returns its length. No allocation.
pub fn encode_record(seq: u64, cmd: &Command, buf: &mut [u8; MAX_RECORD_BYTES]) -> usize {
    let body = &mut buf[RECORD_HEADER_BYTES..];
    let len = match &cmd.kind {
        CommandKind::PriceTick(t) => encode_tick_compact(seq, cmd, t, body),
        _ => {
            body[0] = FORMAT_POSTCARD;
            1 + postcard::to_slice(&(seq, cmd), &mut body[1..])
                .expect("a command always fits MAX_RECORD_BYTES (inline strings are bounded)")
                .len()
        }
    };
    seal(buf, len)
}

/// Writes the header (length, CRC) of the `len`-byte payload already in `buf`; the record's size.
fn seal(buf: &mut [u8; MAX_RECORD_BYTES], len: usize) -> usize {
    let (header, body) = buf.split_at_mut(RECORD_HEADER_BYTES);
    let crc = crc32c::crc32c(&body[..len]);
    header[..4].copy_from_slice(&u32::try_from(len).expect("len < 1024").to_le_bytes());
    header[4..].copy_from_slice(&crc.to_le_bytes());
    RECORD_HEADER_BYTES + len
}

/// Appends `v` as LEB128 (7 bits a byte, low first; at most 10 bytes).
#[inline]
#[allow(clippy::cast_possible_truncation)] // the low 7 bits, on purpose
fn put_varint(out: &mut [u8], at: &mut usize, mut v: u64) {
    while v >= 0x80 {
        out[*at] = (v as u8) | 0x80; // low 7 bits, continued
        *at += 1;
        v >>= 7;
    }
    out[*at] = v as u8;
    *at += 1;
}

/// Reads a LEB128 varint at `*at`; `None` past the end, beyond 10 bytes or beyond 64 bits.
#[inline]
fn get_varint(p: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *p.get(*at)?;
        *at += 1;
        let bits = u64::from(b & 0x7f);
        if shift == 63 && bits > 1 {
            return None; // the tenth byte carries one bit
        }
        v |= bits << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[allow(clippy::cast_sign_loss)] // a bit-level mapping
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64 // the sign to the lowest bit: small magnitudes stay short
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn encode_tick_compact(seq: u64, cmd: &Command, t: &Tick, out: &mut [u8]) -> usize {
    let out = &mut out[..TICK_COMPACT_BYTES_MAX];
    out[0] = FORMAT_TICK_COMPACT;
    let mut at = 1;
    put_varint(out, &mut at, seq);
    put_varint(out, &mut at, cmd.request_id.0);
    put_varint(out, &mut at, cmd.ts_ns);
    put_varint(out, &mut at, u64::from(t.market.0));
    put_varint(out, &mut at, zigzag(t.bid.0));
    put_varint(out, &mut at, zigzag(t.ask.0.wrapping_sub(t.bid.0)));
    put_varint(out, &mut at, t.update_id);
    put_varint(out, &mut at, t.exchange_time_us);
    at
}

fn decode_tick_compact(p: &[u8]) -> Option<(u64, Command)> {
    let mut at = 1;
    let mut next = || get_varint(p, &mut at);
    let (seq, rid, ts) = (next()?, next()?, next()?);
    let market = MarketId(u16::try_from(next()?).ok()?);
    let bid = unzigzag(next()?);
    let ask = bid.wrapping_add(unzigzag(next()?));
    let (update_id, exchange_time_us) = (next()?, next()?);
    if at != p.len() {
        return None; // trailing bytes: not a record this encoder wrote
    }
    let tick = Tick { market, bid: Price(bid), ask: Price(ask), update_id, exchange_time_us };
    Some((seq, Command::new(RequestId(rid), ts, CommandKind::PriceTick(tick))))
}

/// The fixed layout (format 2): the benches compare it with the compact one.
pub fn encode_tick_fixed(seq: u64, cmd: &Command, buf: &mut [u8; MAX_RECORD_BYTES]) -> usize {
    let CommandKind::PriceTick(t) = &cmd.kind else { return encode_record(seq, cmd, buf) };
    let len = encode_tick(seq, cmd, t, &mut buf[RECORD_HEADER_BYTES..]);
    seal(buf, len)
}

fn encode_tick(seq: u64, cmd: &Command, t: &Tick, out: &mut [u8]) -> usize {
    let out = &mut out[..TICK_PAYLOAD_BYTES];
    out[0] = FORMAT_TICK;
    let mut at = 1;
    let mut put = |bytes: &[u8]| {
        out[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(&seq.to_le_bytes());
    put(&cmd.request_id.0.to_le_bytes());
    put(&cmd.ts_ns.to_le_bytes());
    put(&t.market.0.to_le_bytes());
    put(&t.bid.0.to_le_bytes());
    put(&t.ask.0.to_le_bytes());
    put(&t.update_id.to_le_bytes());
    put(&t.exchange_time_us.to_le_bytes());
    TICK_PAYLOAD_BYTES
}

fn decode_tick(p: &[u8]) -> Option<(u64, Command)> {
    if p.len() != TICK_PAYLOAD_BYTES {
        return None;
    }
    let u64_at = |at: usize| u64::from_le_bytes(p[at..at + 8].try_into().expect("8 bytes"));
    let i64_at = |at: usize| i64::from_le_bytes(p[at..at + 8].try_into().expect("8 bytes"));
    let tick = Tick {
        market: MarketId(u16::from_le_bytes([p[25], p[26]])),
        bid: Price(i64_at(27)),
        ask: Price(i64_at(35)),
        update_id: u64_at(43),
        exchange_time_us: u64_at(51),
    };
    Some((u64_at(1), Command::new(RequestId(u64_at(9)), u64_at(17), CommandKind::PriceTick(tick))))
}

fn decode_payload(p: &[u8]) -> Option<(u64, Command)> {
    match *p.first()? {
        FORMAT_TICK_COMPACT => decode_tick_compact(p),
        FORMAT_TICK => decode_tick(p),
        FORMAT_POSTCARD => postcard::from_bytes::<(u64, Command)>(&p[1..]).ok(),
        _ => None,
    }
}

/// Why a record could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The bytes end inside the record (a torn write if at the end of the last segment).
    #[error("record at byte {offset} is incomplete")]
    Truncated {
        /// Where the record starts.
        offset: usize,
    },
    /// The length is impossible or the checksum does not match.
    #[error("record at byte {offset} is corrupt (bad length or checksum)")]
    Corrupt {
        /// Where the record starts.
        offset: usize,
    },
    /// The checksum matches but the payload does not decode (a format bug, not a torn write).
    #[error("record at byte {offset} does not decode")]
    Undecodable {
        /// Where the record starts.
        offset: usize,
    },
}

impl RecordError {
    /// Where the bad record starts: everything before it is good.
    pub fn offset(&self) -> usize {
        match *self {
            RecordError::Truncated { offset }
            | RecordError::Corrupt { offset }
            | RecordError::Undecodable { offset } => offset,
        }
    }
}

/// Iterates the records of a journal segment's bytes: `(seq, command, end offset)`. Stops after
/// the first error.
#[derive(Debug)]
pub struct RecordReader<'a> {
    bytes: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> RecordReader<'a> {
    /// Reads `bytes` from the start.
    pub fn new(bytes: &'a [u8]) -> RecordReader<'a> {
        RecordReader { bytes, pos: 0, failed: false }
    }

    /// Offset just past the last record returned.
    pub fn position(&self) -> usize {
        self.pos
    }

    fn read(&mut self) -> Result<(u64, Command), RecordError> {
        let offset = self.pos;
        let rest = &self.bytes[offset..];
        if rest.len() < RECORD_HEADER_BYTES {
            return Err(RecordError::Truncated { offset });
        }
        let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
        if len == 0 || len > MAX_RECORD_BYTES - RECORD_HEADER_BYTES {
            return Err(RecordError::Corrupt { offset });
        }
        let Some(payload) = rest.get(RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + len) else {
            return Err(RecordError::Truncated { offset });
        };
        if crc32c::crc32c(payload) != crc {
            return Err(RecordError::Corrupt { offset });
        }
        let rec = decode_payload(payload).ok_or(RecordError::Undecodable { offset })?;
        self.pos = offset + RECORD_HEADER_BYTES + len;
        Ok(rec)
    }
}

impl Iterator for RecordReader<'_> {
    type Item = Result<(u64, Command), RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.bytes.len() {
            return None;
        }
        let r = self.read();
        self.failed = r.is_err();
        Some(r)
    }
}

pub use crate::snapshot::SnapshotError;

/// A decoded snapshot file.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotFile {
    /// Journal sequence of the last command the snapshot contains.
    pub seq: u64,
    /// State hash recorded when it was taken.
    pub state_hash: [u8; 32],
    /// How that hash was computed: compare it with [`crate::Engine::state_hash_in`].
    pub hash_shape: HashShape,
    /// The state.
    pub snapshot: EngineSnapshot,
}

/// Encodes a snapshot file.
pub fn encode_snapshot(seq: u64, state_hash: &[u8; 32], snapshot: &EngineSnapshot) -> Vec<u8> {
    let payload = encode_value(snapshot);
    let mut out = Vec::with_capacity(SNAPSHOT_HEADER_BYTES + payload.len());
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(state_hash);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Decodes and checks a snapshot file's framing (not yet the state hash: that needs the
/// configuration, see [`crate::Engine::restore`]).
pub fn decode_snapshot(bytes: &[u8]) -> Result<SnapshotFile, SnapshotError> {
    // Fields added since each older format: empty lists and zero amounts, one byte 0 each in
    // postcard (a length 0, a varint 0).
    let missing_bytes = match bytes.get(..8) {
        Some(m) if m == SNAPSHOT_MAGIC => 0,
        // sources, groups, spread and commission revenue, group terms; group pricing; cross;
        // netting, bracket groups, API keys and the next key id; dead-man's switches, sessions,
        // the next session id and two-factor enrolments.
        Some(m) if m == SNAPSHOT_MAGIC_02 => 16,
        Some(m) if m == SNAPSHOT_MAGIC_03 => 11,
        Some(m) if m == SNAPSHOT_MAGIC_04 => 10,
        Some(m) if m == SNAPSHOT_MAGIC_05 => 9,
        Some(m) if m == SNAPSHOT_MAGIC_06 => 5,
        Some(m) if m == SNAPSHOT_MAGIC_07 => 1,
        _ => return Err(SnapshotError::Malformed),
    };
    if bytes.len() < SNAPSHOT_HEADER_BYTES {
        return Err(SnapshotError::Malformed);
    }
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let seq = u64_at(8);
    let state_hash: [u8; 32] = bytes[16..48].try_into().expect("32 bytes");
    let len = usize::try_from(u64_at(48)).map_err(|_| SnapshotError::Malformed)?;
    let crc = u32::from_le_bytes(bytes[56..60].try_into().expect("4 bytes"));
    let payload = &bytes[SNAPSHOT_HEADER_BYTES..];
    if payload.len() != len {
        return Err(SnapshotError::Malformed);
    }
    if crc32c::crc32c(payload) != crc {
        return Err(SnapshotError::Checksum);
    }
    // Before cross margin (HXSNAP04 and older) an account view had 7 fields: the account
    // replies in the request window are read in that shape.
    let _shape = crate::view::LegacyAccountViews::set(magic_before_cross(bytes));
    let snapshot = if missing_bytes > 0 {
        let mut extended = payload.to_vec();
        extended.extend_from_slice(&[0; 16][..missing_bytes]);
        postcard::from_bytes(&extended)
    } else {
        postcard::from_bytes(payload)
    };
    let snapshot = snapshot.map_err(|_| SnapshotError::Undecodable)?;
    let hash_shape =
        if magic_before_cross(bytes) { HashShape::BeforeCross } else { HashShape::Current };
    Ok(SnapshotFile { seq, state_hash, hash_shape, snapshot })
}

fn magic_before_cross(bytes: &[u8]) -> bool {
    matches!(bytes.get(..8), Some(m) if m == SNAPSHOT_MAGIC_02 || m == SNAPSHOT_MAGIC_03 || m == SNAPSHOT_MAGIC_04)
}

/// How the state hash a snapshot records was computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashShape {
    /// As now.
    Current,
    /// Before cross margin (HXSNAP04 and older): remembered account replies as 7-field views.
    BeforeCross,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{
        ClientOrderId, CommandKind, Credential, Login, OpenRequest, RequestId, Size,
    };
    use crate::prelude::*;

    /// A snapshot written before price sources existed (HXSNAP02: the payload without the
    /// trailing `sources` list and what followed) or before the groups' pricing (HXSNAP03)
    /// or cross margin (HXSNAP04) or netting (HXSNAP05) still restores, with none.
    #[test]
    fn a_snapshot_from_before_sources_decodes_with_none() {
        let snap = crate::snapshot::EngineSnapshot {
            sources: Vec::new(),
            group_terms: Vec::new(),
            group_pricing: Vec::new(),
            cross: None,
            netting: Vec::new(),
            bracket_groups: Vec::new(),
            api_keys: Vec::new(),
            next_key_id: 0,
            cancel_schedules: Vec::new(),
            sessions: Vec::new(),
            next_session_id: 0,
            totp: Vec::new(),
            controls: Vec::new(),
            ..Engine::new(EngineConfig::default()).unwrap().snapshot()
        };
        let payload = encode_value(&snap);
        assert!(
            payload.ends_with(&[0; 16]),
            "empty lists, zero amounts and none are one byte 0 each"
        );
        let olds = [
            (SNAPSHOT_MAGIC_02, 16),
            (SNAPSHOT_MAGIC_03, 11),
            (SNAPSHOT_MAGIC_04, 10),
            (SNAPSHOT_MAGIC_05, 9),
            (SNAPSHOT_MAGIC_06, 5),
            (SNAPSHOT_MAGIC_07, 1),
        ];
        for (magic, cut) in olds {
            let old = &payload[..payload.len() - cut];
            let mut bytes = Vec::new();
            bytes.extend_from_slice(magic);
            bytes.extend_from_slice(&7u64.to_le_bytes());
            bytes.extend_from_slice(&[9u8; 32]);
            bytes.extend_from_slice(&(old.len() as u64).to_le_bytes());
            bytes.extend_from_slice(&crc32c::crc32c(old).to_le_bytes());
            bytes.extend_from_slice(old);
            let file = decode_snapshot(&bytes).unwrap();
            assert_eq!((file.seq, &file.snapshot), (7, &snap), "{magic:?}");
        }
        let current = encode_snapshot(7, &[9u8; 32], &snap);
        assert_eq!(&current[..8], SNAPSHOT_MAGIC);
        assert_eq!(decode_snapshot(&current).unwrap().snapshot, snap);
    }

    fn biggest_command() -> Command {
        let open = OpenRequest {
            account: AccountId(u32::MAX),
            market: MarketId(u16::MAX),
            side: Side::Short,
            leverage: u32::MAX,
            size: Size::Margin(Usdc(i128::MIN)),
            expected_price: Some(Price(i64::MIN)),
            max_slippage_bps: u32::MAX,
            take_profit: Some(Price(i64::MIN)),
            stop_loss: Some(Price(i64::MIN)),
            client_order_id: ClientOrderId::new(&"é".repeat(18)),
        };
        Command::new(RequestId(u64::MAX), u64::MAX, CommandKind::OpenPosition(open))
    }

    #[test]
    fn records_round_trip_and_the_largest_command_fits() {
        let mut buf = [0u8; MAX_RECORD_BYTES];
        let cmds = [
            biggest_command(),
            Command::new(
                RequestId(1),
                2,
                CommandKind::CreateAccount {
                    login: Login::new(&"x".repeat(64)).unwrap(),
                    credential: Credential::new(&"y".repeat(128)).unwrap(),
                },
            ),
            Command::default(),
            Command::new(
                RequestId(9),
                10,
                CommandKind::PriceTick(Tick {
                    market: MarketId(2),
                    bid: Price(-1),
                    ask: Price(i64::MAX),
                    update_id: u64::MAX,
                    exchange_time_us: 3,
                }),
            ),
        ];
        let mut bytes = Vec::new();
        for (i, c) in cmds.iter().enumerate() {
            let n = encode_record(i as u64 + 7, c, &mut buf);
            assert!(n < 400, "{n}");
            bytes.extend_from_slice(&buf[..n]);
        }
        let back: Vec<_> = RecordReader::new(&bytes).map(|r| r.unwrap()).collect();
        assert_eq!(
            back,
            cmds.iter().enumerate().map(|(i, c)| (i as u64 + 7, *c)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn torn_and_corrupt_records_are_reported_with_the_good_prefix() {
        let mut buf = [0u8; MAX_RECORD_BYTES];
        let mut bytes = Vec::new();
        for i in 0..3 {
            let n = encode_record(i, &Command::default(), &mut buf);
            bytes.extend_from_slice(&buf[..n]);
        }
        let whole = bytes.len();
        let one = whole / 3;
        // Cut inside the last record: two good, then Truncated at the third's offset.
        let mut r = RecordReader::new(&bytes[..whole - 1]);
        assert!(r.next().unwrap().is_ok() && r.next().unwrap().is_ok());
        assert_eq!(r.next(), Some(Err(RecordError::Truncated { offset: 2 * one })));
        assert_eq!(r.next(), None);
        // Flip a payload byte of the second record.
        let mut bad = bytes.clone();
        bad[one + RECORD_HEADER_BYTES] ^= 0xff;
        let res: Vec<_> = RecordReader::new(&bad).collect();
        assert_eq!(res.len(), 2);
        assert_eq!(res[1], Err(RecordError::Corrupt { offset: one }));
        // Zeroed tail (pre-allocated file space): corrupt length.
        let mut zeros = bytes.clone();
        zeros.extend_from_slice(&[0u8; 16]);
        assert_eq!(
            RecordReader::new(&zeros).last(),
            Some(Err(RecordError::Corrupt { offset: whole }))
        );
    }

    proptest::proptest! {
        #[test]
        fn compact_ticks_round_trip_whatever_their_values(
            seq: u64, rid: u64, ts: u64, market: u16, bid: i64, ask: i64, update_id: u64, exch: u64,
        ) {
            let tick = Tick { market: MarketId(market), bid: Price(bid), ask: Price(ask), update_id, exchange_time_us: exch };
            let cmd = Command::new(RequestId(rid), ts, CommandKind::PriceTick(tick));
            let mut buf = [0u8; MAX_RECORD_BYTES];
            let n = encode_record(seq, &cmd, &mut buf);
            let back: Vec<_> = RecordReader::new(&buf[..n]).collect();
            proptest::prop_assert_eq!(back, vec![Ok((seq, cmd))]);
            // Any cut inside the record is reported as torn, never misread.
            for cut in 1..n {
                let r = RecordReader::new(&buf[..cut]).next();
                proptest::prop_assert_eq!(r, Some(Err(RecordError::Truncated { offset: 0 })));
            }
        }
    }

    #[test]
    fn a_live_tick_takes_half_the_bytes_and_the_old_layout_still_reads() {
        let tick = Tick {
            market: MarketId(1),
            bid: Price(6_000_012),
            ask: Price(6_000_062),
            update_id: 1_234_567_890,
            exchange_time_us: 1_764_000_000_000_000,
        };
        let cmd =
            Command::new(RequestId::NONE, 1_764_000_000_123_456_789, CommandKind::PriceTick(tick));
        let mut buf = [0u8; MAX_RECORD_BYTES];
        let compact = encode_record(123_456_789, &cmd, &mut buf);
        assert_eq!(compact, 42, "8 header + 34 payload (a feed tick's values, varints)");
        let mut old = [0u8; MAX_RECORD_BYTES];
        let fixed = encode_tick_fixed(123_456_789, &cmd, &mut old);
        assert_eq!(fixed, 67);
        let mut both = old[..fixed].to_vec();
        both.extend_from_slice(&buf[..compact]);
        let back: Vec<_> = RecordReader::new(&both).map(|r| r.unwrap()).collect();
        assert_eq!(back, vec![(123_456_789, cmd), (123_456_789, cmd)]);
        // A varint running past 64 bits does not decode.
        let mut bad = vec![FORMAT_TICK_COMPACT];
        bad.extend_from_slice(&[0xff; 10]);
        bad.push(0x01);
        assert!(decode_payload(&bad).is_none());
    }
}
