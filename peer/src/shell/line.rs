//! One line of the shell: its words parsed into what to do (`Line`, through the CLI's own
//! definitions in `vocab`), and running it. Both the script reader (`mod.rs`) and the terminal
//! (`tty.rs`) hand their lines here.

use crate::cli::{self, account, CliError, Command, Ctx, Out};

use super::{vocab, words};

/// What a line asks for.
pub enum Line {
    Run(Command),
    Register(String, Option<String>),
    Login(String, Option<String>),
    Help,
    Quit,
    Empty,
}

impl Line {
    /// A create_user or login line without its password: it is asked for (on a terminal) or
    /// read from the next line (a script).
    pub fn lacks_password(&self) -> bool {
        matches!(self, Line::Register(_, None) | Line::Login(_, None))
    }

    pub fn with_password(self, pw: String) -> Line {
        match self {
            Line::Register(user, None) => Line::Register(user, Some(pw)),
            Line::Login(user, None) => Line::Login(user, Some(pw)),
            other => other,
        }
    }
}

/// A line's words as the shell runs them: the command is the CLI's (`vocab`), the words around
/// it the shell's own.
pub fn parse(words: &[String]) -> Result<Line, String> {
    let Some((first, args)) = words.split_first() else { return Ok(Line::Empty) };
    if vocab::HELP_WORDS.contains(&first.as_str()) {
        return Ok(Line::Help);
    }
    if vocab::QUIT_WORDS.contains(&first.as_str()) {
        return Ok(Line::Quit);
    }
    let vocabulary = vocab::vocabulary();
    let verb = vocabulary.verb(first).ok_or_else(|| words::unknown_command(first))?;
    let (command, password) = vocabulary.parse(verb, args)?;
    Ok(match command {
        Command::Register { user, .. } => Line::Register(user, password),
        Command::Login { user, .. } => Line::Login(user, password),
        command => Line::Run(command),
    })
}

/// What running a line came to.
pub enum Outcome {
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
pub async fn exec(ctx: &mut Ctx, out: &mut Out, line: Line) -> Outcome {
    let result = match line {
        Line::Empty => return Outcome::Done,
        Line::Help => {
            println!("{}", vocab::vocabulary().help());
            return Outcome::Done;
        }
        Line::Quit => return Outcome::Quit,
        Line::Register(user, Some(pw)) => account::register_with(ctx, out, &user, &pw).await,
        Line::Login(user, Some(pw)) => account::login_with(ctx, out, &user, &pw).await,
        Line::Register(_, None) | Line::Login(_, None) => Err(CliError::usage("no password given")),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &str) -> Result<Line, String> {
        parse(&words::split_words(s).unwrap())
    }

    #[test]
    fn original_words_parse() {
        assert!(matches!(line("create_group dev_team").unwrap(), Line::Run(Command::CreateGroup { .. })));
        assert!(matches!(
            line("download_file g doc.pdf /tmp/").unwrap(),
            Line::Run(Command::Download { detach: true, .. })
        ));
        assert!(matches!(line("login alice").unwrap(), Line::Login(u, None) if u == "alice"));
        assert!(matches!(line("login alice pw").unwrap(), Line::Login(u, Some(p)) if u == "alice" && p == "pw"));
        assert!(matches!(line("create_user bob pw").unwrap(), Line::Register(u, Some(p)) if u == "bob" && p == "pw"));
        assert!(matches!(line("register bob").unwrap(), Line::Register(u, None) if u == "bob"));
        assert!(line("accept_request g").is_err());
        assert!(matches!(line("remove_member g bob").unwrap(), Line::Run(Command::RemoveMember { .. })));
        assert!(line("remove_member g").is_err());
        // show_downloads lists every download, as the original did.
        assert!(matches!(line("show_downloads").unwrap(), Line::Run(Command::ShowDownloads { all: true, .. })));
        assert!(matches!(line("").unwrap(), Line::Empty));
        for w in ["help", "?", "help me"] {
            assert!(matches!(line(w).unwrap(), Line::Help), "{w}");
        }
        for w in ["quit", "exit", "quit now"] {
            assert!(matches!(line(w).unwrap(), Line::Quit), "{w}");
        }
    }

    #[test]
    fn unknown_words_get_the_closest_command() {
        assert_eq!(line("frobnicate").err().as_deref(), Some("unknown command \"frobnicate\" (type help)"));
        assert_eq!(
            line("create-group g").err().as_deref(),
            Some("unknown command \"create-group\"; did you mean \"create_group\"?")
        );
        assert_eq!(
            line("download g n d").err().as_deref(),
            Some("unknown command \"download\"; did you mean \"download_file\"?")
        );
        assert!(matches!(line("daemon"), Err(e) if e.starts_with("unknown command \"daemon\"")));
    }

    /// Every command that reads a password in the CLI takes it on the shell's line: none is
    /// dropped on the way to `Line::Run`.
    #[test]
    fn a_password_on_the_line_reaches_the_command() {
        for verb in vocab::vocabulary().verbs().iter().filter(|v| v.takes_password()) {
            let l = line(&format!("{} someone s3cret", verb.word)).unwrap();
            assert!(!l.lacks_password() && !matches!(l, Line::Run(_)), "{}", verb.word);
            assert!(line(&format!("{} someone", verb.word)).unwrap().lacks_password(), "{}", verb.word);
        }
    }

    #[test]
    fn download_management_words_parse() {
        assert!(
            matches!(line("pause g f.bin").unwrap(), Line::Run(Command::Pause(d)) if d.group == "g" && d.name == "f.bin")
        );
        assert!(matches!(line("resume g f.bin").unwrap(), Line::Run(Command::Resume(_))));
        assert!(matches!(line("cancel g f.bin").unwrap(), Line::Run(Command::Cancel(_))));
        assert!(matches!(line("forget g f.bin").unwrap(), Line::Run(Command::Forget(_))));
        assert!(matches!(line("list_shares").unwrap(), Line::Run(Command::ListShares)));
        for bad in ["pause g", "resume", "cancel g f x", "forget", "list_shares g"] {
            assert!(matches!(line(bad), Err(e) if e.starts_with("usage: ")), "{bad}");
        }
    }
}
