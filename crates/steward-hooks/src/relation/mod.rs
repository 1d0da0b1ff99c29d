//! Relations as state and rules: what a unit's hooks have seen of one
//! relation ([`RelationState`], which the agent persists), the changes a
//! watch of the relation's units sends ([`RelationUnitsChange`]), and the
//! queues that turn those changes into relation hooks with juju's ordering
//! guarantees ([`AliveQueue`] while the relation lives, [`DyingQueue`] once
//! it is going away).
//!
//! The guarantees, per relation, as a hook sees them:
//!
//! - `relation-joined` for a unit is always immediately followed by
//!   `relation-changed` for it (the next hook of that relation);
//! - `relation-changed` and `relation-departed` only for a unit whose
//!   `relation-joined` ran, and `relation-joined` only for one that is not
//!   a member;
//! - a changed carries the unit's latest known settings version, and
//!   repeated changes fold into one hook; a departed replaces a pending
//!   changed; a unit that departs before its joined ran runs no hook;
//! - a dying relation runs any pending changed, a departed for every
//!   member in name order, then `relation-broken`.
//!
//! This module descends from juju's uniter `relation` package (2014). It
//! owns the rules; it must never persist, watch or run anything: the agent
//! feeds the queues from its watcher, runs the hooks, and commits each
//! hook's [`RelationState::commit`] in the same store transaction as the
//! hook's completion.

mod change;
mod dying;
mod queue;
mod state;

pub use change::RelationUnitsChange;
pub use dying::DyingQueue;
pub use queue::AliveQueue;
pub use state::{InappropriateReason, RelationState};
