//! The share table kept in step with the tracker: each share the tracker ended (the owner
//! removed this user, the group or file is gone) is dropped here, its local copy kept. Run by
//! the keepalive loop every few rounds and by the control server before `list-shares`.

use std::time::Duration;

use proto::api::FileDetails;
use proto::error::{ApiErrorCode, ErrorCode};

use super::shares::ShareTable;
use super::standing::Standing;

/// Most shares checked in one round (each is one `GET` of the file's details); the next round
/// goes on from where this one stopped.
pub const MAX_SHARES_CHECKED_PER_ROUND: usize = 64;

/// What the tracker's answer about one of our shares says of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShareCheck {
    /// Still ours to share, or nothing can be told from the answer.
    Keep,
    /// The tracker ended it (why): drop it here too.
    Ended(String),
}

/// The decision for one share from the tracker's answer to `GET` of its details: a refusal as
/// not a member (removed, left), no such group or no such file ends it; an answer that does not
/// list `user` among the sharers ends it too, but only while the tracker lists this daemon for
/// the user (`listed`; else another daemon of the user speaks for it and its liveness decides
/// who is listed). Anything else (unreachable, electing) keeps it.
pub fn share_check(answer: Result<&FileDetails, &ApiErrorCode>, user: &str, listed: bool) -> ShareCheck {
    match answer {
        Ok(det) if listed && !det.sharers.iter().any(|s| s.user == user) => {
            ShareCheck::Ended("the tracker no longer lists this user as a sharer".into())
        }
        Ok(_) => ShareCheck::Keep,
        Err(code @ ApiErrorCode::State(ErrorCode::NotMember | ErrorCode::NoSuchGroup | ErrorCode::NoSuchFile)) => {
            ShareCheck::Ended(format!("the tracker answers {}", code.as_str()))
        }
        Err(_) => ShareCheck::Keep,
    }
}

/// Brings the share table in step with the tracker within `budget_ms`: each share the tracker
/// ended (the owner removed this user, the group or file is gone) is dropped here, its local
/// copy kept, so `list-shares` tells what the tracker says and a re-join does not bring it back.
/// At most `MAX_SHARES_CHECKED_PER_ROUND` shares per call; logged out, nothing is checked.
pub async fn reconcile_shares(st: &Standing, shares: &ShareTable, budget_ms: u64) {
    use std::sync::atomic::Ordering;
    let Some(session) = st.home.session() else { return };
    let budget = Duration::from_millis(budget_ms);
    let Ok(mut next) = tokio::time::timeout(budget, st.announce.reconcile.lock()).await else { return };
    let began = std::time::Instant::now();
    let client = st.tracker.with_token(Some(session.token.clone()));
    let all = shares.all();
    let n = all.len();
    let start = if n == 0 { 0 } else { *next % n };
    let mut checked = 0;
    for share in all.iter().cycle().skip(start).take(n.min(MAX_SHARES_CHECKED_PER_ROUND)) {
        let Some(left) = budget.checked_sub(began.elapsed()) else { break };
        let answer = match tokio::time::timeout(left, client.file_details(&share.group, &share.name)).await {
            Ok(a) => a,
            Err(_) => break,
        };
        checked += 1;
        let listed = st.announce.listed.load(Ordering::SeqCst);
        let check = match &answer {
            Ok(det) => share_check(Ok(det), &session.user, listed),
            Err(tracker_client::ClientError::Refused { code, .. }) => share_check(Err(code), &session.user, listed),
            Err(_) => ShareCheck::Keep,
        };
        if let ShareCheck::Ended(why) = check {
            if shares.remove_stale(&share.group, &share.name, began).is_some() {
                tracing::warn!(
                    group = %share.group, name = %share.name, path = %share.path,
                    "no longer shared: {why} (removed from the group, or it left); the local copy is kept"
                );
            }
        }
    }
    *next = start + checked;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::api::{FileMetaBody, SharerRow};

    fn details(sharers: &[&str]) -> FileDetails {
        FileDetails {
            group: "g".into(),
            file: FileMetaBody {
                name: "f.bin".into(),
                size: 1,
                piece_len: 524_288,
                piece_list_sha1: "1".repeat(40),
                sha1: "2".repeat(40),
            },
            sharers: sharers
                .iter()
                .map(|u| SharerRow { user: u.to_string(), peer_addr: "127.0.0.1:1".into(), peer_key: "a".repeat(64) })
                .collect(),
        }
    }

    #[test]
    fn a_share_ends_here_when_the_tracker_ended_it_and_only_then() {
        let ended = |c: ShareCheck| matches!(c, ShareCheck::Ended(_));
        assert_eq!(share_check(Ok(&details(&["alice", "bob"])), "bob", true), ShareCheck::Keep);
        assert!(ended(share_check(Ok(&details(&["alice"])), "bob", true)), "removed, then re-joined");
        assert_eq!(
            share_check(Ok(&details(&["alice"])), "bob", false),
            ShareCheck::Keep,
            "another daemon of bob's is the listed one: its liveness decides"
        );
        for code in ["not_member", "no_such_group", "no_such_file"] {
            assert!(ended(share_check(Err(&ApiErrorCode::from(code)), "bob", false)), "{code}");
        }
        for code in ["unavailable", "unauthenticated", "rate_limited"] {
            assert_eq!(share_check(Err(&ApiErrorCode::from(code)), "bob", true), ShareCheck::Keep, "{code}");
        }
    }
}
