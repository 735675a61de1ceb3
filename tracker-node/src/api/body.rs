//! The JSON body extractor of every API route: a body that cannot be read, parsed or typed is
//! answered in the documented shape `{"error": {"code", "message"}}` with the status that says
//! why (400 malformed, 413 over the body limit, 415 not JSON, 422 wrong fields or types),
//! never axum's plain-text rejection. Unknown routes and methods answer in the same shape.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use proto::api::{ApiErrorCode, ErrorBody, ErrorCode, MAX_BODY_BYTES};
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
        StatusCode::PAYLOAD_TOO_LARGE => (
            ApiErrorCode::BodyTooLarge,
            format!("the request body is over the {MAX_BODY_BYTES}-byte limit of this API"),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            ApiErrorCode::UnsupportedMediaType,
            "the request body must be JSON (content-type: application/json)".to_string(),
        ),
        StatusCode::UNPROCESSABLE_ENTITY => {
            (ErrorCode::InvalidRequest.into(), format!("the body has wrong fields: {}", rejection.body_text()))
        }
        _ => (ErrorCode::InvalidRequest.into(), format!("the body is not valid JSON: {}", rejection.body_text())),
    };
    (status, Json(ErrorBody::new(code, message))).into_response()
}

/// Answer for a path no route serves.
pub async fn no_route() -> Response {
    let body = ErrorBody::new(ApiErrorCode::NoSuchRoute, "no API route has this path; see docs/API.md");
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

/// Answer for a known path with a method it does not take.
pub async fn wrong_method() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(ErrorBody::new(ApiErrorCode::MethodNotAllowed, "this path does not take that method; see docs/API.md")),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use axum::extract::DefaultBodyLimit;
    use axum::http::{header, Method};
    use axum::routing::post;
    use axum::Router;
    use tower_service::Service;

    use super::*;

    #[derive(serde::Deserialize)]
    struct Probe {
        #[allow(dead_code)]
        user: String,
    }

    /// One route taking `Body<Probe>` under the API's body limit, and the API's fallbacks.
    fn app() -> Router {
        Router::new()
            .route("/v1/users", post(|Body(_): Body<Probe>| async { StatusCode::NO_CONTENT }))
            .fallback(no_route)
            .method_not_allowed_fallback(wrong_method)
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
    }

    async fn answer(
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, serde_json::Value) {
        let mut req = axum::http::Request::builder().method(method).uri(path);
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let req = req.header(header::CONTENT_LENGTH, body.len()).body(axum::body::Body::from(body)).unwrap();
        let resp = app().call(req).await.unwrap();
        let status = resp.status();
        assert_eq!(resp.headers().get(header::CONTENT_TYPE).unwrap(), "application/json", "{status}");
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {bytes:?}")))
    }

    #[tokio::test]
    async fn a_body_that_cannot_be_used_is_refused_with_the_documented_status_and_code() {
        let json = Some("application/json");
        let over = format!(r#"{{"user":"{}"}}"#, "u".repeat(MAX_BODY_BYTES)).into_bytes();
        let cases: Vec<(&str, Method, &str, Option<&str>, Vec<u8>, u16, &str)> = vec![
            ("malformed JSON", Method::POST, "/v1/users", json, b"{\"user\": ".to_vec(), 400, "invalid_request"),
            ("wrong type", Method::POST, "/v1/users", json, br#"{"user": 5}"#.to_vec(), 422, "invalid_request"),
            ("missing field", Method::POST, "/v1/users", json, b"{}".to_vec(), 422, "invalid_request"),
            (
                "no content type",
                Method::POST,
                "/v1/users",
                None,
                br#"{"user":"a"}"#.to_vec(),
                415,
                "unsupported_media_type",
            ),
            (
                "not JSON content",
                Method::POST,
                "/v1/users",
                Some("text/plain"),
                br#"{"user":"a"}"#.to_vec(),
                415,
                "unsupported_media_type",
            ),
            ("over the limit", Method::POST, "/v1/users", json, over, 413, "body_too_large"),
            ("unknown route", Method::GET, "/v1/nothing", None, Vec::new(), 404, "no_such_route"),
            ("wrong method", Method::PATCH, "/v1/users", None, Vec::new(), 405, "method_not_allowed"),
        ];
        for (what, method, path, ct, body, status, code) in cases {
            let (got, v) = answer(method, path, ct, body).await;
            assert_eq!((got.as_u16(), v["error"]["code"].as_str()), (status, Some(code)), "{what}: {v}");
            assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {v}");
        }
        // The limit is named in the 413's message, and a body at the limit is read.
        let (_, v) = answer(Method::POST, "/v1/users", json, vec![b' '; MAX_BODY_BYTES + 1]).await;
        assert!(v["error"]["message"].as_str().unwrap().contains(&MAX_BODY_BYTES.to_string()), "{v}");
        let fits = format!(r#"{{"user":"{}"}}"#, "u".repeat(MAX_BODY_BYTES - 11));
        assert_eq!(fits.len(), MAX_BODY_BYTES);
        let req = axum::http::Request::builder()
            .method(Method::POST)
            .uri("/v1/users")
            .header(header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from(fits))
            .unwrap();
        assert_eq!(app().call(req).await.unwrap().status(), StatusCode::NO_CONTENT);
    }
}
