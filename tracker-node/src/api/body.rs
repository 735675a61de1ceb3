//! The JSON body extractor of every API route: a body that cannot be read, parsed or typed is
//! answered in the documented shape `{"error": {"code", "message"}}` with the status that says
//! why (400 malformed, 413 over the body limit, 415 not JSON, 422 wrong fields or types),
//! never axum's plain-text rejection. Unknown routes and methods answer in the same shape.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use proto::api::{ErrorBody, MAX_BODY_BYTES};
use serde::de::DeserializeOwned;

/// A JSON request body of type `T`, or a documented refusal.
pub struct Body<T>(pub T);

#[axum::async_trait]
impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(rejection) => Err(refusal(&rejection)),
        }
    }
}

/// The code and sentence for a body that was refused.
pub fn refusal(rejection: &JsonRejection) -> Response {
    let status = rejection.status();
    let (code, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ("body_too_large", format!("the request body is over the {MAX_BODY_BYTES}-byte limit of this API"))
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("unsupported_media_type", "the request body must be JSON (content-type: application/json)".to_string())
        }
        StatusCode::UNPROCESSABLE_ENTITY => {
            ("invalid_request", format!("the body has wrong fields: {}", rejection.body_text()))
        }
        _ => ("invalid_request", format!("the body is not valid JSON: {}", rejection.body_text())),
    };
    (status, Json(ErrorBody::new(code, message))).into_response()
}

/// Answer for a path no route serves.
pub async fn no_route() -> Response {
    (StatusCode::NOT_FOUND, Json(ErrorBody::new("no_such_route", "no API route has this path; see docs/API.md")))
        .into_response()
}

/// Answer for a known path with a method it does not take.
pub async fn wrong_method() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(ErrorBody::new("method_not_allowed", "this path does not take that method; see docs/API.md")),
    )
        .into_response()
}
