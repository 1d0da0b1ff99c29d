//! The command line every runtime binary shares: `PROGRAM --version V`,
//! the version the host configured it as (one binary can then serve as
//! every configured version). This module only parses; it must never exit
//! the process (that is [`main_versioned`](crate::main_versioned)'s job).

use std::ffi::OsString;

/// What a runtime's command line asked for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Invocation {
    /// Serve as this version.
    Serve { version: String },
    /// Print the usage text and exit 0.
    Help,
}

/// Parses `args` (without the program name): `--version V` or
/// `--version=V`, once; `-h`/`--help`. The error is one line for stderr.
pub(crate) fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Invocation, String> {
    let mut version = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let arg = arg
            .into_string()
            .map_err(|arg| format!("argument {arg:?} is not valid UTF-8"))?;
        let value = match arg.as_str() {
            "-h" | "--help" => return Ok(Invocation::Help),
            "--version" => args
                .next()
                .ok_or("--version needs a value, e.g. --version 1.0.0")?
                .into_string()
                .map_err(|value| format!("--version {value:?} is not valid UTF-8"))?,
            other => match other.strip_prefix("--version=") {
                Some(value) => value.to_owned(),
                None => return Err(format!("unexpected argument {other:?}")),
            },
        };
        if value.is_empty() {
            return Err("--version needs a value, e.g. --version 1.0.0".to_owned());
        }
        if version.replace(value).is_some() {
            return Err("--version given twice".to_owned());
        }
    }
    match version {
        Some(version) => Ok(Invocation::Serve { version }),
        None => Err("--version V is required: the version this process serves as".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Invocation, String> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn the_version_is_given_either_way() {
        let serve = |version: &str| {
            Ok(Invocation::Serve {
                version: version.to_owned(),
            })
        };
        assert_eq!(parse_strs(&["--version", "1.0.0"]), serve("1.0.0"));
        assert_eq!(parse_strs(&["--version=2.0.0"]), serve("2.0.0"));
        assert_eq!(parse_strs(&["--help"]), Ok(Invocation::Help));
        assert_eq!(parse_strs(&["-h", "--bogus"]), Ok(Invocation::Help));
    }

    #[test]
    fn a_bad_command_line_says_what_is_wrong() {
        let error = |args: &[&str]| parse_strs(args).unwrap_err();
        assert!(error(&[]).contains("required"));
        assert!(error(&["--version"]).contains("needs a value"));
        assert!(error(&["--version="]).contains("needs a value"));
        assert!(error(&["--version", "1", "--version", "2"]).contains("twice"));
        assert_eq!(error(&["--port", "80"]), "unexpected argument \"--port\"");
    }
}
