//! Authenticated stream entries (pure; no I/O): whoever can write to Redis must not be able to
//! move money, and whoever can read it must not be able to reuse what it saw.
//!
//! Every entry the bridge writes carries three fields: `data` (the JSON of [`crate::wire`]),
//! `ts` (the writer's clock, milliseconds since the Unix epoch) and `sig`, the hex HMAC-SHA256
//! under the shared bridge secret of
//!
//! ```text
//! hundredx-bridge-v1 \n <destination stream> \n <ts> \n <data>
//! ```
//!
//! The destination stream is inside the MAC, so an entry signed for one stream (a reply to
//! `callback-queue:api-1`, a tick) is refused on any other (`engine-stream`). `ts` bounds how
//! long a captured entry stays usable; within that age the [`ReplayGuard`] refuses a second
//! entry with the same request id.
//!
//! ```
//! use redis_bridge::signing::{BridgeKey, SigError};
//! let key = BridgeKey::new(b"a shared secret of at least 32 bytes!").unwrap();
//! let sig = key.sign("engine-stream", 1_000, "{}");
//! assert_eq!(key.verify("engine-stream", Some("1000"), Some(&sig), "{}"), Ok(1_000));
//! assert_eq!(key.verify("price-stream", Some("1000"), Some(&sig), "{}"), Err(SigError::BadSignature));
//! assert_eq!(key.verify("engine-stream", None, None, "{}"), Err(SigError::Unsigned));
//! ```

use std::collections::{HashMap, VecDeque};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Shortest secret accepted (bytes): 256 bits, the HMAC-SHA256 key size.
pub const SECRET_LEN_MIN: usize = 32;

const DOMAIN: &[u8] = b"hundredx-bridge-v1\n";

/// The shared secret, ready to sign and check entries. Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct BridgeKey {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for BridgeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BridgeKey(<redacted>)")
    }
}

/// Why an entry was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// The secret is shorter than [`SECRET_LEN_MIN`] bytes.
    #[error("the bridge secret must be at least {SECRET_LEN_MIN} bytes")]
    ShortSecret,
    /// No `ts` or no `sig` field.
    #[error("unsigned")]
    Unsigned,
    /// The signature does not match (wrong secret, altered entry, or signed for another stream).
    #[error("bad signature")]
    BadSignature,
    /// Signed, but older (or further in the future) than the accepted age.
    #[error("stale")]
    Stale,
    /// Signed and fresh, but its request id was already used by another entry.
    #[error("replayed")]
    Replayed,
}

impl SigError {
    /// A stable code, for the dead-letter stream and the counters.
    pub fn code(self) -> &'static str {
        match self {
            SigError::ShortSecret => "short_secret",
            SigError::Unsigned => "unsigned",
            SigError::BadSignature => "bad_signature",
            SigError::Stale => "stale",
            SigError::Replayed => "replayed",
        }
    }
}

impl BridgeKey {
    /// A key from the shared secret (at least [`SECRET_LEN_MIN`] bytes).
    pub fn new(secret: &[u8]) -> Result<BridgeKey, SigError> {
        if secret.len() < SECRET_LEN_MIN {
            return Err(SigError::ShortSecret);
        }
        let mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(secret).map_err(|_| SigError::ShortSecret)?;
        Ok(BridgeKey { mac })
    }

    fn mac_of(&self, stream: &str, ts_ms: u64, data: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(DOMAIN);
        mac.update(stream.as_bytes());
        mac.update(b"\n");
        mac.update(ts_ms.to_string().as_bytes());
        mac.update(b"\n");
        mac.update(data);
        mac
    }

    /// The `sig` field of an entry for `stream` written at `ts_ms`.
    pub fn sign(&self, stream: &str, ts_ms: u64, data: &str) -> String {
        self.sign_bytes(stream, ts_ms, data.as_bytes())
    }

    /// The signature of binary `data` at position `n` of `stream` (a journal record at its
    /// sequence: `engine-journal`).
    pub fn sign_bytes(&self, stream: &str, n: u64, data: &[u8]) -> String {
        let tag = self.mac_of(stream, n, data).finalize().into_bytes();
        let mut hex = String::with_capacity(tag.len() * 2);
        for b in tag {
            hex.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            hex.push(char::from(b"0123456789abcdef"[usize::from(b & 0xf)]));
        }
        hex
    }

    /// Checks [`BridgeKey::sign_bytes`]'s signature, in constant time.
    pub fn verify_bytes(
        &self,
        stream: &str,
        n: u64,
        sig: &str,
        data: &[u8],
    ) -> Result<(), SigError> {
        let tag = unhex(sig).ok_or(SigError::BadSignature)?;
        self.mac_of(stream, n, data).verify_slice(&tag).map_err(|_| SigError::BadSignature)
    }

    /// Checks an entry read from `stream`; returns its `ts` (milliseconds). The comparison is in
    /// constant time.
    pub fn verify(
        &self,
        stream: &str,
        ts: Option<&str>,
        sig: Option<&str>,
        data: &str,
    ) -> Result<u64, SigError> {
        let (Some(ts), Some(sig)) = (ts, sig) else { return Err(SigError::Unsigned) };
        // Only the canonical form ("12", never "012"): one entry, one way to write it.
        let ts_ms: u64 = ts.parse().map_err(|_| SigError::BadSignature)?;
        if ts_ms.to_string() != ts {
            return Err(SigError::BadSignature);
        }
        let tag = unhex(sig).ok_or(SigError::BadSignature)?;
        self.mac_of(stream, ts_ms, data.as_bytes())
            .verify_slice(&tag)
            .map_err(|_| SigError::BadSignature)?;
        Ok(ts_ms)
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 {
        return None;
    }
    let nibble = |c: u8| char::from(c).to_digit(16).and_then(|d| u8::try_from(d).ok());
    s.as_bytes().chunks(2).map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?)).collect()
}

/// Is `ts_ms` within `max_age_ms` of `now_ms`, either way (clocks of two machines differ)?
pub fn fresh(ts_ms: u64, now_ms: u64, max_age_ms: u64) -> bool {
    now_ms.abs_diff(ts_ms) <= max_age_ms
}

/// What [`ReplayGuard::admit`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    /// A request id not seen before: apply it.
    New,
    /// The same entry again: taken already, acknowledge it without applying.
    Again,
}

/// Remembers which entry carried each request id while entries of that age are accepted, so a
/// signed entry copied by a Redis reader and written again (a new entry, the same request id)
/// is refused, while Redis redelivering the same entry (a restart, a reclaim) is not.
///
/// Bounded: beyond `capacity` ids the oldest is forgotten and nothing at or below its `ts` is
/// accepted any more (the accepted age shrinks rather than a replay getting through).
#[derive(Debug)]
pub struct ReplayGuard {
    max_age_ms: u64,
    capacity: usize,
    seen: HashMap<u64, (u64, u128)>,
    order: VecDeque<(u64, u64)>,
    floor_ts_ms: u64,
}

impl ReplayGuard {
    /// A guard for entries up to `max_age_ms` old, remembering at most `capacity` ids.
    pub fn new(max_age_ms: u64, capacity: usize) -> ReplayGuard {
        assert!(capacity > 0, "a replay guard needs room for one id");
        ReplayGuard {
            max_age_ms,
            capacity,
            seen: HashMap::new(),
            order: VecDeque::new(),
            floor_ts_ms: 0,
        }
    }

    /// Admits request `id` carried by Redis entry `entry` (its `ms-seq` id) signed at `ts_ms`:
    /// [`Admitted::New`] the first time, [`Admitted::Again`] when the same entry comes back
    /// (Redis redelivering it after a reconnect or a claim): the engine already took it, so it
    /// must not be applied again — its reply comes, or came, from the first delivery.
    pub fn admit(
        &mut self,
        id: u64,
        entry: &str,
        ts_ms: u64,
        now_ms: u64,
    ) -> Result<Admitted, SigError> {
        self.expire(now_ms);
        if !fresh(ts_ms, now_ms, self.max_age_ms) || ts_ms <= self.floor_ts_ms {
            return Err(SigError::Stale);
        }
        let entry = entry_key(entry);
        if let Some(&(_, first)) = self.seen.get(&id) {
            return if first == entry { Ok(Admitted::Again) } else { Err(SigError::Replayed) };
        }
        if self.seen.len() >= self.capacity
            && let Some((old_ts, old_id)) = self.order.pop_front()
        {
            self.seen.remove(&old_id);
            self.floor_ts_ms = self.floor_ts_ms.max(old_ts);
            if ts_ms <= self.floor_ts_ms {
                return Err(SigError::Stale);
            }
        }
        self.seen.insert(id, (ts_ms, entry));
        self.order.push_back((ts_ms, id));
        assert_eq!(self.seen.len(), self.order.len(), "replay guard: map and queue disagree");
        Ok(Admitted::New)
    }

    /// Forgets `id`: the engine did not take it (its ring was full), so its entry, re-read
    /// later, is new again. Rare: O(remembered ids).
    pub fn forget(&mut self, id: u64) {
        if self.seen.remove(&id).is_some() {
            self.order.retain(|&(_, i)| i != id);
        }
        assert_eq!(self.seen.len(), self.order.len(), "replay guard: map and queue disagree");
    }

    /// Remembers request `id` (signed about `ts_ms`) as applied already, by another engine
    /// before this one took over: no entry carrying it is admitted (nor applied twice).
    pub fn remember_applied(&mut self, id: u64, ts_ms: u64) {
        if self.seen.contains_key(&id) {
            return;
        }
        if self.seen.len() >= self.capacity
            && let Some((old_ts, old_id)) = self.order.pop_front()
        {
            self.seen.remove(&old_id);
            self.floor_ts_ms = self.floor_ts_ms.max(old_ts);
        }
        // Entry key 0 is no real entry's: every entry carrying `id` is a replay.
        self.seen.insert(id, (ts_ms, 0));
        self.order.push_back((ts_ms, id));
        assert_eq!(self.seen.len(), self.order.len(), "replay guard: map and queue disagree");
    }

    /// Ids remembered now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Nothing remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    fn expire(&mut self, now_ms: u64) {
        let oldest_ok = now_ms.saturating_sub(self.max_age_ms);
        while let Some(&(ts, id)) = self.order.front() {
            if ts >= oldest_ok {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&id);
        }
    }
}

/// `"1700000000000-3"` -> one number; anything else maps to 0 (never equal to a real entry).
fn entry_key(entry: &str) -> u128 {
    let Some((ms, seq)) = entry.split_once('-') else { return 0 };
    match (ms.parse::<u64>(), seq.parse::<u64>()) {
        (Ok(ms), Ok(seq)) => u128::from(ms) << 64 | u128::from(seq),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> BridgeKey {
        BridgeKey::new(b"0123456789abcdef0123456789abcdef").unwrap()
    }

    #[test]
    fn a_signature_binds_stream_time_and_body() {
        let k = key();
        let sig = k.sign("engine-stream", 42, r#"{"a":1}"#);
        assert_eq!(sig.len(), 64);
        assert_eq!(k.verify("engine-stream", Some("42"), Some(&sig), r#"{"a":1}"#), Ok(42));
        for (stream, ts, data) in [
            ("price-stream", "42", r#"{"a":1}"#),
            ("engine-stream", "43", r#"{"a":1}"#),
            ("engine-stream", "042", r#"{"a":1}"#),
            ("engine-stream", "42", r#"{"a":2}"#),
        ] {
            assert_eq!(k.verify(stream, Some(ts), Some(&sig), data), Err(SigError::BadSignature));
        }
        let other = BridgeKey::new(b"another secret, also 32 bytes long").unwrap();
        assert_eq!(
            other.verify("engine-stream", Some("42"), Some(&sig), r#"{"a":1}"#),
            Err(SigError::BadSignature)
        );
        assert_eq!(k.verify("engine-stream", Some("42"), None, "x"), Err(SigError::Unsigned));
        assert_eq!(
            k.verify("engine-stream", Some("42"), Some("zz"), "x"),
            Err(SigError::BadSignature)
        );
        assert_eq!(BridgeKey::new(b"short").unwrap_err(), SigError::ShortSecret);
        assert_eq!(format!("{k:?}"), "BridgeKey(<redacted>)");
    }

    #[test]
    fn the_guard_refuses_a_copy_and_tells_a_redelivery() {
        let mut g = ReplayGuard::new(1_000, 10);
        assert_eq!(g.admit(7, "100-0", 5_000, 5_000), Ok(Admitted::New));
        assert_eq!(g.admit(7, "100-0", 5_000, 5_500), Ok(Admitted::Again), "same entry again");
        assert_eq!(g.admit(7, "101-0", 5_000, 5_500), Err(SigError::Replayed));
        assert_eq!(g.admit(8, "102-0", 3_000, 5_500), Err(SigError::Stale));
        assert_eq!(g.admit(8, "102-0", 7_000, 5_500), Err(SigError::Stale), "from the future");
        // Once an entry is too old to be accepted at all, its id is forgotten.
        assert_eq!(g.admit(9, "103-0", 6_100, 6_100), Ok(Admitted::New));
        g.forget(9);
        assert_eq!(g.admit(9, "103-0", 6_100, 6_100), Ok(Admitted::New), "not taken: new again");
        g.remember_applied(10, 6_100);
        assert_eq!(g.admit(10, "104-0", 6_100, 6_100), Err(SigError::Replayed), "applied before");
        assert_eq!(g.len(), 2);
    }

    #[test]
    fn a_full_guard_shrinks_the_accepted_age_instead_of_forgetting() {
        let mut g = ReplayGuard::new(1_000_000, 3);
        for (id, ts) in [(1, 10), (2, 20), (3, 30), (4, 40)] {
            assert_eq!(g.admit(id, &format!("{id}-0"), ts, 50), Ok(Admitted::New));
        }
        assert_eq!(g.len(), 3);
        // Id 1 was forgotten: a copy of it (ts 10) must not pass now.
        assert_eq!(g.admit(1, "99-0", 10, 50), Err(SigError::Stale));
        assert_eq!(g.admit(5, "5-0", 45, 50), Ok(Admitted::New));
    }
}
