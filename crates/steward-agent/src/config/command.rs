//! Where a version's `command` is found: [`CommandResolver`] turns a bare
//! name or a path from the config into the absolute path of an executable
//! file, so the host never depends on the agent's current directory or
//! `PATH` at start time. It only looks at the filesystem; it must never
//! run anything.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Where bare command names (without a `/`) are looked up: next to the
/// `steward` binary first, then on a `PATH`-style list of directories.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandResolver {
    /// The directory searched first; [`from_env`](Self::from_env) uses the
    /// running binary's directory.
    pub exe_dir: Option<PathBuf>,
    /// A `PATH`-style list of directories searched next.
    pub path: Option<OsString>,
}

impl CommandResolver {
    /// The directory of the running executable and the process's `$PATH`.
    pub fn from_env() -> Self {
        Self {
            exe_dir: std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(Path::to_path_buf)),
            path: std::env::var_os("PATH"),
        }
    }

    /// Resolves `command` to the absolute path of an executable file.
    ///
    /// A command containing `/` is a path: absolute as is, relative to
    /// `base_dir` (the config file's directory). A bare name is looked up
    /// in [`exe_dir`](Self::exe_dir), then in each [`path`](Self::path)
    /// entry. The error is a one-line message for the operator.
    pub fn resolve(&self, command: &str, base_dir: &Path) -> Result<PathBuf, String> {
        if command.is_empty() {
            return Err("command is empty; give a program name or a path".to_owned());
        }
        if command.contains('\0') {
            return Err(format!(
                "command {command:?} contains a NUL character, which no file name can hold"
            ));
        }
        if command.contains('/') {
            return resolve_path(command, base_dir);
        }
        if let Some(dir) = &self.exe_dir
            && let Some(found) = executable_in(dir, command)
        {
            return Ok(found);
        }
        if let Some(path) = &self.path {
            // An empty PATH entry traditionally means the current directory;
            // skipping it keeps what runs from depending on where the agent
            // happened to be started.
            for dir in std::env::split_paths(path).filter(|d| !d.as_os_str().is_empty()) {
                if let Some(found) = executable_in(&dir, command) {
                    return Ok(found);
                }
            }
        }
        Err(match (&self.exe_dir, &self.path) {
            (Some(dir), Some(_)) => format!(
                "command {command:?} not found next to the steward binary ({}) or on PATH",
                dir.display()
            ),
            (Some(dir), None) => format!(
                "command {command:?} not found next to the steward binary ({}); PATH is not set, give its path instead",
                dir.display()
            ),
            (None, Some(_)) => format!("command {command:?} not found on PATH"),
            (None, None) => format!(
                "command {command:?} cannot be looked up (no steward binary directory and no PATH); give its path instead"
            ),
        })
    }
}

/// Resolves a command that is a path (contains `/`).
fn resolve_path(command: &str, base_dir: &Path) -> Result<PathBuf, String> {
    let given = Path::new(command);
    let relative = !given.is_absolute();
    let joined = if relative {
        base_dir.join(given)
    } else {
        given.to_path_buf()
    };
    let full = absolute(&joined).map_err(|e| {
        format!(
            "command {command:?}: cannot make {} absolute: {e}",
            joined.display()
        )
    })?;
    match std::fs::metadata(&full) {
        Ok(meta) if meta.is_dir() => Err(format!(
            "command {command:?}: {} is a directory, not a program",
            full.display()
        )),
        Ok(meta) if !is_executable(&meta) => Err(format!(
            "command {command:?}: {} is not executable; make it executable (chmod +x) or fix the path",
            full.display()
        )),
        Ok(_) => Ok(full),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(if relative {
            format!(
                "command {command:?} not found: {} does not exist (relative commands are resolved against the config file's directory)",
                full.display()
            )
        } else {
            format!(
                "command {command:?} not found: {} does not exist",
                full.display()
            )
        }),
        Err(e) => Err(format!(
            "command {command:?}: cannot inspect {}: {e}",
            full.display()
        )),
    }
}

/// `dir/name` as an absolute path, if it is an executable file.
fn executable_in(dir: &Path, name: &str) -> Option<PathBuf> {
    let candidate = dir.join(name);
    let meta = std::fs::metadata(&candidate).ok()?;
    if meta.is_file() && is_executable(&meta) {
        absolute(&candidate).ok()
    } else {
        None
    }
}

/// `path` made absolute without touching the filesystem; an empty path is
/// the current directory (which `std::path::absolute` refuses).
fn absolute(path: &Path) -> std::io::Result<PathBuf> {
    if path.as_os_str().is_empty() {
        std::env::current_dir()
    } else {
        std::path::absolute(path)
    }
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.is_file() && meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    meta.is_file()
}
