//! A tenant's API keys: the list (prefix, scopes, when made, last used, expiry,
//! revocation), creating one (the secret shown once, with a copy button), and revoking
//! one after a confirmation.

use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use serde_json::{Value, json};

use super::ui::{cell, copy, field, head, input, joined, run, s, seg, when};
use crate::state::Ctx;

const SCOPES: [&str; 4] = ["send", "read", "admin", "service"];

#[component]
pub fn Keys(tenant: String) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let keys = RwSignal::new(None::<Vec<Value>>);
    let reload = RwSignal::new(0u32);
    let base = format!("/api/admin/tenants/{}/keys", seg(&tenant));
    let list_path = base.clone();
    Effect::new(move |_| {
        reload.track();
        run(ctx, "GET", list_path.clone(), None, move |v| {
            keys.set(Some(v["keys"].as_array().cloned().unwrap_or_default()))
        });
    });
    let name = RwSignal::new(String::new());
    let days = RwSignal::new(String::new());
    let scopes = RwSignal::new(vec!["send"]);
    let secret = RwSignal::new(None::<String>);
    let confirming = RwSignal::new(None::<String>);
    let create = move |ev: SubmitEvent| {
        ev.prevent_default();
        let mut body = json!({ "name": name.get_untracked(), "scopes": scopes.get_untracked() });
        let days = days.get_untracked();
        if !days.trim().is_empty() {
            let Ok(n) = days.trim().parse::<u32>() else {
                ctx.flash.set(Some((true, format!("{} {}", ctx.tr("e_bad_request"), ctx.tr("expires_days")))));
                return;
            };
            body["expires_ms"] = json!(js_sys::Date::now() + f64::from(n) * 86_400_000.0);
        }
        run(ctx, "POST", base.clone(), Some(body), move |v| {
            secret.set(Some(s(&v, "secret")));
            name.set(String::new());
            ctx.notice("key_created");
            reload.update(|n| *n += 1);
        });
    };
    let revoke = move |id: String| {
        run(ctx, "POST", format!("/api/admin/keys/{}/revoke", seg(&id)), None, move |_| {
            confirming.set(None);
            ctx.notice("key_revoked");
            reload.update(|n| *n += 1);
        });
    };
    let row = move |k: Value| {
        let id = s(&k, "id");
        let revoked = k["revoked_ms"].as_f64().unwrap_or(0.0) > 0.0;
        let (ask, yes, mine) = (id.clone(), id.clone(), id.clone());
        let actions = move || {
            if revoked {
                view! { <span class="badge b-failed">{ctx.tr("revoked")}</span> }.into_any()
            } else if confirming.get().as_deref() == Some(mine.as_str()) {
                let yes = yes.clone();
                view! {
                    <span role="group">{ctx.tr("revoke_sure")} " "
                        <button type="button" class="key-revoke-confirm" on:click=move |_| revoke(yes.clone())>{ctx.tr("revoke")}</button> " "
                        <button type="button" class="plain key-revoke-cancel" on:click=move |_| confirming.set(None)>{ctx.tr("cancel")}</button>
                    </span>
                }
                .into_any()
            } else {
                let ask = ask.clone();
                view! { <button type="button" class="plain key-revoke" on:click=move |_| confirming.set(Some(ask.clone()))>{ctx.tr("revoke")}</button> }
                    .into_any()
            }
        };
        view! {
            <tr data-id=id class:revoked=revoked>
                {cell(ctx, "key_name", s(&k, "name"))}
                {cell(ctx, "prefix", view! { <code>{s(&k, "prefix")}</code> })}
                {cell(ctx, "scopes", joined(&k["scopes"], ", "))}
                {cell(ctx, "created", when(ctx, &k["created_ms"]))}
                {cell(ctx, "last_used", when(ctx, &k["last_used_ms"]))}
                {cell(ctx, "expires", when(ctx, &k["expires_ms"]))}
                {cell(ctx, "revoked", when(ctx, &k["revoked_ms"]))}
                {cell(ctx, "actions", actions)}
            </tr>
        }
    };
    let scope_boxes = SCOPES
        .map(|scope| {
            let id = format!("key-scope-{scope}");
            let for_id = id.clone();
            view! {
                <label class="check" for=for_id>
                    <input type="checkbox" id=id prop:checked=move || scopes.with(|l| l.contains(&scope))
                        on:change=move |ev| {
                            let on = event_target_checked(&ev);
                            scopes.update(|l| { l.retain(|s| *s != scope); if on { l.push(scope) } });
                        }/>
                    " " {scope}
                </label>
            }
        })
        .collect_view();
    view! {
        <div id="admin-keys">
            <h3>{ctx.tr("keys")}</h3>
            {move || secret.get().map(|value| {
                let copied = value.clone();
                view! {
                    <div class="flash ok secret" id="key-secret" role="status">
                        <strong>{ctx.tr("key_once")}</strong>
                        <code id="key-secret-value">{value}</code>
                        <div class="row-actions">
                            <button type="button" id="key-copy" on:click=move |_| copy(ctx, copied.clone())>{ctx.tr("copy")}</button>
                            <button type="button" class="plain" id="key-secret-done" on:click=move |_| secret.set(None)>{ctx.tr("done")}</button>
                        </div>
                    </div>
                }
            })}
            {move || match keys.get() {
                None => view! { <p class="hint">{ctx.tr("loading")}</p> }.into_any(),
                Some(l) if l.is_empty() => view! { <p class="hint">{ctx.tr("none_yet")}</p> }.into_any(),
                Some(l) => view! {
                    <table class="stack" id="key-list">
                        {head(ctx, &["key_name", "prefix", "scopes", "created", "last_used", "expires", "revoked", ""])}
                        <tbody>{l.into_iter().map(row).collect_view()}</tbody>
                    </table>
                }.into_any(),
            }}
            <form id="key-new" on:submit=create>
                <h3>{ctx.tr("key_new")}</h3>
                {field(ctx, "key-new-name", "key_name", name)}
                <fieldset><legend>{ctx.tr("scopes")}</legend>{scope_boxes}</fieldset>
                {input(ctx, "key-new-days", "expires_days", "number", days)}
                <div class="row-actions"><button id="key-create">{ctx.tr("create")}</button></div>
            </form>
        </div>
    }
}
