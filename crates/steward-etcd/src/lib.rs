#![doc = include_str!("../docs/guide.md")]

mod desired;
mod error;
mod follow;
mod health;
mod keys;
mod options;
mod presence;
mod shared;
mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::Error;
pub use options::EtcdOptions;
/// The shared-state types this crate's API speaks, defined next to the
/// traits in `steward-store` (re-exported so that users need one import).
pub use steward_store::{FleetHealth, KeyChanges, KeyEvent, UnitRecord};
pub use store::EtcdStore;
