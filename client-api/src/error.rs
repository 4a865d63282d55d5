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
            ApiError::Csrf => (StatusCode::FORBIDDEN, "csrf"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Upstream(_) => (StatusCode::BAD_GATEWAY, "upstream"),
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status();
        if status.is_server_error() {
            tracing::error!(%status, error = %self, "request failed");
        }
        let message = match &self {
            // Details of an internal failure are in the log, not in the answer.
            ApiError::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
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
            (Status::unavailable("x"), StatusCode::BAD_GATEWAY),
        ];
        for (status, http) in cases {
            assert_eq!(ApiError::from(status.clone()).status().0, http, "{status:?}");
        }
        assert!(ApiError::from(Status::unauthenticated("x")).to_string().contains("the edge's key was refused"));
    }
}
