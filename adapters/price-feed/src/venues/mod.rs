//! One folder per venue, each a [`Connector`]; [`ALL`] lists them. Adding a venue is its folder
//! and one line here.

pub mod backpack;
pub mod binance;
pub mod coinbase;
pub mod okx;

use crate::connector::Connector;

/// Every venue `--feed` can name.
pub const ALL: &[&dyn Connector] =
    &[&backpack::Backpack, &binance::Binance, &okx::Okx, &coinbase::Coinbase];

/// The venue called `name`.
pub fn by_name(name: &str) -> Option<&'static dyn Connector> {
    ALL.iter().copied().find(|c| c.name() == name)
}
