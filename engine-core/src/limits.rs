//! Every fixed limit of the engine in one place, each with its reason, and the assertions that
//! pair related limits (TigerBeetle's `constants.zig`): change one and the build says which
//! other it breaks. The limits an operator chooses (table sizes, windows) are in
//! [`crate::config::EngineConfig`] and validated against these at start.

use crate::num::Usdc;

// ----- prices, quantities, money -----

/// Most price sources (venues) one market's index combines. The index takes medians over them
/// on every source quote, on the stack: eight keep that under ~100 ns and are more venues than
/// any broker quotes one symbol from.
pub const SOURCES_MAX: usize = 8;
const _: () = assert!(SOURCES_MAX <= u8::MAX as usize, "a source id is a u8");

/// Largest `price_decimals + qty_decimals` a market may have. Keeps `10^(pd+qd)` and every
/// product in [`crate::math`] far inside `i128`.
pub const MAX_DECIMALS_SUM: u32 = 18;

/// Largest price, in ticks, any market may configure (`max_price_ticks`).
pub const MAX_PRICE_TICKS_LIMIT: i64 = 1_000_000_000_000;

/// Largest quantity, in steps, any market may configure (`max_qty_steps`).
pub const MAX_QTY_STEPS_LIMIT: i64 = 1_000_000_000_000;

/// The one ceiling for money: 10^12 USDC (10^18 micro-USDC).
///
/// It bounds every single amount (deposit, withdrawal, margin) **and the money all accounts hold
/// together** (available + order margin + position margins): a deposit or a sign-up credit that
/// would take that sum past it is refused (`balance_limit`), so no balance and no total the
/// engine holds can be pushed past it by what a user sends. Why this value: every store and wire
/// format holds a signed 64-bit micro-USDC count (the history store's `BIGINT` columns,
/// i64::MAX ≈ 9.22 × 10^18), and the ceiling leaves that 9.2× headroom for what prices alone can
/// add (profits the house pays, bad debt it absorbs). Past that, a read model degrades; the
/// engine itself holds money in `i128` and keeps trading.
pub const MAX_AMOUNT: Usdc = Usdc(1_000_000_000_000_000_000);

// The ceiling leaves stores of signed 64-bit micro-USDC at least 8× headroom.
const _: () = assert!(MAX_AMOUNT.0 * 9 <= i64::MAX as i128);
// A notional's numerator, price × quantity × 10^6 (micro-USDC) before the decimals are divided
// out, fits an i128 with the largest price and quantity any market may configure.
const _: () = assert!(
    (MAX_PRICE_TICKS_LIMIT as i128) * (MAX_QTY_STEPS_LIMIT as i128) * 1_000_000 < i128::MAX / 1_000
);

// ----- commands and the journal -----

/// The most bytes a command takes in its canonical (postcard) encoding, with room to spare:
/// every variable part is an inline, bounded string. Journal records and fingerprints use
/// buffers of this size on the stack.
pub const MAX_ENCODED_BYTES: usize = 1024;

/// Every this many state-changing commands the engine emits a `Change::Checkpoint`, so a
/// reader's cursor keeps up with the journal through long runs of ticks that change nothing it
/// stores (and the journal behind that cursor can be pruned).
pub const CHECKPOINT_EVERY: u64 = 4_096;

// ----- open positions: slots, ids and index keys -----

/// Bits of a position reference (and of an index key) that hold the slab slot.
pub(crate) const SLOT_BITS: u32 = 24;

/// Slots a slab can hold: the bound on `max_open_positions`.
pub const SLOTS_MAX: u32 = (1 << SLOT_BITS) - 1;

/// Position ids are below this (2^40, about 1.1 × 10^12 positions over the engine's life): an
/// open is refused with `position_capacity` once the sequence reaches it. The rest of the word
/// holds the slot: `id << 24 | slot`.
pub const POSITION_ID_LIMIT: u64 = 1 << (64 - SLOT_BITS);

/// The largest price an index key (`price << 24 | slot`) holds; a liquidation or margin-call
/// price beyond it (a short at low leverage) is stored as it, which compares with every price a
/// tick can carry exactly as the real price does.
pub(crate) const KEY_PRICE_MAX: i64 = (1 << (64 - SLOT_BITS)) - 1;

// Every price a tick may carry (and one above, for the re-arm ranges) is below the key's clamp.
const _: () = assert!(MAX_PRICE_TICKS_LIMIT + 1 < KEY_PRICE_MAX);
// An id and a slot share one word.
const _: () = assert!((POSITION_ID_LIMIT - 1) << SLOT_BITS | SLOTS_MAX as u64 == u64::MAX);

// ----- trading features -----

/// Largest trailing distance in basis points: half the mark (5000 is valid).
pub(crate) const TRAIL_BPS_MAX: u32 = 5_000;

// A trailing stop in bps never reaches zero or below.
const _: () = assert!(TRAIL_BPS_MAX < 10_000);

/// Most positions the operators' risk view lists.
pub(crate) const AT_RISK_MAX: u32 = 100;

/// Widest cross-margin band (docs/DESIGN.md, "Cross margin"), 20 % each way: wider bands make
/// every cross account's trigger so conservative that most ticks would be false alarms.
pub const CROSS_BAND_BPS_MAX: u32 = 2_000;

/// Shortest dead-man's switch (`ScheduleCancel`), 5 s as Hyperliquid's `scheduleCancel`:
/// shorter than a client's round trip plus a retry, it would fire on a healthy bot that was a
/// moment slow to renew.
pub const CANCEL_AFTER_MS_MIN: u32 = 5_000;

/// Longest dead-man's switch: one day (a switch is a heartbeat, not a schedule).
pub const CANCEL_AFTER_MS_MAX: u32 = 86_400_000;

const _: () = assert!(CANCEL_AFTER_MS_MIN < CANCEL_AFTER_MS_MAX);
// The deadline, command time plus the delay in ns, cannot overflow for any command time that
// fits an i64 (the ordered set's key).
const _: () = assert!((CANCEL_AFTER_MS_MAX as u64) * 1_000_000 < (u64::MAX - i64::MAX as u64));
