//! The API's bearer token, read from a file by `steward run` (which then
//! requires it) and by the client commands (which present it), with the
//! same rules for both: surrounding whitespace is not part of the token,
//! and an empty token is refused. This module must never log or print a
//! token.

use std::path::Path;

/// The token in `path`, or why it cannot be used (a message naming the
/// problem, without the path).
pub(crate) fn read_token_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|error| error.to_string())?;
    let token = text.trim();
    if token.is_empty() {
        return Err("it is empty; put a secret token in it".to_owned());
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_trimmed_and_never_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  s3cret\n").unwrap();
        assert_eq!(read_token_file(&path).unwrap(), "s3cret");
        std::fs::write(&path, "\n \n").unwrap();
        assert!(read_token_file(&path).unwrap_err().contains("empty"));
        let missing = read_token_file(&dir.path().join("missing")).unwrap_err();
        assert!(missing.contains("No such file"), "{missing}");
    }
}
