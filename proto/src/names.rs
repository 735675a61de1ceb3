//! Validation of user, group and file names, as docs/CONTRACT.md's "Names" section defines them.
//!
//! The same rules run on the peer (to fail fast) and inside `apply` (so that no replica
//! ever stores a name that a client could not have produced).

/// Longest user or group name, in characters (all ASCII, so also bytes).
pub const MAX_ID_LEN: usize = 64;
/// Longest shared file name, in bytes.
pub const MAX_FILE_NAME_BYTES: usize = 255;

/// A user or group id: 1 to 64 characters of `A-Z a-z 0-9 _ . -`.
pub fn validate_id(kind: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{kind} name must not be empty"));
    }
    if name.len() > MAX_ID_LEN {
        return Err(format!("{kind} name is {} characters long; the limit is {MAX_ID_LEN}", name.chars().count()));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
        return Err(format!("{kind} name {name:?} contains {bad:?}; use only letters, digits, '_', '.' and '-'"));
    }
    // `.` and `..` pass the character rule but name no entity a path could hold.
    if name == "." || name == ".." {
        return Err(format!("{kind} name {name:?} is not allowed"));
    }
    Ok(())
}

/// A shared file's name: one path component, 1 to 255 bytes, no `/`, no NUL, not `.` or `..`.
pub fn validate_file_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("file name must not be empty".to_string());
    }
    if name.len() > MAX_FILE_NAME_BYTES {
        return Err(format!("file name is {} bytes long; the limit is {MAX_FILE_NAME_BYTES}", name.len()));
    }
    if name == "." || name == ".." {
        return Err(format!("file name {name:?} is not allowed"));
    }
    if name.contains('/') {
        return Err(format!("file name {name:?} contains '/'; a name is one path component"));
    }
    if name.contains('\0') {
        return Err("file name contains a NUL byte".to_string());
    }
    // Control characters would reach terminals raw in `list-files`.
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!("file name {name:?} contains the control character {c:?}"));
    }
    // A backslash is a separator on some platforms; refuse it so that a name never
    // means a path anywhere a peer might save it.
    if name.contains('\\') {
        return Err(format!("file name {name:?} contains '\\'; a name is one path component"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        let table: &[(&str, bool)] = &[
            ("alice", true),
            ("dev_team", true),
            ("a.b-c_D9", true),
            (&"x".repeat(64), true),
            (&"x".repeat(65), false),
            ("", false),
            ("a/b", false),
            ("../x", false),
            ("a b", false),
            ("é", false),
            ("a\0", false),
            (".", false),
            ("..", false),
            ("...", true),
        ];
        for (name, ok) in table {
            assert_eq!(validate_id("user", name).is_ok(), *ok, "{name:?}");
        }
    }

    #[test]
    fn file_names() {
        let table: &[(&str, bool)] = &[
            ("doc.pdf", true),
            ("..hidden", true),
            ("naïve résumé.txt", true),
            (&"x".repeat(255), true),
            (&"x".repeat(256), false),
            ("", false),
            (".", false),
            ("..", false),
            ("a/b", false),
            ("../x", false),
            ("/etc/passwd", false),
            ("a\0b", false),
            ("a\\b", false),
            ("a\x1b[31mred", false),
            ("tab\there", false),
            ("del\u{7f}", false),
            ("bell\u{85}", false),
        ];
        for (name, ok) in table {
            assert_eq!(validate_file_name(name).is_ok(), *ok, "{name:?}");
        }
    }
}
