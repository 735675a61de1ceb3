//! Credentials: bearer session tokens (stored only as SHA-256), argon2id password hashing
//! off the async workers, and who may make admin calls (the operator).

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

use super::listener::Channel;
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

/// Admin calls are the operator's: they come over TLS, with the operator's certificate of the
/// cluster CA, or, when the cluster file sets a `secret`, with that secret in
/// `x-cluster-secret` (over TLS only: a secret sent in clear is a secret given away). Plain HTTP
/// never reaches them, whatever it carries.
pub fn check_operator(channel: Channel, secret: Option<&str>, headers: &HeaderMap) -> ApiResult<()> {
    match channel {
        Channel::Plain => Err(ApiError::Forbidden(
            "admin calls need TLS with the operator's certificate (operator.pem beside the cluster CA, as \
             `tracker-node members` and `snapshot save` use it); plain HTTP is refused"
                .into(),
        )),
        Channel::Tls { operator: true } => Ok(()),
        Channel::Tls { operator: false } => match (secret, headers.get(proto::api::CLUSTER_SECRET)) {
            (Some(secret), Some(given)) if secret_matches(secret, given.to_str().unwrap_or("")) => Ok(()),
            (Some(_), Some(_)) => Err(ApiError::Forbidden("wrong cluster secret (x-cluster-secret)".into())),
            _ => Err(ApiError::Forbidden(
                "admin calls need the operator's certificate of the cluster CA (operator.pem and operator.key beside \
                 the CA)"
                    .into(),
            )),
        },
    }
}

/// When the cluster has a secret, a Raft RPC must carry it in `x-cluster-secret` (on top of the
/// mutual TLS that already admits only the cluster's nodes).
pub fn check_cluster_secret(secret: Option<&str>, headers: &HeaderMap) -> ApiResult<()> {
    let Some(secret) = secret else { return Ok(()) };
    let given = headers.get(proto::api::CLUSTER_SECRET).and_then(|v| v.to_str().ok()).unwrap_or("");
    if secret_matches(secret, given) {
        Ok(())
    } else {
        Err(ApiError::Forbidden("this call needs the cluster secret (x-cluster-secret)".into()))
    }
}

/// Compares digests, so the time taken does not depend on how much of the secret matched.
fn secret_matches(secret: &str, given: &str) -> bool {
    Sha256::digest(given.as_bytes()) == Sha256::digest(secret.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_secret(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(proto::api::CLUSTER_SECRET, v.parse().unwrap());
        h
    }

    #[test]
    fn only_the_operator_or_the_secret_over_tls_opens_admin_calls() {
        let none = HeaderMap::new();
        let operator = Channel::Tls { operator: true };
        let tls = Channel::Tls { operator: false };
        assert!(check_operator(operator, None, &none).is_ok());
        assert!(check_operator(operator, Some("s"), &none).is_ok());
        assert!(check_operator(tls, Some("s"), &with_secret("s")).is_ok());
        // Refused: plain HTTP even with the right secret; TLS without a certificate or secret;
        // the wrong secret; a secret when the cluster sets none.
        assert!(check_operator(Channel::Plain, Some("s"), &with_secret("s")).is_err());
        assert!(check_operator(Channel::Plain, None, &none).is_err());
        assert!(check_operator(tls, None, &none).is_err());
        assert!(check_operator(tls, Some("s"), &with_secret("t")).is_err());
        assert!(check_operator(tls, Some("s"), &none).is_err());
        assert!(check_operator(tls, None, &with_secret("anything")).is_err());
    }
}
