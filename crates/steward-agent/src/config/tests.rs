use std::ffi::OsString;

use super::error::LineIndex;
use super::*;

/// A temp dir holding an executable `steward`, and a resolver that
/// finds it there (and searches no PATH).
struct Fixture {
    dir: tempfile::TempDir,
    resolver: CommandResolver,
}

fn executable(path: &Path) {
    std::fs::write(path, "#!/bin/sh\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    executable(&dir.path().join("steward"));
    let resolver = CommandResolver {
        exe_dir: Some(dir.path().to_path_buf()),
        path: None,
    };
    Fixture { dir, resolver }
}

impl Fixture {
    fn steward(&self) -> PathBuf {
        self.dir.path().join("steward")
    }

    fn parse(&self, text: &str) -> Result<Config, ConfigErrors> {
        parse(text, Path::new("/etc/steward/agent.toml"), &self.resolver)
    }

    /// The errors of `text`, as (line, column, message).
    fn errors(&self, text: &str) -> Vec<(usize, usize, String)> {
        let errors = self.parse(text).expect_err("config should be invalid");
        assert!(!errors.0.is_empty());
        errors
            .0
            .into_iter()
            .map(|e| {
                assert_eq!(e.file, Path::new("/etc/steward/agent.toml"));
                (e.line, e.column, e.message)
            })
            .collect()
    }

    /// The only error of `text`.
    fn error(&self, text: &str) -> (usize, usize, String) {
        let mut errors = self.errors(text);
        assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
        errors.remove(0)
    }
}

const EXAMPLE: &str = r#"# Runtimes hosted by this agent, in order.
[[runtime]]
id = "echo"                       # [A-Za-z0-9._-]+, 1..=64 chars
active = "1.0.0"                  # started when the store holds no desired version yet
transition = "make-before-break"  # or "stop-then-start"
call-timeout = "30s"
[runtime.restart]
initial = "500ms"
max = "30s"

[[runtime.version]]
version = "1.0.0"
command = "steward"
args = ["example-runtime", "echo", "--version", "1.0.0"]
env = { RUST_LOG = "info" }
"#;

/// A valid runtime with `extra` lines in its table, then one version.
fn runtime_with(extra: &str) -> String {
    format!(
        "[[runtime]]\nid = \"echo\"\nactive = \"1.0.0\"\n{extra}\n[[runtime.version]]\nversion = \"1.0.0\"\ncommand = \"steward\"\n"
    )
}

#[test]
fn example_parses_to_the_model() {
    let f = fixture();
    let config = f.parse(EXAMPLE).unwrap();
    assert_eq!(
        config,
        Config {
            runtimes: vec![RuntimeConfig {
                id: "echo".into(),
                active: "1.0.0".into(),
                transition: Transition::MakeBeforeBreak,
                call_timeout: Duration::from_secs(30),
                restart: BackoffConfig {
                    initial: Duration::from_millis(500),
                    max: Duration::from_secs(30),
                },
                hooks: None,
                settings: Default::default(),
                timeouts: ProcessTimeouts::default(),
                liveness: Liveness::default(),
                log_lines: DEFAULT_LOG_LINES,
                versions: vec![VersionConfig {
                    version: "1.0.0".into(),
                    command: f.steward(),
                    args: vec![
                        "example-runtime".into(),
                        "echo".into(),
                        "--version".into(),
                        "1.0.0".into()
                    ],
                    env: BTreeMap::from([("RUST_LOG".into(), "info".into())]),
                }],
            }],
            relations: Vec::new(),
            fleet: None,
        }
    );
    let echo = config.runtime("echo").unwrap();
    assert!(config.runtime("kv").is_none());
    assert_eq!(echo.version("1.0.0").unwrap().command, f.steward());
    assert!(echo.version("2.0.0").is_none());
    assert_eq!(echo.version_names(), vec!["1.0.0".to_owned()]);
}

#[test]
fn defaults_fill_what_is_left_out() {
    let f = fixture();
    let config = f.parse(&runtime_with("")).unwrap();
    let rt = &config.runtimes[0];
    assert_eq!(rt.transition, Transition::MakeBeforeBreak);
    assert_eq!(rt.call_timeout, DEFAULT_CALL_TIMEOUT);
    assert_eq!(rt.restart, BackoffConfig::RESTART);
    assert_eq!(
        BackoffConfig::RESTART,
        BackoffConfig {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30)
        }
    );
    assert!(rt.versions[0].args.is_empty());
    assert!(rt.versions[0].env.is_empty());

    // A partial restart table keeps the other default.
    let config = f
        .parse(&runtime_with("[runtime.restart]\ninitial = \"2s\""))
        .unwrap();
    assert_eq!(
        config.runtimes[0].restart,
        BackoffConfig {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(30)
        }
    );
}

#[test]
fn other_settings_are_read() {
    let f = fixture();
    let config = f
        .parse(&runtime_with(
            "transition = \"stop-then-start\"\ncall-timeout = \"2m\"\n[runtime.restart]\ninitial = \"1s\"\nmax = \"1s\"",
        ))
        .unwrap();
    let rt = &config.runtimes[0];
    assert_eq!(rt.transition, Transition::StopThenStart);
    assert_eq!(rt.call_timeout, Duration::from_secs(120));
    assert_eq!(rt.restart.initial, Duration::from_secs(1));
    assert_eq!(rt.restart.max, Duration::from_secs(1));
}

#[test]
fn empty_config_is_valid() {
    let f = fixture();
    assert_eq!(f.parse("").unwrap(), Config::default());
    assert_eq!(f.parse("# nothing yet\n").unwrap().runtimes, vec![]);
}

#[test]
fn runtimes_keep_file_order() {
    let f = fixture();
    let text = format!(
        "{}{}",
        runtime_with("").replace("echo", "zeta"),
        runtime_with("").replace("echo", "alpha")
    );
    let config = f.parse(&text).unwrap();
    let ids: Vec<_> = config.runtimes.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["zeta", "alpha"]);
}

#[test]
fn syntax_error_position() {
    let f = fixture();
    let (line, column, message) = f.error("[[runtime]]\nid = \"echo\"\nactive = \"1.0.0\n");
    assert_eq!((line, column), (3, 16));
    assert!(message.contains("string"), "{message}");
    assert!(!message.contains('\n'));
}

#[test]
fn duplicate_key_is_named() {
    let f = fixture();
    let (line, column, message) = f.error("[[runtime]]\nid = \"a\"\nid = \"b\"\n");
    assert_eq!((line, column), (3, 1));
    assert_eq!(
        message,
        "duplicate key `id`; a key may appear only once in a table"
    );
}

#[test]
fn unknown_key_positions() {
    let f = fixture();
    let (line, column, message) = f.error(&runtime_with("  call_timeout = \"1s\""));
    assert_eq!((line, column), (4, 3));
    assert!(
        message.starts_with("unknown field `call_timeout`, expected one of"),
        "{message}"
    );
    assert!(message.contains("`call-timeout`"), "{message}");

    let (line, column, message) = f.error("[runtimes]\n");
    assert_eq!((line, column), (1, 2));
    assert!(message.contains("unknown field `runtimes`"), "{message}");

    let text = format!("{}argv = []\n", runtime_with(""));
    let (line, column, _) = f.error(&text);
    assert_eq!((line, column), (8, 1));

    let text = format!("{}[runtime.restart]\nmin = \"1s\"\n", runtime_with(""));
    let (line, column, message) = f.error(&text);
    assert_eq!((line, column), (9, 1));
    assert!(message.contains("unknown field `min`"), "{message}");
}

#[test]
fn type_error_position_and_message() {
    let f = fixture();
    let (line, column, message) = f.error(&runtime_with("call-timeout = 5"));
    assert_eq!((line, column), (4, 16));
    assert_eq!(
        message,
        r#"invalid type: integer `5`, expected a duration string such as "30s" or "500ms""#
    );

    let (_, _, message) = f.error("[[runtime]]\nid = \"a\"\nactive = 1\n");
    assert!(
        message.contains(r#"expected a version string such as "1.0.0""#),
        "{message}"
    );

    // `[runtime]` instead of `[[runtime]]`.
    let (line, column, message) = f.error("[runtime]\nid = \"a\"\n");
    assert_eq!(line, 1, "{message}");
    assert!(column <= 2, "{column}");
    assert!(message.contains("[[runtime]] tables"), "{message}");

    let (_, _, message) = f.error("[[runtime]]\nrestart = \"1s\"\n");
    assert!(message.contains("a [runtime.restart] table"), "{message}");

    let text = format!("{}args = \"--fast\"\n", runtime_with(""));
    let (line, column, message) = f.error(&text);
    assert_eq!((line, column), (8, 8));
    assert!(message.contains("an array of strings"), "{message}");

    let text = format!("{}env = \"PORT=8080\"\n", runtime_with(""));
    let (line, column, message) = f.error(&text);
    assert_eq!((line, column), (8, 7));
    assert!(message.contains("a table of strings"), "{message}");

    let text = format!("{}env = {{ PORT = 8080 }}\n", runtime_with(""));
    let (line, column, message) = f.error(&text);
    assert_eq!((line, column), (8, 16));
    assert!(message.contains("quote numbers"), "{message}");
}

#[test]
fn log_lines_default_to_a_thousand_and_must_be_in_range() {
    let f = fixture();
    let lines = |extra: &str| f.parse(&runtime_with(extra)).unwrap().runtimes[0].log_lines;
    assert_eq!(lines(""), 1000);
    assert_eq!(lines("log-lines = 0"), 0);
    assert_eq!(lines("log-lines = 100000"), 100_000);
    let (line, column, message) = f.error(&runtime_with("log-lines = -1"));
    assert_eq!((line, column), (4, 13));
    assert_eq!(
        message,
        r#"runtime "echo": log-lines -1 is out of range; keep 0 (none) to 100000 lines per version"#
    );
    let (_, _, message) = f.error(&runtime_with("log-lines = 100001"));
    assert!(
        message.contains("log-lines 100001 is out of range"),
        "{message}"
    );
    let (_, _, message) = f.error(&runtime_with("log-lines = \"1000\""));
    assert_eq!(
        message,
        r#"invalid type: string "1000", expected a whole number of lines such as 1000 (0 keeps none)"#
    );
    let (_, _, message) = f.error(&runtime_with("log-lines = 1.5"));
    assert!(
        message.contains("expected a whole number of lines"),
        "{message}"
    );
}

#[test]
fn id_rules() {
    let f = fixture();
    let bad = |id: &str| f.error(&runtime_with("").replace("\"echo\"", &format!("{id:?}")));

    let (line, column, message) = bad("my echo");
    assert_eq!((line, column), (2, 6));
    assert_eq!(
        message,
        "runtime id \"my echo\" contains ' '; use only A-Z a-z 0-9 . _ - (ids appear in URLs and metric labels)"
    );
    assert!(bad("").2.contains("runtime id is empty"));
    assert!(bad("écho").2.contains("contains 'é'"));
    assert!(bad("a/b").2.contains("contains '/'"));
    assert!(bad("..").2.contains("is not allowed"));
    let long = "a".repeat(MAX_ID_LEN + 1);
    assert!(bad(&long).2.contains("is 65 characters long"));
    f.parse(&runtime_with("").replace("echo", &"a".repeat(MAX_ID_LEN)))
        .unwrap();
    f.parse(&runtime_with("").replace("echo", "A-z_0.9"))
        .unwrap();
}

#[test]
fn missing_fields_point_at_their_table() {
    let f = fixture();
    let errors = f.errors(
        "[[runtime]]\ntransition = \"stop-then-start\"\n\n[[runtime]]\nid = \"kv\"\nactive = \"1\"\n[[runtime.version]]\nargs = []\n",
    );
    assert_eq!(
        errors,
        vec![
            (
                1,
                1,
                r#"runtime #1 has no id; add id = "..." (1 to 64 of A-Z a-z 0-9 . _ -)"#.to_owned()
            ),
            (
                1,
                1,
                r#"runtime #1 has no versions; add a [[runtime.version]] table with version = "..." and command = "...""#.to_owned()
            ),
            (
                1,
                1,
                r#"runtime #1 has no active version; add active = "..." naming the version to start first"#.to_owned()
            ),
            (
                7,
                1,
                r#"runtime "kv": [[runtime.version]] #1 has no version; add version = "...""#.to_owned()
            ),
            (
                7,
                1,
                r#"runtime "kv" version #1 has no command; add command = "...""#.to_owned()
            ),
        ]
    );
}

#[test]
fn missing_active_lists_versions() {
    let f = fixture();
    let text = runtime_with("").replace("active = \"1.0.0\"\n", "");
    let (line, column, message) = f.error(&text);
    assert_eq!((line, column), (1, 1));
    assert_eq!(
        message,
        r#"runtime "echo" has no active version; add active = "..." naming the version to start first (1.0.0)"#
    );
}

#[test]
fn active_must_be_a_version() {
    let f = fixture();
    let text = "[[runtime]]\nid = \"echo\"\nactive = \"3.0.0\"\n\
        [[runtime.version]]\nversion = \"1.0.0\"\ncommand = \"steward\"\n\
        [[runtime.version]]\nversion = \"2.0.0\"\ncommand = \"steward\"\n";
    let (line, column, message) = f.error(text);
    assert_eq!((line, column), (3, 10));
    assert_eq!(
        message,
        r#"runtime "echo": active version "3.0.0" is not one of its versions (1.0.0, 2.0.0)"#
    );
}

#[test]
fn transition_must_be_known() {
    let f = fixture();
    let (line, column, message) = f.error(&runtime_with("transition = \"fast\""));
    assert_eq!((line, column), (4, 14));
    assert_eq!(
        message,
        r#"runtime "echo": unknown transition "fast"; use "make-before-break" or "stop-then-start""#
    );
}

#[test]
fn durations_must_parse_and_be_positive() {
    let f = fixture();
    let (line, column, message) = f.error(&runtime_with("call-timeout = \"soon\""));
    assert_eq!((line, column), (4, 16));
    assert!(
        message.starts_with(r#"runtime "echo": call-timeout "soon" is not a duration ("#),
        "{message}"
    );
    assert!(
        message.ends_with(r#"; write it like "30s" or "500ms""#),
        "{message}"
    );

    let (line, column, message) = f.error(&runtime_with("[runtime.restart]\ninitial = \"0s\""));
    assert_eq!((line, column), (5, 11));
    assert_eq!(
        message,
        r#"runtime "echo": restart.initial "0s" must be greater than zero"#
    );

    let (_, _, message) = f.error(&runtime_with("call-timeout = \"0ms\""));
    assert!(message.contains("call-timeout \"0ms\" must be greater than zero"));
}

#[test]
fn restart_max_must_cover_initial() {
    let f = fixture();
    let (line, column, message) = f.error(&runtime_with(
        "[runtime.restart]\ninitial = \"5s\"\nmax = \"1s\"",
    ));
    assert_eq!((line, column), (6, 7));
    assert_eq!(
        message,
        r#"runtime "echo": restart.max (1s) is less than restart.initial (5s); raise max or lower initial"#
    );

    // Against the default max, the error points at initial.
    let (line, column, message) = f.error(&runtime_with("[runtime.restart]\ninitial = \"1m\""));
    assert_eq!((line, column), (5, 11));
    assert!(
        message.contains("more than the default restart.max (30s)"),
        "{message}"
    );

    // A bad initial is reported once, not also compared.
    let errors = f.errors(&runtime_with(
        "[runtime.restart]\ninitial = \"x\"\nmax = \"1ms\"",
    ));
    assert_eq!(errors.len(), 1, "{errors:?}");
}

#[test]
fn version_rules() {
    let f = fixture();
    let with_version = |v: &str| {
        runtime_with("")
            .replace("active = \"1.0.0\"", &format!("active = {v:?}"))
            .replace("version = \"1.0.0\"", &format!("version = {v:?}"))
    };
    let (line, column, message) = f.error(&with_version("1.0 beta"));
    assert_eq!((line, column), (6, 11));
    assert_eq!(
        message,
        r#"runtime "echo": version "1.0 beta" contains whitespace; use a single word such as "1.0.0-beta""#
    );
    assert!(f.error(&with_version("")).2.contains("version is empty"));
    let control = runtime_with("").replace("version = \"1.0.0\"", "version = \"1\\u0007\"");
    let errors = f.errors(&control);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(
        errors[0].2,
        r#"runtime "echo": active version "1.0.0" is not one of its versions (1\u{7})"#
    );
    assert_eq!(
        errors[1].2,
        r#"runtime "echo": version "1\u{7}" contains a control character; remove it"#
    );

    let none = "[[runtime]]\nid = \"echo\"\nactive = \"1.0.0\"\n";
    let (line, column, message) = f.error(none);
    assert_eq!((line, column), (1, 1));
    assert!(message.starts_with(r#"runtime "echo" has no versions"#));
}

#[test]
fn versions_must_be_unique() {
    let f = fixture();
    let text = format!(
        "{}\n[[runtime.version]]\nversion = \"1.0.0\"\ncommand = \"steward\"\n",
        runtime_with("")
    );
    let (line, column, message) = f.error(&text);
    assert_eq!((line, column), (10, 11));
    assert_eq!(
        message,
        r#"runtime "echo": version "1.0.0" is already defined on line 6; give each version its own name"#
    );
}

#[test]
fn duplicate_id_mentions_the_first_line() {
    let f = fixture();
    let text = format!("{}\n{}", runtime_with(""), runtime_with(""));
    let (line, column, message) = f.error(&text);
    assert_eq!((line, column), (10, 6));
    assert_eq!(
        message,
        r#"runtime id "echo" is already used on line 2; give each runtime its own id"#
    );
}

#[test]
fn env_and_args_rules() {
    let f = fixture();
    let text = format!(
        "{}args = [\"ok\", \"a\\u0000b\"]\nenv = {{ \"\" = \"x\", \"A=B\" = \"y\", STEWARD_HOST = \"z\", OK = \"nul\\u0000\" }}\n",
        runtime_with("")
    );
    let errors = f.errors(&text);
    let r#where = r#"runtime "echo" version "1.0.0": "#;
    assert_eq!(
        errors,
        vec![
            (
                8,
                15,
                format!(
                    "{where}argument 2 contains a NUL character, which a command line cannot carry; remove it"
                )
            ),
            (
                9,
                9,
                format!("{where}environment variable name is empty; remove it or name it")
            ),
            (
                9,
                19,
                format!(
                    "{where}environment variable name \"A=B\" contains '=', which names cannot hold; remove it"
                )
            ),
            (
                9,
                32,
                format!(
                    "{where}environment variable STEWARD_HOST is set by the host for each process; remove it"
                )
            ),
            (
                9,
                57,
                format!(
                    "{where}environment variable \"OK\" contains a NUL character, which an environment cannot carry; remove it"
                )
            ),
        ]
    );
}

#[test]
fn all_errors_are_collected_in_file_order() {
    let f = fixture();
    let text = "\
[[runtime]]
id = \"bad id\"
active = \"9\"
transition = \"sideways\"
call-timeout = \"0s\"

[[runtime.version]]
version = \"1\"
command = \"no-such-program\"

[[runtime]]
id = \"ok\"
active = \"1\"
";
    let errors = f.errors(text);
    let positions: Vec<_> = errors.iter().map(|(l, c, _)| (*l, *c)).collect();
    assert_eq!(
        positions,
        vec![(2, 6), (3, 10), (4, 14), (5, 16), (9, 11), (11, 1)],
        "{errors:#?}"
    );
    assert!(errors[1].2.contains("is not one of its versions (1)"));
    assert!(errors[4].2.contains("not found next to the steward binary"));
    assert!(errors[5].2.starts_with(r#"runtime "ok" has no versions"#));
}

#[test]
fn relative_command_resolves_against_the_config_dir() {
    let f = fixture();
    let config_dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(config_dir.path().join("bin")).unwrap();
    executable(&config_dir.path().join("bin/rt"));
    let text = runtime_with("").replace("\"steward\"", "\"./bin/rt\"");
    let config = parse(&text, &config_dir.path().join("agent.toml"), &f.resolver).unwrap();
    assert_eq!(
        config.runtimes[0].versions[0].command,
        config_dir.path().join("bin/rt")
    );

    // A config named without a directory resolves against the current
    // directory, and the result is still absolute.
    let resolved = f.resolver.resolve("bin/rt", Path::new("")).unwrap_err();
    assert!(resolved.contains("does not exist"), "{resolved}");
    assert!(
        resolved.contains(&std::env::current_dir().unwrap().display().to_string()),
        "{resolved}"
    );
}

#[test]
fn path_commands_must_be_executable_files() {
    let f = fixture();
    let dir = f.dir.path();
    std::fs::write(dir.join("plain"), "").unwrap();
    let resolve = |c: &str| f.resolver.resolve(c, Path::new("/nonexistent"));
    assert_eq!(resolve(&f.steward().display().to_string()), Ok(f.steward()));
    let missing = resolve("./missing").unwrap_err();
    assert_eq!(
        missing,
        "command \"./missing\" not found: /nonexistent/missing does not exist (relative commands are resolved against the config file's directory)"
    );
    let dir_err = resolve(&dir.display().to_string()).unwrap_err();
    assert!(
        dir_err.contains("is a directory, not a program"),
        "{dir_err}"
    );
    #[cfg(unix)]
    {
        let plain = resolve(&dir.join("plain").display().to_string()).unwrap_err();
        assert!(plain.contains("is not executable"), "{plain}");
    }
    assert!(resolve("").unwrap_err().contains("command is empty"));

    // The same problems surface at the command's position.
    let text = runtime_with("").replace("\"steward\"", "\"/nonexistent/rt\"");
    let (line, column, message) = f.error(&text);
    assert_eq!((line, column), (7, 11));
    assert_eq!(
        message,
        r#"runtime "echo" version "1.0.0": command "/nonexistent/rt" not found: /nonexistent/rt does not exist"#
    );
}

#[test]
fn bare_names_search_exe_dir_then_path() {
    let exe_dir = tempfile::tempdir().unwrap();
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    executable(&first.path().join("rt"));
    executable(&second.path().join("rt"));
    // Not executable: skipped, the search goes on.
    std::fs::write(exe_dir.path().join("rt"), "").unwrap();
    let path = std::env::join_paths([Path::new(""), first.path(), second.path()]).unwrap();
    let mut resolver = CommandResolver {
        exe_dir: Some(exe_dir.path().to_path_buf()),
        path: Some(path),
    };
    let base = Path::new("/nonexistent");
    #[cfg(unix)]
    assert_eq!(resolver.resolve("rt", base), Ok(first.path().join("rt")));

    executable(&exe_dir.path().join("rt"));
    assert_eq!(resolver.resolve("rt", base), Ok(exe_dir.path().join("rt")));

    resolver.exe_dir = None;
    assert_eq!(resolver.resolve("rt", base), Ok(first.path().join("rt")));
    assert_eq!(
        resolver.resolve("nope", base).unwrap_err(),
        r#"command "nope" not found on PATH"#
    );
}

#[test]
fn bare_name_not_found_message() {
    let f = fixture();
    let resolver = CommandResolver {
        path: Some(OsString::new()),
        ..f.resolver.clone()
    };
    let message = resolver.resolve("nope", Path::new("/")).unwrap_err();
    assert_eq!(
        message,
        format!(
            "command \"nope\" not found next to the steward binary ({}) or on PATH",
            f.dir.path().display()
        )
    );
    let text = runtime_with("").replace("\"steward\"", "\"nope\"");
    let (line, column, message) = f.error(&text);
    assert_eq!((line, column), (7, 11));
    assert!(message.starts_with(
        r#"runtime "echo" version "1.0.0": command "nope" not found next to the steward binary ("#
    ));
}

#[test]
fn display_is_file_line_column_message() {
    let error = ConfigError {
        file: PathBuf::from("/etc/steward/agent.toml"),
        line: 3,
        column: 10,
        message: "bad".into(),
    };
    assert_eq!(error.to_string(), "/etc/steward/agent.toml:3:10: bad");
    let errors = ConfigErrors(vec![
        error.clone(),
        ConfigError {
            line: 4,
            ..error.clone()
        },
    ]);
    assert_eq!(
        errors.to_string(),
        "/etc/steward/agent.toml:3:10: bad\n/etc/steward/agent.toml:4:10: bad"
    );
    assert_eq!(ConfigErrors::from(error.clone()).0, vec![error]);
}

#[test]
fn load_reads_files_and_reports_read_errors() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, runtime_with("")).unwrap();
    assert_eq!(load(&path, &f.resolver).unwrap().runtimes.len(), 1);

    let missing = dir.path().join("missing.toml");
    let errors = load(&missing, &f.resolver).unwrap_err();
    assert_eq!(errors.0.len(), 1);
    assert_eq!((errors.0[0].line, errors.0[0].column), (1, 1));
    assert_eq!(errors.0[0].file, missing);
    assert!(errors.0[0].message.starts_with("cannot read: "));

    std::fs::write(&path, b"# ok\n# caf\xe9\n").unwrap();
    let errors = load(&path, &f.resolver).unwrap_err();
    assert_eq!((errors.0[0].line, errors.0[0].column), (2, 6));
    assert!(errors.0[0].message.contains("not valid UTF-8"));

    // Errors in a loaded file name the file.
    std::fs::write(&path, "[[runtime]]\nid = 5\n").unwrap();
    let errors = load(&path, &f.resolver).unwrap_err();
    assert!(
        errors
            .to_string()
            .starts_with(&format!("{}:2:6: ", path.display())),
        "{errors}"
    );
}

#[test]
fn positions_count_characters() {
    let index = LineIndex::new("ab\né\u{1F600}x\n");
    assert_eq!(index.position(0), (1, 1));
    assert_eq!(index.position(2), (1, 3));
    assert_eq!(index.position(3), (2, 1));
    assert_eq!(index.position(5), (2, 2)); // after 'é' (2 bytes)
    assert_eq!(index.position(9), (2, 3)); // after the emoji (4 bytes)
    assert_eq!(index.position(7), (2, 2)); // inside the emoji
    assert_eq!(index.position(11), (3, 1));
    assert_eq!(index.position(99), (3, 1));
    assert_eq!(LineIndex::new("").position(0), (1, 1));
}

#[test]
fn columns_count_characters_in_real_errors() {
    let f = fixture();
    // 'é' is two bytes but one column; the value starts at column 15.
    let text = format!(
        "# café\n{}env = {{ \"é\" = \"a\\u0000\" }}\n",
        runtime_with("")
    );
    let (line, column, message) = f.error(&text);
    assert_eq!((line, column), (9, 15), "{message}");
    assert!(message.contains(r#"environment variable "é" contains a NUL"#));
}

#[test]
fn transitions_have_the_same_names_in_files_and_json() {
    for transition in Transition::ALL {
        assert_eq!(
            serde_json::to_string(&transition).unwrap(),
            format!("\"{}\"", transition.as_str())
        );
        assert_eq!(Transition::from_name(transition.as_str()), Some(transition));
    }
    assert_eq!(Transition::from_name("make_before_break"), None);
}

/// `text` parsed as if it were `agent.toml` in the fixture's directory, so
/// that relative hook dirs resolve inside it.
fn parse_in_dir(f: &Fixture, text: &str) -> Result<Config, ConfigErrors> {
    parse(text, &f.dir.path().join("agent.toml"), &f.resolver)
}

#[test]
fn a_runtime_without_hooks_has_none_and_empty_settings() {
    let f = fixture();
    let config = f.parse(&runtime_with("")).unwrap();
    assert_eq!(config.runtimes[0].hooks, None);
    assert!(config.runtimes[0].settings.is_empty());
}

#[test]
fn hooks_take_defaults_and_resolve_against_the_config_dir() {
    let f = fixture();
    std::fs::create_dir_all(f.dir.path().join("charms/web/hooks")).unwrap();
    let config = parse_in_dir(&f, &runtime_with(r#"hooks = "charms/web/hooks""#)).unwrap();
    assert_eq!(
        config.runtimes[0].hooks,
        Some(HooksConfig {
            dir: f.dir.path().join("charms/web/hooks"),
            timeout: Duration::from_secs(300),
            on_failure: OnHookFailure::Retry,
            retry: BackoffConfig {
                initial: Duration::from_secs(5),
                max: Duration::from_secs(300),
            },
        })
    );
    let text = runtime_with(
        "hooks = \"charms/web/hooks\"\nhook-timeout = \"10s\"\non-hook-failure = \"block\"\n[runtime.hook-retry]\ninitial = \"1s\"\nmax = \"4s\"",
    );
    let hooks = parse_in_dir(&f, &text).unwrap().runtimes[0]
        .hooks
        .clone()
        .unwrap();
    assert_eq!(hooks.timeout, Duration::from_secs(10));
    assert_eq!(hooks.on_failure, OnHookFailure::Block);
    assert_eq!(
        hooks.retry,
        BackoffConfig {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(4),
        }
    );
}

#[test]
fn hooks_must_be_a_directory() {
    let f = fixture();
    let (line, column, message) = f.error(&runtime_with(r#"hooks = "no/such/dir""#));
    assert_eq!((line, column), (4, 9));
    assert!(
        message.contains("runtime \"echo\": hooks \"no/such/dir\": /etc/steward/no/such/dir does not exist (relative paths are resolved against the config file's directory)"),
        "{message}"
    );
    let (_, _, message) = f.error(&runtime_with(&format!(
        "hooks = {:?}",
        f.steward().display().to_string()
    )));
    assert!(message.ends_with("is not a directory"), "{message}");
}

#[test]
fn hook_keys_without_hooks_are_errors() {
    let f = fixture();
    let errors = f.errors(&runtime_with(
        "hook-timeout = \"1m\"\non-hook-failure = \"block\"\n[runtime.hook-retry]\ninitial = \"1s\"",
    ));
    let messages: Vec<&str> = errors.iter().map(|(_, _, m)| m.as_str()).collect();
    assert_eq!(
        messages,
        [
            r#"runtime "echo": hook-timeout has no effect without hooks; add hooks = "DIR" or remove it"#,
            r#"runtime "echo": on-hook-failure has no effect without hooks; add hooks = "DIR" or remove it"#,
            r#"runtime "echo": hook-retry has no effect without hooks; add hooks = "DIR" or remove it"#,
        ]
    );
}

#[test]
fn hook_settings_are_checked_like_the_others() {
    let f = fixture();
    std::fs::create_dir(f.dir.path().join("hooks")).unwrap();
    let errors = parse_in_dir(
        &f,
        &runtime_with(
            "hooks = \"hooks\"\nhook-timeout = \"soon\"\non-hook-failure = \"ignore\"\n[runtime.hook-retry]\ninitial = \"10m\"",
        ),
    )
    .unwrap_err();
    let messages: Vec<String> = errors.0.iter().map(|e| e.message.clone()).collect();
    assert_eq!(messages.len(), 3, "{messages:#?}");
    assert!(messages[0].contains("hook-timeout \"soon\" is not a duration"));
    assert!(messages[1].contains(r#"unknown on-hook-failure "ignore"; use "retry" or "block""#));
    assert!(messages[2].contains(
        "hook-retry.initial (10m) is more than the default hook-retry.max (5m); lower initial or set max"
    ));
}

#[test]
fn settings_are_any_toml_values_as_json() {
    let f = fixture();
    let config = f
        .parse(&runtime_with(
            "[runtime.settings]\nport = 8080\ntitle = \"hello\"\nratio = 0.5\ndebug = false\nhosts = [\"a\", \"b\"]\nlimits = { cpu = 2 }\nsince = 1979-05-27T07:32:00Z",
        ))
        .unwrap();
    assert_eq!(
        serde_json::Value::Object(config.runtimes[0].settings.clone()),
        serde_json::json!({
            "port": 8080,
            "title": "hello",
            "ratio": 0.5,
            "debug": false,
            "hosts": ["a", "b"],
            "limits": {"cpu": 2},
            "since": "1979-05-27T07:32:00Z",
        })
    );
    let (_, _, message) = f.error(&runtime_with("[runtime.settings]\nratio = nan"));
    assert!(
        message.contains("settings.ratio: NaN cannot be a setting"),
        "{message}"
    );
}

/// Two valid runtimes, `web` and `kv`, then `relations` (TOML text).
fn two_runtimes_with(relations: &str) -> String {
    let runtime = |id: &str| {
        format!(
            "[[runtime]]\nid = \"{id}\"\nactive = \"1\"\n[[runtime.version]]\nversion = \"1\"\ncommand = \"steward\"\n"
        )
    };
    format!("{}{}{relations}", runtime("web"), runtime("kv"))
}

#[test]
fn relations_parse_to_pairs_of_endpoints() {
    let f = fixture();
    let config = f
        .parse(&two_runtimes_with(
            "[[relation]]\nendpoints = [\"web:db\", \"kv:store\"]\n[[relation]]\nendpoints = [\"kv:cache-peer2\", \"web:cache\"]\n",
        ))
        .unwrap();
    let db = [Endpoint::new("web", "db"), Endpoint::new("kv", "store")];
    assert_eq!(
        config.relations,
        vec![
            RelationConfig {
                endpoints: db.clone()
            },
            RelationConfig {
                endpoints: [
                    Endpoint::new("kv", "cache-peer2"),
                    Endpoint::new("web", "cache")
                ]
            },
        ]
    );
    // A relation is its pair of endpoints, in either order.
    let reversed = [db[1].clone(), db[0].clone()];
    assert_eq!(config.relation(&reversed), Some(&config.relations[0]));
    assert_eq!(db[0].to_string(), "web:db");
    assert!(
        f.parse(&two_runtimes_with(""))
            .unwrap()
            .relations
            .is_empty()
    );
}

#[test]
fn relation_rules() {
    let f = fixture();
    let relation = |endpoints: &str| {
        f.errors(&two_runtimes_with(&format!(
            "[[relation]]\nendpoints = {endpoints}\n"
        )))
        .into_iter()
        .map(|(line, column, message)| {
            // The relation table starts on line 13.
            assert!(line >= 13, "{line}: {message}");
            let _ = column;
            message
        })
        .collect::<Vec<_>>()
    };
    let only = |endpoints: &str| {
        let mut messages = relation(endpoints);
        assert_eq!(messages.len(), 1, "{messages:#?}");
        messages.remove(0)
    };
    assert_eq!(
        only(r#"["web:db"]"#),
        r#"relation #1 has 1 endpoints; a relation relates exactly two, e.g. ["web:db", "kv:store"]"#
    );
    assert!(only(r#"["web:db", "kv:a", "kv:b"]"#).contains("has 3 endpoints"));
    assert_eq!(
        only(r#"["web:db", "pg:store"]"#),
        r#"relation #1: endpoint "pg:store" names runtime "pg", which the config does not have; known runtimes: kv, web"#
    );
    assert_eq!(
        only(r#"["web", "kv:store"]"#),
        r#"relation #1: endpoint "web" has no endpoint name; write <runtime>:<endpoint>, e.g. "web:db""#
    );
    for bad in ["", "Db", "1db", "d_b", "db-", "d--b", "d b"] {
        let message = only(&format!(r#"["web:{bad}", "kv:store"]"#));
        assert!(
            message.contains("endpoint name") && message.contains("lowercase letter"),
            "{bad:?}: {message}"
        );
    }
    assert_eq!(
        only(r#"["web:db", "web:db"]"#),
        "relation #1 relates web:db to itself; relate two runtimes"
    );
    assert!(only(r#"["web:db", "web:store"]"#).contains("relates runtime \"web\" to itself"));
    // Both endpoints' problems are reported.
    assert_eq!(relation(r#"["pg:db", "web"]"#).len(), 2);
    assert!(only("\"web:db\"").contains("an array of two endpoints"));
    assert!(only("[1, 2]").contains("an endpoint string such as"));
}

#[test]
fn a_relation_declared_twice_is_named_with_its_first_line() {
    let f = fixture();
    let text = two_runtimes_with(
        "[[relation]]\nendpoints = [\"web:db\", \"kv:store\"]\n[[relation]]\nendpoints = [\"kv:store\", \"web:db\"]\n",
    );
    let (line, _, message) = f.error(&text);
    assert_eq!(line, 15);
    assert_eq!(
        message,
        "relation #2 between kv:store and web:db is already declared on line 13; remove one of them"
    );
    // Another pair of the same runtimes is another relation.
    f.parse(&two_runtimes_with(
        "[[relation]]\nendpoints = [\"web:db\", \"kv:store\"]\n[[relation]]\nendpoints = [\"web:cache\", \"kv:store\"]\n",
    ))
    .unwrap();
}

#[test]
fn a_relation_table_without_endpoints_is_an_error() {
    let f = fixture();
    let (line, column, message) = f.error(&two_runtimes_with("[[relation]]\n"));
    assert_eq!((line, column), (13, 1));
    assert!(
        message.starts_with("relation #1 has no endpoints; add endpoints = "),
        "{message}"
    );
    let (_, _, message) = f.error(&two_runtimes_with("[[relation]]\nendpoint = []\n"));
    assert!(message.contains("unknown field `endpoint`"), "{message}");
}

#[test]
fn a_relation_of_a_runtime_with_problems_gets_no_second_error() {
    let f = fixture();
    let text = two_runtimes_with("[[relation]]\nendpoints = [\"web:db\", \"kv:store\"]\n")
        .replacen("active = \"1\"", "active = \"9\"", 1);
    let (_, _, message) = f.error(&text);
    assert!(message.contains("active"), "{message}");
}

#[test]
fn process_timeouts_and_liveness_take_defaults_and_are_read() {
    let f = fixture();
    let echo = f.parse(&runtime_with("")).unwrap().runtimes.remove(0);
    assert_eq!(echo.timeouts, ProcessTimeouts::default());
    assert_eq!(echo.liveness, Liveness::default());
    let text = runtime_with(
        "start-timeout = \"1m\"\nhandshake-timeout = \"20s\"\nabort-timeout = \"3s\"\n[runtime.liveness]\ninterval = \"2s\"\ntimeout = \"500ms\"\nfailures = 5",
    );
    let echo = f.parse(&text).unwrap().runtimes.remove(0);
    assert_eq!(
        echo.timeouts,
        ProcessTimeouts {
            start: Duration::from_secs(60),
            handshake: Duration::from_secs(20),
            abort: Duration::from_secs(3),
        }
    );
    assert_eq!(
        echo.liveness,
        Liveness {
            interval: Duration::from_secs(2),
            timeout: Duration::from_millis(500),
            failures: 5,
        }
    );
    // Failures 0 turns it off; a partial table keeps the other defaults.
    let off = f
        .parse(&runtime_with("[runtime.liveness]\nfailures = 0"))
        .unwrap()
        .runtimes
        .remove(0);
    assert!(off.liveness.is_off());
    assert_eq!(off.liveness.interval, Liveness::default().interval);
}

#[test]
fn process_timeout_and_liveness_rules() {
    let f = fixture();
    let (_, _, message) = f.error(&runtime_with("handshake-timeout = \"0s\""));
    assert_eq!(
        message,
        r#"runtime "echo": handshake-timeout "0s" must be greater than zero"#
    );
    let (_, _, message) = f.error(&runtime_with("[runtime.liveness]\nfailures = -1"));
    assert_eq!(
        message,
        r#"runtime "echo": liveness.failures -1 must be from 0 (no liveness checks) to 1000"#
    );
    let (_, _, message) = f.error(&runtime_with("[runtime.liveness]\nfailures = \"3\""));
    assert!(
        message.contains("expected a whole number such as 3"),
        "{message}"
    );
    let (_, _, message) = f.error(&runtime_with("[runtime.liveness]\ninterval = \"soon\""));
    assert!(
        message.starts_with(r#"runtime "echo": liveness.interval "soon" is not a duration"#),
        "{message}"
    );
    let (_, _, message) = f.error(&runtime_with("[runtime.liveness]\nperiod = \"1s\""));
    assert!(message.contains("unknown field `period`"), "{message}");
    let (_, _, message) = f.error(&runtime_with("liveness = 3"));
    assert!(
        message.contains("a [runtime.liveness] table with interval, timeout and failures"),
        "{message}"
    );
}

#[test]
fn peer_relations_join_the_relations_after_the_declared_ones() {
    let f = fixture();
    let text = two_runtimes_with("[[relation]]\nendpoints = [\"web:db\", \"kv:store\"]\n")
        .replacen(
            "[[runtime.version]]",
            "[[runtime.peer]]\nname = \"cluster\"\n[[runtime.peer]]\nname = \"gossip\"\n[[runtime.version]]",
            1,
        );
    let config = f.parse(&text).unwrap();
    let peer = |name: &str| RelationConfig::peer(Endpoint::new("web", name));
    assert_eq!(
        config.relations,
        vec![
            RelationConfig {
                endpoints: [Endpoint::new("web", "db"), Endpoint::new("kv", "store")]
            },
            peer("cluster"),
            peer("gossip"),
        ]
    );
    assert!(config.relations[1].is_peer() && !config.relations[0].is_peer());
}

#[test]
fn peer_relation_rules() {
    let f = fixture();
    let with_peers = |peers: &str, relations: &str| {
        two_runtimes_with(relations).replacen(
            "[[runtime.version]]",
            &format!("{peers}[[runtime.version]]"),
            1,
        )
    };
    let (_, _, message) = f.error(&with_peers("[[runtime.peer]]\n", ""));
    assert!(
        message.starts_with(r#"runtime "web": a [[runtime.peer]] has no name"#),
        "{message}"
    );
    let (_, _, message) = f.error(&with_peers("[[runtime.peer]]\nname = \"Cluster\"\n", ""));
    assert!(
        message.contains("invalid endpoint name \"Cluster\""),
        "{message}"
    );
    let twice = "[[runtime.peer]]\nname = \"c\"\n[[runtime.peer]]\nname = \"c\"\n";
    let (_, _, message) = f.error(&with_peers(twice, ""));
    assert_eq!(
        message,
        r#"runtime "web": peer relation "c" is declared twice; remove one"#
    );
    let (_, _, message) = f.error(&with_peers(
        "[[runtime.peer]]\nname = \"db\"\n",
        "[[relation]]\nendpoints = [\"web:db\", \"kv:store\"]\n",
    ));
    assert_eq!(
        message,
        r#"relation #1: endpoint "web:db" is "web"'s peer relation; give this relation another endpoint name"#
    );
    let (_, _, message) = f.error(&with_peers("[runtime.peer]\nname = \"c\"\n", ""));
    assert!(message.contains("[[runtime.peer]] tables"), "{message}");
    // The message for a runtime related to itself points at peers.
    let (_, _, message) = f.error(&two_runtimes_with(
        "[[relation]]\nendpoints = [\"web:db\", \"web:store\"]\n",
    ));
    assert!(message.contains("[[runtime.peer]]"), "{message}");
}

#[test]
fn a_fleet_table_names_etcd_a_prefix_and_a_lease_ttl() {
    let f = fixture();
    let config = f
        .parse(
            r#"
[fleet]
endpoints = ["http://127.0.0.1:2379", "https://etcd-2:2379"]
prefix = "/prod/steward/"
lease-ttl = "15s"
"#,
        )
        .unwrap();
    assert_eq!(
        config.fleet,
        Some(FleetConfig {
            endpoints: vec![
                "http://127.0.0.1:2379".to_owned(),
                "https://etcd-2:2379".to_owned()
            ],
            prefix: Some("/prod/steward/".to_owned()),
            lease_ttl: Some(Duration::from_secs(15)),
        })
    );
    assert_eq!(f.parse("").unwrap().fleet, None, "no [fleet]: no fleet");
}

#[test]
fn a_bad_fleet_table_gets_an_error_per_problem() {
    let f = fixture();
    assert_eq!(
        f.errors("[fleet]\nprefix = \"/x/\"\n"),
        vec![(
            1,
            1,
            r#"[fleet] has no endpoints; add endpoints = ["http://127.0.0.1:2379"] (etcd's client URLs)"#
                .to_owned()
        )]
    );
    let errors = f.errors(
        r#"[fleet]
endpoints = ["127.0.0.1:2379", "http://"]
prefix = "steward"
lease-ttl = "1s"
"#,
    );
    let messages: Vec<&str> = errors.iter().map(|(_, _, m)| m.as_str()).collect();
    assert_eq!(
        messages,
        [
            r#"[fleet] endpoint "127.0.0.1:2379" is not an etcd client URL; write it like "http://127.0.0.1:2379""#,
            r#"[fleet] endpoint "http://" has no host:port after the scheme; write it like "http://127.0.0.1:2379""#,
            r#"[fleet] prefix "steward" must start with "/", e.g. "/steward/""#,
            r#"[fleet] lease-ttl "1s" is shorter than etcd's minimum of 2s"#,
        ]
    );
    assert_eq!(errors[0].0, 2, "at the endpoint's line");
    let errors = f.errors("[fleet]\nendpoints = []\nttl = \"5s\"\n");
    assert!(
        errors
            .iter()
            .any(|(_, _, m)| m.contains("unknown field `ttl`")),
        "{errors:?}"
    );
}
