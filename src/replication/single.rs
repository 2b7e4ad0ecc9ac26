//! The lease for an engine that is not replicated: it consumes `engine-stream` only while it
//! holds `engine-leader`, like a replicated leader, so a second engine started by mistake on the
//! same Redis refuses to start instead of splitting the requests between two states.

use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use anyhow::{Result, bail};
use tracing::{info, warn};

use super::journal::ReplicatedLog;
use super::lease::{deposed, hold_round};
use super::log::RedisLog;

/// Prefix of a lease token held by an engine that is not replicated: a standby that finds it
/// refuses to start (that leader writes no `engine-journal` for it to follow).
pub const SINGLE_PREFIX: &str = "single:";

/// Takes the lease for a single (not replicated) engine, or says why it must not serve.
///
/// Refuses when `engine-journal` holds entries (this deployment is replicated: a plain engine
/// would fork from it) and when another engine holds the lease after a whole lease period of
/// waiting (a crashed predecessor's lease expires within it; a live engine keeps renewing).
pub fn claim(log: &mut RedisLog, token: &str, lease: Duration) -> Result<()> {
    if let Some((first, last)) = log.bounds()? {
        bail!(
            "engine-journal holds entries {first}..={last}: this deployment is replicated. \
             Start this engine with --standby (it joins as a standby and leads when the lease \
             is free), or delete engine-journal if replication was given up on purpose"
        );
    }
    let deadline = Instant::now() + lease + lease / 2;
    loop {
        if log.try_lead(token, lease)? {
            info!(token, "engine: holding the lease (engine-leader)");
            return Ok(());
        }
        if Instant::now() >= deadline {
            let holder = log.holder(lease)?.unwrap_or_default();
            let node = holder.rsplit_once(':').map_or(holder.as_str(), |(n, _)| n);
            bail!(
                "another engine leads on this Redis (engine-leader = {node}): two engines serving \
                 engine-stream would split the requests between two states. Stop it first, or \
                 run both with --standby"
            );
        }
        std::thread::sleep(lease / 8);
    }
}

/// Renews the lease every quarter of it until `stop` is cancelled, then gives it up. Takes it again when
/// it vanished (a Redis restarted without its data) or holds a forged value. Exits the process
/// (deposed, 75) when the lease is someone else's, or when no renewal succeeded for a whole
/// lease: another engine may then hold it, and this one must stop consuming.
pub fn keep(
    mut log: RedisLog,
    token: String,
    lease: Duration,
    stop: CancellationToken,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("hundredx-lease".into()).spawn(move || {
        let mut renewed = Instant::now();
        while !stop.is_cancelled() {
            if hold_round(&mut log, &token, lease) {
                renewed = Instant::now();
            }
            if renewed.elapsed() >= lease {
                deposed("the lease could not be renewed for a whole lease period");
            }
            std::thread::sleep(lease / 4);
        }
        if let Err(e) = log.release(&token) {
            warn!(error = %e, "engine: could not release the lease (it expires by itself)");
        }
    })
}
