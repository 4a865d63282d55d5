//! Live updates: while signed in, one `EventSource` on `/api/events` (client-api's
//! `live`). A change to the folder shown reads it again; new mail elsewhere updates the
//! unread count; a sent message's new state reads the Sent folder, or that message,
//! again. A `ready` after a reconnect, and a `resync`, read the page shown again (what
//! happened meanwhile was not sent). The browser reconnects by itself, a second after
//! the stream ends. `<html data-live=N>` counts the streams opened (for the tests).

use leptos::prelude::*;
use leptos::task::spawn_local;
use serde_json::Value;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{EventSource, MessageEvent};

use crate::state::{Ctx, Page};

/// Opens the stream on sign-in and closes it on sign-out.
pub fn follow(ctx: Ctx) {
    let source = StoredValue::new_local(None::<EventSource>);
    Effect::new(move |_| {
        let signed_in = ctx.me.with(Option::is_some);
        source.update_value(|s| {
            if let Some(old) = s.take() {
                old.close();
            }
            if signed_in {
                *s = open(ctx);
            }
        });
    });
}

fn open(ctx: Ctx) -> Option<EventSource> {
    let source = EventSource::new("/api/events").ok()?;
    let mut opened = 0u32;
    let on = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
        let data: Value = e.data().as_string().and_then(|d| serde_json::from_str(&d).ok()).unwrap_or_default();
        let page = ctx.page.get_untracked();
        let shown = |folder: &str| matches!(&page, Page::Folder(f, _) if *f == folder);
        match e.type_().as_str() {
            "ready" => {
                opened += 1;
                if let Some(html) = document().document_element() {
                    let _ = html.set_attribute("data-live", &opened.to_string());
                }
                if opened > 1 {
                    reload(ctx);
                }
            }
            "mail" => {
                let folder = data["folder"].as_str().unwrap_or_default();
                if shown(folder) {
                    reload(ctx);
                } else if folder == "inbox" {
                    unread(ctx);
                }
            }
            "status" => {
                let sent = ctx.current.with_untracked(|m| m.as_ref().is_some_and(|m| m["folder"] == "sent"));
                if shown("sent") || (matches!(page, Page::Message(_)) && sent) {
                    reload(ctx);
                }
            }
            _ => reload(ctx),
        }
    });
    for name in ["ready", "resync", "mail", "status"] {
        source.add_event_listener_with_callback(name, on.as_ref().unchecked_ref()).ok()?;
    }
    // Lives as long as the page; one per sign-in.
    on.forget();
    Some(source)
}

/// Reads the page shown again, and the unread count.
fn reload(ctx: Ctx) {
    ctx.refresh.update(|n| *n += 1);
    if !matches!(ctx.page.get_untracked(), Page::Folder("inbox", _)) {
        unread(ctx);
    }
}

fn unread(ctx: Ctx) {
    spawn_local(async move {
        if let Ok(v) = ctx.api("GET", "/api/folders/inbox?per_page=1", None).await {
            ctx.unread.set(v["unread"].as_u64().unwrap_or(0) as usize);
        }
    });
}
