//! [`EtcdOptions`]: where etcd is, under which prefix, which agent this is,
//! and the timing of requests, health probes and the lease. This module
//! owns the defaults and their validation; it must never contact etcd.

use std::time::Duration;

use crate::Error;
use crate::keys::check_segment;

/// How to reach etcd and how to behave there.
///
/// | setting | default | why |
/// |---|---|---|
/// | `prefix` | `/steward/` | every key of the fleet lives under it; several fleets can share one etcd |
/// | `request_timeout` | 2 s | each request's deadline: with the probe interval it bounds how long an outage goes unnoticed (3 s), well under the 5 s promised even when etcd is frozen with its connections open |
/// | `probe_interval` | 1 s | how often a quiet store checks that etcd answers (a linearizable read) |
/// | `lease_ttl` | 10 s | a dead agent's units disappear this long after its last keep-alive; kept alive every third of it |
/// | `reconnect` | 200 ms doubling to 2 s | how fast a lost etcd is tried again, without a storm |
///
/// ```
/// use std::time::Duration;
/// use steward_etcd::EtcdOptions;
///
/// let options = EtcdOptions::new(["http://127.0.0.1:2379"], "agent-1")
///     .prefix("/prod/steward/")
///     .lease_ttl(Duration::from_secs(15));
/// assert_eq!(options.key_prefix(), "/prod/steward/");
/// assert_eq!(options.agent(), "agent-1");
/// ```
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    pub(crate) endpoints: Vec<String>,
    pub(crate) agent: String,
    pub(crate) prefix: String,
    pub(crate) request_timeout: Duration,
    pub(crate) probe_interval: Duration,
    pub(crate) lease_ttl: Duration,
    pub(crate) reconnect_initial: Duration,
    pub(crate) reconnect_max: Duration,
}

impl EtcdOptions {
    /// Options for the agent named `agent` (the second half of its units'
    /// names, `<runtime>/<agent>`), reaching etcd at `endpoints` (URLs like
    /// `http://127.0.0.1:2379`, or `host:port`), with the defaults above.
    pub fn new<E: Into<String>>(endpoints: impl IntoIterator<Item = E>, agent: &str) -> Self {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            agent: agent.to_owned(),
            prefix: "/steward/".to_owned(),
            request_timeout: Duration::from_secs(2),
            probe_interval: Duration::from_secs(1),
            lease_ttl: Duration::from_secs(10),
            reconnect_initial: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(2),
        }
    }

    /// The key prefix; a missing final `/` is added.
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = if prefix.ends_with('/') {
            prefix.to_owned()
        } else {
            format!("{prefix}/")
        };
        self
    }

    /// Each request's deadline.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How often a quiet store checks that etcd answers.
    pub fn probe_interval(mut self, interval: Duration) -> Self {
        self.probe_interval = interval;
        self
    }

    /// The lease's time to live, in whole seconds (rounded up; etcd's own
    /// minimum is about 2 s).
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// The first and the largest delay between reconnection attempts.
    pub fn reconnect_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.reconnect_initial = initial;
        self.reconnect_max = max.max(initial);
        self
    }

    /// The endpoints.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// This agent's name.
    pub fn agent(&self) -> &str {
        &self.agent
    }

    /// The key prefix, ending in `/`.
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    /// The lease TTL in whole seconds, as granted.
    pub(crate) fn lease_ttl_secs(&self) -> i64 {
        let secs = self.lease_ttl.as_secs() + u64::from(self.lease_ttl.subsec_nanos() > 0);
        i64::try_from(secs).unwrap_or(i64::MAX)
    }

    /// The endpoints as one string, for messages.
    pub(crate) fn endpoint_list(&self) -> String {
        self.endpoints.join(",")
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: String| Err(Error::InvalidOptions { reason });
        if self.endpoints.is_empty() {
            return invalid("no etcd endpoint given (e.g. http://127.0.0.1:2379)".to_owned());
        }
        if self.endpoints.iter().any(|e| e.trim().is_empty()) {
            return invalid(format!(
                "an empty etcd endpoint in {:?}",
                self.endpoints.join(",")
            ));
        }
        if let Some(bad) = self.endpoints.iter().find(|e| e.starts_with("https://")) {
            return invalid(format!(
                "{bad}: TLS is not supported yet; reach etcd over http:// (on a trusted network or through a local TLS proxy)"
            ));
        }
        check_segment("agent", &self.agent)?;
        if !self.prefix.starts_with('/') || self.prefix.contains("//") {
            return Err(Error::InvalidName {
                what: "prefix",
                name: self.prefix.clone(),
                reason: "a key prefix starts with / and has no empty segment, e.g. /steward/"
                    .to_owned(),
            });
        }
        for (name, value) in [
            ("request timeout", self.request_timeout),
            ("probe interval", self.probe_interval),
            ("reconnect backoff", self.reconnect_initial),
        ] {
            if value.is_zero() {
                return invalid(format!("the {name} must be more than zero"));
            }
        }
        if self.lease_ttl < Duration::from_secs(2) {
            return invalid(format!(
                "a lease TTL of {:?} is below etcd's minimum; use 2 s or more",
                self.lease_ttl
            ));
        }
        Ok(())
    }
}
