//! The hooks crate's one error type.
//!
//! Variants are matched on by the agent (a hook description that is
//! incomplete, …), so each one names what went wrong and what to do about
//! it.

use crate::HookKind;

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
}
