//! Canonical encoding for the state hash: fixed-width little-endian integers, length-prefixed
//! bytes, fed to SHA-256. Independent of platform, hash-map order and struct layout.

use sha2::{Digest, Sha256};

use crate::event::PositionView;
use crate::math::Side;

/// A SHA-256 over canonically encoded fields.
#[derive(Debug)]
pub(crate) struct Canonical {
    hasher: Sha256,
}

impl Canonical {
    pub(crate) fn new() -> Canonical {
        let mut c = Canonical { hasher: Sha256::new() };
        c.bytes(b"hundredx-state-v1");
        c
    }

    /// Any serde value, by its canonical postcard bytes (length-prefixed like `bytes`).
    pub(crate) fn value<T: serde::Serialize>(&mut self, v: &T) -> &mut Self {
        let bytes =
            postcard::to_allocvec(v).expect("in-memory serialization of plain data cannot fail");
        self.bytes(&bytes)
    }

    /// A remembered reply: by its canonical bytes, an account view in the shape `shape` gave it.
    pub(crate) fn outcome(
        &mut self,
        o: &Result<crate::event::ReplyData, crate::event::Reason>,
        shape: crate::persist::HashShape,
    ) -> &mut Self {
        match (shape, o) {
            (crate::persist::HashShape::BeforeCross, Ok(crate::event::ReplyData::Account(v))) => {
                let old = crate::view::AccountReply04::Account(v.into());
                self.value(&Ok::<_, crate::event::Reason>(old))
            }
            _ => self.value(o),
        }
    }

    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.hasher.update(v.to_le_bytes());
        self
    }

    pub(crate) fn i64(&mut self, v: i64) -> &mut Self {
        self.hasher.update(v.to_le_bytes());
        self
    }

    pub(crate) fn i128(&mut self, v: i128) -> &mut Self {
        self.hasher.update(v.to_le_bytes());
        self
    }

    pub(crate) fn bool(&mut self, v: bool) -> &mut Self {
        self.hasher.update([u8::from(v)]);
        self
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u64(b.len() as u64);
        self.hasher.update(b);
        self
    }

    fn opt(&mut self, v: Option<i64>) -> &mut Self {
        match v {
            Some(x) => self.bool(true).i64(x),
            None => self.bool(false),
        }
    }

    pub(crate) fn view(&mut self, v: &PositionView) -> &mut Self {
        self.u64(v.id.0).u64(u64::from(v.account.0)).u64(u64::from(v.market.0));
        self.bool(v.side == Side::Long).i64(v.quantity.0).i64(v.entry_price.0);
        self.i128(v.margin.0).u64(u64::from(v.leverage)).i64(v.liquidation_price.0);
        self.opt(v.take_profit.map(|p| p.0)).opt(v.stop_loss.map(|p| p.0)).u64(v.opened_at_ns);
        match &v.close {
            None => self.bool(false),
            Some(c) => {
                self.bool(true).i64(c.exit_price.0).i128(c.realized_pnl.0).i128(c.fee.0);
                self.i128(c.payout.0)
                    .bytes(c.reason.as_str().as_bytes())
                    .u64(c.closed_at_ns)
                    .u64(c.position.0)
            }
        }
    }

    pub(crate) fn finish(self) -> [u8; 32] {
        self.hasher.finalize().into()
    }
}

/// Lower-case hex of a hash, for logs and reports.
pub fn hex(hash: &[u8; 32]) -> String {
    use std::fmt::Write;
    hash.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
