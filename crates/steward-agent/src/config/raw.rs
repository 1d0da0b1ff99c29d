//! The config file as written: every field optional and every value
//! spanned, so that validation, not serde, reports missing and wrong
//! values — serde stops at the first problem, and validation must report
//! all of them at their positions. Wrongly typed values get a message
//! saying what to write instead. This module must never validate: it only
//! mirrors the TOML.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

/// What a wrongly typed value should have been, for serde's "invalid type:
/// …, expected …" message (the default "a string" or "struct RawRuntime"
/// would not tell the user what to write).
pub(super) trait Expected {
    const WHAT: &'static str;
}

macro_rules! expected {
    ($($name:ident => $what:literal;)*) => {$(
        pub(super) enum $name {}
        impl Expected for $name {
            const WHAT: &'static str = $what;
        }
    )*};
}

expected! {
    IdText => r#"a runtime id string such as "echo""#;
    VersionText => r#"a version string such as "1.0.0""#;
    TransitionText => r#""make-before-break" or "stop-then-start""#;
    DurationText => r#"a duration string such as "30s" or "500ms""#;
    CommandText => r#"a command string such as "steward" or "./bin/my-runtime""#;
    ArgText => r#"a string (quote numbers, e.g. "8080")"#;
    EnvValueText => r#"a string (quote numbers and booleans, e.g. "8080")"#;
    RuntimeList => "[[runtime]] tables (with double brackets)";
    PathText => r#"a path string such as "charms/web/hooks""#;
    OnFailureText => r#""retry" or "block""#;
    CountText => "a whole number such as 3";
    VersionList => "[[runtime.version]] tables (with double brackets)";
    RelationList => "[[relation]] tables (with double brackets)";
    PeerList => "[[runtime.peer]] tables (with double brackets)";
    PeerNameText => r#"an endpoint name such as "cluster""#;
    EndpointText => r#"an endpoint string such as "web:db" (<runtime>:<endpoint name>)"#;
    EndpointList => r#"an array of two endpoints such as ["web:db", "kv:store"]"#;
    ArgList => r#"an array of strings such as ["--port", "8080"]"#;
    LineCountNumber => "a whole number of lines such as 1000 (0 keeps none)";
    EtcdUrlText => r#"an etcd URL string such as "http://127.0.0.1:2379""#;
    EtcdUrlList => r#"an array of etcd URLs such as ["http://127.0.0.1:2379"]"#;
    PrefixText => r#"a key prefix string such as "/steward/""#;
}

/// A string whose type error says what `E` expects.
pub(super) struct Text<E>(pub(super) String, PhantomData<E>);

impl<'de, E: Expected> Deserialize<'de> for Text<E> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor<E>(PhantomData<E>);

        impl<E: Expected> Visitor<'_> for TextVisitor<E> {
            type Value = String;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(E::WHAT)
            }

            fn visit_str<Err: de::Error>(self, v: &str) -> Result<String, Err> {
                Ok(v.to_owned())
            }

            fn visit_string<Err: de::Error>(self, v: String) -> Result<String, Err> {
                Ok(v)
            }
        }

        deserializer
            .deserialize_str(TextVisitor::<E>(PhantomData))
            .map(|s| Text(s, PhantomData))
    }
}

/// An integer whose type error says what `E` expects.
pub(super) struct Integer<E>(pub(super) i64, PhantomData<E>);

impl<'de, E: Expected> Deserialize<'de> for Integer<E> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IntegerVisitor<E>(PhantomData<E>);

        impl<E: Expected> Visitor<'_> for IntegerVisitor<E> {
            type Value = i64;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(E::WHAT)
            }

            fn visit_i64<Err: de::Error>(self, v: i64) -> Result<i64, Err> {
                Ok(v)
            }

            fn visit_u64<Err: de::Error>(self, v: u64) -> Result<i64, Err> {
                i64::try_from(v).map_err(|_| Err::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
        }

        deserializer
            .deserialize_i64(IntegerVisitor::<E>(PhantomData))
            .map(|n| Integer(n, PhantomData))
    }
}

/// An array of spanned `T` whose type error says what `E` expects (e.g.
/// `[runtime]` written for `[[runtime]]`).
pub(super) struct List<T, E> {
    pub(super) items: Vec<Spanned<T>>,
    kind: PhantomData<E>,
}

impl<T, E> Default for List<T, E> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            kind: PhantomData,
        }
    }
}

impl<'de, T: Deserialize<'de>, E: Expected> Deserialize<'de> for List<T, E> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor<T, E>(PhantomData<(T, E)>);

        impl<'de, T: Deserialize<'de>, E: Expected> Visitor<'de> for ListVisitor<T, E> {
            type Value = Vec<Spanned<T>>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(E::WHAT)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(items)
            }
        }

        deserializer
            .deserialize_seq(ListVisitor::<T, E>(PhantomData))
            .map(|items| List {
                items,
                kind: PhantomData,
            })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    #[serde(default)]
    pub(super) runtime: List<RawRuntime, RuntimeList>,
    #[serde(default)]
    pub(super) relation: List<RawRelation, RelationList>,
    pub(super) fleet: Option<Spanned<RawFleet>>,
}

/// `[fleet]`: the etcd a fleet of agents shares.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[serde(expecting = "a [fleet] table with endpoints, and optionally prefix and lease-ttl")]
pub(super) struct RawFleet {
    pub(super) endpoints: Option<Spanned<List<Text<EtcdUrlText>, EtcdUrlList>>>,
    pub(super) prefix: Option<Spanned<Text<PrefixText>>>,
    pub(super) lease_ttl: Option<Spanned<Text<DurationText>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(expecting = "a [[relation]] table")]
pub(super) struct RawRelation {
    pub(super) endpoints: Option<Spanned<List<Text<EndpointText>, EndpointList>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
#[serde(expecting = "a [[runtime]] table")]
pub(super) struct RawRuntime {
    pub(super) id: Option<Spanned<Text<IdText>>>,
    pub(super) active: Option<Spanned<Text<VersionText>>>,
    pub(super) transition: Option<Spanned<Text<TransitionText>>>,
    pub(super) call_timeout: Option<Spanned<Text<DurationText>>>,
    pub(super) restart: Option<Spanned<RawBackoff<RestartTable>>>,
    pub(super) hooks: Option<Spanned<Text<PathText>>>,
    pub(super) hook_timeout: Option<Spanned<Text<DurationText>>>,
    pub(super) on_hook_failure: Option<Spanned<Text<OnFailureText>>>,
    pub(super) hook_retry: Option<Spanned<RawBackoff<HookRetryTable>>>,
    pub(super) start_timeout: Option<Spanned<Text<DurationText>>>,
    pub(super) handshake_timeout: Option<Spanned<Text<DurationText>>>,
    pub(super) abort_timeout: Option<Spanned<Text<DurationText>>>,
    pub(super) liveness: Option<Spanned<RawLiveness>>,
    pub(super) settings: Option<Spanned<toml::Table>>,
    pub(super) log_lines: Option<Spanned<Integer<LineCountNumber>>>,
    #[serde(default)]
    pub(super) peer: List<RawPeer, PeerList>,
    #[serde(default)]
    pub(super) version: List<RawVersion, VersionList>,
}

/// `[[runtime.peer]]`: a relation between the runtime's own units.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(expecting = "a [[runtime.peer]] table with a name")]
pub(super) struct RawPeer {
    pub(super) name: Option<Spanned<Text<PeerNameText>>>,
}

/// `[runtime.liveness]`: how the host finds the runtime hung.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(expecting = "a [runtime.liveness] table with interval, timeout and failures")]
pub(super) struct RawLiveness {
    pub(super) interval: Option<Spanned<Text<DurationText>>>,
    pub(super) timeout: Option<Spanned<Text<DurationText>>>,
    pub(super) failures: Option<Spanned<Count>>,
}

/// A whole number whose type error says so (TOML integers are `i64`).
pub(super) struct Count(pub(super) i64);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CountVisitor;

        impl Visitor<'_> for CountVisitor {
            type Value = Count;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(CountText::WHAT)
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Count, E> {
                Ok(Count(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Count, E> {
                Ok(Count(i64::try_from(v).unwrap_or(i64::MAX)))
            }
        }

        deserializer.deserialize_i64(CountVisitor)
    }
}

/// A backoff table (`[runtime.restart]`, `[runtime.hook-retry]`): an
/// `initial` and a `max` duration; `E` names the table in a type error.
pub(super) struct RawBackoff<E> {
    pub(super) initial: Option<Spanned<Text<DurationText>>>,
    pub(super) max: Option<Spanned<Text<DurationText>>>,
    kind: PhantomData<E>,
}

expected! {
    RestartTable => "a [runtime.restart] table with initial and max durations";
    HookRetryTable => "a [runtime.hook-retry] table with initial and max durations";
}

impl<'de, E: Expected> Deserialize<'de> for RawBackoff<E> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "lowercase")]
        enum Field {
            Initial,
            Max,
        }

        struct BackoffVisitor<E>(PhantomData<E>);

        impl<'de, E: Expected> Visitor<'de> for BackoffVisitor<E> {
            type Value = RawBackoff<E>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(E::WHAT)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut backoff = RawBackoff {
                    initial: None,
                    max: None,
                    kind: PhantomData,
                };
                while let Some(field) = map.next_key::<Field>()? {
                    let slot = match field {
                        Field::Initial => &mut backoff.initial,
                        Field::Max => &mut backoff.max,
                    };
                    if slot.is_some() {
                        return Err(de::Error::duplicate_field(match field {
                            Field::Initial => "initial",
                            Field::Max => "max",
                        }));
                    }
                    *slot = Some(map.next_value()?);
                }
                Ok(backoff)
            }
        }

        deserializer.deserialize_map(BackoffVisitor::<E>(PhantomData))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(expecting = "a [[runtime.version]] table")]
pub(super) struct RawVersion {
    pub(super) version: Option<Spanned<Text<VersionText>>>,
    pub(super) command: Option<Spanned<Text<CommandText>>>,
    #[serde(default)]
    pub(super) args: List<Text<ArgText>, ArgList>,
    #[serde(default)]
    pub(super) env: Env,
}

/// The `env` table, with each name and value spanned.
#[derive(Default)]
pub(super) struct Env(pub(super) BTreeMap<Spanned<String>, Spanned<Text<EnvValueText>>>);

impl<'de> Deserialize<'de> for Env {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EnvVisitor;

        impl<'de> Visitor<'de> for EnvVisitor {
            type Value = Env;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a table of strings such as { RUST_LOG = "info" }"#)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Env, A::Error> {
                let mut env = BTreeMap::new();
                while let Some((name, value)) = map.next_entry()? {
                    env.insert(name, value);
                }
                Ok(Env(env))
            }
        }

        deserializer.deserialize_map(EnvVisitor)
    }
}
