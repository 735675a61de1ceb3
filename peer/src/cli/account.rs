//! register, login, logout.

use std::io::{BufRead, IsTerminal};

use serde::Serialize;
use serde_json::json;

use super::{CliError, Ctx, Out};
use crate::control::{self, ControlRequest, ControlResponse};
use crate::home::Session;
use proto::api::{ApiErrorCode, ErrorCode};

/// The password: the first line of stdin with --password-stdin, else a prompt without echo
/// on a terminal; with neither, a usage error. It never goes into argv or logs.
pub fn read_password(password_stdin: bool) -> Result<String, CliError> {
    let pw = if password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| CliError::usage(format!("cannot read the password from stdin: {e}")))?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else if std::io::stdin().is_terminal() {
        rpassword::prompt_password("Password: ")
            .map_err(|e| CliError::usage(format!("cannot read the password: {e}")))?
    } else {
        return Err(CliError::usage("no password: pass --password-stdin, or run on a terminal to be prompted"));
    };
    if pw.is_empty() {
        return Err(CliError::usage("the password is empty"));
    }
    Ok(pw)
}

pub async fn register(ctx: &mut Ctx, out: &mut Out, user: &str, password_stdin: bool) -> Result<(), CliError> {
    proto::names::validate_id("user", user).map_err(|m| CliError::refused(ErrorCode::InvalidName, m))?;
    let pw = read_password(password_stdin)?;
    register_with(ctx, out, user, &pw).await
}

pub async fn register_with(ctx: &mut Ctx, out: &mut Out, user: &str, pw: &str) -> Result<(), CliError> {
    let v = ctx.client()?.register(user, pw).await?;
    out.ok(format!("registered {user}"), v);
    Ok(())
}

pub async fn login(ctx: &mut Ctx, out: &mut Out, user: &str, password_stdin: bool) -> Result<(), CliError> {
    proto::names::validate_id("user", user).map_err(|m| CliError::refused(ErrorCode::InvalidName, m))?;
    let pw = read_password(password_stdin)?;
    login_with(ctx, out, user, &pw).await
}

pub async fn login_with(ctx: &mut Ctx, out: &mut Out, user: &str, pw: &str) -> Result<(), CliError> {
    let previous = home_user(ctx).filter(|p| p != user);
    let client = ctx.client()?;
    // The credentials first: a wrong password is `bad_credentials` whatever this HOME holds.
    let r = client.login(user, pw).await?;
    if let Some(p) = &previous {
        if let Err(e) = check_switch(ctx, p, user).await {
            // Refused by the HOME rule: the session just opened is closed again, this HOME's
            // own session and state are left as they were.
            let _ = client.with_token(Some(r.token.clone())).logout().await;
            return Err(e);
        }
    }
    let put_aside = match &previous {
        Some(p) => switch_state(ctx, p, &r.user)?,
        None => false,
    };
    // The HOME's previous session is closed once the new one is open (a failed login leaves
    // it alone), so that one HOME holds one session and logging out really pauses shares.
    if let Some(old) = ctx.home.session() {
        if old.token != r.token {
            let _ = client.with_token(Some(old.token)).logout().await;
        }
    }
    ctx.home
        .save_session(&Session { user: r.user.clone(), token: r.token.clone(), expires_at_ms: r.expires_at_ms })
        .map_err(|e| CliError::refused(ApiErrorCode::IoError, e.to_string()))?;
    write_home_user(ctx, &r.user);
    let daemon = notify_daemon(ctx).await;
    let resumed_downloads = daemon.as_ref().and_then(|f| f["resumed_downloads"].as_u64()).unwrap_or(0);
    let mut note = String::new();
    if resumed_downloads > 0 {
        note.push_str(&format!("; {resumed_downloads} download(s) paused by the logout resumed"));
    }
    if let (true, Some(p)) = (put_aside, &previous) {
        note.push_str(&format!(" ({p}'s shares and downloads in this HOME are put aside until {p} logs in here)"));
    }
    if daemon.is_none() {
        note.push_str(" (no daemon running: start one with `peer daemon` to share files)");
    }
    out.ok(
        format!("logged in as {user}; {} shared file(s) resumed{note}", r.resumed_shares),
        json!({
            "user": r.user,
            "resumed_shares": r.resumed_shares,
            "resumed_downloads": resumed_downloads,
            "expires_at_ms": r.expires_at_ms,
        }),
    );
    Ok(())
}

pub async fn logout(ctx: &mut Ctx, out: &mut Out) -> Result<(), CliError> {
    let Some(session) = ctx.home.session() else {
        return Err(CliError::refused(ErrorCode::Unauthenticated, "not logged in"));
    };
    let client = ctx.client()?.with_token(Some(session.token));
    // Running downloads are paused first, while the session still stands: they keep their
    // verified pieces and the next login resumes them (never failed for the logout).
    let paused = match control::call(&ctx.home.socket(), &ControlRequest::LoggingOut, ctx.control_timeout()).await {
        Ok(ControlResponse::Ok { fields }) => fields["paused_downloads"].as_u64().unwrap_or(0),
        _ => 0,
    };
    let result = client.logout().await;
    // The local session goes whatever the tracker said: an expired session is logged out too.
    ctx.home.clear_session();
    notify_daemon(ctx).await;
    let paused_note = match paused {
        0 => String::new(),
        n => format!("; {n} download(s) paused until the next login"),
    };
    match result {
        Ok(v) => {
            let human = format!("logged out {}; shares paused until the next login{paused_note}", session.user);
            out.ok(
                human,
                LogoutOutput { user: v.user, paused_shares: Some(v.paused_shares), paused_downloads: paused },
            );
            Ok(())
        }
        Err(tracker_client::ClientError::Refused { code: ApiErrorCode::State(ErrorCode::Unauthenticated), .. }) => {
            out.ok(
                format!("logged out {} (the session had already expired){paused_note}", session.user),
                LogoutOutput { user: session.user, paused_shares: None, paused_downloads: paused },
            );
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// What `logout --json` reports beside `ok`: `paused_shares` only when the tracker ended the
/// session (an expired one has nothing to pause).
#[derive(Serialize)]
struct LogoutOutput {
    user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    paused_shares: Option<u64>,
    paused_downloads: u64,
}

/// Tells this HOME's daemon, if any, that the session changed. Returns what it answered, if
/// one did.
async fn notify_daemon(ctx: &Ctx) -> Option<serde_json::Value> {
    match control::call(&ctx.home.socket(), &ControlRequest::SessionChanged, ctx.control_timeout()).await {
        Ok(ControlResponse::Ok { fields }) => Some(fields),
        Ok(_) => Some(serde_json::Value::Null),
        Err(_) => None,
    }
}

/// HOME/user: whose shares and downloads this HOME holds, written at every login.
const HOME_USER: &str = "user";

/// The user whose state this HOME holds: HOME/user, else (a HOME from before it) the user of
/// its session.
fn home_user(ctx: &Ctx) -> Option<String> {
    std::fs::read_to_string(ctx.home.dir.join(HOME_USER))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| ctx.home.session().map(|s| s.user))
}

/// Records `user` in HOME/user (0600, like every file of HOME).
fn write_home_user(ctx: &Ctx, user: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = ctx.home.dir.join(HOME_USER);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(format!("{user}\n").as_bytes()));
    if let Err(e) = written {
        tracing::warn!("cannot write {}: {e}", path.display());
    }
}

/// Where `user`'s shares and downloads wait while another user's are in HOME.
fn put_aside_dir(ctx: &Ctx, user: &str) -> std::path::PathBuf {
    ctx.home.dir.join("users").join(user)
}

/// The per-user state files of HOME.
fn state_files(ctx: &Ctx) -> [std::path::PathBuf; 2] {
    [ctx.home.shares_path(), ctx.home.downloads_path()]
}

/// Whether `path` holds a non-empty list (an unreadable file counts as holding something).
fn holds_something(path: &std::path::Path) -> bool {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<Vec<serde_json::Value>>(&bytes).map_or(true, |v| !v.is_empty()),
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

/// `user` logging in to a HOME that holds `previous`'s state: refused while this HOME's daemon
/// runs with shares or downloads of `previous` (or `user`'s own are put aside), since the daemon
/// holds them in memory; it would serve them, and finish the downloads, as `user`.
async fn check_switch(ctx: &Ctx, previous: &str, user: &str) -> Result<(), CliError> {
    let held = state_files(ctx).iter().any(|f| holds_something(f));
    let waiting = put_aside_dir(ctx, user).exists();
    if !held && !waiting {
        return Ok(());
    }
    let running =
        control::call(&ctx.home.socket(), &ControlRequest::Ping, std::time::Duration::from_secs(2)).await.is_ok();
    if running {
        return Err(CliError::refused(
            ApiErrorCode::HomeInUse,
            format!(
                "this HOME holds {previous}'s shares and downloads, and its daemon serves them: stop the daemon \
                 before logging in as {user} here, or use a HOME of your own (--home DIR or PEER_HOME)"
            ),
        ));
    }
    Ok(())
}

/// Puts `previous`'s shares and downloads aside (HOME/users/PREVIOUS/) and brings back `user`'s
/// own, if they were put aside before. Returns whether anything of `previous` was put aside.
fn switch_state(ctx: &Ctx, previous: &str, user: &str) -> Result<bool, CliError> {
    let io =
        |e: std::io::Error| CliError::refused(ApiErrorCode::IoError, format!("cannot switch this HOME to {user}: {e}"));
    let aside = put_aside_dir(ctx, previous);
    let mine = put_aside_dir(ctx, user);
    let mut moved = false;
    for f in state_files(ctx) {
        let Some(name) = f.file_name() else { continue };
        if f.exists() {
            crate::home::create_private_dir(&aside).map_err(io)?;
            moved |= holds_something(&f);
            std::fs::rename(&f, aside.join(name)).map_err(io)?;
        }
        let back = mine.join(name);
        if back.exists() {
            std::fs::rename(&back, &f).map_err(io)?;
        }
    }
    let _ = std::fs::remove_dir(&mine);
    Ok(moved)
}
