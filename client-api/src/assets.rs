//! The webmail's files (built by `cargo xtask` into `web_dir`), served from memory.
//!
//! Every file is read and compressed once at start (brotli and gzip, kept only when
//! smaller), so each request costs a lookup and a copy of shared bytes. Files under
//! `assets/` carry a content hash in their name and are cached for a year as immutable;
//! `index.html` names them and is revalidated on every visit (`no-cache`), so a new
//! build reaches browsers at their next visit.
//!
//! Two bundles when built so: the webmail at `/` (`index.html`, `assets/`), and, when
//! `web_dir/admin/index.html` exists, the webmail with the admin console at `/admin/`
//! (`admin/index.html`, `admin/assets/`), which only admins load. Every path under
//! `/admin/` that is no file gets the console's page (it routes in the browser).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// One file in the three encodings.
struct Asset {
    content_type: &'static str,
    identity: Bytes,
    gzip: Option<Bytes>,
    brotli: Option<Bytes>,
    immutable: bool,
}

/// The webmail's files by URL path (`/`, `/assets/app-1a2b.wasm`, `/admin/`, ...).
pub(crate) struct WebAssets {
    files: HashMap<String, Asset>,
}

/// Where the admin console's bundle is served (`web_dir/admin/`).
const CONSOLE: &str = "/admin/";

/// The page's Content-Security-Policy: only this origin's scripts (WebAssembly needs
/// `wasm-unsafe-eval`), no plugins, no framing. Images may come from anywhere: remote
/// images in mail are removed by the sanitizer until the reader asks for them.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data: https:; object-src 'none'; \
     base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "json" => "application/json",
        "png" => "image/png",
        "ico" => "image/x-icon",
        _ => "application/octet-stream",
    }
}

fn compressible(content_type: &str) -> bool {
    !matches!(content_type, "image/png" | "image/x-icon" | "application/octet-stream")
}

fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data)?;
    encoder.finish()
}

fn brotli(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams { quality: 11, lgwin: 22, ..Default::default() };
    brotli::BrotliCompress(&mut &data[..], &mut out, &params)?;
    Ok(out)
}

impl Asset {
    fn new(name: &str, identity: Vec<u8>, immutable: bool) -> std::io::Result<Self> {
        let content_type = content_type(name);
        let (mut gz, mut br) = (None, None);
        if compressible(content_type) && identity.len() > 512 {
            let smaller = |v: Vec<u8>| (v.len() < identity.len()).then(|| Bytes::from(v));
            gz = smaller(gzip(&identity)?);
            br = smaller(brotli(&identity)?);
        }
        Ok(Self { content_type, identity: Bytes::from(identity), gzip: gz, brotli: br, immutable })
    }
}

impl WebAssets {
    /// Reads `dir/index.html` and every file in `dir/assets/`, and the same under
    /// `dir/admin/` when it has an `index.html`. Blocking: call it on the blocking pool.
    pub(crate) fn load(dir: &Path) -> std::io::Result<Self> {
        let mut files = HashMap::new();
        load_bundle(&mut files, dir, "/")?;
        let console = dir.join(CONSOLE.trim_matches('/'));
        if console.join("index.html").is_file() {
            load_bundle(&mut files, &console, CONSOLE)?;
        }
        Ok(Self { files })
    }

    /// The answer for `path`, in the best encoding the request accepts; None when there
    /// is no such file.
    pub(crate) fn respond(&self, path: &str, request: &HeaderMap) -> Option<Response> {
        let asset = self.files.get(path).or_else(|| self.console_page(path))?;
        let accepted = AcceptEncoding::parse(request);
        let (body, encoding) = match (&asset.brotli, &asset.gzip) {
            (Some(br), _) if accepted.brotli => (br.clone(), Some("br")),
            (_, Some(gz)) if accepted.gzip => (gz.clone(), Some("gzip")),
            _ => (asset.identity.clone(), None),
        };
        let mut response = (StatusCode::OK, Body::from(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
        let cache = if asset.immutable { "public, max-age=31536000, immutable" } else { "no-cache" };
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        if let Some(encoding) = encoding {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
        }
        if !asset.immutable {
            headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
            headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        }
        Some(response)
    }
}

impl WebAssets {
    /// The console's page for `/admin` and any path under `/admin/` but its assets, when
    /// the console is built.
    fn console_page(&self, path: &str) -> Option<&Asset> {
        let under = path == CONSOLE.trim_end_matches('/')
            || (path.starts_with(CONSOLE) && !path.starts_with(&format!("{CONSOLE}assets/")));
        under.then(|| self.files.get(CONSOLE)).flatten()
    }
}

/// Reads one bundle's `dir/index.html` and `dir/assets/*` into `files`, served at
/// `base` (`/` or `/admin/`).
fn load_bundle(files: &mut HashMap<String, Asset>, dir: &Path, base: &str) -> std::io::Result<()> {
    let index = std::fs::read(dir.join("index.html"))?;
    files.insert(base.to_owned(), Asset::new("index.html", index, false)?);
    for entry in std::fs::read_dir(dir.join("assets"))? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let data = std::fs::read(entry.path())?;
        files.insert(format!("{base}assets/{name}"), Asset::new(&name, data, true)?);
    }
    Ok(())
}

/// Which of br and gzip a request accepts (`q=0` refuses).
#[derive(Debug, Default, PartialEq, Eq)]
struct AcceptEncoding {
    brotli: bool,
    gzip: bool,
}

impl AcceptEncoding {
    fn parse(headers: &HeaderMap) -> Self {
        let mut out = Self::default();
        for value in headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()) {
            for item in value.split(',') {
                let mut parts = item.split(';');
                let coding = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
                let refused = parts.any(|p| {
                    p.trim().strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()).is_some_and(|q| q <= 0.0)
                });
                match coding.as_str() {
                    "br" => out.brotli = !refused,
                    "gzip" => out.gzip = !refused,
                    "*" if !refused => {
                        out.brotli = true;
                        out.gzip = true;
                    }
                    _ => {}
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> AcceptEncoding {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, v.parse().unwrap());
        AcceptEncoding::parse(&h)
    }

    #[test]
    fn accept_encoding_is_read_with_q_values() {
        assert_eq!(accept("gzip, deflate, br, zstd"), AcceptEncoding { brotli: true, gzip: true });
        assert_eq!(accept("gzip;q=1.0, br;q=0"), AcceptEncoding { brotli: false, gzip: true });
        assert_eq!(accept("identity"), AcceptEncoding::default());
        assert_eq!(AcceptEncoding::parse(&HeaderMap::new()), AcceptEncoding::default());
    }

    #[test]
    fn files_are_served_compressed_with_cache_headers() {
        let dir = std::env::temp_dir().join(format!("bitmail-assets-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("assets")).unwrap();
        std::fs::write(dir.join("index.html"), "<!doctype html><p>".repeat(100)).unwrap();
        std::fs::write(dir.join("assets/app-0123.js"), "export function f() { return 1; }\n".repeat(100)).unwrap();
        let assets = WebAssets::load(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();

        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, "gzip, br".parse().unwrap());
        let page = assets.respond("/", &h).unwrap();
        assert_eq!(page.headers()[header::CACHE_CONTROL], "no-cache");
        assert_eq!(page.headers()[header::CONTENT_ENCODING], "br");
        assert!(page.headers().contains_key(header::CONTENT_SECURITY_POLICY));

        let js = assets.respond("/assets/app-0123.js", &HeaderMap::new()).unwrap();
        assert_eq!(js.headers()[header::CACHE_CONTROL], "public, max-age=31536000, immutable");
        assert_eq!(js.headers()[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert!(!js.headers().contains_key(header::CONTENT_ENCODING));
        assert!(assets.respond("/assets/missing.js", &h).is_none());
        assert!(assets.respond("/admin/", &h).is_none(), "no console built, no console page");
    }

    #[test]
    fn the_console_bundle_is_served_under_admin() {
        let dir = std::env::temp_dir().join(format!("bitmail-assets-admin-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("assets")).unwrap();
        std::fs::create_dir_all(dir.join("admin/assets")).unwrap();
        std::fs::write(dir.join("index.html"), "<!doctype html><p>webmail".repeat(100)).unwrap();
        std::fs::write(dir.join("assets/app-0123.js"), "export function f() { return 1; }\n".repeat(100)).unwrap();
        std::fs::write(dir.join("admin/index.html"), "<!doctype html><p>console".repeat(100)).unwrap();
        std::fs::write(dir.join("admin/assets/app-4567.wasm"), vec![7u8; 4096]).unwrap();
        let assets = WebAssets::load(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();

        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, "gzip, br".parse().unwrap());
        for path in ["/admin/", "/admin", "/admin/tenants/acme"] {
            let page = assets.respond(path, &h).unwrap_or_else(|| panic!("{path}"));
            assert_eq!(page.headers()[header::CACHE_CONTROL], "no-cache", "{path}");
            assert_eq!(page.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8", "{path}");
            assert_eq!(page.headers()[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY, "{path}");
            assert_eq!(page.headers()[header::CONTENT_ENCODING], "br", "{path}");
        }
        let console = body_of(assets.respond("/admin/tenants", &HeaderMap::new()).unwrap());
        assert!(console.starts_with("<!doctype html><p>console"), "{console}");
        let webmail = body_of(assets.respond("/", &HeaderMap::new()).unwrap());
        assert!(webmail.starts_with("<!doctype html><p>webmail"), "{webmail}");

        let wasm = assets.respond("/admin/assets/app-4567.wasm", &h).unwrap();
        assert_eq!(wasm.headers()[header::CACHE_CONTROL], "public, max-age=31536000, immutable");
        assert_eq!(wasm.headers()[header::CONTENT_TYPE], "application/wasm");
        assert_eq!(wasm.headers()[header::CONTENT_ENCODING], "br");
        assert!(!wasm.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        assert!(assets.respond("/admin/assets/missing.js", &h).is_none(), "a missing asset is no page");
        assert!(assets.respond("/assets/app-4567.wasm", &h).is_none(), "the bundles keep their own assets");
        assert!(assets.respond("/administrator", &h).is_none());
        assert!(assets.respond("/assets/app-0123.js", &h).is_some());
    }

    /// A response's whole body, as text.
    fn body_of(r: Response) -> String {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let bytes = rt.block_on(axum::body::to_bytes(r.into_body(), usize::MAX)).unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }
}
