//! Credentials: bearer session tokens (stored only as SHA-256), argon2id password hashing
//! off the async workers, and the cluster secret for node-to-node and admin calls.

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

use super::password_pool::PasswordPool;
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

/// The password workers and their queue are full: a passing overload, answered 503 with
/// `Retry-After: 1` (clients retry within their budget), unlike a throttled guesser's 429.
fn busy() -> ApiError {
    ApiError::Unavailable("this tracker node is busy checking passwords; try again in a second".into())
}

/// argon2id hash (PHC string), computed on the bounded password pool.
pub async fn hash_password(pool: &PasswordPool, password: String) -> ApiResult<String> {
    pool.hash(password)
        .await
        .map_err(|_| busy())?
        .map_err(|e| ApiError::Internal(format!("password hashing failed: {e}")))
}

/// Checks a password against a stored hash on the bounded password pool.
pub async fn verify_password(pool: &PasswordPool, password: String, stored: Option<String>) -> ApiResult<()> {
    if pool.verify(password, stored).await.map_err(|_| busy())? {
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
