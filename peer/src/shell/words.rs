//! The shell's words, as plain functions: how a line is cut into words, "did you mean", what
//! TAB completes, the usage hint shown while typing, hints in the shell's own words, and what of
//! a line goes into the history. The commands and their arguments are `vocab`'s, read from the
//! CLI's definitions.

use super::vocab::{vocabulary, Kind, Verb};

/// A line cut into words the way the shell reads it: whitespace separates words; double or
/// single quotes group words with spaces (and are removed).
struct Tokens {
    /// Each word and the byte offset where it starts.
    words: Vec<(usize, String)>,
    /// A quote is still open at the end.
    open_quote: bool,
    /// The line ends inside its last word.
    in_word: bool,
}

fn tokens(line: &str) -> Tokens {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut start = 0;
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push((start, std::mem::take(&mut cur)));
                    in_word = false;
                }
            }
            (None, c) => {
                if !in_word {
                    start = i;
                    in_word = true;
                }
                if c == '"' || c == '\'' {
                    quote = Some(c);
                } else {
                    cur.push(c);
                }
            }
        }
    }
    if in_word {
        words.push((start, cur));
    }
    Tokens { words, open_quote: quote.is_some(), in_word }
}

/// Splits a line into words; double or single quotes group words with spaces.
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let t = tokens(line);
    if t.open_quote {
        return Err("unclosed quote".into());
    }
    Ok(t.words.into_iter().map(|(_, w)| w).collect())
}

/// The shell command a word names.
fn verb(word: &str) -> Option<&'static Verb> {
    vocabulary().verb(word)
}

/// Levenshtein distance, by characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The shell command a mistyped `word` most likely meant: a CLI subcommand's name gives its
/// shell word (`list-files` → `list_files`); otherwise the closest name within a few edits
/// (one for short words, two from five letters, three from nine).
pub fn did_you_mean(word: &str) -> Option<&'static str> {
    let w = word.to_lowercase();
    let verbs = vocabulary().verbs();
    if let Some(v) = verbs.iter().find(|v| v.cli_names.contains(&w)) {
        return Some(&v.word);
    }
    let n = w.chars().count();
    let limit = match n {
        0..=2 => return None,
        3..=4 => 1,
        5..=8 => 2,
        _ => 3,
    };
    let shell = vocabulary().command_words().into_iter().map(|c| (c, c));
    let cli = verbs.iter().flat_map(|v| v.cli_names.iter().map(move |c| (c.as_str(), v.word.as_str())));
    let mut best: Option<(usize, &'static str)> = None;
    for (name, means) in shell.chain(cli) {
        let d = edit_distance(&w, name).min(edit_distance(&w, &name.replace(['_', '-'], "")));
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, means));
        }
    }
    best.map(|(_, m)| m)
}

/// The error line for a word that is not a command.
pub fn unknown_command(word: &str) -> String {
    match did_you_mean(word) {
        Some(m) => format!("unknown command {word:?}; did you mean {m:?}?"),
        None => format!("unknown command {word:?} (type help)"),
    }
}

/// A message of the CLI in the shell's words: `peer login USER` → `login USER`,
/// `peer show-downloads --all` → `show_downloads`, `peer cancel G N` → `cancel G N`. What the
/// shell has no word for (`peer daemon`) stays.
pub fn shell_words(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while !rest.is_empty() {
        let at_boundary = out.chars().last().is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '-'));
        if at_boundary {
            if let Some((len, shell)) = cli_word_at(rest) {
                out.push_str(shell);
                rest = &rest[len..];
                // The shell's show_downloads lists every download: no --all there.
                if shell == "show_downloads" {
                    rest = rest.strip_prefix(" --all").unwrap_or(rest);
                }
                continue;
            }
        }
        let c = rest.chars().next().unwrap_or(' ');
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// A CLI command at the start of `s`: `peer WORD` for any subcommand, or a bare kebab-case
/// name (`show-downloads`); its length and the shell word.
fn cli_word_at(s: &str) -> Option<(usize, &'static str)> {
    let word_end = |t: &str| t.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')).unwrap_or(t.len());
    let named = |w: &str| vocabulary().verbs().iter().find(|v| v.cli_names.iter().any(|c| c == w));
    if let Some(t) = s.strip_prefix("peer ") {
        let w = &t[..word_end(t)];
        return named(w).map(|v| (5 + w.len(), v.word.as_str()));
    }
    let w = &s[..word_end(s)];
    if !w.contains('-') {
        return None;
    }
    named(w).map(|v| (w.len(), v.word.as_str()))
}

/// What goes into the history for a typed line: nothing for an empty line; a line that may
/// carry a password (`login USER PASSWORD`, `create_user ...`) only up to the user's name.
pub fn history_entry(line: &str) -> Option<String> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    let mut words = line.split_whitespace();
    let first = words.next()?;
    if verb(first).is_some_and(Verb::takes_password) {
        return Some(match words.next() {
            Some(user) => format!("{first} {user}"),
            None => first.to_string(),
        });
    }
    Some(line.to_string())
}

/// What TAB completes at the cursor.
#[derive(Debug, PartialEq, Eq)]
pub enum Want {
    Nothing,
    /// Command names starting with the prefix.
    Command,
    /// Names of groups: the user's own (`member`) or the others.
    Groups {
        member: bool,
    },
    /// Names of the files of a group.
    Files {
        group: String,
    },
    Path,
}

/// The word being typed at the end of `before` (the line up to the cursor): its byte offset,
/// its text (quotes removed), and the complete words before it.
pub fn current_word(before: &str) -> (usize, String, Vec<String>) {
    let mut t = tokens(before);
    let (start, cur) = match t.words.pop() {
        Some(last) if t.in_word => last,
        Some(last) => {
            t.words.push(last);
            (before.len(), String::new())
        }
        None => (before.len(), String::new()),
    };
    (start, cur, t.words.into_iter().map(|(_, w)| w).collect())
}

/// What to complete for the word being typed, given the words before it.
pub fn want(done: &[String]) -> Want {
    let Some(cmd) = done.first() else { return Want::Command };
    let Some(verb) = verb(cmd) else { return Want::Nothing };
    let Some(param) = verb.params.get(done.len() - 1) else { return Want::Nothing };
    match param.kind {
        Kind::Group => Want::Groups { member: true },
        Kind::OtherGroup => Want::Groups { member: false },
        // The group is the argument just before the name in every command that takes one.
        Kind::Name => Want::Files { group: done[done.len() - 1].clone() },
        Kind::Path => Want::Path,
        Kind::User | Kind::Password | Kind::NewGroup | Kind::Other => Want::Nothing,
    }
}

/// The words TAB completes at the start of a line.
pub fn command_words() -> Vec<&'static str> {
    vocabulary().command_words()
}

/// A completed word as it goes on the line: quoted when it has spaces or quotes.
pub fn quoted(word: &str) -> String {
    if word.is_empty() || word.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
        if word.contains('"') {
            format!("'{word}'")
        } else {
            format!("\"{word}\"")
        }
    } else {
        word.to_string()
    }
}

/// The names in `names` that start with `prefix`, sorted, without duplicates.
pub fn matching<'a>(names: impl IntoIterator<Item = &'a str>, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = names.into_iter().filter(|n| n.starts_with(prefix)).map(str::to_string).collect();
    v.sort();
    v.dedup();
    v
}

/// The usage hint shown after the cursor while typing a command's arguments: the placeholders
/// of the arguments still to come (`download_file g ` → `NAME DEST`).
pub fn usage_hint(line: &str) -> Option<String> {
    let (_, cur, done) = current_word(line);
    // The command, and how many of its arguments are (being) typed.
    let (cmd, given) = match done.first() {
        Some(cmd) => (cmd.as_str(), done.len() - 1 + usize::from(!cur.is_empty())),
        None => (cur.as_str(), 0),
    };
    let rest: Vec<&str> = verb(cmd)?.params.iter().skip(given).map(|p| p.placeholder.as_str()).collect();
    if rest.is_empty() {
        return None;
    }
    let sep = if line.ends_with(char::is_whitespace) { "" } else { " " };
    Some(format!("{sep}{}", rest.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_you_mean_finds_the_shell_word() {
        assert_eq!(did_you_mean("dwnload"), Some("download_file"));
        assert_eq!(did_you_mean("download"), Some("download_file"));
        assert_eq!(did_you_mean("list-files"), Some("list_files"));
        assert_eq!(did_you_mean("listfiles"), Some("list_files"));
        assert_eq!(did_you_mean("creat_group"), Some("create_group"));
        assert_eq!(did_you_mean("lgin"), Some("login"));
        assert_eq!(did_you_mean("Logout"), Some("logout"));
        assert_eq!(did_you_mean("show-downloads"), Some("show_downloads"));
        assert_eq!(did_you_mean("frobnicate"), None);
        assert_eq!(did_you_mean("xy"), None);
        assert_eq!(unknown_command("dwnload"), "unknown command \"dwnload\"; did you mean \"download_file\"?");
        assert_eq!(unknown_command("frobnicate"), "unknown command \"frobnicate\" (type help)");
    }

    #[test]
    fn words_and_quotes() {
        assert_eq!(split_words("  a b  c ").unwrap(), vec!["a", "b", "c"]);
        assert_eq!(split_words("upload_file \"my doc.pdf\" g").unwrap(), vec!["upload_file", "my doc.pdf", "g"]);
        assert_eq!(split_words("x ''").unwrap(), vec!["x", ""]);
        assert_eq!(split_words("a\"b c\"d 'e\"'").unwrap(), vec!["ab cd", "e\""]);
        assert!(split_words("x \"y").is_err());
    }

    #[test]
    fn every_completed_word_is_a_shell_word() {
        use super::super::vocab::{HELP_WORDS, QUIT_WORDS};
        for w in command_words() {
            assert!(verb(w).is_some() || HELP_WORDS.contains(&w) || QUIT_WORDS.contains(&w), "{w}");
        }
    }

    #[test]
    fn hints_in_the_shells_words() {
        assert_eq!(shell_words("not logged in (run: peer login USER)"), "not logged in (run: login USER)");
        assert_eq!(
            shell_words("no download of g/f (see: peer show-downloads --all)"),
            "no download of g/f (see: show_downloads)"
        );
        assert_eq!(
            shell_words("start it again with: peer download g f DEST (peer forget g f drops the failed row)"),
            "start it again with: download_file g f DEST (forget g f drops the failed row)"
        );
        assert_eq!(
            shell_words("nothing (forget g f drops it from show-downloads)"),
            "nothing (forget g f drops it from show_downloads)"
        );
        assert_eq!(
            shell_words("no peer daemon is running for /h (start it with: peer daemon)"),
            "no peer daemon is running for /h (start it with: peer daemon)"
        );
        assert_eq!(shell_words("this peer is logged out"), "this peer is logged out");
        assert_eq!(shell_words("upload it again with: peer upload"), "upload it again with: upload_file");
        // Success lines go through it too (`cli::Out::reword`): hints change, the rest stays.
        assert_eq!(
            shell_words("downloading doc.pdf from g to /d/doc.pdf (see: peer show-downloads)"),
            "downloading doc.pdf from g to /d/doc.pdf (see: show_downloads)"
        );
        for line in [
            "downloaded doc.pdf to /tmp/doc.pdf (3000000 bytes, every piece verified)",
            "logged in as alice; 1 shared file(s) resumed",
            "logged out alice; shares paused until the next login",
            "asked to join dev_team; its owner must accept",
        ] {
            assert_eq!(shell_words(line), line);
        }
    }

    #[test]
    fn passwords_stay_out_of_the_history() {
        assert_eq!(history_entry("login alice s3cret").as_deref(), Some("login alice"));
        assert_eq!(history_entry("  create_user bob 'pw with space").as_deref(), Some("create_user bob"));
        assert_eq!(history_entry("register carol x").as_deref(), Some("register carol"));
        assert_eq!(history_entry("login").as_deref(), Some("login"));
        assert_eq!(history_entry("list_files g").as_deref(), Some("list_files g"));
        assert_eq!(history_entry("   "), None);
    }

    #[test]
    fn what_tab_completes() {
        let w = |s: &str| {
            let (start, cur, done) = current_word(s);
            (start, cur, want(&done))
        };
        assert_eq!(w(""), (0, "".into(), Want::Command));
        assert_eq!(w("create_gr"), (0, "create_gr".into(), Want::Command));
        assert_eq!(w("list_files de"), (11, "de".into(), Want::Groups { member: true }));
        assert_eq!(w("join_group "), (11, "".into(), Want::Groups { member: false }));
        assert_eq!(w("download_file dev no"), (18, "no".into(), Want::Files { group: "dev".into() }));
        assert_eq!(w("download_file dev notes.bin /tm"), (28, "/tm".into(), Want::Path));
        assert_eq!(w("upload_file \"my d"), (12, "my d".into(), Want::Path));
        assert_eq!(w("upload_file doc.pdf "), (20, "".into(), Want::Groups { member: true }));
        assert_eq!(w("login al"), (6, "al".into(), Want::Nothing));
        assert_eq!(w("create_group x"), (13, "x".into(), Want::Nothing));
        assert_eq!(w("list_groups "), (12, "".into(), Want::Nothing));
        assert_eq!(w("frob x"), (5, "x".into(), Want::Nothing));
        assert_eq!(matching(["b", "a", "ab", "a"], "a"), vec!["a", "ab"]);
        assert_eq!(quoted("my doc.pdf"), "\"my doc.pdf\"");
        assert_eq!(quoted("plain"), "plain");
    }

    #[test]
    fn usage_hints_follow_the_typing() {
        assert_eq!(usage_hint("download_file").as_deref(), Some(" GROUP NAME DEST"));
        assert_eq!(usage_hint("download_file g ").as_deref(), Some("NAME DEST"));
        assert_eq!(usage_hint("download_file g").as_deref(), Some(" NAME DEST"));
        assert_eq!(usage_hint("login ").as_deref(), Some("USER [PASSWORD]"));
        assert_eq!(usage_hint("list_groups"), None);
        assert_eq!(usage_hint("cancel g n"), None);
        assert_eq!(usage_hint("frob "), None);
    }
}
