//! Where an embedded feed's ticks go: the engine's in-ring.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use engine_core::command::{CommandKind, SourceId, Tick};
use engine_core::processor::Submitter;
use ground::ports::TickSink;
use ground::time::now_ns;

use crate::health::FeedHealth;
use crate::sources::SourceSink;

/// Publishes ticks (or several sources' quotes) into the engine's in-ring, stamped with the
/// receive time.
#[derive(Debug, Clone)]
pub struct EngineSink(pub Submitter, pub Arc<FeedHealth>);

impl EngineSink {
    fn send(&mut self, kind: CommandKind) {
        if self.0.try_send(now_ns(), kind).is_err() {
            self.1.ticks_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl SourceSink for EngineSink {
    fn quote(&mut self, source: SourceId, tick: Tick) {
        self.send(CommandKind::SourceQuote { source, tick });
    }

    fn check(&mut self) {
        self.send(CommandKind::SourceCheck);
    }
}

impl TickSink for EngineSink {
    /// Never spins on a full ring: a price is superseded by the next one, so a tick the engine
    /// cannot take now is dropped and counted (`ticks_dropped`). A feed that spun here burned
    /// most of a core once the engine had stopped (e.g. after a journal fail-stop).
    fn publish(&mut self, tick: Tick) {
        self.send(CommandKind::PriceTick(tick));
    }
}
