//! `GET /` and every path no route claims: the webmail's files (and, under `/admin/`,
//! the admin console's bundle, see [`crate::assets`]), or the bare page when no build is
//! configured.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::{Html, IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// The webmail's files; the bare page when no build is configured.
pub(crate) async fn page(State(state): State<Arc<AppState>>, uri: Uri, headers: HeaderMap) -> Response {
    match &state.web {
        Some(web) => web
            .respond(uri.path(), &headers)
            .unwrap_or_else(|| ApiError::NotFound(format!("no file {}", uri.path())).into_response()),
        None if uri.path() == "/" => Html(include_str!("index.html")).into_response(),
        None => ApiError::NotFound(format!("no file {}", uri.path())).into_response(),
    }
}
