//! The built-in hook tool commands, run against a context with an
//! in-memory backend (no socket): arguments, exit codes and output, with
//! juju's tables for config-get, juju-log and unit-get.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "a test: a panic is its failure report, and nothing here is a library"
)]

use std::sync::Arc;

use serde_json::json;
use steward_hooks::test_util::{LogRecord, MemoryBackend};
use steward_hooks::tool::{BuiltinCommands, Commands, Invocation, ToolOutput};
use steward_hooks::{
    HookContext, HookInfo, HookKind, LogLevel, UnitInfo, WorkloadState, WorkloadStatus,
};

struct Fixture {
    context: HookContext,
    backend: MemoryBackend,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Self::with(
            HookInfo::unit(HookKind::Install),
            None,
            MemoryBackend::new(),
        )
    }

    fn with(hook: HookInfo, endpoint: Option<&str>, backend: MemoryBackend) -> Self {
        let unit = UnitInfo {
            runtime: "kv".into(),
            unit: "kv/agent-1".into(),
            version: "2.0".into(),
        };
        // juju's config-get fixture.
        let settings = json!({
            "monsters": false,
            "spline-reticulation": 45,
            "title": "My Title",
            "username": "admin001",
            "empty": null,
        });
        let context = HookContext::new(unit, hook, endpoint, Arc::new(backend.clone()))
            .unwrap()
            .with_settings(settings.as_object().unwrap().clone());
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

    /// Runs and expects success; returns stdout.
    async fn stdout(&mut self, command: &str, args: &[&str]) -> String {
        let output = self.run(command, args).await;
        assert_eq!(
            (output.code, output.stderr.as_str()),
            (0, ""),
            "{command} {args:?}"
        );
        output.stdout
    }

    /// Runs and expects failure with `code`; returns stderr.
    async fn fails(&mut self, code: i32, command: &str, args: &[&str]) -> String {
        let output = self.run(command, args).await;
        assert_eq!(output.code, code, "{command} {args:?}: {output:?}");
        output.stderr
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
}

#[tokio::test]
async fn every_command_has_help_and_refuses_unknown_flags() {
    let mut fixture = Fixture::new();
    for name in BuiltinCommands::names() {
        let help = fixture.stdout(name, &["--help"]).await;
        assert!(
            help.starts_with(&format!("Usage: {name}")),
            "{name}: {help}"
        );
        assert_eq!(
            fixture.fails(2, name, &["--cheese"]).await,
            "error: flag provided but not defined: --cheese\n",
            "{name}"
        );
    }
}

// ---- config-get (juju's config-get_test.go) ----

#[tokio::test]
async fn config_get_key_table() {
    let cases: &[(&[&str], &str)] = &[
        (&["monsters"], "False\n"),
        (&["--format", "yaml", "monsters"], "false\n"),
        (&["--format", "json", "monsters"], "false\n"),
        (&["spline-reticulation"], "45\n"),
        (&["--format", "yaml", "spline-reticulation"], "45\n"),
        (&["--format", "json", "spline-reticulation"], "45\n"),
        (&["missing"], ""),
        (&["--format", "yaml", "missing"], ""),
        (&["--format", "json", "missing"], "null\n"),
        (&["title"], "My Title\n"),
        (&["--format=json", "title"], "\"My Title\"\n"),
        // A key that is set to null prints like a missing one.
        (&["empty"], ""),
        (&["--format", "json", "empty"], "null\n"),
    ];
    let mut fixture = Fixture::new();
    for (args, expected) in cases {
        assert_eq!(
            fixture.stdout("config-get", args).await,
            *expected,
            "{args:?}"
        );
    }
}

#[tokio::test]
async fn config_get_all_table() {
    let yaml = "monsters: false\nspline-reticulation: 45\ntitle: My Title\nusername: admin001\n";
    let json =
        r#"{"monsters":false,"spline-reticulation":45,"title":"My Title","username":"admin001"}"#;
    let all_json = r#"{"empty":null,"monsters":false,"spline-reticulation":45,"title":"My Title","username":"admin001"}"#;
    let cases: &[(&[&str], String)] = &[
        (&[], yaml.into()),
        (&["--format", "yaml"], yaml.into()),
        (&["--format", "json"], format!("{json}\n")),
        (&["--all"], format!("empty: null\n{yaml}")),
        (&["-a", "--format", "json"], format!("{all_json}\n")),
    ];
    let mut fixture = Fixture::new();
    for (args, expected) in cases {
        assert_eq!(
            fixture.stdout("config-get", args).await,
            *expected,
            "{args:?}"
        );
    }
}

#[tokio::test]
async fn config_get_usage_errors() {
    let mut fixture = Fixture::new();
    assert_eq!(
        fixture
            .fails(2, "config-get", &["--all", "--format=json", "title"])
            .await,
        "error: cannot use argument --all together with key \"title\"\n"
    );
    assert_eq!(
        fixture.fails(2, "config-get", &["multiple", "keys"]).await,
        "error: unrecognized args: [\"keys\"]\n"
    );
    assert_eq!(
        fixture.fails(2, "config-get", &["--format", "xml"]).await,
        "error: invalid value \"xml\" for flag --format: unknown format \"xml\" (use json, smart or yaml)\n"
    );
}

#[tokio::test]
async fn config_get_writes_to_an_output_file_relative_to_the_dir() {
    let mut fixture = Fixture::new();
    assert_eq!(
        fixture
            .stdout("config-get", &["--output", "some-file", "monsters"])
            .await,
        ""
    );
    assert_eq!(
        std::fs::read_to_string(fixture.path("some-file")).unwrap(),
        "False\n"
    );
    // The file is created even when there is nothing to print.
    fixture
        .stdout("config-get", &["-o", "empty-file", "missing"])
        .await;
    assert_eq!(
        std::fs::read_to_string(fixture.path("empty-file")).unwrap(),
        ""
    );
    let stderr = fixture
        .fails(1, "config-get", &["-o", "no/such/dir/f", "title"])
        .await;
    assert!(stderr.starts_with("error: cannot write "), "{stderr}");
}

// ---- juju-log (juju's juju-log_test.go) ----

fn record(level: LogLevel, hook: &str, message: &str) -> LogRecord {
    LogRecord {
        level,
        hook: hook.into(),
        message: message.into(),
    }
}

#[tokio::test]
async fn juju_log_level_table() {
    let cases: &[(&[&str], LogLevel)] = &[
        (&["foo", "bar"], LogLevel::Info),
        (&["--log-level", "INFO", "foo", "bar"], LogLevel::Info),
        (&["--debug", "foo", "bar"], LogLevel::Debug),
        (&["-l", "WARNING", "foo", "bar"], LogLevel::Warning),
        (&["--log-level", "ERROR", "foo", "bar"], LogLevel::Error),
        (
            &["--log-level", "CRITICAL", "foo", "bar"],
            LogLevel::Critical,
        ),
        (&["-l", "warn", "foo", "bar"], LogLevel::Warning),
        (&["--debug", "-l", "ERROR", "foo", "bar"], LogLevel::Debug),
    ];
    for command in ["juju-log", "log"] {
        let mut fixture = Fixture::new();
        for (args, _) in cases {
            assert_eq!(fixture.stdout(command, args).await, "", "{args:?}");
        }
        let expected: Vec<_> = cases
            .iter()
            .map(|(_, level)| record(*level, "install", "foo bar"))
            .collect();
        assert_eq!(fixture.backend.logs(), expected, "{command}");
    }
}

#[tokio::test]
async fn juju_log_needs_a_message() {
    let mut fixture = Fixture::new();
    assert_eq!(
        fixture.fails(2, "juju-log", &[]).await,
        "error: no message specified\n"
    );
    assert_eq!(
        fixture.fails(2, "juju-log", &["--debug"]).await,
        "error: no message specified\n"
    );
    assert!(fixture.backend.logs().is_empty());
}

#[tokio::test]
async fn juju_log_falls_back_to_info_on_a_bad_level() {
    let mut fixture = Fixture::new();
    let output = fixture.run("juju-log", &["-l", "loud", "hello"]).await;
    assert_eq!(output.code, 0);
    assert!(
        output
            .stderr
            .starts_with("warning: unknown log level \"loud\""),
        "{}",
        output.stderr
    );
    assert!(output.stderr.ends_with("; logging at INFO\n"));
    assert_eq!(
        fixture.backend.logs(),
        [record(LogLevel::Info, "install", "hello")]
    );
}

#[tokio::test]
async fn juju_log_format_is_deprecated_but_accepted() {
    let mut fixture = Fixture::new();
    let output = fixture.run("juju-log", &["--format", "foo", "msg"]).await;
    assert_eq!(output.code, 0);
    assert_eq!(
        output.stderr,
        "--format flag deprecated for command \"juju-log\"\n"
    );
    assert_eq!(
        fixture.backend.logs(),
        [record(LogLevel::Info, "install", "msg")]
    );
}

#[tokio::test]
async fn juju_log_prefixes_the_relation_in_relation_hooks() {
    let hook = HookInfo::relation(HookKind::RelationChanged, 3, Some("db/0".into()), Some(1));
    let mut fixture = Fixture::with(hook, Some("db"), MemoryBackend::new());
    fixture.stdout("juju-log", &["hello", "there"]).await;
    assert_eq!(
        fixture.backend.logs(),
        [record(
            LogLevel::Info,
            "db-relation-changed",
            "db:3: hello there"
        )]
    );
}

// ---- unit-get (juju's unit-get_test.go, with our settings) ----

#[tokio::test]
async fn unit_get_table() {
    let cases: &[(&[&str], &str)] = &[
        (&["name"], "kv/agent-1\n"),
        (&["name", "--format", "yaml"], "kv/agent-1\n"),
        (&["name", "--format", "json"], "\"kv/agent-1\"\n"),
        (&["version"], "2.0\n"),
        // "2.0" would read back as a number: YAML quotes it.
        (&["version", "--format", "yaml"], "\"2.0\"\n"),
        (&["version", "--format", "json"], "\"2.0\"\n"),
        (&["runtime"], "kv\n"),
    ];
    let mut fixture = Fixture::new();
    for (args, expected) in cases {
        assert_eq!(
            fixture.stdout("unit-get", args).await,
            *expected,
            "{args:?}"
        );
    }
}

#[tokio::test]
async fn unit_get_errors() {
    let mut fixture = Fixture::new();
    // juju checks the setting in Init: a usage error.
    assert_eq!(
        fixture.fails(2, "unit-get", &["protected-address"]).await,
        "error: unknown setting \"protected-address\" (use name, version or runtime)\n"
    );
    assert_eq!(
        fixture.fails(2, "unit-get", &[]).await,
        "error: no setting specified\n"
    );
    assert_eq!(
        fixture.fails(2, "unit-get", &["name", "blah"]).await,
        "error: unrecognized args: [\"blah\"]\n"
    );
}

// ---- status-set / status-get ----

#[tokio::test]
async fn status_set_applies_at_once_and_status_get_reads_it() {
    let mut fixture = Fixture::new();
    assert_eq!(fixture.stdout("status-get", &[]).await, "unknown\n");
    fixture.stdout("status-set", &["maintenance"]).await;
    assert_eq!(
        fixture.backend.status_now(),
        WorkloadStatus::new(WorkloadState::Maintenance, "")
    );
    fixture
        .stdout("status-set", &["active", "ready to serve"])
        .await;
    // Not buffered: the backend has it while the hook still runs.
    assert_eq!(
        fixture.backend.status_now(),
        WorkloadStatus::new(WorkloadState::Active, "ready to serve")
    );
    assert_eq!(fixture.backend.statuses().len(), 2);
    assert!(fixture.context.changes().is_empty());

    let cases: &[(&[&str], &str)] = &[
        (&[], "active\n"),
        (&["--format", "json"], "\"active\"\n"),
        (&["--format", "yaml"], "active\n"),
        (
            &["--include-data", "--format", "json"],
            "{\"message\":\"ready to serve\",\"status\":\"active\"}\n",
        ),
        (
            &["--include-data"],
            "message: ready to serve\nstatus: active\n",
        ),
    ];
    for (args, expected) in cases {
        assert_eq!(
            fixture.stdout("status-get", args).await,
            *expected,
            "{args:?}"
        );
    }
}

#[tokio::test]
async fn status_set_refuses_what_hooks_may_not_set() {
    let mut fixture = Fixture::new();
    let allowed = "expected one of [maintenance blocked waiting active]";
    for status in ["sleeping", "error", "unknown", "Active"] {
        assert_eq!(
            fixture.fails(2, "status-set", &[status]).await,
            format!("error: invalid status {status:?}, {allowed}\n")
        );
    }
    assert_eq!(
        fixture.fails(2, "status-set", &[]).await,
        "error: no status specified (use maintenance, blocked, waiting or active)\n"
    );
    assert_eq!(
        fixture
            .fails(2, "status-set", &["active", "msg", "more"])
            .await,
        "error: unrecognized args: [\"more\"]\n"
    );
    assert_eq!(
        fixture.fails(2, "status-get", &["extra"]).await,
        "error: unrecognized args: [\"extra\"]\n"
    );
    assert!(fixture.backend.statuses().is_empty());
}

// ---- state-get / state-set / state-delete ----

#[tokio::test]
async fn state_get_reads_the_persisted_state() {
    let backend = MemoryBackend::new().with_state([("a", "1"), ("b", "two")]);
    let mut fixture = Fixture::with(HookInfo::unit(HookKind::Start), None, backend);
    let cases: &[(&[&str], &str)] = &[
        (&[], "a: \"1\"\nb: two\n"),
        (&["--format", "json"], "{\"a\":\"1\",\"b\":\"two\"}\n"),
        (&["b"], "two\n"),
        (&["a"], "1\n"),
        (&["--format", "json", "a"], "\"1\"\n"),
        (&["missing"], ""),
        (&["--format", "yaml", "missing"], ""),
        (&["--format", "json", "missing"], "null\n"),
    ];
    for (args, expected) in cases {
        assert_eq!(
            fixture.stdout("state-get", args).await,
            *expected,
            "{args:?}"
        );
    }
    assert_eq!(
        fixture
            .fails(1, "state-get", &["--strict", "missing"])
            .await,
        "error: key \"missing\" not found\n"
    );
    assert_eq!(
        fixture.fails(2, "state-get", &["a", "b"]).await,
        "error: unrecognized args: [\"b\"]\n"
    );
}

#[tokio::test]
async fn state_set_and_delete_are_buffered_and_read_back() {
    let backend = MemoryBackend::new().with_state([("a", "1"), ("b", "2"), ("c", "3")]);
    let mut fixture = Fixture::with(HookInfo::unit(HookKind::Start), None, backend);
    fixture
        .stdout("state-set", &["new=x", "a=", "foo=bar=baz=qux"])
        .await;
    fixture.stdout("state-delete", &["b"]).await;
    // Setting no pairs is allowed, as in juju.
    fixture.stdout("state-set", &[]).await;

    assert_eq!(
        fixture.stdout("state-get", &["--format", "json"]).await,
        "{\"c\":\"3\",\"foo\":\"bar=baz=qux\",\"new\":\"x\"}\n"
    );
    assert_eq!(fixture.stdout("state-get", &["a"]).await, "");
    assert_eq!(fixture.stdout("state-get", &["new"]).await, "x\n");
    // The backend is untouched until the agent commits.
    assert_eq!(fixture.backend.unit_state_now().len(), 3);

    let changes = fixture.context.take_changes();
    let summary: Vec<(&str, Option<&str>)> = changes
        .state
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_deref()))
        .collect();
    assert_eq!(
        summary,
        [
            ("a", None),
            ("b", None),
            ("foo", Some("bar=baz=qux")),
            ("new", Some("x"))
        ]
    );
    fixture.backend.commit(&changes);
    let state = fixture.backend.unit_state_now();
    assert_eq!(state.keys().collect::<Vec<_>>(), ["c", "foo", "new"]);
}

#[tokio::test]
async fn state_set_checks_every_pair_before_changing_anything() {
    let mut fixture = Fixture::new();
    for bad in ["=haha", "novalue", ""] {
        assert_eq!(
            fixture.fails(2, "state-set", &["good=1", bad]).await,
            format!("error: expected \"key=value\", got {bad:?}\n")
        );
    }
    assert!(fixture.context.changes().is_empty());
    assert_eq!(
        fixture.fails(2, "state-delete", &[]).await,
        "error: no key specified\n"
    );
    assert_eq!(
        fixture.fails(2, "state-delete", &["a", "b"]).await,
        "error: unrecognized args: [\"b\"]\n"
    );
    assert!(fixture.context.changes().is_empty());
}

// ---- runtime-call ----

#[tokio::test]
async fn runtime_call_prints_the_result_as_json() {
    let mut fixture = Fixture::new();
    assert_eq!(
        fixture
            .stdout("runtime-call", &["get", r#"{"key": "x"}"#])
            .await,
        "{\"args\":{\"key\":\"x\"},\"method\":\"get\"}\n"
    );
    assert_eq!(
        fixture.stdout("runtime-call", &["ping"]).await,
        "{\"args\":null,\"method\":\"ping\"}\n"
    );
    assert_eq!(
        fixture
            .stdout("runtime-call", &["--format", "yaml", "get", "[1]"])
            .await,
        "args:\n- 1\nmethod: get\n"
    );
    assert_eq!(
        fixture.backend.calls(),
        [
            ("get".to_string(), json!({"key": "x"})),
            ("ping".to_string(), json!(null)),
            ("get".to_string(), json!([1])),
        ]
    );
}

#[tokio::test]
async fn runtime_call_errors() {
    let backend = MemoryBackend::new().with_runtime(|method, _| match method {
        "get" => Err("no such key".into()),
        _ => Ok(json!("ok")),
    });
    let mut fixture = Fixture::with(HookInfo::unit(HookKind::Install), None, backend);
    assert_eq!(
        fixture.fails(1, "runtime-call", &["get", "{}"]).await,
        "error: call \"get\" failed: no such key\n"
    );
    let stderr = fixture.fails(2, "runtime-call", &["get", "{nope"]).await;
    assert!(
        stderr.starts_with("error: arguments are not valid JSON (")
            && stderr.ends_with(": \"{nope\"\n"),
        "{stderr}"
    );
    assert_eq!(
        fixture.fails(2, "runtime-call", &[]).await,
        "error: no method specified\n"
    );
    assert_eq!(
        fixture.fails(2, "runtime-call", &["m", "1", "2"]).await,
        "error: unrecognized args: [\"2\"]\n"
    );
    // Usage errors never reach the runtime.
    assert_eq!(fixture.backend.calls().len(), 1);
    assert_eq!(fixture.stdout("runtime-call", &["other"]).await, "\"ok\"\n");
}

#[test]
fn commands_are_looked_up_by_name() {
    assert!(BuiltinCommands.contains("config-get"));
    assert!(!BuiltinCommands.contains("witchcraft"));
    assert_eq!(
        BuiltinCommands::spec("state-set").map(|spec| spec.name),
        Some("state-set")
    );
}
