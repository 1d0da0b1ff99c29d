//! The Steward agent and its command line: the program people run.
//!
//! `steward run` hosts the runtimes of a TOML [`config`] under one
//! supervision tree ([`agent`]): each runtime is an [`Aggregate`] of its
//! versions, driven by a per-runtime worker that reconciles it with the
//! desired version kept in the embedded store ([`steward_store`]). A
//! control API ([`api`]) on loopback lets an operator list, call, switch
//! and abort runtimes, follow their events and scrape metrics; the other
//! subcommands ([`cli`]) are clients of that API.
//!
//! This crate composes the others and owns everything about files, HTTP
//! and the command line; it must never reach into a runtime process other
//! than through [`steward_host`], nor into the database other than through
//! [`steward_store`].
//!
//! [`Aggregate`]: steward_host::Aggregate
//!
//! The references for users: [`config`] (the file format), [`api`] (the
//! control API), [`cli`] (the command line), [`hooks`] (lifecycle hooks,
//! relations and their tools), [`systemd`] (running as a systemd service),
//! [`ui`] (the web UI), and below, how desired state is kept.
//!
#![doc = include_str!("../docs/state.md")]

pub mod agent;
pub mod api;
pub mod cli;
pub mod config;
pub mod demo;
mod error;
pub mod events;
pub mod fleet;
#[doc = include_str!("../docs/hooks.md")]
#[doc = ""]
#[doc = include_str!("../docs/relations.md")]
pub mod hooks {}
#[doc = include_str!("../docs/ui.md")]
pub mod ui {}
mod failpoint;
mod json;
mod logs;
mod metrics;
mod relations;
mod rundir;
mod runtimes;
mod stats;
mod storage;
pub mod systemd;
mod token;

pub use error::Error;
