//! The shell on a terminal: a line editor (rustyline) with history in HOME/shell_history,
//! TAB completion of commands, group and file names and paths, the arguments still to type
//! shown after the cursor, and a prompt naming the user. Ctrl-C drops the line being typed
//! (or stops waiting for a running command); Ctrl-D on an empty line leaves.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{CompletionType, Config, Editor, Helper};
use tracker_client::{RetryPolicy, TrackerClient};

use super::line::{exec, parse, Outcome};
use super::words::{self, split_words, Want};
use crate::cli::{CliError, Ctx, Out};
use crate::home::Home;

/// Lines kept in HOME/shell_history.
pub const HISTORY_MAX: usize = 1000;
/// How long group and file names fetched for completion are used before asking again.
const NAMES_FRESH: Duration = Duration::from_secs(10);
/// The longest TAB waits for the tracker: a cluster that is down never freezes the prompt.
const NAMES_WAIT: Duration = Duration::from_millis(1500);

pub async fn run(ctx: &mut Ctx) -> Result<(), CliError> {
    let mut out = Out { json: ctx.global.json, reword: Some(super::words::shell_words) };
    let history = HistoryFile::open(&ctx.home);
    let names = Arc::new(Names::new(ctx));
    let config = Config::builder()
        .completion_type(CompletionType::List)
        .auto_add_history(false)
        .max_history_size(HISTORY_MAX)
        .and_then(|b| b.history_ignore_dups(true))
        .map(|b| b.build())
        .map_err(|e| CliError::usage(format!("cannot start the line editor: {e}")))?;
    let mut editor: Editor<ShellHelper, DefaultHistory> =
        Editor::with_config(config).map_err(|e| CliError::usage(format!("cannot start the line editor: {e}")))?;
    editor.set_helper(Some(ShellHelper { names: names.clone() }));
    for line in history.read() {
        let _ = editor.add_history_entry(line);
    }
    let mut editor = Some(editor);
    loop {
        let prompt = prompt(&ctx.home);
        let Some(mut ed) = editor.take() else { break };
        let (ed, read) = tokio::task::spawn_blocking(move || {
            let r = ed.readline(&prompt);
            (ed, r)
        })
        .await
        .map_err(|e| CliError::usage(format!("the line editor failed: {e}")))?;
        let ed = editor.insert(ed);
        let line = match read {
            Ok(line) => line,
            // Ctrl-C: the line is dropped, a new prompt comes.
            Err(ReadlineError::Interrupted) => continue,
            // Ctrl-D on an empty line.
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                out.error(&CliError::usage(format!("cannot read the line: {e}")));
                break;
            }
        };
        if let Some(entry) = words::history_entry(&line) {
            let _ = ed.add_history_entry(entry.as_str());
            history.add(&entry);
        }
        let parsed = match split_words(&line).and_then(|w| parse(&w)) {
            Ok(p) => p,
            Err(e) => {
                out.error(&CliError::usage(e));
                continue;
            }
        };
        let parsed = if parsed.lacks_password() {
            match ask_password().await {
                Some(pw) => parsed.with_password(pw),
                None => continue,
            }
        } else {
            parsed
        };
        let outcome = tokio::select! {
            o = exec(ctx, &mut out, parsed) => o,
            _ = tokio::signal::ctrl_c() => {
                println!();
                out.error(&CliError::usage(
                    "interrupted: stopped waiting for the command (what already reached the tracker or the daemon stands)",
                ));
                Outcome::Done
            }
        };
        names.forget();
        if let Outcome::Quit = outcome {
            break;
        }
    }
    Ok(())
}

/// `alice@peer> `, or `peer> ` when logged out.
pub fn prompt(home: &Home) -> String {
    match home.session() {
        Some(s) => format!("{}@peer> ", s.user),
        None => "peer> ".to_string(),
    }
}

/// Asks for the password on the terminal without echo; `None` when cancelled (Ctrl-C, Ctrl-D)
/// or empty (which says so).
async fn ask_password() -> Option<String> {
    let read = tokio::task::spawn_blocking(|| read_secret("Password: ")).await;
    match read {
        Ok(Ok(Some(pw))) if !pw.is_empty() => Some(pw),
        Ok(Ok(Some(_))) => {
            eprintln!("error: the password is empty");
            None
        }
        Ok(Ok(None)) => None,
        Ok(Err(e)) => {
            eprintln!("error: cannot read the password: {e}");
            None
        }
        Err(e) => {
            eprintln!("error: cannot read the password: {e}");
            None
        }
    }
}

/// Reads a line from the terminal on stdin without echo, in raw mode so that Ctrl-C cancels at
/// once (`None`); Backspace and Ctrl-U edit.
fn read_secret(prompt: &str) -> std::io::Result<Option<String>> {
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data; tcgetattr fills it or fails.
    let mut old: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd is stdin, `old` a valid termios to fill.
    if unsafe { libc::tcgetattr(fd, &mut old) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut raw = old;
    raw.c_lflag &= !(libc::ECHO | libc::ICANON | libc::ISIG);
    raw.c_cc[libc::VMIN] = 1;
    raw.c_cc[libc::VTIME] = 0;
    struct Restore(libc::termios);
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: restores the settings read above on the same fd.
            unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSAFLUSH, &self.0) };
        }
    }
    let mut stdout = std::io::stdout();
    let _ = stdout.write_all(prompt.as_bytes());
    let _ = stdout.flush();
    // SAFETY: fd is stdin, `raw` a valid termios.
    if unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &raw) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let restore = Restore(old);
    let mut bytes: Vec<u8> = Vec::new();
    let result = loop {
        let mut b = [0u8; 1];
        // SAFETY: reads one byte into a one-byte buffer.
        let n = unsafe { libc::read(fd, b.as_mut_ptr().cast(), 1) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break Err(e);
        }
        match (n, b[0]) {
            (0, _) => break Ok(None),
            (_, b'\r' | b'\n') => break Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
            (_, 0x03) => break Ok(None),
            (_, 0x04) if bytes.is_empty() => break Ok(None),
            (_, 0x7f | 0x08) => {
                // One character back: its continuation bytes, then its first byte.
                while bytes.last().is_some_and(|b| b & 0xC0 == 0x80) {
                    bytes.pop();
                }
                bytes.pop();
            }
            (_, 0x15) => bytes.clear(),
            (_, c) if c < 0x20 => {}
            (_, c) => bytes.push(c),
        }
    };
    drop(restore);
    let _ = stdout.write_all(b"\n");
    let _ = stdout.flush();
    result
}

/// HOME/shell_history: one entry a line, the newest last, at most `HISTORY_MAX`, mode 0600.
/// Each entry is added by rereading the file, so that two shells on one HOME both keep theirs.
pub struct HistoryFile {
    path: Option<PathBuf>,
    warned: std::sync::atomic::AtomicBool,
}

impl HistoryFile {
    pub fn open(home: &Home) -> HistoryFile {
        let path = match home.ensure() {
            Ok(()) => Some(home.dir.join("shell_history")),
            Err(e) => {
                eprintln!("warning: no history: {e}");
                None
            }
        };
        HistoryFile { path, warned: false.into() }
    }

    pub fn read(&self) -> Vec<String> {
        let Some(path) = &self.path else { return Vec::new() };
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect();
        let skip = lines.len().saturating_sub(HISTORY_MAX);
        lines.into_iter().skip(skip).collect()
    }

    pub fn add(&self, entry: &str) {
        let Some(path) = &self.path else { return };
        let mut lines = self.read();
        if lines.last().map(String::as_str) == Some(entry) {
            return;
        }
        lines.push(entry.to_string());
        let skip = lines.len().saturating_sub(HISTORY_MAX);
        let text: String = lines[skip..].iter().map(|l| format!("{l}\n")).collect();
        if let Err(e) = write_private(path, text.as_bytes()) {
            if !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                eprintln!("warning: cannot write the history {}: {e}", path.display());
            }
        }
    }
}

/// Replaces `path` with `bytes` through a temporary file created 0600.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_file_name(format!(".shell_history.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    f.write_all(bytes)?;
    drop(f);
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// A group's name, and whether the user is a member.
type GroupName = (String, bool);

/// Group and file names for completion, from the tracker, kept `NAMES_FRESH`.
pub struct Names {
    handle: tokio::runtime::Handle,
    home: Home,
    trackers: Option<crate::trackers::Trackers>,
    groups: Mutex<Option<(Instant, Vec<GroupName>)>>,
    files: Mutex<HashMap<String, (Instant, Vec<String>)>>,
}

impl Names {
    fn new(ctx: &mut Ctx) -> Names {
        Names {
            handle: tokio::runtime::Handle::current(),
            home: ctx.home.clone(),
            trackers: ctx.trackers().ok(),
            groups: Mutex::new(None),
            files: Mutex::new(HashMap::new()),
        }
    }

    /// A command ran: what it changed is asked for again.
    fn forget(&self) {
        *self.groups.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.files.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    fn client(&self) -> Option<TrackerClient> {
        let session = self.home.session()?;
        let policy = RetryPolicy { budget_ms: NAMES_WAIT.as_millis() as u64, ..RetryPolicy::default() };
        Some(self.trackers.as_ref()?.client(policy).with_token(Some(session.token)))
    }

    /// Waits at most `NAMES_WAIT` for `f`; nothing when the tracker does not answer in time.
    fn ask<T, F: std::future::Future<Output = Result<T, tracker_client::ClientError>>>(
        &self,
        f: impl FnOnce(TrackerClient) -> F,
    ) -> Option<T> {
        let client = self.client()?;
        self.handle.block_on(async { tokio::time::timeout(NAMES_WAIT, f(client)).await.ok()?.ok() })
    }

    /// The user's groups (`member`), or the groups they are not in.
    fn groups(&self, member: bool) -> Vec<String> {
        let mut cache = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        if cache.as_ref().is_none_or(|(at, _)| at.elapsed() >= NAMES_FRESH) {
            let rows = self.ask(|c| async move { c.list_groups().await }).unwrap_or_default();
            *cache = Some((Instant::now(), rows.into_iter().map(|r| (r.group, r.member)).collect()));
        }
        let rows = cache.as_ref().map(|(_, r)| r.as_slice()).unwrap_or_default();
        rows.iter().filter(|(_, m)| *m == member).map(|(g, _)| g.clone()).collect()
    }

    fn files(&self, group: &str) -> Vec<String> {
        let mut cache = self.files.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, names)) = cache.get(group) {
            if at.elapsed() < NAMES_FRESH {
                return names.clone();
            }
        }
        let g = group.to_string();
        let rows = self.ask(|c| async move { c.list_files(&g).await }).unwrap_or_default();
        let names: Vec<String> = rows.into_iter().map(|r| r.name).collect();
        cache.insert(group.to_string(), (Instant::now(), names.clone()));
        names
    }
}

/// Local paths starting with `typed`: directories end with `/`, files with a space.
fn paths(typed: &str) -> Vec<String> {
    let (dir, prefix) = match typed.rfind('/') {
        Some(i) => (&typed[..=i], &typed[i + 1..]),
        None => ("", typed),
    };
    let Ok(entries) = std::fs::read_dir(if dir.is_empty() { "." } else { dir }) else { return Vec::new() };
    let mut v: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            if !name.starts_with(prefix) || (name.starts_with('.') && !prefix.starts_with('.')) {
                return None;
            }
            let is_dir = std::fs::metadata(e.path()).map(|m| m.is_dir()).unwrap_or(false);
            let full = words::quoted(&format!("{dir}{name}"));
            Some(if is_dir { format!("{}/", full.trim_end_matches(['"', '\''])) } else { format!("{full} ") })
        })
        .collect();
    v.sort();
    v
}

struct ShellHelper {
    names: Arc<Names>,
}

/// The candidates for the word being typed at `pos`: where it starts, and what may replace it.
fn candidates(names: &Names, line: &str, pos: usize) -> (usize, Vec<Pair>) {
    let (start, cur, done) = words::current_word(&line[..pos]);
    let named = |list: Vec<String>| -> Vec<Pair> {
        words::matching(list.iter().map(String::as_str), &cur)
            .into_iter()
            .map(|n| Pair { replacement: format!("{} ", words::quoted(&n)), display: n })
            .collect()
    };
    let pairs = match words::want(&done) {
        Want::Command => named(words::command_words().into_iter().map(str::to_string).collect()),
        Want::Groups { member } => named(names.groups(member)),
        Want::Files { group } => named(names.files(&group)),
        Want::Path => paths(&cur)
            .into_iter()
            .map(|p| Pair { display: p.trim_end().trim_matches(['"', '\'']).to_string(), replacement: p })
            .collect(),
        Want::Nothing => Vec::new(),
    };
    (start, pairs)
}

impl Completer for ShellHelper {
    type Candidate = Pair;
    fn complete(&self, line: &str, pos: usize, _ctx: &rustyline::Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        Ok(candidates(&self.names, line, pos))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
    fn hint(&self, line: &str, pos: usize, _ctx: &rustyline::Context<'_>) -> Option<String> {
        if pos < line.len() {
            return None;
        }
        words::usage_hint(line)
    }
}

impl Highlighter for ShellHelper {
    fn highlight_hint<'h>(&self, hint: &'h str) -> Cow<'h, str> {
        Cow::Owned(format!("\x1b[2m{hint}\x1b[0m"))
    }
}

impl Validator for ShellHelper {}
impl Helper for ShellHelper {}
