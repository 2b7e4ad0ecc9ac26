//! One module per subcommand; `args` holds the flags several of them share.

pub mod admin;
pub mod args;
pub mod backfill;
pub mod drill;
pub mod engine_metrics;
pub mod explain;
pub mod feed;
pub mod financing;
pub mod hedger;
pub mod history;
pub mod offline;
pub mod serve;
pub mod service;
pub mod stress;
