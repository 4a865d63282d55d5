//! Real URLs: each page has its own (`/inbox`, `/sent`, `?page=N` after a folder's first
//! page, `/mail/ID`, `/compose`, `/status`; the console `/admin/`), pushed into the
//! history when the user goes there, read at start (after sign-in) and on back and
//! forward, and left as it is then (`/` is the inbox; so is `/admin/` for a user who is
//! no admin). Loading and the sign-in page have none: they keep the URL shown, so a
//! sign-in lands where the address bar points. The History API through two imports of
//! its own, not `web-sys` nor a router (both weigh more in the bundle).

use wasm_bindgen::prelude::*;

#[cfg(feature = "console")]
use crate::state::Admin;
use crate::state::Page;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = history, js_name = pushState)]
    fn push_state(state: &JsValue, unused: &str, url: &str);
    #[wasm_bindgen(js_namespace = history, js_name = replaceState)]
    fn replace_state(state: &JsValue, unused: &str, url: &str);
}

/// The path and query shown in the address bar.
fn here() -> String {
    let location = web_sys::window().map(|w| w.location());
    let part = |f: fn(&web_sys::Location) -> Result<String, JsValue>| {
        location.as_ref().and_then(|l| f(l).ok()).unwrap_or_default()
    };
    part(web_sys::Location::pathname) + &part(web_sys::Location::search)
}

/// A page's URL; None for loading and the sign-in page.
fn url(page: &Page) -> Option<String> {
    Some(match page {
        Page::Folder(f, 0) => format!("/{f}"),
        Page::Folder(f, n) => format!("/{f}?page={}", n + 1),
        Page::Message(id) => format!("/mail/{id}"),
        Page::Compose => "/compose".into(),
        Page::Status => "/status".into(),
        #[cfg(feature = "console")]
        Page::Admin(_) => "/admin/".into(),
        Page::Loading | Page::Login => return None,
    })
}

/// The page the address bar names: `/` and any other path, the inbox; under `/admin`,
/// the console for an admin in its bundle.
pub fn page_here(admin: bool) -> Page {
    let here = here();
    let (path, query) = here.split_once('?').unwrap_or((&here, ""));
    // `?page=N` counts from 1; the folder's pages from 0.
    let n = query.strip_prefix("page=").and_then(|n| n.parse::<usize>().ok()).map_or(0, |n| n.saturating_sub(1));
    let _ = admin; // read only in the console's bundle
    match path {
        "/sent" => Page::Folder("sent", n),
        "/inbox" => Page::Folder("inbox", n),
        "/compose" => Page::Compose,
        "/status" => Page::Status,
        #[cfg(feature = "console")]
        p if admin && (p == "/admin" || p.starts_with("/admin/")) => Page::Admin(Admin::Tenants),
        p => match p.strip_prefix("/mail/") {
            Some(id) if !id.is_empty() && !id.contains('/') => Page::Message(id.to_owned()),
            _ => Page::Folder("inbox", 0),
        },
    }
}

/// Shows `page`'s URL: a new history entry (`push`), or in place of the current one.
/// Nothing when it is the URL shown already, or the page has none.
pub fn show(page: &Page, push: bool) {
    if let Some(url) = url(page)
        && url != here()
    {
        set(&url, push);
    }
}

/// Puts `url` in the address bar (a new entry with `push`).
fn set(url: &str, push: bool) {
    if push { push_state(&JsValue::NULL, "", url) } else { replace_state(&JsValue::NULL, "", url) }
}

/// After signing out: `/`, so that the next to sign in here starts at their inbox, not
/// at the page (a message) of the one before; but `/admin/` stays, the console's
/// bundle's own address.
pub fn signed_out() {
    if !here().starts_with("/admin") {
        set("/", false);
    }
}
