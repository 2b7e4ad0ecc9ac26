//! The one wall clock. Adapters stamp each command with its receive time from here; the engine
//! never reads a clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in nanoseconds since the Unix epoch (0 before it, `u64::MAX` past 2554).
pub fn now_ns() -> u64 {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    now_ns() / 1_000_000
}

/// Now, in whole seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    now_ns() / 1_000_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_units_agree() {
        let (ns, ms, s) = (now_ns(), now_ms(), now_secs());
        assert!(ns > 1_700_000_000_000_000_000, "after 2023");
        assert!(ms >= ns / 1_000_000 && ms - ns / 1_000_000 < 60_000);
        assert!(s >= ns / 1_000_000_000 && s - ns / 1_000_000_000 < 60);
    }
}
