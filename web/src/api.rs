//! client-api's JSON API over `fetch`. Errors keep the API's code so each gets its own
//! words (see `i18n::error_text`).

use serde_json::Value;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Headers, Request, RequestCredentials, RequestInit, Response};

/// An API error: the HTTP status (0 when the server could not be reached), the code of
/// `{"error":{"code","message"}}` and its message.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiErr {
    pub status: u16,
    pub code: String,
    pub message: String,
}

fn network(e: JsValue) -> ApiErr {
    ApiErr { status: 0, code: "network".into(), message: e.as_string().unwrap_or_default() }
}

/// One call. `csrf` is sent as `X-CSRF-Token`; a JSON body when `body` is Some.
pub async fn call(method: &str, path: &str, body: Option<&Value>, csrf: &str) -> Result<Value, ApiErr> {
    send(method, path, body.map(|b| ("application/json", JsValue::from_str(&b.to_string()))), csrf).await
}

/// One call with a body of any type (content type, then a string, a `Blob` or bytes).
pub async fn send(method: &str, path: &str, body: Option<(&str, JsValue)>, csrf: &str) -> Result<Value, ApiErr> {
    let init = RequestInit::new();
    init.set_method(method);
    init.set_credentials(RequestCredentials::SameOrigin);
    let headers = Headers::new().map_err(network)?;
    headers.set("accept", "application/json").map_err(network)?;
    if !csrf.is_empty() {
        headers.set("x-csrf-token", csrf).map_err(network)?;
    }
    if let Some((content_type, body)) = body {
        headers.set("content-type", content_type).map_err(network)?;
        init.set_body(&body);
    }
    init.set_headers(&headers);
    let request = Request::new_with_str_and_init(path, &init).map_err(network)?;
    let window = web_sys::window().ok_or_else(|| network(JsValue::from_str("no window")))?;
    let response: Response =
        JsFuture::from(window.fetch_with_request(&request)).await.map_err(network)?.unchecked_into();
    let status = response.status();
    let text =
        JsFuture::from(response.text().map_err(network)?).await.map_err(network)?.as_string().unwrap_or_default();
    let value: Value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::Null) };
    if (200..300).contains(&status) {
        return Ok(value);
    }
    let field = |k: &str| value["error"][k].as_str().unwrap_or_default().to_owned();
    Err(ApiErr { status, code: field("code"), message: field("message") })
}

/// Base64 (standard alphabet, padded) of attachment bytes.
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A date as the reader's language writes it.
pub fn date(ms: f64, locale: &str) -> String {
    let d = js_sys::Date::new(&JsValue::from_f64(ms));
    let options = js_sys::Object::new();
    for (k, v) in [("dateStyle", "medium"), ("timeStyle", "short")] {
        let _ = js_sys::Reflect::set(&options, &k.into(), &v.into());
    }
    d.to_locale_string(locale, &options).into()
}
