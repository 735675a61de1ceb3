//! Accounts and sessions: register, login, logout, session expiry, peer announcements.

use super::{Session, TrackerState, User};
use crate::command::{validate_logged_peer_key, validate_peer_addr, ErrorCode, Refusal, Reply};
use crate::names::validate_id;

impl TrackerState {
    pub(super) fn register(&mut self, user: &str, password_hash: &str) -> Result<Reply, Refusal> {
        validate_id("user", user).map_err(Refusal::invalid_name)?;
        if self.users.contains_key(user) {
            return Err(Refusal::new(
                ErrorCode::UserExists,
                format!("user {user:?} already exists; pick another name or log in"),
            ));
        }
        self.users.insert(
            user.to_string(),
            User {
                password_hash: password_hash.to_string(),
                sessions: 0,
                // A new user shares nothing yet; paused until the first login.
                shares_paused: true,
                peer_addr: None,
                peer_key: None,
            },
        );
        Ok(Reply::Registered { user: user.to_string() })
    }

    pub(super) fn login(
        &mut self,
        user: &str,
        token_hash: &str,
        expires_at_ms: u64,
        now_ms: u64,
    ) -> Result<Reply, Refusal> {
        let Some(account) = self.users.get_mut(user) else {
            return Err(Refusal::new(ErrorCode::BadCredentials, "wrong user name or password"));
        };
        if expires_at_ms <= now_ms {
            return Err(Refusal::new(ErrorCode::InvalidRequest, "session would expire before it starts"));
        }
        if self.sessions.contains_key(token_hash) {
            // Tokens are 256 random bits; a collision means a replayed command without a
            // request id. Refuse rather than extend someone's session.
            return Err(Refusal::new(ErrorCode::InvalidRequest, "session token already in use"));
        }
        account.sessions += 1;
        account.shares_paused = false;
        self.sessions.insert(token_hash.to_string(), Session { user: user.to_string(), expires_at_ms });
        self.session_expiry.insert((expires_at_ms, token_hash.to_string()));
        let resumed_shares = self.shares_of(user);
        Ok(Reply::LoggedIn { user: user.to_string(), resumed_shares })
    }

    pub(super) fn logout(&mut self, token_hash: &str) -> Result<Reply, Refusal> {
        let Some(session) = self.close_session(token_hash) else {
            return Err(Refusal::unauthenticated());
        };
        let paused_shares = if self.users.get(&session.user).map(|u| u.shares_paused).unwrap_or(false) {
            self.shares_of(&session.user)
        } else {
            0
        };
        Ok(Reply::LoggedOut { user: session.user, paused_shares })
    }

    pub(super) fn announce(&mut self, user: &str, peer_addr: &str, peer_key: &str) -> Result<Reply, Refusal> {
        validate_peer_addr(peer_addr)?;
        validate_logged_peer_key(peer_key)?;
        self.set_peer(user, peer_addr, peer_key);
        Ok(Reply::Announced { user: user.to_string(), shares: self.shares_of(user) })
    }

    /// Records where `user`'s daemon serves and the key it speaks with (an empty key, from an
    /// entry older than peer keys, leaves the user without one).
    pub(super) fn set_peer(&mut self, user: &str, peer_addr: &str, peer_key: &str) {
        if let Some(account) = self.users.get_mut(user) {
            account.peer_addr = Some(peer_addr.to_string());
            account.peer_key = (!peer_key.is_empty()).then(|| peer_key.to_string());
        }
    }

    /// Removes a session; pauses the user's shares when it was their last one.
    fn close_session(&mut self, token_hash: &str) -> Option<Session> {
        let session = self.sessions.remove(token_hash)?;
        self.session_expiry.remove(&(session.expires_at_ms, token_hash.to_string()));
        if let Some(account) = self.users.get_mut(&session.user) {
            account.sessions = account.sessions.saturating_sub(1);
            if account.sessions == 0 {
                account.shares_paused = true;
            }
        }
        Some(session)
    }

    /// Closes every session that expired at or before `now_ms`.
    pub(super) fn expire_sessions(&mut self, now_ms: u64) {
        while let Some((expires_at_ms, token_hash)) = self.session_expiry.get_min().cloned() {
            if expires_at_ms > now_ms {
                break;
            }
            self.close_session(&token_hash);
        }
    }

    /// Number of files (across groups) that `user` is a sharer of.
    pub(super) fn shares_of(&self, user: &str) -> u64 {
        self.groups.values().flat_map(|g| g.files.values()).filter(|f| f.sharers.contains(user)).count() as u64
    }
}
