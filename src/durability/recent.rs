//! The request ids the journal applied lately: what a restarted engine's bridge must refuse if
//! Redis delivers their entries again (applied before the crash, acknowledged after it).

use std::fs;

use engine_core::persist::RecordReader;

use super::error::io;
use super::{DataDir, Result};

/// `(request id, ms)` of journaled commands stamped at or after `since_ms`, oldest first, at
/// most `max` (the newest). Reads segments from the newest back until one starts before
/// `since_ms`; a torn last record ends its segment (recovery has cut it already).
pub fn recent_requests(data: &DataDir, since_ms: u64, max: usize) -> Result<Vec<(u64, u64)>> {
    let mut newest_first: Vec<Vec<(u64, u64)>> = Vec::new();
    let mut total = 0;
    for (_, path) in data.segments()?.iter().rev() {
        let bytes = fs::read(path).map_err(io("reading", path))?;
        let mut found = Vec::new();
        let mut reaches_back = false;
        for rec in RecordReader::new(&bytes) {
            let Ok((_, cmd)) = rec else { break };
            let ms = cmd.ts_ns / 1_000_000;
            if ms < since_ms {
                reaches_back = true;
            } else if cmd.request_id.0 != 0 {
                found.push((cmd.request_id.0, ms));
            }
        }
        total += found.len();
        newest_first.push(found);
        if reaches_back || total >= max {
            break;
        }
    }
    let mut out: Vec<(u64, u64)> = newest_first.into_iter().rev().flatten().collect();
    if out.len() > max {
        out.drain(..out.len() - max);
    }
    Ok(out)
}
