//! Command-line flags the way juju's hook tools read them (Go's
//! `flag`/`gnuflag`), so that hooks written for juju's tools parse the same.
//!
//! - `-name` and `--name` are the same flag; a value is given as
//!   `--name=value` or `--name value`; a boolean flag takes no value
//!   (`--all`), or an explicit one (`--all=false`).
//! - Flags and arguments may be interspersed; `--` ends the flags; a lone
//!   `-` is an argument.
//! - `-h`/`--help` asks for the usage text.
//!
//! This module owns only the syntax. It must never know a command's
//! meaning: commands declare their [`Flag`]s and read the [`ParsedArgs`].

use crate::tool::CommandError;

/// One flag a command accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag {
    /// Its names without dashes, short ones first (`&["l", "log-level"]`).
    /// Any of them looks the flag up in [`ParsedArgs`].
    pub names: &'static [&'static str],
    /// For a flag that takes a value, the value's name in the usage text
    /// (`"LEVEL"`); `None` for a boolean flag.
    pub value: Option<&'static str>,
    /// The default shown in the usage text (`"smart"`); empty for none.
    pub default: &'static str,
    /// One line for the usage text.
    pub help: &'static str,
}

impl Flag {
    /// The name a message should use: the longest one, with two dashes.
    pub fn display_name(&self) -> String {
        let longest = self
            .names
            .iter()
            .max_by_key(|name| name.len())
            .copied()
            .unwrap_or_default();
        format!("--{longest}")
    }
}

/// The result of parsing a command's arguments against its flags.
#[derive(Debug, Clone)]
pub struct ParsedArgs {
    flags: &'static [Flag],
    /// (index into `flags`, value) in the order given; booleans hold
    /// `"true"` or `"false"`.
    values: Vec<(usize, String)>,
    positional: Vec<String>,
}

impl ParsedArgs {
    fn index(&self, name: &str) -> Option<usize> {
        self.flags
            .iter()
            .position(|flag| flag.names.contains(&name))
    }

    /// Whether the flag was given at all (under any of its names).
    pub fn is_set(&self, name: &str) -> bool {
        let index = self.index(name);
        self.values.iter().any(|(i, _)| Some(*i) == index)
    }

    /// A value flag's value; the last one wins, as in Go.
    pub fn value(&self, name: &str) -> Option<&str> {
        let index = self.index(name)?;
        self.values
            .iter()
            .rev()
            .find(|(i, _)| *i == index)
            .map(|(_, value)| value.as_str())
    }

    /// A boolean flag's value: false unless given (last one wins).
    pub fn bool(&self, name: &str) -> bool {
        self.value(name) == Some("true")
    }

    /// The arguments that are not flags, in order.
    pub fn positional(&self) -> &[String] {
        &self.positional
    }

    /// Takes the arguments that are not flags.
    pub fn into_positional(self) -> Vec<String> {
        self.positional
    }
}

/// Parses `args` against `flags`. Errors are [`CommandError::Usage`] with
/// Go's wording (`flag provided but not defined: --cheese`), except
/// `-h`/`--help`, which is [`CommandError::Help`] with an empty text (the
/// caller knows the usage text; see [`CommandSpec::parse`](crate::tool::CommandSpec::parse)).
pub fn parse(flags: &'static [Flag], args: &[String]) -> Result<ParsedArgs, CommandError> {
    let mut parsed = ParsedArgs {
        flags,
        values: Vec::new(),
        positional: Vec::new(),
    };
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "--" {
            parsed.positional.extend(rest.cloned());
            break;
        }
        let Some(body) = flag_body(arg) else {
            parsed.positional.push(arg.clone());
            continue;
        };
        if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
            return Err(CommandError::Usage(format!("bad flag syntax: {arg}")));
        }
        let (name, inline) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (body, None),
        };
        // As given, without the value: Go's messages echo the dashes used.
        let shown = &arg[..arg.len() - body.len() + name.len()];
        if name == "h" || name == "help" {
            return Err(CommandError::Help(String::new()));
        }
        let Some(index) = flags.iter().position(|flag| flag.names.contains(&name)) else {
            return Err(CommandError::Usage(format!(
                "flag provided but not defined: {shown}"
            )));
        };
        let value = match (flags[index].value, inline) {
            (None, None) => "true".to_string(),
            (None, Some(text)) => parse_bool(text)
                .ok_or_else(|| {
                    CommandError::Usage(format!(
                        "invalid boolean value {text:?} for flag {shown}: expected true or false"
                    ))
                })?
                .to_string(),
            (Some(_), Some(text)) => text.to_string(),
            (Some(_), None) => rest
                .next()
                .cloned()
                .ok_or_else(|| CommandError::Usage(format!("flag needs an argument: {shown}")))?,
        };
        parsed.values.push((index, value));
    }
    Ok(parsed)
}

/// The text after the leading one or two dashes, if `arg` is a flag.
fn flag_body(arg: &str) -> Option<&str> {
    if arg == "-" || !arg.starts_with('-') {
        return None;
    }
    Some(arg.strip_prefix("--").unwrap_or(&arg[1..]))
}

/// Go's `strconv.ParseBool`.
fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Fails with `unrecognized args: ["a" "b"]` (Go's `%q` of a string list,
/// as juju's `cmd.CheckEmpty` prints it) when `extra` is not empty.
pub fn check_empty(extra: &[String]) -> Result<(), CommandError> {
    if extra.is_empty() {
        return Ok(());
    }
    let quoted: Vec<String> = extra.iter().map(|arg| format!("{arg:?}")).collect();
    Err(CommandError::Usage(format!(
        "unrecognized args: [{}]",
        quoted.join(" ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAGS: &[Flag] = &[
        Flag {
            names: &["a", "all"],
            value: None,
            default: "",
            help: "everything",
        },
        Flag {
            names: &["l", "log-level"],
            value: Some("LEVEL"),
            default: "INFO",
            help: "level",
        },
    ];

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn usage(list: &[&str]) -> String {
        match parse(FLAGS, &args(list)) {
            Err(CommandError::Usage(message)) => message,
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn one_and_two_dashes_name_the_same_flag() {
        for given in [&["-a"][..], &["--all"], &["-all"], &["--a"]] {
            let parsed = parse(FLAGS, &args(given)).unwrap();
            assert!(parsed.bool("all") && parsed.bool("a"), "{given:?}");
        }
        assert!(!parse(FLAGS, &[]).unwrap().bool("all"));
        assert!(!parse(FLAGS, &[]).unwrap().is_set("all"));
    }

    #[test]
    fn values_inline_or_separate_and_the_last_wins() {
        let parsed = parse(FLAGS, &args(&["-l", "DEBUG", "--log-level=ERROR=x"])).unwrap();
        assert_eq!(parsed.value("log-level"), Some("ERROR=x"));
        assert_eq!(parsed.value("l"), Some("ERROR=x"));
        assert_eq!(parsed.value("all"), None);
        let parsed = parse(FLAGS, &args(&["--log-level="])).unwrap();
        assert_eq!(parsed.value("l"), Some(""));
    }

    #[test]
    fn booleans_take_explicit_values_only_inline() {
        let parsed = parse(FLAGS, &args(&["--all=false", "x"])).unwrap();
        assert!(!parsed.bool("all"));
        assert!(parsed.is_set("all"));
        assert_eq!(parsed.positional(), ["x"]);
        let parsed = parse(FLAGS, &args(&["--all", "false"])).unwrap();
        assert!(parsed.bool("all"));
        assert_eq!(parsed.positional(), ["false"]);
        assert_eq!(
            usage(&["--all=maybe"]),
            r#"invalid boolean value "maybe" for flag --all: expected true or false"#
        );
    }

    #[test]
    fn flags_and_arguments_intersperse_until_double_dash() {
        let parsed = parse(FLAGS, &args(&["k", "-a", "-", "--", "-l", "--all"])).unwrap();
        assert!(parsed.bool("all"));
        assert_eq!(parsed.value("l"), None);
        assert_eq!(parsed.into_positional(), ["k", "-", "-l", "--all"]);
    }

    #[test]
    fn errors_use_go_wording() {
        assert_eq!(
            usage(&["--cheese"]),
            "flag provided but not defined: --cheese"
        );
        assert_eq!(
            usage(&["-cheese=brie"]),
            "flag provided but not defined: -cheese"
        );
        assert_eq!(usage(&["-l"]), "flag needs an argument: -l");
        assert_eq!(usage(&["---x"]), "bad flag syntax: ---x");
        assert_eq!(usage(&["--=x"]), "bad flag syntax: --=x");
    }

    #[test]
    fn help_is_asked_for_by_h_or_help() {
        for given in ["-h", "--help", "-help", "--h"] {
            assert!(
                matches!(parse(FLAGS, &args(&[given])), Err(CommandError::Help(_))),
                "{given}"
            );
        }
    }

    #[test]
    fn unrecognized_args_are_quoted_like_go() {
        assert!(check_empty(&[]).is_ok());
        assert_eq!(
            check_empty(&args(&["unwanted"])).unwrap_err(),
            CommandError::Usage(r#"unrecognized args: ["unwanted"]"#.into())
        );
        assert_eq!(
            check_empty(&args(&["a b", "c\"d"])).unwrap_err(),
            CommandError::Usage(r#"unrecognized args: ["a b" "c\"d"]"#.into())
        );
    }

    #[test]
    fn display_names_are_the_long_ones() {
        assert_eq!(FLAGS[1].display_name(), "--log-level");
    }
}
