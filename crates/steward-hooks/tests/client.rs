//! The hook tool client against a real server: juju's client table
//! (`JujuCMainSuite`, with its `remote` command and `--error` flag), the
//! environment it needs, and the tools directory.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    reason = "a test: a panic is its failure report, and nothing here is a library"
)]

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use steward_hooks::tool::{
    self, BuiltinCommands, CommandError, CommandSpec, Commands, Flag, Invocation, Registration,
    ServerOptions, ToolServer,
};
use steward_worker::BoxFuture;

struct TestCommands;

const REMOTE: CommandSpec = CommandSpec {
    name: "remote",
    args: "",
    purpose: "a test command",
    doc: "",
    flags: &[
        Flag {
            names: &["error"],
            value: Some("MESSAGE"),
            default: "",
            help: "fail with MESSAGE",
        },
        Flag {
            names: &["code"],
            value: Some("N"),
            default: "",
            help: "exit with N (through a failing command's code)",
        },
        Flag {
            names: &["pwd"],
            value: None,
            default: "",
            help: "print the request's directory",
        },
    ],
};

impl Commands for TestCommands {
    type Context = ();

    fn context_label(&self, (): &()) -> String {
        "remote/0:install".into()
    }

    fn contains(&self, command: &str) -> bool {
        command == "remote"
    }

    fn run<'a>(
        &'a self,
        (): &'a mut (),
        invocation: &'a mut Invocation,
    ) -> BoxFuture<'a, Result<(), CommandError>> {
        Box::pin(async move {
            let args = REMOTE.parse(invocation.args())?;
            tool::check_empty(args.positional())?;
            if let Some(message) = args.value("error") {
                return Err(CommandError::failed(message));
            }
            if args.bool("pwd") {
                invocation.stdout = format!("{}\n", invocation.dir().display());
                return Ok(());
            }
            invocation.stdout.push_str("success!\n");
            invocation.stderr.push_str("(to stderr)\n");
            Ok(())
        })
    }
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    server: Option<ToolServer<TestCommands>>,
    registration: Option<Registration<TestCommands>>,
    _parent: tempfile::TempDir,
    cwd: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let parent = tempfile::tempdir().unwrap();
        let options = ServerOptions {
            parent_dir: Some(parent.path().to_path_buf()),
            ..ServerOptions::default()
        };
        let server = runtime
            .block_on(ToolServer::bind(TestCommands, options))
            .unwrap();
        let registration = server.register(());
        Self {
            runtime,
            server: Some(server),
            registration: Some(registration),
            _parent: parent,
            cwd: tempfile::tempdir().unwrap(),
        }
    }

    fn env(&self) -> HashMap<String, OsString> {
        self.registration
            .as_ref()
            .unwrap()
            .env()
            .into_iter()
            .filter(|(name, _)| name.starts_with("STEWARD_"))
            .map(|(name, value)| (name.to_string(), value.into()))
            .collect()
    }

    fn run_with(
        &self,
        env: &HashMap<String, OsString>,
        command: &str,
        args: &[&str],
    ) -> (u8, String, String) {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        run_raw(env, self.cwd.path(), command, &args)
    }

    fn run(&self, command: &str, args: &[&str]) -> (u8, String, String) {
        self.run_with(&self.env(), command, args)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        drop(self.registration.take());
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.close()).unwrap();
        }
    }
}

fn run_raw(
    env: &HashMap<String, OsString>,
    cwd: &Path,
    command: &str,
    args: &[OsString],
) -> (u8, String, String) {
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let code = tool::run_tool(
        command,
        args,
        |name| env.get(name).cloned(),
        cwd,
        &mut stdout,
        &mut stderr,
    );
    (
        code,
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

#[test]
fn juju_main_table() {
    let fixture = Fixture::new();
    let cases: &[(&str, &[&str], u8, &str, &str)] = &[
        ("remote", &[], 0, "success!\n", "(to stderr)\n"),
        ("/path/to/remote", &[], 0, "success!\n", "(to stderr)\n"),
        (
            "unknown",
            &[],
            1,
            "",
            "error: bad request: unknown command \"unknown\"\n",
        ),
        ("remote", &["--error", "borken"], 1, "", "error: borken\n"),
        (
            "remote",
            &["--unknown"],
            2,
            "",
            "error: flag provided but not defined: --unknown\n",
        ),
        (
            "remote",
            &["unwanted"],
            2,
            "",
            "error: unrecognized args: [\"unwanted\"]\n",
        ),
    ];
    for (command, args, code, stdout, stderr) in cases {
        assert_eq!(
            fixture.run(command, args),
            (*code, stdout.to_string(), stderr.to_string()),
            "{command} {args:?}"
        );
    }
    let (code, stdout, stderr) = fixture.run("remote", &["--help"]);
    assert_eq!((code, stderr.as_str()), (0, ""));
    assert!(stdout.starts_with("Usage: remote [options]\n"), "{stdout}");
}

#[test]
fn the_request_carries_the_working_directory() {
    let fixture = Fixture::new();
    let (code, stdout, _) = fixture.run("remote", &["--pwd"]);
    assert_eq!(code, 0);
    assert_eq!(stdout, format!("{}\n", fixture.cwd.path().display()));
}

#[test]
fn missing_environment_names_the_variable() {
    let fixture = Fixture::new();
    let hint = "(this command is a hook tool: run it from a hook)";
    let mut env = fixture.env();
    env.remove("STEWARD_CONTEXT_ID");
    assert_eq!(
        fixture.run_with(&env, "remote", &[]),
        (
            1,
            String::new(),
            format!("error: STEWARD_CONTEXT_ID not set {hint}\n")
        )
    );
    let mut env = fixture.env();
    env.remove("STEWARD_AGENT_SOCKET");
    assert_eq!(
        fixture.run_with(&env, "remote", &[]),
        (
            1,
            String::new(),
            format!("error: STEWARD_AGENT_SOCKET not set {hint}\n")
        )
    );
    // An empty value is no value.
    let mut env = fixture.env();
    env.insert("STEWARD_CONTEXT_ID".into(), OsString::new());
    assert_eq!(fixture.run_with(&env, "remote", &[]).0, 1);
}

#[test]
fn juju_names_work_as_aliases() {
    let fixture = Fixture::new();
    let env: HashMap<String, OsString> = fixture
        .registration
        .as_ref()
        .unwrap()
        .env()
        .into_iter()
        .filter(|(name, _)| name.starts_with("JUJU_"))
        .map(|(name, value)| (name.to_string(), value.into()))
        .collect();
    assert_eq!(env.len(), 2);
    assert_eq!(fixture.run_with(&env, "remote", &[]).1, "success!\n");
}

#[test]
fn a_bad_context_id_is_refused_by_the_agent() {
    let fixture = Fixture::new();
    let mut env = fixture.env();
    env.insert("STEWARD_CONTEXT_ID".into(), "ben".into());
    assert_eq!(
        fixture.run_with(&env, "remote", &[]),
        (
            1,
            String::new(),
            "error: bad request: unknown context \"ben\"\n".into()
        )
    );
}

#[test]
fn a_bad_socket_path_says_the_agent_cannot_be_reached() {
    let fixture = Fixture::new();
    let mut env = fixture.env();
    let missing = fixture.cwd.path().join("no-agent.sock");
    env.insert("STEWARD_AGENT_SOCKET".into(), missing.clone().into());
    let (code, stdout, stderr) = fixture.run_with(&env, "remote", &[]);
    assert_eq!((code, stdout.as_str()), (1, ""));
    assert!(
        stderr.starts_with(&format!(
            "error: cannot reach the agent at {}: ",
            missing.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("No such file or directory"), "{stderr}");
}

#[test]
fn arguments_must_be_utf8() {
    let fixture = Fixture::new();
    let args = [OsString::from("ok"), OsString::from_vec(vec![b'a', 0xff])];
    let (code, _, stderr) = run_raw(&fixture.env(), fixture.cwd.path(), "remote", &args);
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("error: argument 2 is not valid UTF-8"),
        "{stderr}"
    );
}

#[test]
fn a_tools_dir_links_every_builtin_to_the_executable() {
    let dir = tempfile::tempdir().unwrap();
    let tools = dir.path().join("tools");
    let first = dir.path().join("steward-old");
    let second = dir.path().join("steward");
    tool::create_tools_dir(&tools, &first).unwrap();
    // Again, with a moved binary: the links follow.
    tool::create_tools_dir(&tools, &second).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&tools)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, BuiltinCommands::names().collect::<Vec<_>>());
    for name in &names {
        let target = std::fs::read_link(tools.join(name)).unwrap();
        assert_eq!(target, second, "{name}");
        assert_eq!(
            tool::tool_name(tools.join(name).as_os_str()),
            Some(name.as_str())
        );
    }
    assert_eq!(tool::tool_name(OsStr::new("steward")), None);

    // A directory in the way is an error, not something to delete.
    std::fs::remove_file(tools.join("config-get")).unwrap();
    std::fs::create_dir(tools.join("config-get")).unwrap();
    let error = tool::create_tools_dir(&tools, &second).unwrap_err();
    assert!(
        error.to_string().starts_with(&format!(
            "cannot set up the hook tools at {}",
            tools.join("config-get").display()
        )),
        "{error}"
    );
}
