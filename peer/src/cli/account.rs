//! register, login, logout.

use std::io::{BufRead, IsTerminal};

use serde_json::json;

use super::{CliError, Ctx, Out};
use crate::control::{self, ControlRequest};
use crate::home::Session;

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
    proto::names::validate_id("user", user).map_err(|m| CliError::refused("invalid_name", m))?;
    let pw = read_password(password_stdin)?;
    register_with(ctx, out, user, &pw).await
}

pub async fn register_with(ctx: &mut Ctx, out: &mut Out, user: &str, pw: &str) -> Result<(), CliError> {
    let v = ctx.client()?.register(user, pw).await?;
    out.ok(format!("registered {user}"), v);
    Ok(())
}

pub async fn login(ctx: &mut Ctx, out: &mut Out, user: &str, password_stdin: bool) -> Result<(), CliError> {
    proto::names::validate_id("user", user).map_err(|m| CliError::refused("invalid_name", m))?;
    let pw = read_password(password_stdin)?;
    login_with(ctx, out, user, &pw).await
}

pub async fn login_with(ctx: &mut Ctx, out: &mut Out, user: &str, pw: &str) -> Result<(), CliError> {
    let client = ctx.client()?;
    let r = client.login(user, pw).await?;
    // The HOME's previous session is closed once the new one is open (a failed login leaves
    // it alone), so that one HOME holds one session and logging out really pauses shares.
    if let Some(old) = ctx.home.session() {
        if old.token != r.token {
            let _ = client.with_token(Some(old.token)).logout().await;
        }
    }
    ctx.home
        .save_session(&Session { user: r.user.clone(), token: r.token.clone(), expires_at_ms: r.expires_at_ms })
        .map_err(|e| CliError::refused("io_error", e.to_string()))?;
    let daemon = notify_daemon(ctx).await;
    let note = if daemon { "" } else { " (no daemon running: start one with `peer daemon` to share files)" };
    out.ok(
        format!("logged in as {user}; {} shared file(s) resumed{note}", r.resumed_shares),
        json!({"user": r.user, "resumed_shares": r.resumed_shares, "expires_at_ms": r.expires_at_ms}),
    );
    Ok(())
}

pub async fn logout(ctx: &mut Ctx, out: &mut Out) -> Result<(), CliError> {
    let Some(session) = ctx.home.session() else {
        return Err(CliError::refused("unauthenticated", "not logged in"));
    };
    let client = ctx.client()?.with_token(Some(session.token));
    let result = client.logout().await;
    // The local session goes whatever the tracker said: an expired session is logged out too.
    ctx.home.clear_session();
    notify_daemon(ctx).await;
    match result {
        Ok(v) => {
            out.ok(format!("logged out {}; shares paused until the next login", session.user), v);
            Ok(())
        }
        Err(tracker_client::ClientError::Refused { code, .. }) if code == "unauthenticated" => {
            out.ok(
                format!("logged out {} (the session had already expired)", session.user),
                json!({"user": session.user}),
            );
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Tells this HOME's daemon, if any, that the session changed. Returns whether one answered.
async fn notify_daemon(ctx: &Ctx) -> bool {
    control::call(&ctx.home.socket(), &ControlRequest::SessionChanged, ctx.control_timeout()).await.is_ok()
}
