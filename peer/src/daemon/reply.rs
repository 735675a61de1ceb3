//! Refusals as the control socket carries them, for the control server and the downloads alike
//! (a lower layer than both, so neither imports the other for them).

use proto::api::ApiErrorCode;
use tracker_client::ClientError;

use crate::control::ControlResponse;

/// The refusal `code` (one of the contract's error codes) with a sentence a person can act on.
pub fn error(code: impl Into<ApiErrorCode>, message: impl Into<String>) -> ControlResponse {
    ControlResponse::Error { code: code.into(), message: message.into() }
}

/// A tracker call that failed: the tracker's own refusal, or `unavailable`.
pub fn client_error(e: ClientError) -> ControlResponse {
    match e {
        ClientError::Refused { code, message } => error(code, message),
        other => error(ApiErrorCode::Unavailable, other.to_string()),
    }
}
