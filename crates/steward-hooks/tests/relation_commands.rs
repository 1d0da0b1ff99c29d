//! The relation hook tools against an in-memory backend: juju's
//! relation-get, relation-set, relation-ids and relation-list tests
//! (errors, defaults, `-r` parsing, smart/json/yaml output, the
//! `foo=bar=baz=qux` split), and steward's own rules (relation-broken
//! refuses relation-set, a departing unit stays readable, a hook reads its
//! own writes, writes reach the agent only through `Changes`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "a test: a panic is its failure report, and nothing here is a library"
)]

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use steward_hooks::test_util::MemoryBackend;
use steward_hooks::tool::{BuiltinCommands, Commands, Invocation, ToolOutput};
use steward_hooks::{HookContext, HookInfo, HookKind, UnitInfo};

const ME: &str = "kv/agent-1";

/// The unit is in db:0, db:1, cache:2 and db:10. In db:1, m/0 and a/0 are
/// members and u/1 is a non-member with settings; this unit has settings
/// in db:0 and db:1.
fn backend() -> MemoryBackend {
    MemoryBackend::new()
        .with_unit(ME)
        .with_relation(10, "db", "pg")
        .with_relation(0, "db", "pg")
        .with_relation(1, "db", "mysql")
        .with_relation(2, "cache", "redis")
        .with_member(1, "m/0", [("pew", "pew\npew\n")])
        .with_member(1, "a/0", [("host", "a")])
        .with_relation_settings(1, "u/1", [("value", "12345")])
        .with_relation_settings(0, ME, [("private-address", "foo: bar\n")])
        .with_relation_settings(1, ME, [("base", "value")])
}

struct Fixture {
    context: HookContext,
    backend: MemoryBackend,
    dir: tempfile::TempDir,
}

impl Fixture {
    /// A hook for `unit` in relation `relation` (`None`: an install hook;
    /// no unit: relation-broken).
    fn new(relation: Option<u64>, unit: Option<&str>) -> Self {
        let kind = match (relation, unit) {
            (None, _) => HookKind::Install,
            (Some(_), Some(_)) => HookKind::RelationChanged,
            (Some(_), None) => HookKind::RelationBroken,
        };
        Self::hook(kind, relation, unit)
    }

    fn hook(kind: HookKind, relation: Option<u64>, unit: Option<&str>) -> Self {
        let backend = backend();
        let hook = HookInfo {
            kind,
            relation_id: relation,
            remote_unit: unit.map(String::from),
            change_version: unit.map(|_| 1),
        };
        let endpoint = relation.map(|id| if id == 2 { "cache" } else { "db" });
        let unit_info = UnitInfo {
            runtime: "kv".into(),
            unit: ME.into(),
            version: "2.0".into(),
        };
        let context =
            HookContext::new(unit_info, hook, endpoint, Arc::new(backend.clone())).unwrap();
        Self {
            context,
            backend,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    async fn run(&mut self, command: &str, args: &[&str]) -> ToolOutput {
        let args = args.iter().map(|arg| arg.to_string()).collect();
        let mut invocation = Invocation::new(command, args, self.dir.path());
        let result = BuiltinCommands
            .run(&mut self.context, &mut invocation)
            .await;
        invocation.finish(result)
    }

    async fn stdout(&mut self, command: &str, args: &[&str]) -> String {
        let output = self.run(command, args).await;
        assert_eq!(
            (output.code, output.stderr.as_str()),
            (0, ""),
            "{command} {args:?}"
        );
        output.stdout
    }

    /// Runs and expects failure with `code`, no output; returns the error
    /// message without `error: ` and the newline.
    async fn fails(&mut self, code: i32, command: &str, args: &[&str]) -> String {
        let output = self.run(command, args).await;
        assert_eq!(output.code, code, "{command} {args:?}: {output:?}");
        assert_eq!(output.stdout, "", "{command} {args:?}");
        output
            .stderr
            .strip_prefix("error: ")
            .and_then(|rest| rest.strip_suffix('\n'))
            .unwrap_or_else(|| panic!("{command} {args:?}: {:?}", output.stderr))
            .to_string()
    }

    fn writes(&self, id: u64) -> Option<BTreeMap<String, Option<String>>> {
        self.context.changes().relation_settings.get(&id).cloned()
    }
}

type Args = &'static [&'static str];
type Writes = &'static [(&'static str, Option<&'static str>)];

fn map(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.map(String::from)))
        .collect()
}

// ---- relation-ids ----

#[tokio::test]
async fn relation_ids_table() {
    let cases: &[(&[&str], &str)] = &[
        // The hook's endpoint by default; by id, not as strings.
        (&[], "db:0\ndb:1\ndb:10\n"),
        (&["--format", "json"], "[\"db:0\",\"db:1\",\"db:10\"]\n"),
        (&["--format", "yaml"], "- db:0\n- db:1\n- db:10\n"),
        (&["cache"], "cache:2\n"),
        (&["--format=json", "cache"], "[\"cache:2\"]\n"),
        (&["nothing"], ""),
        (&["--format", "json", "nothing"], "[]\n"),
    ];
    let mut fixture = Fixture::new(Some(1), Some("m/0"));
    for (args, expected) in cases {
        assert_eq!(
            fixture.stdout("relation-ids", args).await,
            *expected,
            "{args:?}"
        );
    }
    assert_eq!(
        fixture.fails(2, "relation-ids", &["db", "x"]).await,
        r#"unrecognized args: ["x"]"#
    );
}

#[tokio::test]
async fn relation_ids_needs_a_name_outside_relation_hooks() {
    let mut fixture = Fixture::new(None, None);
    assert_eq!(
        fixture.fails(2, "relation-ids", &[]).await,
        "no relation name specified"
    );
    assert_eq!(
        fixture.stdout("relation-ids", &["cache"]).await,
        "cache:2\n"
    );
}

// ---- relation-list ----

#[tokio::test]
async fn relation_list_table() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "a/0\nm/0\n"),
        (&["--format", "json"], "[\"a/0\",\"m/0\"]\n"),
        (&["--format", "yaml"], "- a/0\n- m/0\n"),
        (&["-r", "0"], ""),
        (&["-r", "db:0", "--format", "json"], "[]\n"),
        (&["-r", "ignored:1"], "a/0\nm/0\n"),
        (&["--relation", "cache:2"], ""),
    ];
    let mut fixture = Fixture::new(Some(1), Some("m/0"));
    for (args, expected) in cases {
        assert_eq!(
            fixture.stdout("relation-list", args).await,
            *expected,
            "{args:?}"
        );
    }
    assert_eq!(
        fixture.fails(2, "relation-list", &["extra"]).await,
        r#"unrecognized args: ["extra"]"#
    );
}

#[tokio::test]
async fn relation_list_errors() {
    let mut fixture = Fixture::new(None, None);
    assert_eq!(
        fixture.fails(2, "relation-list", &[]).await,
        "no relation id specified"
    );
    assert_eq!(
        fixture.fails(2, "relation-list", &["-r", "bad"]).await,
        r#"invalid value "bad" for flag -r: invalid relation id"#
    );
    assert_eq!(
        fixture.fails(2, "relation-list", &["-r", "db:99"]).await,
        r#"invalid value "db:99" for flag -r: unknown relation id"#
    );
    assert_eq!(
        fixture.stdout("relation-list", &["-r", "db:1"]).await,
        "a/0\nm/0\n"
    );
}

#[tokio::test]
async fn relation_list_is_the_membership_as_of_the_hook() {
    // A joining unit is a member in its joined hook.
    let mut joined = Fixture::hook(HookKind::RelationJoined, Some(1), Some("n/0"));
    assert_eq!(joined.stdout("relation-list", &[]).await, "a/0\nm/0\nn/0\n");
    // A departing one is not, in its departed hook, but stays readable.
    let mut departed = Fixture::hook(HookKind::RelationDeparted, Some(1), Some("m/0"));
    assert_eq!(departed.stdout("relation-list", &[]).await, "a/0\n");
    assert_eq!(
        departed.stdout("relation-get", &["pew"]).await,
        "pew\npew\n\n"
    );
    assert_eq!(
        departed
            .stdout("relation-get", &["--format", "json", "-", "m/0"])
            .await,
        "{\"pew\":\"pew\\npew\\n\"}\n"
    );
}

// ---- relation-get (juju's relation-get_test.go) ----

#[tokio::test]
async fn relation_get_errors() {
    // No default relation.
    let mut install = Fixture::new(None, None);
    assert_eq!(
        install.fails(2, "relation-get", &[]).await,
        "no relation id specified"
    );
    assert_eq!(
        install
            .fails(2, "relation-get", &["-r", "burble:123"])
            .await,
        r#"invalid value "burble:123" for flag -r: unknown relation id"#
    );
    assert_eq!(
        install.fails(2, "relation-get", &["-r", "burble:1"]).await,
        "no unit id specified"
    );
    assert_eq!(
        install.fails(2, "relation-get", &["-r", "-3"]).await,
        r#"invalid value "-3" for flag -r: unknown relation id"#
    );
    // A default relation, but no remote unit (relation-broken).
    let mut broken = Fixture::new(Some(1), None);
    assert_eq!(
        broken.fails(2, "relation-get", &[]).await,
        "no unit id specified"
    );
    assert_eq!(
        broken.fails(2, "relation-get", &["-", "m/0", "x"]).await,
        r#"unrecognized args: ["x"]"#
    );
    // An unknown unit is a run error.
    let mut bad = Fixture::new(Some(1), Some("bad/0"));
    assert_eq!(
        bad.fails(1, "relation-get", &[]).await,
        "unknown unit bad/0 in relation db:1"
    );
}

#[tokio::test]
async fn relation_get_table() {
    // The hook's relation and remote unit, the arguments, the output.
    let cases: &[(Option<u64>, Option<&str>, Args, &str)] = &[
        // Missing key.
        (Some(1), Some("m/0"), &["ker-plunk"], ""),
        (Some(1), Some("m/0"), &["ker-plunk", "--format", "yaml"], ""),
        (
            Some(1),
            Some("m/0"),
            &["ker-plunk", "--format", "json"],
            "null\n",
        ),
        // Specific keys, implicit and explicit units, members or not, and
        // the unit itself.
        (Some(1), Some("m/0"), &["pew"], "pew\npew\n\n"),
        (Some(1), None, &["pew", "m/0"], "pew\npew\n\n"),
        (Some(1), None, &["value", "u/1"], "12345\n"),
        (Some(0), None, &["private-address", ME], "foo: bar\n\n"),
        (
            Some(1),
            Some("m/0"),
            &["pew", "--format", "smart"],
            "pew\npew\n\n",
        ),
        // JSON.
        (
            Some(1),
            Some("m/0"),
            &["--format", "json"],
            "{\"pew\":\"pew\\npew\\n\"}\n",
        ),
        (
            Some(1),
            Some("m/0"),
            &["pew", "--format", "json"],
            "\"pew\\npew\\n\"\n",
        ),
        (
            Some(1),
            None,
            &["value", "u/1", "--format", "json"],
            "\"12345\"\n",
        ),
        (
            Some(1),
            None,
            &["--format", "json", "-", "u/1"],
            "{\"value\":\"12345\"}\n",
        ),
        // YAML quotes a string that reads as a number.
        (
            Some(1),
            None,
            &["value", "u/1", "--format", "yaml"],
            "\"12345\"\n",
        ),
        (Some(1), None, &["-", "u/1"], "value: \"12345\"\n"),
        // -r names the relation, and the default unit stays the hook's.
        (
            Some(0),
            Some("m/0"),
            &["-r", "db:1", "pew", "--format", "json"],
            "\"pew\\npew\\n\"\n",
        ),
    ];
    for (relation, unit, args, expected) in cases {
        let mut fixture = Fixture::new(*relation, *unit);
        assert_eq!(
            fixture.stdout("relation-get", args).await,
            *expected,
            "{relation:?} {unit:?} {args:?}"
        );
    }
}

/// Whole maps in smart and YAML formats are YAML that reads back as the
/// settings (the bytes differ from goyaml's quoting, not the values).
#[tokio::test]
async fn relation_get_prints_whole_maps_as_yaml() {
    let expected: Value = serde_json::json!({"pew": "pew\npew\n"});
    for args in [
        &[][..],
        &["-"],
        &["-", "m/0"],
        &["--format", "smart"],
        &["--format", "yaml"],
    ] {
        let mut fixture = Fixture::new(Some(1), Some("m/0"));
        let text = fixture.stdout("relation-get", args).await;
        let back: Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(back, expected, "{args:?} printed {text:?}");
    }
    let mut own = Fixture::new(Some(0), None);
    let text = own.stdout("relation-get", &["-", ME]).await;
    let back: Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(back, serde_json::json!({"private-address": "foo: bar\n"}));
}

#[tokio::test]
async fn relation_get_writes_to_an_output_file() {
    let mut fixture = Fixture::new(Some(1), Some("m/0"));
    assert_eq!(
        fixture
            .stdout("relation-get", &["--output", "some-file", "pew"])
            .await,
        ""
    );
    let content = std::fs::read_to_string(fixture.dir.path().join("some-file")).unwrap();
    assert_eq!(content, "pew\npew\n\n");
}

// ---- relation-set (juju's relation-set_test.go) ----

#[tokio::test]
async fn relation_set_init_table() {
    /// The hook's relation, the arguments, and the relation written with
    /// the writes buffered, or the exit code and error.
    type Case = (
        Option<u64>,
        Args,
        Result<(u64, Writes), (i32, &'static str)>,
    );
    let cases: &[Case] = &[
        // Compatibility: no pairs is valid.
        (Some(1), &[], Ok((1, &[]))),
        (None, &[], Err((2, "no relation id specified"))),
        (
            None,
            &["-r", "one"],
            Err((2, r#"invalid value "one" for flag -r: invalid relation id"#)),
        ),
        (
            Some(1),
            &["-r", "one"],
            Err((2, r#"invalid value "one" for flag -r: invalid relation id"#)),
        ),
        (
            None,
            &["-r", "ignored:one"],
            Err((
                2,
                r#"invalid value "ignored:one" for flag -r: invalid relation id"#,
            )),
        ),
        (
            Some(1),
            &["-r", "ignored:one"],
            Err((
                2,
                r#"invalid value "ignored:one" for flag -r: invalid relation id"#,
            )),
        ),
        (
            None,
            &["-r", "7"],
            Err((2, r#"invalid value "7" for flag -r: unknown relation id"#)),
        ),
        (
            Some(1),
            &["-r", "ignored:7"],
            Err((
                2,
                r#"invalid value "ignored:7" for flag -r: unknown relation id"#,
            )),
        ),
        (
            Some(1),
            &["-r", "ignored:0", "k=v"],
            Ok((0, &[("k", Some("v"))])),
        ),
        (Some(1), &["-r", "0", "k=v"], Ok((0, &[("k", Some("v"))]))),
        (None, &["-r", "1", "k=v"], Ok((1, &[("k", Some("v"))]))),
        (Some(0), &["-r", "1", "k=v"], Ok((1, &[("k", Some("v"))]))),
        (
            Some(1),
            &["haha"],
            Err((2, r#"expected "key=value", got "haha""#)),
        ),
        (
            Some(1),
            &["=haha"],
            Err((2, r#"expected "key=value", got "=haha""#)),
        ),
        // `key=` deletes.
        (Some(1), &["foo="], Ok((1, &[("foo", None)]))),
        (Some(1), &["foo='"], Ok((1, &[("foo", Some("'"))]))),
        (Some(1), &["foo=bar"], Ok((1, &[("foo", Some("bar"))]))),
        (
            Some(1),
            &["foo=bar=baz=qux"],
            Ok((1, &[("foo", Some("bar=baz=qux"))])),
        ),
        (
            Some(1),
            &["foo=foo: bar"],
            Ok((1, &[("foo", Some("foo: bar"))])),
        ),
        (
            Some(0),
            &["-r", "1", "foo=bar"],
            Ok((1, &[("foo", Some("bar"))])),
        ),
        (
            Some(1),
            &["foo=123", "bar=true", "baz=4.5", "qux="],
            Ok((
                1,
                &[
                    ("foo", Some("123")),
                    ("bar", Some("true")),
                    ("baz", Some("4.5")),
                    ("qux", None),
                ],
            )),
        ),
        // A usage error anywhere changes nothing.
        (
            Some(1),
            &["a=1", "bad"],
            Err((2, r#"expected "key=value", got "bad""#)),
        ),
    ];
    for (relation, args, expected) in cases {
        let mut fixture = Fixture::new(*relation, relation.map(|_| "m/0"));
        match expected {
            Ok((id, writes)) => {
                assert_eq!(
                    fixture.stdout("relation-set", args).await,
                    "",
                    "{relation:?} {args:?}"
                );
                let got = fixture.writes(*id);
                if writes.is_empty() {
                    assert_eq!(got, None, "{relation:?} {args:?}");
                    assert!(fixture.context.changes().is_empty());
                } else {
                    assert_eq!(got, Some(map(writes)), "{relation:?} {args:?}");
                    assert_eq!(fixture.context.changes().relation_settings.len(), 1);
                }
            }
            Err((code, message)) => {
                assert_eq!(
                    fixture.fails(*code, "relation-set", args).await,
                    *message,
                    "{relation:?} {args:?}"
                );
                assert!(
                    fixture.context.changes().is_empty(),
                    "{relation:?} {args:?}"
                );
            }
        }
    }
}

/// Juju's TestRun: this unit's settings in db:1 start as {base: value};
/// db:0's stay untouched.
#[tokio::test]
async fn relation_set_run_table() {
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("base=", &[]),
        ("foo=bar", &[("base", "value"), ("foo", "bar")]),
        ("base=changed", &[("base", "changed")]),
    ];
    for (arg, expected) in cases {
        let mut fixture = Fixture::new(Some(0), None);
        fixture.stdout("relation-set", &["-r", "1", arg]).await;
        let changes = fixture.context.take_changes();
        fixture.backend.commit(&changes);
        let expected: BTreeMap<String, String> = expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(
            fixture.backend.relation_settings_now(1, ME),
            Some(expected),
            "{arg}"
        );
        assert_eq!(
            fixture.backend.relation_settings_now(0, ME),
            backend().relation_settings_now(0, ME),
            "{arg}"
        );
    }
}

#[tokio::test]
async fn relation_set_format_is_deprecated_but_accepted() {
    let mut fixture = Fixture::new(Some(0), Some("m/0"));
    let output = fixture
        .run("relation-set", &["--format", "foo", "rel="])
        .await;
    assert_eq!(
        (output.code, output.stdout.as_str(), output.stderr.as_str()),
        (
            0,
            "",
            "--format flag deprecated for command \"relation-set\"\n"
        )
    );
    assert_eq!(fixture.writes(0), Some(map(&[("rel", None)])));
}

#[tokio::test]
async fn relation_set_is_refused_for_the_relation_being_broken() {
    let mut fixture = Fixture::new(Some(1), None);
    let message = fixture.fails(1, "relation-set", &["a=b"]).await;
    assert!(
        message.starts_with("cannot set settings of relation db:1 in its relation-broken hook"),
        "{message}"
    );
    assert!(fixture.context.changes().is_empty());
    // Other relations still take writes from a broken hook.
    fixture
        .stdout("relation-set", &["-r", "cache:2", "a=b"])
        .await;
    assert_eq!(fixture.writes(2), Some(map(&[("a", Some("b"))])));
}

#[tokio::test]
async fn relation_set_works_for_any_relation_even_without_members() {
    let mut fixture = Fixture::new(None, None);
    assert_eq!(
        fixture.stdout("relation-list", &["-r", "cache:2"]).await,
        ""
    );
    fixture
        .stdout("relation-set", &["-r", "cache:2", "url=redis://x"])
        .await;
    assert_eq!(fixture.writes(2), Some(map(&[("url", Some("redis://x"))])));
    // Readable back as the unit's own settings, though none were committed.
    assert_eq!(
        fixture
            .stdout("relation-get", &["-r", "cache:2", "url", ME])
            .await,
        "redis://x\n"
    );
}

#[tokio::test]
async fn a_hook_reads_its_own_relation_writes_and_the_agent_commits_them() {
    let mut fixture = Fixture::new(Some(1), Some("m/0"));
    fixture
        .stdout("relation-set", &["base=", "foo=bar=baz=qux", "n=1"])
        .await;
    fixture.stdout("relation-set", &["n=2"]).await;
    assert_eq!(
        fixture
            .stdout("relation-get", &["--format", "json", "-", ME])
            .await,
        "{\"foo\":\"bar=baz=qux\",\"n\":\"2\"}\n"
    );
    assert_eq!(fixture.stdout("relation-get", &["base", ME]).await, "");
    // Nothing is committed until the agent commits the hook's changes.
    assert_eq!(
        fixture.backend.relation_settings_now(1, ME),
        backend().relation_settings_now(1, ME)
    );
    let changes = fixture.context.take_changes();
    let committed = fixture.backend.relation_settings_now(1, ME).unwrap();
    assert!(changes.changes_relation(1, &committed));
    fixture.backend.commit(&changes);
    let now = fixture.backend.relation_settings_now(1, ME).unwrap();
    assert_eq!(
        now,
        BTreeMap::from([
            ("foo".to_string(), "bar=baz=qux".to_string()),
            ("n".to_string(), "2".to_string()),
        ])
    );
    assert!(
        !changes.changes_relation(1, &now),
        "the same writes again change nothing"
    );
}

// ---- juju-log in relation hooks ----

#[tokio::test]
async fn juju_log_prefixes_the_relation_in_every_relation_hook() {
    for (kind, unit) in [
        (HookKind::RelationJoined, Some("n/0")),
        (HookKind::RelationDeparted, Some("m/0")),
        (HookKind::RelationBroken, None),
    ] {
        let mut fixture = Fixture::hook(kind, Some(10), unit);
        fixture.stdout("juju-log", &["hello"]).await;
        let logs = fixture.backend.logs();
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].message, "db:10: hello", "{kind}");
    }
    let mut install = Fixture::new(None, None);
    install.stdout("juju-log", &["hello"]).await;
    assert_eq!(install.backend.logs()[0].message, "hello");
}
