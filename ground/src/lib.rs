//! The ground every adapter stands on (nautilus_trader's pattern: shared crates below the
//! adapters). An adapter depends on `engine-core` and on this crate, never on another adapter;
//! only the binary wires adapters together, through the ports declared here.
//!
//! - [`time`]: the one wall clock of the process (the engine itself reads none: time arrives in
//!   commands).
//! - [`backoff`]: the one retry schedule, capped exponential, with optional jitter.
//! - [`ports`]: [`ports::EngineClient`] (how an API reaches an engine, in process or over a
//!   transport) and [`ports::TickSink`] (where a price feed's ticks go), with a
//!   transport-neutral error.
//! - [`history`]: [`history::HistoryReader`], what an API reads from the read model, and the
//!   writer's [`history::WriterStatus`].

pub mod backoff;
pub mod history;
pub mod ports;
pub mod time;
