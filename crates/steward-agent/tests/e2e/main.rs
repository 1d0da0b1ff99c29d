//! End-to-end tests of the `steward` binary: each runs the real agent on a
//! free loopback port with its own data dir, and drives it over HTTP and
//! through the CLI (one test binary, so the support module is shared).
//!
//! | module | what |
//! |---|---|
//! | [`demo`] | the built-in demo: start-up, calls, switches (also under load), events |
//! | [`disk`] | private data, and a full disk that degrades the agent until space returns |
//! | [`faults`] | crashes, kills of runtimes and of the agent, failed switches |
//! | [`hooks`] | lifecycle hooks with shell scripts: order, failures, resolve, timeouts, crashes |
//! | [`logs`] | runtime and hook output in `steward logs` and the logs API, following, bad input |
//! | [`limits`] | the API server against slow, idle and hostile clients |
//! | [`manners`] | CLI and API manners: closed pipes, integers beyond 64 bits |
//! | [`fleet`] | fleet mode on real etcd servers: a fleet-wide switch under load, presence and leases, etcd frozen, killed and restarted, one agent cut off, a unit lacking the version, start errors (needs `scripts/etcd-deps`) |
//! | [`relations`] | two runtimes related through shell hooks: settings, edits, removal, restarts, crashes; a relation of hookless runtimes announced with its units |
//! | [`fleet_relations`] | a peer relation across three agents on a real etcd, and a SIGKILLed agent's unit departing (needs `scripts/etcd-deps`) |
//! | [`openapi`] | `GET /openapi.json` is `docs/openapi.json`; schemathesis finds no fault (needs `scripts/schemathesis-deps`) |
//! | [`api_errors`] | every bad request gets its status and the JSON error shape |
//! | [`config_reload`] | config edits applied live; invalid edits ignored |
//! | [`stats`] | the per-second call statistics behind the web UI's plots |
//! | [`ui`] | how the web UI's files are served: types, entity tags, CSP, no token needed |
//! | [`browser`] | the web UI in headless Chromium (needs `scripts/browser-deps`) |
//! | [`systemd`] | the notify protocol on a real datagram socket: ready, status, watchdog, stopping |

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "a test: a panic is its failure report, and nothing here is a library"
)]

mod api_errors;
mod browser;
mod config_reload;
mod demo;
mod disk;
mod faults;
mod fleet;
mod fleet_relations;
mod hooks;
mod limits;
mod logs;
mod manners;
mod openapi;
mod relations;
mod stats;
mod support;
mod systemd;
mod ui;
