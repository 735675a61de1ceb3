//! The shell's vocabulary, read from the CLI's clap definitions (`cli::Cli`): which word runs
//! which subcommand, the arguments each takes, and the parser of a line. The commands are not
//! listed a second time here: a subcommand of the CLI is a shell command under its snake_case
//! alias (the original system's word) or, when its name is one word, its name; completion,
//! hints, `help` and "did you mean" all read this vocabulary.
//!
//! A shell line takes its command's positional arguments only, in the CLI's order (which is the
//! original system's: `upload_file PATH GROUP`, `download_file GROUP NAME DEST`). The flags
//! of the CLI are not shell words; what the shell means by a line (a detached download, every
//! download listed) is `in_the_shell`.

use std::sync::LazyLock;

use clap::{CommandFactory, FromArgMatches, ValueHint};

use crate::cli::{Cli, Command};

/// The subcommands that are not shell lines: the shell talks to a daemon (it is not one), and
/// it is the shell already.
const NOT_IN_THE_SHELL: &[&str] = &["daemon", "shell"];

/// CLI names the shell takes beside the original system's word: it always took `register`
/// beside `create_user`.
const ALSO_BY_NAME: &[&str] = &["register"];

/// The shell's own words, which are not commands of the CLI. TAB completes `help` (not `?`)
/// and both words of quitting.
pub const HELP_WORDS: &[&str] = &["help", "?"];
pub const QUIT_WORDS: &[&str] = &["quit", "exit"];

/// The argument the shell adds to a command that reads a password (`--password-stdin` in the
/// CLI): the password itself, as the original system took it (`login USER PASSWORD`). A line
/// without it asks for it.
const PASSWORD: &str = "password";
/// The CLI's flag that marks a command reading a password.
const PASSWORD_STDIN: &str = "password_stdin";

/// What `help` says beside a command's words, where its usage alone does not say it.
const HELP_NOTES: &[(&str, &str)] = &[
    ("show-downloads", "[D] downloading, [P] paused, [C] complete, [F] failed"),
    ("pause", "stop fetching; the .part and its verified pieces stay"),
    ("resume", "continue a paused download"),
    ("cancel", "stop a download and delete its .part"),
    ("forget", "drop a complete or failed download from show_downloads"),
    ("list-shares", "what this peer shares, per group"),
];

const HELP_TAIL: &str = "A password left out is asked for (without echo on a terminal; never kept in the history).
On a terminal: TAB completes commands, group and file names and paths; up-arrow and Ctrl-R
search the history (HOME/shell_history); Ctrl-C drops the line, or stops waiting for a command.";

/// What an argument of a shell command is, for completion, hints and the history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A user name (not completed).
    User,
    /// A password (never completed, never stored in the history).
    Password,
    /// A new group's name (not completed).
    NewGroup,
    /// A group the user is a member of.
    Group,
    /// A group the user is not a member of (join_group).
    OtherGroup,
    /// A file's name in the group given before it.
    Name,
    /// A local path.
    Path,
    /// Anything else (not completed).
    Other,
}

/// One argument of a shell command.
#[derive(Clone, Debug)]
pub struct Param {
    pub kind: Kind,
    /// As usage and hints show it: `GROUP`, `[PASSWORD]`.
    pub placeholder: String,
}

/// A shell command: a subcommand of the CLI, under the shell's words.
#[derive(Clone, Debug)]
pub struct Verb {
    /// The clap subcommand's name (`create-group`).
    pub name: String,
    /// The shell's word for it (`create_group`): its snake_case alias, else its name.
    pub word: String,
    /// Every word the shell takes for it, `word` first.
    pub words: Vec<String>,
    /// Every word the CLI takes for it (name and aliases): what "did you mean" and the
    /// rewording of the CLI's hints recognise.
    pub cli_names: Vec<String>,
    pub params: Vec<Param>,
}

impl Verb {
    fn of(sub: &clap::Command) -> Verb {
        let name = sub.get_name().to_string();
        let snake: Vec<String> = sub.get_all_aliases().filter(|a| a.contains('_')).map(str::to_string).collect();
        let word = snake.first().cloned().unwrap_or_else(|| name.clone());
        let mut words = vec![word.clone()];
        words.extend(snake.iter().skip(1).cloned());
        if ALSO_BY_NAME.contains(&name.as_str()) {
            words.push(name.clone());
        }
        let cli_names = std::iter::once(sub.get_name()).chain(sub.get_all_aliases()).map(str::to_string).collect();
        let params =
            sub.get_positionals().map(|a| Param { kind: kind_of(&name, a), placeholder: placeholder(a) }).collect();
        Verb { name, word, words, cli_names, params }
    }

    /// `download_file GROUP NAME DEST`.
    pub fn usage(&self) -> String {
        std::iter::once(self.word.as_str())
            .chain(self.params.iter().map(|p| p.placeholder.as_str()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn takes_password(&self) -> bool {
        self.params.iter().any(|p| p.kind == Kind::Password)
    }
}

/// What an argument is, from its clap definition and its command.
fn kind_of(command: &str, arg: &clap::Arg) -> Kind {
    match (arg.get_id().as_str(), command) {
        (PASSWORD, _) => Kind::Password,
        ("user", _) => Kind::User,
        ("group", "create-group") => Kind::NewGroup,
        ("group", "join-group") => Kind::OtherGroup,
        ("group", _) => Kind::Group,
        ("name", _) => Kind::Name,
        _ if matches!(arg.get_value_hint(), ValueHint::AnyPath | ValueHint::FilePath | ValueHint::DirPath) => {
            Kind::Path
        }
        _ => Kind::Other,
    }
}

/// `GROUP`, or `[PASSWORD]` for an optional argument.
fn placeholder(arg: &clap::Arg) -> String {
    let name = match arg.get_value_names().and_then(|v| v.first()) {
        Some(v) => v.to_string(),
        None => arg.get_id().as_str().to_uppercase(),
    };
    if arg.is_required_set() {
        name
    } else {
        format!("[{name}]")
    }
}

/// A subcommand as the shell parses it: with the password argument when it reads one.
fn in_shell_form(sub: &clap::Command) -> clap::Command {
    let mut sub = sub.clone();
    // The original system's `download_file GROUP NAME DEST` takes its DEST; the CLI's
    // `download` defaults it to the current folder.
    if sub.get_name() == "download" {
        sub = sub.mut_arg("dest", |a| a.required(true));
    }
    if !sub.get_arguments().any(|a| a.get_id() == PASSWORD_STDIN) {
        return sub;
    }
    sub.arg(clap::Arg::new(PASSWORD).value_name("PASSWORD").value_parser(clap::value_parser!(String)).required(false))
}

/// The commands of the shell and the parser of its lines.
pub struct Vocabulary {
    verbs: Vec<Verb>,
    /// The CLI's subcommands (shell form) under a root without the CLI's global options: a
    /// shell line takes no `--json` or `--home`.
    parser: clap::Command,
}

/// The shell's vocabulary, read once from the CLI's definitions.
pub fn vocabulary() -> &'static Vocabulary {
    static VOCABULARY: LazyLock<Vocabulary> = LazyLock::new(Vocabulary::from_cli);
    &VOCABULARY
}

impl Vocabulary {
    fn from_cli() -> Vocabulary {
        let cli = Cli::command();
        let subs: Vec<clap::Command> =
            cli.get_subcommands().filter(|s| !NOT_IN_THE_SHELL.contains(&s.get_name())).map(in_shell_form).collect();
        let verbs = subs.iter().map(Verb::of).collect();
        let parser = clap::Command::new("shell").no_binary_name(true).disable_help_subcommand(true).subcommands(subs);
        Vocabulary { verbs, parser }
    }

    pub fn verbs(&self) -> &[Verb] {
        &self.verbs
    }

    /// The command a shell word names.
    pub fn verb(&self, word: &str) -> Option<&Verb> {
        self.verbs.iter().find(|v| v.words.iter().any(|w| w == word))
    }

    /// Every word TAB completes at the start of a line, in `help`'s order.
    pub fn command_words(&self) -> Vec<&str> {
        let verbs = self.verbs.iter().flat_map(|v| v.words.iter().map(String::as_str));
        verbs.chain(HELP_WORDS.iter().take(1).copied()).chain(QUIT_WORDS.iter().copied()).collect()
    }

    /// The arguments of a line whose command is `verb`, parsed by the CLI's definition of it: the
    /// command as the CLI runs it (with the shell's meaning, `in_the_shell`), and the password
    /// given on the line. Any error is today's `usage: WORD ARGS` line, not clap's text.
    pub fn parse(&self, verb: &Verb, args: &[String]) -> Result<(Command, Option<String>), String> {
        // After `--` every word is an argument: a password or a name starting with `-` stays a
        // value, and the CLI's flags are not shell words.
        let argv = [verb.name.as_str(), "--"].into_iter().chain(args.iter().map(String::as_str));
        let usage = |_: clap::Error| format!("usage: {}", verb.usage());
        let matches = self.parser.clone().try_get_matches_from(argv).map_err(usage)?;
        let password =
            matches.subcommand().and_then(|(_, m)| m.try_get_one::<String>(PASSWORD).ok().flatten().cloned());
        let command = Command::from_arg_matches(&matches).map_err(usage)?;
        Ok((in_the_shell(command), password))
    }

    /// The text of `help`.
    pub fn help(&self) -> String {
        let mut lines = vec!["commands:".to_string()];
        for verb in &self.verbs {
            let also: Vec<&str> = verb.words[1..].iter().map(String::as_str).collect();
            let note = match HELP_NOTES.iter().find(|(name, _)| *name == verb.name) {
                Some((_, note)) => note.to_string(),
                None if !also.is_empty() => format!("(also: {})", also.join(", ")),
                None => String::new(),
            };
            lines.push(format!("  {:<33}{note}", verb.usage()).trim_end().to_string());
        }
        lines.push(format!("  {:<33}(also: {}; Ctrl-D)", QUIT_WORDS[0], QUIT_WORDS[1..].join(", ")));
        lines.push(HELP_TAIL.to_string());
        lines.join("\n")
    }
}

/// What a shell line means beyond the CLI command of the same words: the original system's
/// `download_file` returns once the download is under way, and its `show_downloads` lists
/// every download.
pub fn in_the_shell(mut command: Command) -> Command {
    match &mut command {
        Command::Download { detach, .. } => *detach = true,
        Command::ShowDownloads { all, .. } => *all = true,
        _ => {}
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// A line of words without quotes.
    fn parse(line: &str) -> Result<(Command, Option<String>), String> {
        let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        let verb = vocabulary().verb(&words[0]).ok_or("unknown")?;
        vocabulary().parse(verb, &words[1..])
    }

    /// Sample values for a command's arguments, by kind.
    fn sample(p: &Param) -> &'static str {
        match p.kind {
            Kind::User => "bob",
            Kind::Password => "pw-1",
            Kind::NewGroup | Kind::Group | Kind::OtherGroup => "dev_team",
            Kind::Name => "doc.pdf",
            Kind::Path => "/tmp/some where",
            Kind::Other => "x",
        }
    }

    #[test]
    fn every_cli_subcommand_has_a_shell_word_and_a_completion() {
        let cli = Cli::command();
        let v = vocabulary();
        let words = v.command_words();
        for sub in cli.get_subcommands() {
            let name = sub.get_name();
            if NOT_IN_THE_SHELL.contains(&name) {
                assert!(v.verbs().iter().all(|verb| verb.name != name), "{name} is not a shell command");
                continue;
            }
            let verb =
                v.verbs().iter().find(|verb| verb.name == name).unwrap_or_else(|| panic!("{name}: no shell word"));
            assert!(!verb.word.contains('-'), "{name}: the shell word {:?} is not snake_case", verb.word);
            for w in &verb.words {
                assert!(words.contains(&w.as_str()), "{name}: TAB does not complete {w:?}");
                assert_eq!(v.verb(w).map(|x| x.name.as_str()), Some(name), "{w} names {name}");
            }
            // Except that the shell's download_file keeps its DEST (in_shell_form).
            let positionals: Vec<String> = sub
                .get_positionals()
                .map(|a| match (name, a.get_id().as_str()) {
                    ("download", "dest") => placeholder(&a.clone().required(true)),
                    _ => placeholder(a),
                })
                .collect();
            let shown: Vec<&String> =
                verb.params.iter().filter(|p| p.kind != Kind::Password).map(|p| &p.placeholder).collect();
            assert_eq!(shown, positionals.iter().collect::<Vec<_>>(), "{name}: the shell's arguments are the CLI's");
        }
        for w in HELP_WORDS.iter().take(1).chain(QUIT_WORDS) {
            assert!(words.contains(w), "{w}");
        }
        for (name, _) in HELP_NOTES {
            assert!(v.verbs().iter().any(|verb| verb.name == *name), "a help note for {name}, which is not a command");
        }
        for name in NOT_IN_THE_SHELL.iter().chain(ALSO_BY_NAME) {
            assert!(cli.find_subcommand(name).is_some(), "{name} is not a subcommand of the CLI");
        }
    }

    /// Each word of the shell, given its arguments, is the command the CLI makes of the same
    /// words (the snake_case words are the CLI's aliases), with the shell's meaning on top.
    #[test]
    fn each_shell_word_parses_to_the_cli_command() {
        for verb in vocabulary().verbs() {
            let args: Vec<&str> = verb.params.iter().filter(|p| p.kind != Kind::Password).map(sample).collect();
            for word in &verb.words {
                let line: Vec<String> =
                    std::iter::once(word.as_str()).chain(args.iter().copied()).map(str::to_string).collect();
                let (shell, password) =
                    vocabulary().parse(verb, &line[1..]).unwrap_or_else(|e| panic!("{line:?}: {e}"));
                assert_eq!(password, None);
                let argv = std::iter::once("peer").chain(line.iter().map(String::as_str));
                let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("peer {line:?}: {e}")).command;
                assert_eq!(format!("{shell:?}"), format!("{:?}", in_the_shell(cli)), "{line:?}");
            }
            if verb.takes_password() {
                let line: Vec<String> = args.iter().chain(&["-pw with space"]).map(|w| w.to_string()).collect();
                let (_, password) = vocabulary().parse(verb, &line).unwrap();
                assert_eq!(password.as_deref(), Some("-pw with space"), "{}", verb.word);
            }
        }
    }

    #[test]
    fn the_original_systems_words_and_argument_orders() {
        // The words docs/CONTRACT.md lists for `peer shell`.
        for w in [
            "create_user",
            "register",
            "login",
            "create_group",
            "join_group",
            "leave_group",
            "list_groups",
            "list_requests",
            "accept_request",
            "remove_member",
            "upload_file",
            "download_file",
            "list_files",
            "show_downloads",
            "stop_share",
            "logout",
        ] {
            assert!(vocabulary().verb(w).is_some(), "{w}");
        }
        let upload_file = vocabulary().verb("upload_file").unwrap();
        let upload = vocabulary().parse(upload_file, &["my doc.pdf".into(), "dev_team".into()]).unwrap().0;
        assert_eq!(
            format!("{upload:?}"),
            format!("{:?}", Command::Upload { file: "my doc.pdf".into(), group: "dev_team".into() })
        );
        let Command::Download { group, name, dest, detach: true, force: false, .. } =
            parse("download_file g doc.pdf /d/").unwrap().0
        else {
            panic!("download_file is a detached download")
        };
        let dest = dest.as_deref().and_then(|d| d.to_str());
        assert_eq!((group.as_str(), name.as_str(), dest), ("g", "doc.pdf", Some("/d/")));
        assert!(matches!(parse("show_downloads").unwrap().0, Command::ShowDownloads { all: true, watch: false }));
        assert!(
            matches!(parse("accept_request g u").unwrap().0, Command::AcceptRequest { group, user } if group == "g" && user == "u")
        );
        // Kebab-case names are the CLI's, not the shell's words.
        for w in ["create-group", "upload", "download", "show-downloads", "daemon", "shell", "Logout"] {
            assert!(vocabulary().verb(w).is_none(), "{w}");
        }
    }

    #[test]
    fn usage_errors_are_the_shells_lines() {
        for (line, usage) in [
            ("accept_request g", "usage: accept_request GROUP USER"),
            ("register a b c", "usage: create_user USER [PASSWORD]"),
            ("login", "usage: login USER [PASSWORD]"),
            ("list_shares g", "usage: list_shares"),
            ("logout now", "usage: logout"),
            ("upload_file a", "usage: upload_file PATH GROUP"),
            ("download_file g n d --force", "usage: download_file GROUP NAME DEST"),
            ("download_file g n", "usage: download_file GROUP NAME DEST"),
            ("pause g", "usage: pause GROUP NAME"),
            ("list_groups --json", "usage: list_groups"),
        ] {
            assert_eq!(parse(line).err().as_deref(), Some(usage), "{line}");
        }
        // Words starting with `-` are values, as they always were.
        assert!(matches!(parse("create_group -x").unwrap().0, Command::CreateGroup { group } if group == "-x"));
        assert_eq!(parse("login alice --help").unwrap().1.as_deref(), Some("--help"));
    }

    #[test]
    fn completion_kinds_come_from_the_definitions() {
        let kinds = |w: &str| vocabulary().verb(w).unwrap().params.iter().map(|p| p.kind).collect::<Vec<_>>();
        assert_eq!(kinds("create_user"), [Kind::User, Kind::Password]);
        assert_eq!(kinds("create_group"), [Kind::NewGroup]);
        assert_eq!(kinds("join_group"), [Kind::OtherGroup]);
        assert_eq!(kinds("remove_member"), [Kind::Group, Kind::User]);
        assert_eq!(kinds("upload_file"), [Kind::Path, Kind::Group]);
        assert_eq!(kinds("download_file"), [Kind::Group, Kind::Name, Kind::Path]);
        assert_eq!(kinds("forget"), [Kind::Group, Kind::Name]);
        assert_eq!(kinds("list_groups"), []);
    }

    #[test]
    fn help_lists_every_command_with_its_arguments() {
        let help = vocabulary().help();
        assert!(
            help.starts_with(
                "commands:\n  create_user USER [PASSWORD]      (also: register)\n  login USER [PASSWORD]\n"
            ),
            "{help}"
        );
        for verb in vocabulary().verbs() {
            assert!(
                help.lines()
                    .any(|l| l.starts_with(&format!("  {} ", verb.usage())) || l == format!("  {}", verb.usage())),
                "{}",
                verb.word
            );
        }
        assert!(
            help.contains("  show_downloads                   [D] downloading, [P] paused, [C] complete, [F] failed\n")
        );
        assert!(help.contains("  quit                             (also: exit; Ctrl-D)\n"));
        assert!(help.ends_with("stops waiting for a command."));
    }
}
