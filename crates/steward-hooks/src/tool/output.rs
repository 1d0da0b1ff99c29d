//! How commands print values: `--format smart|json|yaml` and
//! `-o/--output FILE`, with juju's rules, so that hooks that parse juju's
//! tool output parse ours.
//!
//! - **smart** (the default): a string unchanged; a boolean `True`/`False`
//!   (pyjuju's spelling); a list of strings one per line; anything else as
//!   YAML.
//! - **yaml**: null prints nothing; otherwise a YAML document.
//! - **json**: compact JSON; null prints `null`.
//! - A newline is appended only when the output is not empty.
//!
//! YAML comes from `serde-saphyr`, which quotes every string a YAML 1.1
//! reader would take for something else (`"yes"`, `"off"`, `"2001-01-01"`):
//! charms mostly parse tool output with PyYAML, a YAML 1.1 parser.
//!
//! This module must never decide *what* a command prints, only how.

use serde_json::Value;

use crate::tool::{CommandError, Flag, Invocation, ParsedArgs};

/// `--format`, for commands that print values.
pub const FORMAT_FLAG: Flag = Flag {
    names: &["format"],
    value: Some("FORMAT"),
    default: "smart",
    help: "specify output format (json|smart|yaml)",
};

/// `-o/--output`, for commands that print values.
pub const OUTPUT_FLAG: Flag = Flag {
    names: &["o", "output"],
    value: Some("FILE"),
    default: "",
    help: "specify an output file (relative to the current directory)",
};

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Strings and booleans plainly, lists of strings by line, else YAML.
    Smart,
    /// Compact JSON.
    Json,
    /// YAML.
    Yaml,
}

impl Format {
    /// Parses a `--format` value.
    pub fn parse(name: &str) -> Option<Format> {
        match name {
            "smart" => Some(Format::Smart),
            "json" => Some(Format::Json),
            "yaml" => Some(Format::Yaml),
            _ => None,
        }
    }

    /// `value` as this format prints it, including the final newline (none
    /// when the output is empty).
    pub fn render(self, value: &Value) -> Result<String, CommandError> {
        let mut text = match self {
            Format::Json => serde_json::to_string(value).map_err(CommandError::failed)?,
            Format::Yaml => yaml(value)?,
            Format::Smart => match value {
                Value::Null => String::new(),
                Value::String(text) => text.clone(),
                Value::Bool(true) => "True".into(),
                Value::Bool(false) => "False".into(),
                Value::Array(items) if items.iter().all(Value::is_string) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("\n"),
                other => yaml(other)?,
            },
        };
        if !text.is_empty() {
            text.push('\n');
        }
        Ok(text)
    }
}

/// YAML without the document's final newline (the caller adds one).
///
/// Juju trimmed *every* trailing newline; we trim exactly one, because a
/// string that ends in newlines is emitted as a keep-chomped block scalar
/// (`|+`) whose trailing newlines are part of the value.
fn yaml(value: &Value) -> Result<String, CommandError> {
    if value.is_null() {
        return Ok(String::new());
    }
    let mut text = serde_saphyr::to_string(value)
        .map_err(|error| CommandError::failed(format!("cannot format as YAML: {error}")))?;
    if text.ends_with('\n') {
        text.pop();
    }
    Ok(text)
}

/// Where and how a command prints its value, from its `--format` and
/// `--output` flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    format: Format,
    path: Option<String>,
}

impl Output {
    /// Reads `--format` (default `default`) and `--output` from `args`; an
    /// unknown format is a usage error, worded like Go's flag errors.
    pub fn from_args(args: &ParsedArgs, default: Format) -> Result<Output, CommandError> {
        let format = match args.value("format") {
            None => default,
            Some(name) => Format::parse(name).ok_or_else(|| {
                CommandError::usage(format!(
                    "invalid value {name:?} for flag --format: unknown format {name:?} (use json, smart or yaml)"
                ))
            })?,
        };
        let path = args.value("output").map(str::to_string);
        Ok(Output { format, path })
    }

    /// The chosen format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Prints `value` to the invocation's stdout, or to the `--output` file
    /// (relative to the invocation's directory; created or truncated even
    /// when there is nothing to print, as juju does).
    pub fn write(&self, invocation: &mut Invocation, value: &Value) -> Result<(), CommandError> {
        let text = self.format.render(value)?;
        match &self.path {
            None => invocation.stdout.push_str(&text),
            Some(path) => {
                let path = invocation.abs_path(path);
                // A small synchronous write: the file is the hook's own,
                // local, and written once per command.
                std::fs::write(&path, text).map_err(|error| {
                    CommandError::failed(format!("cannot write {}: {error}", path.display()))
                })?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Juju's `cmd/output_test.go` table, for every format. Where our YAML
    /// differs from goyaml's bytes (quoting style), the value is the same.
    #[test]
    fn juju_output_table() {
        let smart: &[(Value, &str)] = &[
            (json!(null), ""),
            (json!(""), ""),
            (json!(1), "1\n"),
            (json!(-1), "-1\n"),
            (json!(1.1), "1.1\n"),
            (json!(true), "True\n"),
            (json!(false), "False\n"),
            (json!("hello"), "hello\n"),
            (json!("\n\n\n"), "\n\n\n\n"),
            (json!("foo: bar"), "foo: bar\n"),
            (json!([]), ""),
            (json!(["blam", "dink"]), "blam\ndink\n"),
            (json!({"foo": "bar"}), "foo: bar\n"),
        ];
        let json_table: &[(Value, &str)] = &[
            (json!(null), "null\n"),
            (json!(""), "\"\"\n"),
            (json!(1), "1\n"),
            (json!(-1), "-1\n"),
            (json!(1.1), "1.1\n"),
            (json!(true), "true\n"),
            (json!(false), "false\n"),
            (json!("hello"), "\"hello\"\n"),
            (json!("\n\n\n"), "\"\\n\\n\\n\"\n"),
            (json!("foo: bar"), "\"foo: bar\"\n"),
            (json!([]), "[]\n"),
            (json!(["blam", "dink"]), "[\"blam\",\"dink\"]\n"),
            (json!({"foo": "bar"}), "{\"foo\":\"bar\"}\n"),
        ];
        let yaml_table: &[(Value, &str)] = &[
            (json!(null), ""),
            (json!(""), "\"\"\n"),
            (json!(1), "1\n"),
            (json!(-1), "-1\n"),
            (json!(1.1), "1.1\n"),
            (json!(true), "true\n"),
            (json!(false), "false\n"),
            (json!("hello"), "hello\n"),
            // goyaml: '\n\n\n\n' (single-quoted); the same value.
            (json!("\n\n\n"), "|+\n\n\n\n"),
            // goyaml: 'foo: bar'.
            (json!("foo: bar"), "\"foo: bar\"\n"),
            (json!(["blam", "dink"]), "- blam\n- dink\n"),
            (json!({"foo": "bar"}), "foo: bar\n"),
        ];
        for (format, table) in [
            (Format::Smart, smart),
            (Format::Json, json_table),
            (Format::Yaml, yaml_table),
        ] {
            for (value, expected) in table {
                assert_eq!(
                    format.render(value).unwrap(),
                    *expected,
                    "{format:?} of {value}"
                );
            }
        }
    }

    /// What YAML we print must read back as the value we meant, including
    /// for a YAML 1.1 reader's traps.
    #[test]
    fn yaml_reads_back_as_the_same_value() {
        let values = [
            json!("yes"),
            json!("off"),
            json!("y"),
            json!("True"),
            json!("1"),
            json!("1e3"),
            json!("0x10"),
            json!(".inf"),
            json!("null"),
            json!("~"),
            json!("2001-01-01"),
            json!("- item"),
            json!("#comment"),
            json!("a #b"),
            json!(" leading"),
            json!("trailing "),
            json!("it's"),
            json!("\"quoted\""),
            json!("tab\there"),
            json!("line\nbreak"),
            json!("ends with newline\n"),
            json!("\n\n\n"),
            json!("é ü 日本"),
            json!("@at"),
            json!("*star"),
            json!("&amp"),
            json!("{brace"),
            json!("[bracket"),
            json!("a: b"),
            json!("%percent"),
            json!({"nested": {"list": [1, "two", null, false, {"k": "v"}], "empty": {}}, "yes": "no"}),
            json!([[], {}, [1, [2, [3]]]]),
            json!({"multi": "a\nb\n", "num": -12.5, "big": 18446744073709551615u64}),
        ];
        for value in values {
            let text = Format::Yaml.render(&value).unwrap();
            let back: Value = serde_saphyr::from_str(&text)
                .unwrap_or_else(|error| panic!("{value} printed as {text:?}: {error}"));
            assert_eq!(back, value, "printed as {text:?}");
        }
    }

    #[test]
    fn yaml_quotes_what_yaml_1_1_would_misread() {
        for word in ["yes", "no", "on", "off", "y", "n", "2001-01-01", "True"] {
            let text = Format::Yaml.render(&json!(word)).unwrap();
            assert!(
                text.starts_with('"') || text.starts_with('\''),
                "{word} printed as {text:?}"
            );
        }
    }

    #[test]
    fn smart_prints_mixed_lists_and_numbers_as_yaml() {
        assert_eq!(
            Format::Smart.render(&json!(["a", 1])).unwrap(),
            "- a\n- 1\n"
        );
        assert_eq!(
            Format::Smart
                .render(&json!({"b": [1, 2], "a": null}))
                .unwrap(),
            "a: null\nb:\n- 1\n- 2\n"
        );
    }
}
