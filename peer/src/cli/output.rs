//! Output and errors: human lines or one JSON value on stdout; errors as one `error: ...`
//! line on stderr (and `{"error": {...}}` on stdout with --json); exit codes 0/1/2/3.

use proto::api::{ApiErrorCode, ErrorBody, OkBody};
use serde::Serialize;

#[derive(Debug, Clone)]
pub struct CliError {
    pub exit_code: u8,
    pub code: ApiErrorCode,
    pub message: String,
}

/// The exit code of an error with `code` (docs/CONTRACT.md, "Exit codes"): 2 for usage, 3 when no
/// tracker leader or no daemon could be reached, 130 for Ctrl-C, 1 for every refusal.
pub fn exit_code_of(code: &ApiErrorCode) -> u8 {
    match code {
        ApiErrorCode::Usage => 2,
        ApiErrorCode::Unavailable | ApiErrorCode::DaemonNotRunning => 3,
        ApiErrorCode::Interrupted => 130,
        _ => 1,
    }
}

impl CliError {
    /// An error with `code`, its exit code the contract's for that code.
    pub fn new(code: impl Into<ApiErrorCode>, message: impl Into<String>) -> Self {
        let code = code.into();
        CliError { exit_code: exit_code_of(&code), code, message: message.into() }
    }
    pub fn usage(message: impl Into<String>) -> Self {
        CliError::new(ApiErrorCode::Usage, message)
    }
    /// A refusal: exit 1, whatever the code.
    pub fn refused(code: impl Into<ApiErrorCode>, message: impl Into<String>) -> Self {
        CliError { exit_code: 1, code: code.into(), message: message.into() }
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        CliError::new(ApiErrorCode::Unavailable, message)
    }
    pub fn no_daemon(home: &std::path::Path) -> Self {
        CliError::new(
            ApiErrorCode::DaemonNotRunning,
            format!("no peer daemon is running for {} (start it with: peer daemon)", home.display()),
        )
    }
}

/// Where a command's results go.
pub struct Out {
    pub json: bool,
    /// Rewrites the human lines (the shell puts its own command words in the CLI's hints);
    /// JSON is never rewritten.
    pub reword: Option<fn(&str) -> String>,
}

impl Out {
    /// Human lines as they are, or JSON with `json`.
    pub fn new(json: bool) -> Self {
        Out { json, reword: None }
    }

    /// Prints a success: the human text, or `value` as JSON. The JSON's object keys come in
    /// name order, whatever the order of a struct's fields, as the `--json` output always had them.
    pub fn done(&mut self, human: impl AsRef<str>, value: impl Serialize) {
        if self.json {
            match serde_json::to_value(&value) {
                Ok(line) => println!("{line}"),
                Err(e) => eprintln!("error: the answer cannot be written as JSON: {e}"),
            }
        } else if !human.as_ref().is_empty() {
            match self.reword {
                Some(f) => println!("{}", f(human.as_ref())),
                None => println!("{}", human.as_ref()),
            }
        }
    }

    /// `{"ok": true, ...fields}` for --json (keys in name order), `fields` a struct or a map.
    pub fn ok(&mut self, human: impl AsRef<str>, fields: impl Serialize) {
        self.done(human, OkBody(fields));
    }

    pub fn error(&mut self, e: &CliError) {
        eprintln!("error: {}", e.message);
        if self.json {
            self.done("", ErrorBody::new(e.code.clone(), e.message.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::error::ErrorCode;

    /// docs/CONTRACT.md's table of error codes, row by row: every code it lists is one the
    /// enum knows (not `Other`), and exits as the table says.
    #[test]
    fn every_code_of_the_contracts_table_is_known_and_exits_as_documented() {
        let doc = include_str!("../../../docs/CONTRACT.md");
        let table = &doc[doc.find("## Error codes").expect("docs/CONTRACT.md has its table of error codes")..];
        let mut seen = 0;
        for row in table.lines().skip_while(|l| !l.starts_with("| `")).take_while(|l| l.starts_with('|')) {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let exit: u8 = cells[2].parse().unwrap_or_else(|_| panic!("no exit code in: {row}"));
            for (i, name) in cells[1].split('`').enumerate() {
                if i % 2 == 1 {
                    let code = ApiErrorCode::parse(name);
                    assert!(!matches!(code, ApiErrorCode::Other(_)), "`{name}` is not an ApiErrorCode");
                    assert_eq!(exit_code_of(&code), exit, "`{name}`");
                    seen += 1;
                }
            }
        }
        assert!(seen >= 25, "only {seen} codes read from the table");
    }

    #[test]
    fn exit_codes_follow_the_contract() {
        assert_eq!(CliError::usage("x").exit_code, 2);
        assert_eq!(CliError::unavailable("x").exit_code, 3);
        assert_eq!(CliError::no_daemon(std::path::Path::new("/h")).exit_code, 3);
        assert_eq!(CliError::new(ApiErrorCode::Interrupted, "x").exit_code, 130);
        assert_eq!(CliError::new(ErrorCode::NotMember, "x").exit_code, 1);
        assert_eq!(CliError::new(ApiErrorCode::Other("newer".into()), "x").exit_code, 1);
        assert_eq!(CliError::refused(ApiErrorCode::Unavailable, "x").exit_code, 1);
    }
}
