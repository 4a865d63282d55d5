//! `GET /api/admin/audit.csv`: the audit log as CSV (RFC 4180: CRLF line ends, fields
//! quoted when they hold a quote, a comma or a line break), with the filters of
//! `GET /api/admin/audit`, every page up to [`MAX_ROWS`] rows, as a download.

use std::collections::HashMap;

use axum::extract::Query;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bitmail_proto::v1 as pb;
use bitmail_runtime::time::civil;

use crate::admin::Admin;
use crate::admin_audit::audit_request;
use crate::error::ApiError;

/// The most rows one export holds; a longer log is exported in time slices
/// (`since_ms`, `until_ms`).
pub(crate) const MAX_ROWS: usize = 100_000;

const HEADER: &str = "at,actor,address,action,tenant,target,before,after\r\n";

/// One field, quoted when it must be.
fn field(value: &str) -> String {
    if value.contains(['"', ',', '\r', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// `2024-05-06T07:08:09.010Z`.
fn iso8601(ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0);
    let c = civil(ms / 1000);
    format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", c.year, c.month, c.day, c.hour, c.minute, c.second, ms % 1000)
}

fn row(out: &mut String, e: &pb::AuditEntry) {
    let fields = [&e.actor, &e.address, &e.action, &e.tenant, &e.target, &e.before, &e.after];
    out.push_str(&iso8601(e.at_unix_ms));
    for value in fields {
        out.push(',');
        out.push_str(&field(value));
    }
    out.push_str("\r\n");
}

/// `GET /api/admin/audit.csv?actor=&tenant=&since_ms=&until_ms=`.
pub(crate) async fn audit_csv(
    admin: Admin,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let mut request = audit_request(&query)?;
    request.limit = 1000;
    let mut out = String::from(HEADER);
    let mut rows = 0;
    'pages: loop {
        let page = admin.upstream.admin().list_audit(admin.request(request.clone())).await?.into_inner();
        for entry in &page.entries {
            if rows == MAX_ROWS {
                break 'pages;
            }
            row(&mut out, entry);
            rows += 1;
        }
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    let headers = [
        (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
        (header::CONTENT_DISPOSITION, "attachment; filename=\"bitmail-audit.csv\""),
        (header::CACHE_CONTROL, "no-store"),
    ];
    Ok((headers, out).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_as_rfc_4180_says() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field(r#"{"id":"x"}"#), r#""{""id"":""x""}""#);
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
        assert_eq!(field(""), "");
    }

    #[test]
    fn rows_start_with_the_time_in_utc() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_335_390_565_042), "2012-04-25T21:49:25.042Z");
        let entry = pb::AuditEntry {
            at_unix_ms: 1_335_390_565_042,
            actor: "user:ada via key:bmk_x".into(),
            action: "tenant.create".into(),
            after: r#"{"id":"acme"}"#.into(),
            ..Default::default()
        };
        let mut out = String::new();
        row(&mut out, &entry);
        assert_eq!(
            out,
            "2012-04-25T21:49:25.042Z,user:ada via key:bmk_x,,tenant.create,,,,\"{\"\"id\"\":\"\"acme\"\"}\"\r\n"
        );
    }
}
