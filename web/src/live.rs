//! Live updates: while signed in, one `EventSource` on `/api/events` (client-api's
//! `live`). A change (new mail, a read mark, a delete, a sent message's new state) reads
//! the page shown again and the unread count; so does a `ready` after a reconnect, and
//! a `resync` (what happened meanwhile was not sent). The browser reconnects by itself,
//! a second after the stream ends.

use leptos::prelude::*;
use leptos::task::spawn_local;
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
    let mut first = true;
    // Any change reads the page shown again (a folder or a message: the others read
    // nothing on `refresh`) and the unread count: events are few, the reads small.
    let on = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
        if e.type_() == "ready" && std::mem::take(&mut first) {
            return;
        }
        reload(ctx);
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
