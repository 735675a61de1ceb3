//! Credentials: bearer session tokens (stored only as SHA-256), argon2id password hashing
//! off the async workers, and the cluster secret for node-to-node and admin calls.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

use super::{ApiError, ApiResult};
use raft_store::{ErrorCode, Refusal};

/// Length of a session token: 32 random bytes as hex.
pub const TOKEN_HEX_LEN: usize = 64;
/// Longest password accepted, in bytes (argon2 cost does not depend on it, the body does).
pub const MAX_PASSWORD_BYTES: usize = 1024;

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

pub fn valid_token(token: &str) -> bool {
    token.len() == TOKEN_HEX_LEN && token.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The hashed bearer token of a request.
pub fn bearer(headers: &HeaderMap) -> ApiResult<String> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::Refused(Refusal::unauthenticated()))?;
    if !valid_token(token) {
        return Err(ApiError::Refused(Refusal::unauthenticated()));
    }
    Ok(token_hash(token))
}

pub fn check_password_shape(password: &str) -> ApiResult<()> {
    if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::BadRequest(format!("a password is 1 to {MAX_PASSWORD_BYTES} bytes")));
    }
    Ok(())
}

/// argon2id hash (PHC string), computed on the blocking pool: it costs tens of milliseconds.
pub async fn hash_password(password: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ApiError::Internal(format!("password hashing failed: {e}")))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
}

/// Checks a password against a stored hash on the blocking pool. A missing user costs the
/// same as a wrong password, so response times do not reveal which user names exist.
pub async fn verify_password(password: String, stored: Option<String>) -> ApiResult<()> {
    let ok = tokio::task::spawn_blocking(move || {
        let dummy;
        let stored = match &stored {
            Some(s) => s.as_str(),
            None => {
                dummy = Argon2::default()
                    .hash_password(b"dummy", &SaltString::generate(&mut argon2::password_hash::rand_core::OsRng))
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                &dummy
            }
        };
        let Ok(parsed) = PasswordHash::new(stored) else { return false };
        Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok() && !stored.is_empty()
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    if ok {
        Ok(())
    } else {
        Err(ApiError::Refused(Refusal::new(ErrorCode::BadCredentials, "wrong user name or password")))
    }
}

/// When the cluster has a secret, the caller must present it in `x-cluster-secret`.
pub fn check_cluster_secret(secret: Option<&str>, headers: &HeaderMap) -> ApiResult<()> {
    let Some(secret) = secret else { return Ok(()) };
    let given = headers.get(proto::api::CLUSTER_SECRET).and_then(|v| v.to_str().ok()).unwrap_or("");
    // Compare digests so the time taken does not depend on how much of the secret matched.
    if Sha256::digest(given.as_bytes()) == Sha256::digest(secret.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Forbidden("this call needs the cluster secret (x-cluster-secret)".into()))
    }
}
