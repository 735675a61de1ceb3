//! create-group, join-group, leave-group, list-groups, list-requests, accept-request,
//! remove-member.

use super::{CliError, Ctx, Out};
use proto::api::{ApiErrorCode, ErrorCode};
use tracker_client::{ClientError, TrackerClient};

fn check_group(group: &str) -> Result<(), CliError> {
    proto::names::validate_id("group", group).map_err(|m| CliError::refused(ErrorCode::InvalidName, m))
}

pub async fn create(ctx: &mut Ctx, out: &mut Out, group: &str) -> Result<(), CliError> {
    check_group(group)?;
    let v = ctx.session_client()?.create_group(group).await?;
    out.ok(format!("created group {group}"), v);
    Ok(())
}

pub async fn join(ctx: &mut Ctx, out: &mut Out, group: &str) -> Result<(), CliError> {
    check_group(group)?;
    let v = ctx.session_client()?.join_group(group).await?;
    // Not an error (docs/CONTRACT.md): the request stands, filed once; say it is the same one.
    let human = if v.already_pending {
        format!("your request to join {group} is already pending; its owner must accept it")
    } else {
        format!("asked to join {group}; its owner must accept")
    };
    out.ok(human, v);
    Ok(())
}

pub async fn leave(ctx: &mut Ctx, out: &mut Out, group: &str) -> Result<(), CliError> {
    check_group(group)?;
    let v = ctx.session_client()?.leave_group(group).await?;
    let human = if v.group_deleted {
        format!("left {group}; you were its last member, so it is deleted")
    } else if let Some(o) = &v.new_owner {
        format!("left {group}; {o} owns it now")
    } else {
        format!("left {group}")
    };
    out.ok(human, v);
    Ok(())
}

pub async fn list(ctx: &mut Ctx, out: &mut Out) -> Result<(), CliError> {
    let rows = ctx.session_client()?.list_groups().await?;
    let mut human = String::new();
    if rows.is_empty() {
        human.push_str("no groups");
    }
    for r in &rows {
        let tag = if r.member {
            " (member)"
        } else if r.pending {
            " (request pending)"
        } else {
            ""
        };
        human.push_str(&format!("{}  owner {}  {} member(s){tag}\n", r.group, r.owner, r.members));
    }
    out.done(human.trim_end(), &rows);
    Ok(())
}

pub async fn list_requests(ctx: &mut Ctx, out: &mut Out, group: &str) -> Result<(), CliError> {
    check_group(group)?;
    let rows = ctx.session_client()?.list_requests(group).await?;
    let human = if rows.is_empty() {
        format!("no pending requests for {group}")
    } else {
        rows.iter().map(|r| r.user.as_str()).collect::<Vec<_>>().join("\n")
    };
    out.done(human, &rows);
    Ok(())
}

pub async fn accept(ctx: &mut Ctx, out: &mut Out, group: &str, user: &str) -> Result<(), CliError> {
    check_group(group)?;
    proto::names::validate_id("user", user).map_err(|m| CliError::refused(ErrorCode::InvalidName, m))?;
    let v = ctx.session_client()?.accept_request(group, user).await?;
    out.ok(format!("{user} is now a member of {group}"), v);
    Ok(())
}

pub async fn remove_member(ctx: &mut Ctx, out: &mut Out, group: &str, user: &str) -> Result<(), CliError> {
    check_group(group)?;
    proto::names::validate_id("user", user).map_err(|m| CliError::refused(ErrorCode::InvalidName, m))?;
    let v = ctx.session_client()?.remove_member(group, user).await?;
    out.ok(format!("removed {user} from {group}; {} of their shares there ended", v.shares_ended), v);
    Ok(())
}

/// A members-only call refused with `not_member`: when the caller's request to join `group` is
/// pending, the refusal says so (one more call, made only on that refusal); any other error, or
/// a lookup that fails, stays as it was.
pub(super) async fn explain_not_member(client: &TrackerClient, group: &str, e: ClientError) -> CliError {
    if e.code() != &ApiErrorCode::State(ErrorCode::NotMember) {
        return e.into();
    }
    match client.group(group).await {
        Ok(Some(row)) if row.pending => CliError::refused(
            ErrorCode::NotMember,
            format!(
                "you are not a member of {group} yet: your request to join {group} is pending until its owner \
                 ({}) accepts it",
                row.owner
            ),
        ),
        _ => e.into(),
    }
}
