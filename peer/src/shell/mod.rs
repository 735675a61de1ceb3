//! `peer shell`: one command a line, in the original system's words (create_user, login,
//! create_group, ..., show_downloads, quit). Each line is parsed by the CLI's own clap
//! definitions (`vocab.rs`) and runs like the matching subcommand; an error prints, in the shell's words (`login USER`, not `peer login USER`), and the shell goes
//! on. An unknown word gets the closest command ("did you mean").
//!
//! On a terminal (`tty.rs`): a line editor with history in HOME/shell_history, TAB completion
//! and a prompt naming the user; exit status 0 when the person quits. Otherwise (a script on
//! stdin) plain lines, no prompt, and the exit status is 0 only if every line succeeded, else
//! the exit code (1 refused, 2 usage, 3 unavailable) of the last line that failed, so that a
//! script can tell that a command was refused.

use std::io::IsTerminal;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::cli::{CliError, Ctx, Out};

mod line;
mod tty;
pub mod vocab;
pub mod words;

use line::{exec, parse, Outcome};
use words::split_words;

pub async fn run(ctx: &mut Ctx) -> Result<(), CliError> {
    if std::io::stdin().is_terminal() {
        return tty::run(ctx).await;
    }
    // A script on stdin: plain lines, no editor, no prompt.
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut out = Out { json: ctx.global.json, reword: Some(words::shell_words) };
    // The exit code of the last line that failed (0: none did).
    let mut last_failure: u8 = 0;
    while let Ok(Some(line)) = lines.next_line().await {
        let parsed = match split_words(&line).and_then(|w| parse(&w)) {
            Ok(p) => p,
            Err(e) => {
                out.error(&CliError::usage(e));
                last_failure = 2;
                continue;
            }
        };
        // A password left out is the next line.
        let parsed = if parsed.lacks_password() {
            match next_password(&mut lines).await {
                Ok(pw) => parsed.with_password(pw),
                Err(e) => {
                    out.error(&e);
                    last_failure = e.exit_code;
                    continue;
                }
            }
        } else {
            parsed
        };
        match exec(ctx, &mut out, parsed).await {
            Outcome::Done => {}
            Outcome::Failed(code) => last_failure = code,
            Outcome::Quit => break,
        }
    }
    if last_failure != 0 {
        // Every error has been printed already, line by line: exit with the code alone.
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        std::process::exit(i32::from(last_failure));
    }
    Ok(())
}

/// The password of a script: its next line.
async fn next_password(lines: &mut tokio::io::Lines<BufReader<tokio::io::Stdin>>) -> Result<String, CliError> {
    let pw = lines.next_line().await.ok().flatten().ok_or_else(|| CliError::usage("no password given"))?;
    if pw.is_empty() {
        return Err(CliError::usage("the password is empty"));
    }
    Ok(pw)
}
