//! The built-in demo: a config hosting the example runtimes `echo` and
//! `kv`, which the `steward` binary itself runs as separate processes
//! (`steward example-runtime echo|kv --version V`), so that `steward run`
//! works out of the box with nothing else built or installed.
//!
//! Behind the default cargo feature `demo`: the agent's only dependency on
//! `runtimes/*` is this module's, and a build without the feature has
//! none (`steward run` then needs `--config`). This module must never be
//! needed by anything but the demo.

#[cfg(feature = "demo")]
mod enabled {
    use std::ffi::OsString;
    use std::path::Path;
    use std::process::ExitCode;

    use crate::Error;
    use crate::config::{self, CommandResolver, Config};

    /// The name the built-in config has in error messages.
    pub const DEMO_ORIGIN: &str = "<built-in demo config>";

    /// The built-in demo config, printed by `steward config demo` and
    /// hosted by `steward run` when no config is given.
    ///
    /// Its commands are the bare name `steward`, which [`CommandResolver`]
    /// finds next to the running `steward` binary first, so the demo works
    /// from any directory without installing anything else.
    pub const DEMO_TOML: &str = include_str!("demo.toml");

    /// The demo config, parsed.
    pub(crate) fn config(resolver: &CommandResolver) -> Result<Config, Error> {
        Ok(config::parse(DEMO_TOML, Path::new(DEMO_ORIGIN), resolver)?)
    }

    /// The demo config's text.
    pub(crate) fn text() -> Option<&'static str> {
        Some(DEMO_TOML)
    }

    /// Runs the example runtime `name` with `args`; `None` if there is no
    /// such example runtime.
    pub(crate) fn example_runtime(name: &str, args: Vec<OsString>) -> Option<ExitCode> {
        let program = OsString::from(format!("steward example-runtime {name}"));
        let argv = std::iter::once(program).chain(args);
        match name {
            "echo" => Some(steward_runtime_echo::main_from(argv)),
            "kv" => Some(steward_runtime_kv::main_from(argv)),
            _ => None,
        }
    }
}

#[cfg(not(feature = "demo"))]
mod disabled {
    use std::ffi::OsString;
    use std::process::ExitCode;

    use crate::Error;
    use crate::config::{CommandResolver, Config};

    /// This build has no demo: the error that says to pass `--config`.
    pub(crate) fn config(_resolver: &CommandResolver) -> Result<Config, Error> {
        Err(Error::NoDemo)
    }

    /// This build has no demo config.
    pub(crate) fn text() -> Option<&'static str> {
        None
    }

    /// This build has no example runtimes.
    pub(crate) fn example_runtime(_name: &str, _args: Vec<OsString>) -> Option<ExitCode> {
        None
    }
}

#[cfg(not(feature = "demo"))]
pub(crate) use disabled::*;
#[cfg(feature = "demo")]
pub(crate) use enabled::*;
#[cfg(feature = "demo")]
pub use enabled::{DEMO_ORIGIN, DEMO_TOML};

#[cfg(test)]
#[cfg(feature = "demo")]
mod tests {
    use super::*;
    use crate::Error;
    use crate::config::{CommandResolver, Transition};

    /// A resolver that finds an executable `steward` in a temp dir (and
    /// searches no PATH).
    fn resolver_with_steward() -> (tempfile::TempDir, CommandResolver) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let steward = dir.path().join("steward");
        std::fs::write(&steward, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&steward, std::fs::Permissions::from_mode(0o755)).unwrap();
        let resolver = CommandResolver {
            exe_dir: Some(dir.path().to_path_buf()),
            path: None,
        };
        (dir, resolver)
    }

    #[test]
    fn demo_parses_and_finds_steward() {
        let (dir, resolver) = resolver_with_steward();
        let config = config(&resolver).unwrap();
        assert_eq!(config.runtimes.len(), 2);
        let echo = config.runtime("echo").unwrap();
        assert_eq!(echo.active, "1.0.0");
        assert_eq!(echo.version_names(), ["1.0.0", "2.0.0"]);
        let kv = config.runtime("kv").unwrap();
        assert_eq!(kv.active, "1.0.0");
        assert_eq!(kv.version_names(), ["1.0.0", "1.1.0"]);
        assert_eq!(kv.transition, Transition::MakeBeforeBreak);
        for rt in &config.runtimes {
            for v in &rt.versions {
                assert_eq!(v.command, dir.path().join("steward"));
                assert_eq!(
                    v.args,
                    [
                        "example-runtime",
                        rt.id.as_str(),
                        "--version",
                        v.version.as_str()
                    ]
                );
            }
        }
    }

    #[test]
    fn demo_without_steward_names_the_demo() {
        let empty = tempfile::tempdir().unwrap();
        let resolver = CommandResolver {
            exe_dir: Some(empty.path().to_path_buf()),
            path: None,
        };
        let Err(Error::Config(errors)) = config(&resolver) else {
            panic!("the demo needs a steward binary to run");
        };
        assert_eq!(errors.0.len(), 4);
        assert!(
            errors.to_string().starts_with("<built-in demo config>:"),
            "{errors}"
        );
    }

    #[test]
    fn only_the_example_runtimes_run() {
        assert!(example_runtime("nginx", Vec::new()).is_none());
    }
}
