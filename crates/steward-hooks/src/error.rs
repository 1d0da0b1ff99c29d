//! The hooks crate's one error type.
//!
//! Variants are matched on by the agent (a hook description that is
//! incomplete, a socket that cannot be bound), so each one names what went
//! wrong and what to do about it. Command failures are not errors of this
//! type: they are exit codes and messages for the hook
//! ([`CommandError`](crate::tool::CommandError)), and a hook that fails is a
//! [`HookOutcome`](crate::runner::HookOutcome), not an error.

use std::io;
use std::path::PathBuf;

use crate::HookKind;
use crate::relation::InappropriateReason;

/// What can go wrong describing, serving or calling hooks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A hook kind name that is not one of [`HookKind`]'s.
    #[error("unknown hook kind {kind:?}")]
    UnknownHookKind {
        /// The name given.
        kind: String,
    },
    /// A joined, changed or departed hook without a remote unit.
    #[error("{:?} hook requires a remote unit", kind.as_str())]
    RemoteUnitRequired {
        /// The hook's kind.
        kind: HookKind,
    },
    /// A relation hook without a relation id.
    #[error("{:?} hook requires a relation id", kind.as_str())]
    RelationIdRequired {
        /// The hook's kind.
        kind: HookKind,
    },
    /// A relation hook's file name was asked for without the relation's
    /// endpoint name (`<endpoint>-relation-joined`).
    #[error("{:?} hook needs the relation's endpoint name for its file name", kind.as_str())]
    EndpointRequired {
        /// The hook's kind.
        kind: HookKind,
    },
    /// A relation hook that does not fit the relation's state (juju's
    /// `State.Validate`): running it would corrupt the state, so the agent
    /// must not run it. The reason is matchable.
    #[error("inappropriate {:?} for {unit:?}: {reason}", kind.as_str())]
    InappropriateHook {
        /// The hook's kind.
        kind: HookKind,
        /// The hook's remote unit (empty for `relation-broken`).
        unit: String,
        /// Why it does not fit.
        reason: InappropriateReason,
    },
    /// The first change fed to a relation's alive hook queue departed
    /// units. The first change must be the whole current membership (what a
    /// fresh watch sends first); a source that resumed mid-stream or
    /// consumed its first event twice (juju/juju#21517) would make the
    /// queue lose hooks.
    #[error(
        "the first change of relation {relation_id}'s units departs {departed:?}, \
         but it must be the relation's whole current membership: start the queue \
         from a fresh watch of the relation's units"
    )]
    FirstChangeDeparts {
        /// The relation.
        relation_id: u64,
        /// The units it departed.
        departed: Vec<String>,
    },
    /// An alive hook queue was asked for a relation whose state is broken
    /// (its `relation-broken` hook ran).
    #[error(
        "relation {relation_id} is broken and runs no more hooks: \
         remove its state instead of queueing hooks for it"
    )]
    RelationBroken {
        /// The relation.
        relation_id: u64,
    },
    /// `relation-set` for the relation a `relation-broken` hook is about:
    /// no unit will ever read those settings.
    #[error(
        "cannot set settings of relation {relation} in its relation-broken hook: \
         the relation is gone (set them in relation-departed instead)"
    )]
    RelationSetInBroken {
        /// The relation, as `<endpoint>:<id>`.
        relation: String,
    },
    /// The hook tool server's private directory could not be created.
    #[error("cannot create a private directory in {}: {source}", path.display())]
    CreateDir {
        /// The parent directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The hook tool server's directory could not be removed on close.
    #[error("cannot remove {}: {source}", path.display())]
    RemoveDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The hook tool server could not listen on its socket. A path over
    /// ~100 bytes is too long for a Unix socket: choose a shorter parent
    /// directory.
    #[error("cannot listen on {}: {source}", path.display())]
    Listen {
        /// The socket's path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The tools directory or one of its links could not be made.
    #[error("cannot set up the hook tools at {}: {source}", path.display())]
    ToolsDir {
        /// The directory or link.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A hook tool could not connect to the agent (is it running? is the
    /// socket path in the environment current?).
    #[error("cannot reach the agent at {}: {source}", path.display())]
    Connect {
        /// The socket's path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The connection to the agent failed before it answered.
    #[error("lost the connection to the agent at {}: {reason}", path.display())]
    ConnectionLost {
        /// The socket's path.
        path: PathBuf,
        /// What happened.
        reason: String,
    },
    /// The agent's answer could not be decoded (a client and agent of
    /// different versions?).
    #[error("the agent sent a malformed answer: {reason}")]
    MalformedAnswer {
        /// What is wrong with it.
        reason: String,
    },
}
