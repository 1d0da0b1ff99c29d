//! What is wrong with a config file: [`ConfigError`] (one problem at a
//! line and column) and [`ConfigErrors`] (all of them, in file order), and
//! the positions and one-line messages they are made of. This module only
//! describes problems; it must never decide what is valid.

use std::path::PathBuf;

/// One problem in a config file, at a 1-based line and column (columns
/// count characters, not bytes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{column}: {message}", file.display())]
pub struct ConfigError {
    /// The file as given (or the name of a built-in config).
    pub file: PathBuf,
    /// The 1-based line.
    pub line: usize,
    /// The 1-based column, in characters.
    pub column: usize,
    /// What is wrong and what to do, in one lowercase line.
    pub message: String,
}

/// Every problem found in a config file, in file order; never empty.
/// Displayed one error per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", display_lines(.0))]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        Self(vec![error])
    }
}

fn display_lines(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The parser's message for `error`, on one line, naming the key of a
/// duplicate key (the parser's message alone does not say which).
pub(super) fn toml_message(text: &str, error: &toml::de::Error) -> String {
    let message = one_line(error.message());
    match error.span().and_then(|span| text.get(span)) {
        Some(key) if message == "duplicate key" && !key.contains('\n') => {
            format!("duplicate key `{key}`; a key may appear only once in a table")
        }
        _ => message,
    }
}

/// TOML's messages are meant to stand alone, but ours are one line each.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Converts byte offsets into 1-based lines and character columns.
pub(super) struct LineIndex<'a> {
    text: &'a str,
    /// Byte offset of the start of each line; the first is 0.
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self { text, starts }
    }

    pub(super) fn position(&self, offset: usize) -> (usize, usize) {
        // Spans at or past the end (an unexpected end of file) and spans
        // inside a multi-byte character still get a real position.
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&start| start <= offset);
        let start = self.starts[line - 1];
        (line, self.text[start..offset].chars().count() + 1)
    }
}
