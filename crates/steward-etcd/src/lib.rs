#![doc = include_str!("../docs/guide.md")]

mod changes;
mod desired;
mod error;
mod follow;
mod health;
mod keys;
mod options;
mod presence;
mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use changes::{KeyChanges, KeyEvent, PendingKeyChanges};
pub use error::Error;
pub use health::FleetHealth;
pub use options::EtcdOptions;
pub use presence::Unit;
pub use store::EtcdStore;
