//! The lease holder's round and its one way out, shared by the replicated leader, its input
//! stage and the plain engine: renew or take the lease again, or exit deposed.

use std::time::Duration;

use ground::backoff::Backoff;
use tracing::{error, warn};

use super::EXIT_DEPOSED;
use super::journal::{Kept, ReplicatedLog};

/// One round of the lease holder: renew, or take the lease again if it vanished or held a
/// forged value; exit (deposed) if another engine holds it. `true`: held after the round.
pub(super) fn hold_round(log: &mut dyn ReplicatedLog, token: &str, lease: Duration) -> bool {
    match log.keep(token, lease) {
        Ok(Kept::Renewed) => true,
        Ok(Kept::Retaken(why)) => {
            warn!(why, "the lease was taken again");
            true
        }
        Ok(Kept::Lost(holder)) => {
            let node = holder.rsplit_once(':').map_or(holder.as_str(), |(n, _)| n);
            deposed(&format!("the lease is held by another engine ({node})"))
        }
        Ok(Kept::Unsure) => false,
        Err(e) => {
            warn!(error = %e, "lease renewal failed");
            false
        }
    }
}

/// Another engine leads: stop before this batch is applied or answered.
pub(crate) fn deposed(why: &str) -> ! {
    error!(%why, exit_code = EXIT_DEPOSED, "DEPOSED: another engine leads; exiting without applying");
    std::process::exit(EXIT_DEPOSED);
}

/// 20 ms doubling to 1 s: replication waits are short.
pub(super) fn backoff() -> Backoff {
    Backoff::new(Duration::from_millis(20), Duration::from_secs(1))
}
