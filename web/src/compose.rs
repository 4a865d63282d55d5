//! Writing: recipients separated by `;` or `,`, a Markdown body with a preview rendered
//! by the server (exactly the HTML that will be sent), attachments, Ctrl+Enter to send.

use leptos::prelude::*;
use leptos::task::spawn_local;
use serde_json::{Value, json};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::api::base64;
use crate::state::{Ctx, Draft, Page, Picked};

/// Sends the draft (the Send button and Ctrl+Enter).
pub fn send_draft(ctx: Ctx) {
    if ctx.busy.get_untracked() {
        return;
    }
    let d = ctx.draft.get_untracked();
    let files: Vec<Value> = d
        .files
        .iter()
        .map(|f| json!({ "filename": f.filename, "content_type": f.content_type, "content_base64": f.content_base64 }))
        .collect();
    let body = json!({ "to": d.to, "cc": d.cc, "bcc": d.bcc, "subject": d.subject, "markdown": d.body, "attachments": files, "in_reply_to": d.in_reply_to });
    ctx.busy.set(true);
    spawn_local(async move {
        match ctx.api("POST", "/api/messages", Some(&body)).await {
            Ok(_) => {
                ctx.draft.set(Draft::default());
                ctx.redirect(Page::Folder("sent", 0));
                ctx.notice("sent_ok");
            }
            Err(e) => ctx.error(&e),
        }
        ctx.busy.set(false);
    });
}

async fn read_file(file: web_sys::File) -> Option<Picked> {
    let buffer = JsFuture::from(file.array_buffer()).await.ok()?;
    let bytes = js_sys::Uint8Array::new(&buffer).to_vec();
    Some(Picked {
        filename: file.name(),
        content_type: file.type_(),
        content_base64: base64(&bytes),
        size: bytes.len(),
    })
}

#[component]
pub fn Compose() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let preview = RwSignal::new(None::<String>);
    let field = move |key: &'static str, id: &'static str, get: fn(&Draft) -> String, set: fn(&mut Draft, String)| {
        view! {
            <label for=id>{ctx.text(key)}</label>
            <input id=id prop:value=move || ctx.draft.with(get)
                on:input=move |ev| { let v = event_target_value(&ev); ctx.draft.update(|d| set(d, v)) }/>
        }
    };
    let show_preview = move |_| {
        let markdown = ctx.draft.with_untracked(|d| d.body.clone());
        spawn_local(async move {
            match ctx.api("POST", "/api/preview", Some(&json!({ "markdown": markdown }))).await {
                Ok(v) => preview.set(v["html"].as_str().map(str::to_owned)),
                Err(e) => ctx.error(&e),
            }
        });
    };
    let pick = move |ev: leptos::ev::Event| {
        let Some(input) = ev.target().and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok()) else { return };
        let Some(list) = input.files() else { return };
        let files: Vec<web_sys::File> = (0..list.length()).filter_map(|i| list.get(i)).collect();
        spawn_local(async move {
            for f in files {
                if let Some(p) = read_file(f).await {
                    ctx.draft.update(|d| d.files.push(p));
                }
            }
        });
    };
    view! {
        <form class="card" id="compose" on:submit=move |ev| { ev.prevent_default(); send_draft(ctx) }>
            {field("to", "to", |d| d.to.clone(), |d, v| d.to = v)}
            <p class="hint">{ctx.text("separate")}</p>
            {field("cc", "cc", |d| d.cc.clone(), |d, v| d.cc = v)}
            {field("bcc", "bcc", |d| d.bcc.clone(), |d, v| d.bcc = v)}
            {field("subject", "subject", |d| d.subject.clone(), |d, v| d.subject = v)}
            <label for="body">{ctx.text("body")}</label>
            <textarea id="body" prop:value=move || ctx.draft.with(|d| d.body.clone())
                on:input=move |ev| { let v = event_target_value(&ev); ctx.draft.update(|d| d.body = v); preview.set(None) }></textarea>
            <label for="files">{ctx.text("attachments")}</label>
            <input id="files" type="file" multiple on:change=pick/>
            <ul id="picked">
                {move || ctx.draft.with(|d| d.files.iter().enumerate().map(|(i, f)| {
                    let label = format!("{} ({} B)", f.filename, f.size);
                    view! { <li>{label} " "
                        <button type="button" class="plain" on:click=move |_| ctx.draft.update(|d| { d.files.remove(i); })>"×"</button></li> }
                }).collect_view())}
            </ul>
            <div class="row-actions">
                <button id="send" disabled=move || ctx.busy.get()>{move || if ctx.busy.get() { ctx.t("sending") } else { ctx.t("send") }}</button>
                <button id="show-preview" type="button" class="plain" on:click=show_preview>{ctx.text("preview")}</button>
            </div>
            {move || preview.get().map(|h| view! { <div class="preview" id="preview" inner_html=h></div> })}
            <p class="hint">{ctx.text("shortcuts")}</p>
        </form>
    }
}
