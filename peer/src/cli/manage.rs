//! cancel, pause, resume, forget (a person's hands on this HOME's downloads) and list-shares.
//! The daemon decides (daemon/download/manage.rs); a download that is not in a state the
//! command applies to, or that does not exist, is refused with `no_such_file` (exit 1) and a
//! sentence saying what to do instead.

use super::files::{daemon_call, ok_fields};
use super::{CliError, Ctx, Out};
use crate::control::{ControlRequest, ControlResponse, ShareRow};
use crate::progress::human_bytes;
use proto::api::ErrorCode;

fn check_names(group: &str, name: &str) -> Result<(), CliError> {
    proto::names::validate_id("group", group).map_err(|m| CliError::refused(ErrorCode::InvalidName, m))?;
    proto::names::validate_file_name(name).map_err(|m| CliError::refused(ErrorCode::InvalidName, m))
}

/// The destinations an answer names under `key`.
fn dests(fields: &serde_json::Value, key: &str) -> Vec<String> {
    fields[key].as_array().map(|a| a.iter().filter_map(|d| d.as_str().map(String::from)).collect()).unwrap_or_default()
}

/// Runs one management request on `name` of `group` (`request` builds it from the two) and
/// words its answer: `done` for the destinations changed, `already` (the answer's key, the
/// words) for those that were already so.
async fn manage(
    ctx: &mut Ctx,
    out: &mut Out,
    (group, name): (&str, &str),
    request: fn(String, String) -> ControlRequest,
    done: &str,
    already: (&str, &str),
) -> Result<(), CliError> {
    check_names(group, name)?;
    let req = request(group.into(), name.into());
    let fields = ok_fields(daemon_call(ctx, &req, ctx.control_timeout()).await?);
    let (group, name) = (fields["group"].as_str().unwrap_or(""), fields["name"].as_str().unwrap_or(""));
    let mut lines: Vec<String> =
        dests(&fields, "dests").iter().map(|d| format!("{done} {name} in {group} ({d})")).collect();
    lines.extend(dests(&fields, already.0).iter().map(|d| format!("{name} in {group} ({d}) {}", already.1)));
    for w in dests(&fields, "warnings") {
        lines.push(format!("warning: {w}"));
    }
    out.ok(lines.join("\n"), fields);
    Ok(())
}

pub async fn cancel(ctx: &mut Ctx, out: &mut Out, group: &str, name: &str) -> Result<(), CliError> {
    let request = |group, name| ControlRequest::Cancel { group, name };
    manage(ctx, out, (group, name), request, "cancelled the download of", ("", "")).await
}

pub async fn pause(ctx: &mut Ctx, out: &mut Out, group: &str, name: &str) -> Result<(), CliError> {
    let request = |group, name| ControlRequest::Pause { group, name };
    manage(ctx, out, (group, name), request, "paused the download of", ("already_paused", "was already paused")).await
}

pub async fn resume(ctx: &mut Ctx, out: &mut Out, group: &str, name: &str) -> Result<(), CliError> {
    let request = |group, name| ControlRequest::Resume { group, name };
    let already = ("already_running", "is already downloading");
    manage(ctx, out, (group, name), request, "resumed the download of", already).await
}

pub async fn forget(ctx: &mut Ctx, out: &mut Out, group: &str, name: &str) -> Result<(), CliError> {
    let request = |group, name| ControlRequest::Forget { group, name };
    manage(ctx, out, (group, name), request, "forgot the download of", ("", "")).await
}

/// The human view of `list-shares`: a line per group, then its files.
pub fn shares_text(rows: &[ShareRow]) -> String {
    if rows.is_empty() {
        return "this peer shares nothing".into();
    }
    let mut lines = Vec::new();
    let mut group: Option<&str> = None;
    for r in rows {
        if group != Some(r.group.as_str()) {
            lines.push(format!("[{}]", r.group));
            group = Some(&r.group);
        }
        lines.push(format!("  {}  {} ({} bytes)  {}", r.name, human_bytes(r.size), r.size, r.path));
    }
    lines.join("\n")
}

pub async fn list_shares(ctx: &mut Ctx, out: &mut Out) -> Result<(), CliError> {
    let rows = match daemon_call(ctx, &ControlRequest::ListShares, ctx.control_timeout()).await? {
        ControlResponse::Shares { rows } => rows,
        _ => return Err(CliError::unavailable("unexpected answer from the daemon")),
    };
    out.done(shares_text(&rows), &rows);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_listed_per_group() {
        let row = |g: &str, n: &str| ShareRow {
            group: g.into(),
            name: n.into(),
            size: 2048,
            sha1: "ab".into(),
            path: format!("/p/{n}"),
        };
        let t = shares_text(&[row("a", "x.bin"), row("a", "y.bin"), row("b", "x.bin")]);
        assert_eq!(
            t,
            "[a]\n  x.bin  2.0 KiB (2048 bytes)  /p/x.bin\n  y.bin  2.0 KiB (2048 bytes)  /p/y.bin\n[b]\n  x.bin  2.0 KiB (2048 bytes)  /p/x.bin"
        );
        assert_eq!(shares_text(&[]), "this peer shares nothing");
    }
}
