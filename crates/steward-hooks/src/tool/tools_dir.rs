//! The tools directory, first on a hook's `PATH`: one symlink per built-in
//! command, each pointing at the `steward` binary, which dispatches on the
//! name it was called by (as juju's `jujud` does). This module owns the
//! directory's layout and the dispatch rule; it must never run a tool.

use std::ffi::OsStr;
use std::io;
use std::path::Path;

use crate::Error;
use crate::tool::BuiltinCommands;

/// Makes `dir` (created if missing) hold one symlink per built-in command
/// name, each pointing at `executable`. Idempotent: links left by an
/// earlier agent are replaced, so they follow a moved binary.
pub fn create_tools_dir(dir: &Path, executable: &Path) -> Result<(), Error> {
    let failed = |path: &Path, source| Error::ToolsDir {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|source| failed(dir, source))?;
    for name in BuiltinCommands::names() {
        let link = dir.join(name);
        match std::fs::symlink_metadata(&link) {
            Ok(metadata) if metadata.is_dir() => {
                return Err(failed(
                    &link,
                    io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "a directory is in the way of the tool's link",
                    ),
                ));
            }
            Ok(_) => std::fs::remove_file(&link).map_err(|source| failed(&link, source))?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(failed(&link, source)),
        }
        std::os::unix::fs::symlink(executable, &link).map_err(|source| failed(&link, source))?;
    }
    Ok(())
}

/// The built-in command `argv0` names, if its file name is one (`/x/tools/
/// config-get` → `config-get`). The agent's `main` calls
/// [`tool_main`](crate::tool::tool_main) when it is.
pub fn tool_name(argv0: &OsStr) -> Option<&'static str> {
    let name = Path::new(argv0).file_name()?.to_str()?;
    BuiltinCommands::names().find(|tool| *tool == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names_are_matched_on_the_file_name() {
        assert_eq!(tool_name(OsStr::new("config-get")), Some("config-get"));
        assert_eq!(
            tool_name(OsStr::new("/var/lib/steward/tools/juju-log")),
            Some("juju-log")
        );
        assert_eq!(tool_name(OsStr::new("./state-set")), Some("state-set"));
        assert_eq!(tool_name(OsStr::new("steward")), None);
        assert_eq!(
            tool_name(OsStr::new("/usr/bin/config-get/")),
            Some("config-get")
        );
        assert_eq!(tool_name(OsStr::new("")), None);
    }
}
