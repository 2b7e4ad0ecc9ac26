//! Why a configuration cannot be run.

/// A configuration that cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A market's parameters are inconsistent or out of range.
    #[error("market {symbol}: {why}")]
    Market {
        /// The offending market.
        symbol: String,
        /// What is wrong.
        why: &'static str,
    },
    /// An engine limit is out of its allowed range.
    #[error("engine limit out of range: {0}")]
    Limit(&'static str),
    /// The engine thread cannot be pinned to the requested core.
    #[error("cannot pin the engine thread to core {0}: not in this process's affinity mask")]
    NoSuchCore(usize),
}
