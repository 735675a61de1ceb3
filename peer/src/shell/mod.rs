//! `peer shell`: one command a line, in the original system's words (create_user, login,
//! create_group, ..., show_downloads, quit). Each line runs like the matching subcommand; an
//! error prints, in the shell's words (`login USER`, not `peer login USER`), and the shell goes
//! on. An unknown word gets the closest command ("did you mean").
//!
//! On a terminal (`tty.rs`): a line editor with history in HOME/shell_history, TAB completion
//! and a prompt naming the user; exit status 0 when the person quits. Otherwise (a script on
//! stdin) plain lines, no prompt, and the exit status is 0 only if every line succeeded, else
//! the exit code (1 refused, 2 usage, 3 unavailable) of the last line that failed, so that a
//! script can tell that a command was refused.

use std::io::IsTerminal;
use std::path::PathBuf;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::cli::{self, account, CliError, Command, Ctx, Out};

mod tty;
pub mod words;

const HELP: &str = "commands:
  create_user USER [PASSWORD]      (also: register)
  login USER [PASSWORD]
  logout
  create_group GROUP
  join_group GROUP
  leave_group GROUP
  list_groups
  list_requests GROUP
  accept_request GROUP USER
  remove_member GROUP USER
  upload_file PATH GROUP
  download_file GROUP NAME DEST
  list_files GROUP
  show_downloads                   [D] downloading, [P] paused, [C] complete, [F] failed
  pause GROUP NAME                 stop fetching; the .part and its verified pieces stay
  resume GROUP NAME                continue a paused download
  cancel GROUP NAME                stop a download and delete its .part
  forget GROUP NAME                drop a complete or failed download from show_downloads
  list_shares                      what this peer shares, per group
  stop_share GROUP NAME
  quit                             (also: exit; Ctrl-D)
A password left out is asked for (without echo on a terminal; never kept in the history).
On a terminal: TAB completes commands, group and file names and paths; up-arrow and Ctrl-R
search the history (HOME/shell_history); Ctrl-C drops the line, or stops waiting for a command.";

/// Splits a line into words; double or single quotes group words with spaces.
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"') | (None, '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unclosed quote".into());
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

enum Line {
    Run(Command),
    Register(String, Option<String>),
    Login(String, Option<String>),
    Help,
    Quit,
    Empty,
}

fn parse(words: &[String]) -> Result<Line, String> {
    let Some(cmd) = words.first() else { return Ok(Line::Empty) };
    let args = &words[1..];
    let want = |n: usize, usage: &str| -> Result<(), String> {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!("usage: {usage}"))
        }
    };
    let a = |i: usize| args[i].clone();
    Ok(match cmd.as_str() {
        "create_user" | "register" => match args.len() {
            1 => Line::Register(a(0), None),
            2 => Line::Register(a(0), Some(a(1))),
            _ => return Err("usage: create_user USER [PASSWORD]".into()),
        },
        "login" => match args.len() {
            1 => Line::Login(a(0), None),
            2 => Line::Login(a(0), Some(a(1))),
            _ => return Err("usage: login USER [PASSWORD]".into()),
        },
        "logout" => {
            want(0, "logout")?;
            Line::Run(Command::Logout)
        }
        "create_group" => {
            want(1, "create_group GROUP")?;
            Line::Run(Command::CreateGroup { group: a(0) })
        }
        "join_group" => {
            want(1, "join_group GROUP")?;
            Line::Run(Command::JoinGroup { group: a(0) })
        }
        "leave_group" => {
            want(1, "leave_group GROUP")?;
            Line::Run(Command::LeaveGroup { group: a(0) })
        }
        "list_groups" => {
            want(0, "list_groups")?;
            Line::Run(Command::ListGroups)
        }
        "list_requests" => {
            want(1, "list_requests GROUP")?;
            Line::Run(Command::ListRequests { group: a(0) })
        }
        "accept_request" => {
            want(2, "accept_request GROUP USER")?;
            Line::Run(Command::AcceptRequest { group: a(0), user: a(1) })
        }
        "remove_member" => {
            want(2, "remove_member GROUP USER")?;
            Line::Run(Command::RemoveMember { group: a(0), user: a(1) })
        }
        "upload_file" => {
            want(2, "upload_file PATH GROUP")?;
            Line::Run(Command::Upload { file: PathBuf::from(a(0)), group: a(1) })
        }
        "download_file" => {
            want(3, "download_file GROUP NAME DEST")?;
            Line::Run(Command::Download {
                group: a(0),
                name: a(1),
                dest: PathBuf::from(a(2)),
                detach: true,
                force: false,
            })
        }
        "list_files" => {
            want(1, "list_files GROUP")?;
            Line::Run(Command::ListFiles { group: a(0) })
        }
        "show_downloads" => {
            want(0, "show_downloads")?;
            Line::Run(Command::ShowDownloads { all: true })
        }
        "pause" => {
            want(2, "pause GROUP NAME")?;
            Line::Run(Command::Pause { group: a(0), name: a(1) })
        }
        "resume" => {
            want(2, "resume GROUP NAME")?;
            Line::Run(Command::Resume { group: a(0), name: a(1) })
        }
        "cancel" => {
            want(2, "cancel GROUP NAME")?;
            Line::Run(Command::Cancel { group: a(0), name: a(1) })
        }
        "forget" => {
            want(2, "forget GROUP NAME")?;
            Line::Run(Command::Forget { group: a(0), name: a(1) })
        }
        "list_shares" => {
            want(0, "list_shares")?;
            Line::Run(Command::ListShares)
        }
        "stop_share" => {
            want(2, "stop_share GROUP NAME")?;
            Line::Run(Command::StopShare { group: a(0), name: a(1) })
        }
        "help" | "?" => Line::Help,
        "quit" | "exit" => Line::Quit,
        other => return Err(words::unknown_command(other)),
    })
}

/// What running a line came to.
enum Outcome {
    Done,
    /// Printed its error; the exit code it stands for.
    Failed(u8),
    Quit,
}

/// Prints an error in the shell's words (`login USER`, not `peer login USER`).
fn report(out: &mut Out, e: &CliError) {
    out.error(&CliError { message: words::shell_words(&e.message), ..e.clone() });
}

/// Runs one parsed line; a password left out must have been asked for already.
async fn exec(ctx: &mut Ctx, out: &mut Out, line: Line) -> Outcome {
    let result = match line {
        Line::Empty => return Outcome::Done,
        Line::Help => {
            println!("{HELP}");
            return Outcome::Done;
        }
        Line::Quit => return Outcome::Quit,
        Line::Register(user, Some(pw)) => account::register_with(ctx, out, &user, &pw).await,
        Line::Login(user, Some(pw)) => account::login_with(ctx, out, &user, &pw).await,
        Line::Register(_, None) | Line::Login(_, None) => Err(CliError::usage("no password given")),
        Line::Run(Command::Shell) => Err(CliError::usage("already in the shell")),
        Line::Run(cmd) => Box::pin(cli::run_command(ctx, cmd, out)).await,
    };
    match result {
        Ok(()) => Outcome::Done,
        Err(e) => {
            report(out, &e);
            Outcome::Failed(e.exit_code)
        }
    }
}

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
        let parsed = match parsed {
            Line::Register(user, None) => match next_password(&mut lines).await {
                Ok(pw) => Line::Register(user, Some(pw)),
                Err(e) => {
                    out.error(&e);
                    last_failure = e.exit_code;
                    continue;
                }
            },
            Line::Login(user, None) => match next_password(&mut lines).await {
                Ok(pw) => Line::Login(user, Some(pw)),
                Err(e) => {
                    out.error(&e);
                    last_failure = e.exit_code;
                    continue;
                }
            },
            other => other,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_quotes() {
        assert_eq!(split_words("  a b  c ").unwrap(), vec!["a", "b", "c"]);
        assert_eq!(split_words("upload_file \"my doc.pdf\" g").unwrap(), vec!["upload_file", "my doc.pdf", "g"]);
        assert_eq!(split_words("x ''").unwrap(), vec!["x", ""]);
        assert!(split_words("x \"y").is_err());
    }

    #[test]
    fn original_words_parse() {
        let w = |s: &str| split_words(s).unwrap();
        assert!(matches!(parse(&w("create_group dev_team")).unwrap(), Line::Run(Command::CreateGroup { .. })));
        assert!(matches!(
            parse(&w("download_file g doc.pdf /tmp/")).unwrap(),
            Line::Run(Command::Download { detach: true, .. })
        ));
        assert!(matches!(parse(&w("login alice")).unwrap(), Line::Login(_, None)));
        assert!(parse(&w("accept_request g")).is_err());
        assert!(matches!(parse(&w("remove_member g bob")).unwrap(), Line::Run(Command::RemoveMember { .. })));
        assert!(parse(&w("remove_member g")).is_err());
        assert!(parse(&w("frobnicate")).is_err());
        // show_downloads lists every download, as the original did.
        assert!(matches!(parse(&w("show_downloads")).unwrap(), Line::Run(Command::ShowDownloads { all: true })));
    }

    #[test]
    fn download_management_words_parse() {
        let w = |s: &str| split_words(s).unwrap();
        assert!(matches!(parse(&w("pause g f.bin")).unwrap(), Line::Run(Command::Pause { .. })));
        assert!(matches!(parse(&w("resume g f.bin")).unwrap(), Line::Run(Command::Resume { .. })));
        assert!(matches!(parse(&w("cancel g f.bin")).unwrap(), Line::Run(Command::Cancel { .. })));
        assert!(matches!(parse(&w("forget g f.bin")).unwrap(), Line::Run(Command::Forget { .. })));
        assert!(matches!(parse(&w("list_shares")).unwrap(), Line::Run(Command::ListShares)));
        for bad in ["pause g", "resume", "cancel g f x", "forget", "list_shares g"] {
            assert!(matches!(parse(&w(bad)), Err(e) if e.starts_with("usage: ")), "{bad}");
        }
    }
}
