//! The one error type of the HTTP API: a status and a sentence, sent as
//! `{"error": {"code": "...", "message": "..."}}`. 5xx are logged, 4xx are not (they are
//! the caller's to fix).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("sign in first")]
    Unauthorized,
    #[error("wrong name or password")]
    WrongPassword,
    /// An app's key, missing or refused by mta-server.
    #[error("the API key is missing, invalid, expired or revoked (Authorization: Bearer KEY)")]
    BadKey,
    #[error("missing or wrong CSRF token (the X-CSRF-Token header); reload the page")]
    Csrf,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Upstream(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn status(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::WrongPassword => (StatusCode::UNAUTHORIZED, "wrong_password"),
            ApiError::BadKey => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Csrf => (StatusCode::FORBIDDEN, "csrf"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            // Unreachable for now (stopped, restarting): 503, which says "try again later".
            ApiError::Upstream(_) => (StatusCode::SERVICE_UNAVAILABLE, "upstream"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

/// gRPC answers from mta-server or backend-server, as the browser should see them.
impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> Self {
        use tonic::Code;
        match s.code() {
            Code::InvalidArgument => ApiError::BadRequest(s.message().to_owned()),
            Code::NotFound => ApiError::NotFound(s.message().to_owned()),
            Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => {
                ApiError::Conflict(s.message().to_owned())
            }
            Code::PermissionDenied => ApiError::Forbidden(s.message().to_owned()),
            // The edge's own key: a server misconfiguration, not the user's fault.
            Code::Unauthenticated => ApiError::Unavailable(format!(
                "the edge's key was refused by mta-server (check mta_key and mta_admin_key): {}",
                s.message()
            )),
            Code::ResourceExhausted => ApiError::Unavailable(s.message().to_owned()),
            Code::Unavailable | Code::DeadlineExceeded => {
                ApiError::Upstream(format!("a BitMail service is unreachable: {}", s.message()))
            }
            _ => ApiError::Internal(format!("{:?}: {}", s.code(), s.message())),
        }
    }
}

/// A short id naming one failed request in the log and in its answer.
fn request_id() -> String {
    let mut bytes = [0u8; 6];
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status();
        // Details of an internal or transport failure (host names, a store's own
        // words) are in the log under the request id, not in the answer.
        let message = match &self {
            ApiError::Internal(_) | ApiError::Upstream(_) => {
                let id = request_id();
                tracing::error!(%status, request_id = %id, error = %self, "request failed");
                match &self {
                    ApiError::Internal(_) => format!("internal error (request {id})"),
                    _ => format!("a BitMail service cannot be reached now; try again shortly (request {id})"),
                }
            }
            other => {
                if status.is_server_error() {
                    tracing::error!(%status, error = %self, "request failed");
                }
                other.to_string()
            }
        };
        (status, Json(json!({ "error": { "code": code, "message": message } }))).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Status;

    #[test]
    fn grpc_answers_become_http_statuses() {
        let cases = [
            (Status::invalid_argument("id: bad"), StatusCode::BAD_REQUEST),
            (Status::not_found("x"), StatusCode::NOT_FOUND),
            (Status::already_exists("x"), StatusCode::CONFLICT),
            (Status::failed_precondition("x"), StatusCode::CONFLICT),
            (Status::aborted("x"), StatusCode::CONFLICT),
            (Status::permission_denied("x"), StatusCode::FORBIDDEN),
            (Status::unauthenticated("x"), StatusCode::SERVICE_UNAVAILABLE),
            (Status::unavailable("x"), StatusCode::SERVICE_UNAVAILABLE),
            (Status::deadline_exceeded("x"), StatusCode::SERVICE_UNAVAILABLE),
        ];
        for (status, http) in cases {
            assert_eq!(ApiError::from(status.clone()).status().0, http, "{status:?}");
        }
        assert!(ApiError::from(Status::unauthenticated("x")).to_string().contains("the edge's key was refused"));
    }

    #[tokio::test]
    async fn transport_and_internal_details_stay_in_the_log() {
        let body = |e: ApiError| async move {
            let response = e.into_response();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
            String::from_utf8(bytes.to_vec()).unwrap()
        };
        let upstream = ApiError::from(Status::unavailable("dns error: failed to lookup db-7.internal.example"));
        let text = body(upstream).await;
        assert!(text.contains("cannot be reached now") && text.contains("(request "), "{text}");
        assert!(!text.contains("db-7.internal"), "{text}");
        let internal = body(ApiError::from(Status::internal("postgres: relation users at 10.0.0.5"))).await;
        assert!(internal.contains("internal error (request ") && !internal.contains("10.0.0.5"), "{internal}");
        // What helps the user is still said.
        assert!(body(ApiError::BadRequest("to: not an address".into())).await.contains("to: not an address"));
    }
}
