//! One message: opened, it is marked read; the HTML comes sanitized from the server and
//! remote images stay blocked until the reader asks.

use leptos::prelude::*;
use leptos::task::spawn_local;
use serde_json::{Value, json};

use crate::folder::badge;
use crate::state::{Ctx, Draft, Page};

/// Deletes a message and goes back to its folder (the page of it shown, or the first),
/// in place of the message in the history.
pub fn delete_message(ctx: Ctx, id: String) {
    let folder = match ctx.page.get_untracked() {
        Page::Folder(f, n) => Page::Folder(f, n),
        _ => Page::Folder(
            ctx.current
                .with_untracked(|m| if m.as_ref().is_some_and(|m| m["folder"] == "sent") { "sent" } else { "inbox" }),
            0,
        ),
    };
    spawn_local(async move {
        match ctx.api("DELETE", &format!("/api/mail/{id}"), None).await {
            Ok(_) => {
                ctx.current.set(None);
                ctx.redirect(folder);
                ctx.refresh.update(|n| *n += 1);
                ctx.notice("deleted");
            }
            Err(e) => ctx.error(&e),
        }
    });
}

fn list(v: &Value) -> String {
    v.as_array().map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")).unwrap_or_default()
}

/// The other messages of its conversation, newest first; collapsible.
fn thread(ctx: Ctx, list: Vec<Value>) -> impl IntoView + use<> {
    let rows = list
        .into_iter()
        .map(|c| {
            let id = c["id"].as_str().unwrap_or_default().to_owned();
            let line =
                format!("{} · {}", c["subject"].as_str().unwrap_or_default(), c["from"].as_str().unwrap_or_default());
            view! { <li on:click=ctx.to(Page::Message(id))>{line}</li> }
        })
        .collect_view();
    view! {
        <details id="conversation" open>
            <summary>{ctx.text("conversation")}</summary>
            <ul class="list">{rows}</ul>
        </details>
    }
}

#[component]
pub fn MessageView(id: String) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let images = RwSignal::new(false);
    let load_id = id.clone();
    // Opening marks it read; reading it again (a live update, `live`) does not.
    Effect::new(move |ran: Option<()>| {
        ctx.refresh.track();
        let first = ran.is_none();
        let with_images = images.get();
        let id = load_id.clone();
        spawn_local(async move {
            let path = format!("/api/mail/{id}{}", if with_images { "?images=true" } else { "" });
            match ctx.api("GET", &path, None).await {
                Ok(m) => {
                    let unread = first && !m["read"].as_bool().unwrap_or(true);
                    ctx.current.set(Some(m));
                    if unread {
                        set_read(ctx, id, true).await;
                    }
                }
                // Read again after it was deleted (here or elsewhere): nothing to say.
                Err(e) if first => ctx.error(&e),
                Err(_) => {}
            }
        });
    });
    on_cleanup(move || ctx.current.set(None));

    let view_of = move |m: Value| {
        let id = m["id"].as_str().unwrap_or_default().to_owned();
        let sent = m["folder"] == "sent";
        let html = m["html"].as_str().map(str::to_owned);
        let text = m["text"].as_str().unwrap_or_default().to_owned();
        let read = m["read"].as_bool().unwrap_or(true);
        let blocked = m["remote_images_blocked"].as_bool().unwrap_or(false);
        let attachments = m["attachments"].as_array().cloned().unwrap_or_default();
        let (toggle_id, del_id) = (id.clone(), id.clone());
        let reply = m.clone();
        let cc = list(&m["cc"]);
        let to = list(&m["to"]);
        let date_ms = m["date_ms"].as_f64().unwrap_or(0.0);
        let status = m["status"].clone();
        let origin = m["origin"].clone();
        let subject = m["subject"].as_str().unwrap_or_default().to_owned();
        let from = m["from"].as_str().unwrap_or_default().to_owned();
        let conversation = m["conversation"].as_array().cloned().unwrap_or_default();
        view! {
            <article class="card" id="message">
                <h2 id="subject">{subject}</h2>
                <div class="meta">{ctx.text("from")} ": " <span id="from">{from}</span></div>
                <div class="meta">{ctx.text("to")} ": " {to}</div>
                {(!cc.is_empty()).then(|| view! { <div class="meta">{ctx.text("cc")} ": " {cc.clone()}</div> })}
                <div class="meta">{ctx.date(date_ms)}</div>
                {sent.then(|| view! {
                    <div class="meta">{ctx.text("delivery")} ": " {badge(ctx, &status)}</div>
                    {crate::trust::delivery_details(ctx, &status)}
                })}
                {(!sent).then(|| crate::trust::origin(ctx, &origin))}
                {blocked.then(|| view! {
                    <p class="hint">{ctx.text("images_blocked")} " "
                        <button class="plain" on:click=move |_| images.set(true)>{ctx.text("show_images")}</button></p>
                })}
                {match html {
                    Some(h) => view! { <div class="body" id="body" inner_html=h></div> }.into_any(),
                    None => view! { <pre class="body text" id="body">{text}</pre> }.into_any(),
                }}
                {(!attachments.is_empty()).then(|| view! {
                    <h3>{ctx.text("attachments")}</h3>
                    <ul id="attachments">{attachments.iter().map(|a| {
                        let href = format!("/api/mail/{id}/attachments/{}", a["index"]);
                        let label = format!("{} ({} B)", a["filename"].as_str().unwrap_or_default(), a["size"]);
                        view! { <li><a href=href download>{label}</a></li> }
                    }).collect_view()}</ul>
                })}
                <div class="row-actions">
                    <button class="plain" on:click=ctx.to(Page::Folder(if sent { "sent" } else { "inbox" }, 0))>{ctx.text("back")}</button>
                    <button id="reply" on:click=move |_| { ctx.draft.set(Draft::reply_to(&reply)); ctx.go(Page::Compose) }>{ctx.text("reply")}</button>
                    {(!sent).then(|| view! {
                        <button id="toggle-read" class="plain" on:click=move |_| {
                            let id = toggle_id.clone();
                            spawn_local(async move { set_read(ctx, id, !read).await })
                        }>{ctx.text(if read { "mark_unread" } else { "mark_read" })}</button>
                    })}
                    <button id="delete" class="plain" on:click=move |_| delete_message(ctx, del_id.clone())>{ctx.text("delete")}</button>
                </div>
                {(!conversation.is_empty()).then(|| thread(ctx, conversation))}
            </article>
        }
    };
    view! {
        {move || match ctx.current.get() {
            Some(m) => view_of(m).into_any(),
            None => view! { <p class="hint">{ctx.t("loading")}</p> }.into_any(),
        }}
    }
}

async fn set_read(ctx: Ctx, id: String, read: bool) {
    match ctx.api("PATCH", &format!("/api/mail/{id}"), Some(&json!({ "read": read }))).await {
        Ok(_) => {
            ctx.current.update(|m| {
                if let Some(m) = m {
                    m["read"] = json!(read);
                }
            });
            ctx.unread.update(|n| *n = if read { n.saturating_sub(1) } else { *n + 1 });
        }
        Err(e) => ctx.error(&e),
    }
}
