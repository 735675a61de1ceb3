//! Output and errors: human lines or one JSON value on stdout; errors as one `error: ...`
//! line on stderr (and `{"error": {...}}` on stdout with --json); exit codes 0/1/2/3.

use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct CliError {
    pub exit_code: u8,
    pub code: String,
    pub message: String,
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        CliError { exit_code: 2, code: "usage".into(), message: message.into() }
    }
    pub fn refused(code: &str, message: impl Into<String>) -> Self {
        CliError { exit_code: 1, code: code.into(), message: message.into() }
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        CliError { exit_code: 3, code: "unavailable".into(), message: message.into() }
    }
    pub fn no_daemon(home: &std::path::Path) -> Self {
        CliError {
            exit_code: 3,
            code: "daemon_not_running".into(),
            message: format!("no peer daemon is running for {} (start it with: peer daemon)", home.display()),
        }
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

    /// Prints a success: the human text, or the JSON value.
    pub fn done(&mut self, human: impl AsRef<str>, value: Value) {
        if self.json {
            println!("{value}");
        } else if !human.as_ref().is_empty() {
            match self.reword {
                Some(f) => println!("{}", f(human.as_ref())),
                None => println!("{}", human.as_ref()),
            }
        }
    }

    /// `{"ok": true, ...fields}` for --json.
    pub fn ok(&mut self, human: impl AsRef<str>, fields: Value) {
        let mut map = serde_json::Map::new();
        map.insert("ok".into(), Value::Bool(true));
        if let Value::Object(o) = fields {
            for (k, v) in o {
                if k != "ok" {
                    map.insert(k, v);
                }
            }
        }
        self.done(human, Value::Object(map));
    }

    pub fn error(&mut self, e: &CliError) {
        eprintln!("error: {}", e.message);
        if self.json {
            println!("{}", json!({"error": {"code": e.code, "message": e.message}}));
        }
    }
}
