//! The shell: assembles the pages, with the navigation bar, the log-in page and the
//! keyboard shortcuts.

use leptos::ev;
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde_json::{Value, json};
use wasm_bindgen::JsCast;

#[cfg(feature = "console")]
use crate::admin::AdminView;
use crate::api::call;
use crate::compose::{Compose, send_draft};
use crate::folder::FolderView;
use crate::i18n::Lang;
use crate::message::{MessageView, delete_message};
#[cfg(feature = "console")]
use crate::state::Admin;
use crate::state::{Ctx, Draft, Me, Page};
use crate::status::StatusView;

fn me_from(v: &Value) -> Me {
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    Me { name: s("name"), address: s("address"), csrf: s("csrf_token"), tenant: s("tenant"), role: s("role") }
}

/// The page to show once signed in: the one the address bar names (`route::page_here`).
fn home(ctx: Ctx) -> Page {
    crate::route::page_here(ctx.me.with_untracked(|m| m.as_ref().is_some_and(Me::is_admin)))
}

/// The admin's entry to the console: a page of this bundle when it has the console
/// (feature `console`), else a link to `/admin/`, the bundle that has it.
#[cfg(feature = "console")]
fn admin_nav(ctx: Ctx) -> impl IntoView {
    view! {
        <button id="admin-nav" class="more" class:on=move || matches!(ctx.page.get(), Page::Admin(_))
            on:click=ctx.to(Page::Admin(Admin::Tenants))>{ctx.text("admin")}</button>
    }
}

#[cfg(not(feature = "console"))]
fn admin_nav(ctx: Ctx) -> impl IntoView {
    view! { <a id="admin-nav" class="more" href="/admin/">{ctx.text("admin")}</a> }
}

#[component]
pub fn App() -> impl IntoView {
    let lang = Lang::detect();
    lang.remember();
    let ctx = Ctx {
        me: RwSignal::new(None),
        lang: RwSignal::new(lang),
        page: RwSignal::new(Page::Loading),
        flash: RwSignal::new(None),
        unread: RwSignal::new(0),
        list: RwSignal::new(vec![]),
        selected: RwSignal::new(0),
        current: RwSignal::new(None),
        draft: RwSignal::new(Draft::default()),
        busy: RwSignal::new(false),
        refresh: RwSignal::new(0),
        menu: RwSignal::new(false),
    };
    provide_context(ctx);
    crate::live::follow(ctx);
    spawn_local(async move {
        match call("GET", "/api/session", None, "").await {
            Ok(v) => {
                ctx.me.set(Some(me_from(&v)));
                ctx.show(home(ctx));
            }
            Err(_) => ctx.page.set(Page::Login),
        }
    });
    let keys = window_event_listener(ev::keydown, move |e| shortcut(ctx, &e));
    // Back and forward: the page of the URL now shown (signed out, the sign-in stays).
    let moves = window_event_listener_untyped("popstate", move |_| {
        if ctx.me.with_untracked(Option::is_some) {
            ctx.show(home(ctx));
        }
    });
    on_cleanup(move || {
        keys.remove();
        moves.remove();
    });

    view! {
        {move || ctx.me.with(Option::is_some).then(|| view! { <Nav/> })}
        <main>
            {move || ctx.flash.get().map(|(err, text)| view! {
                <div class="flash" class:err=err class:ok=!err role="alert">{text}</div>
            })}
            {move || match ctx.page.get() {
                Page::Loading => view! { <p class="hint">{ctx.t("loading")}</p> }.into_any(),
                Page::Login => view! { <Login/> }.into_any(),
                Page::Folder(f, n) => view! { <FolderView folder=f page=n/> }.into_any(),
                Page::Message(id) => view! { <MessageView id=id/> }.into_any(),
                Page::Compose => view! { <Compose/> }.into_any(),
                Page::Status => view! { <StatusView/> }.into_any(),
                // Nothing of the console for anyone else (its API answers them 403 anyway).
                // Rendered again in another language: its texts are not reactive.
                #[cfg(feature = "console")]
                Page::Admin(p) if ctx.is_admin() => {
                    ctx.lang.track();
                    view! { <AdminView page=p/> }.into_any()
                }
                #[cfg(feature = "console")]
                Page::Admin(_) => ().into_any(),
            }}
        </main>
    }
}

/// The navigation: on a wide screen every entry in one bar; on a phone (`style.css`, its end) the
/// inbox, compose and `#menu-btn`, which opens the rest (the entries of class `more`).
#[component]
fn Nav() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let menu = ctx.menu;
    let on = move |f: fn(&Page) -> bool| move || ctx.page.with(f);
    let tab = move |page: Page, key: &'static str, f: fn(&Page) -> bool| {
        view! { <button class="more" class:on=on(f) on:click=ctx.to(page)>{ctx.text(key)}</button> }
    };
    let sign_out = move |_| {
        spawn_local(async move {
            let _ = ctx.api("DELETE", "/api/session", None).await;
            ctx.me.set(None);
            crate::route::signed_out();
            ctx.go(Page::Login);
        })
    };
    let switch = move |ev| {
        let l = Lang::from_code(&event_target_value(&ev));
        l.remember();
        ctx.lang.set(l);
    };
    view! {
        <header class:open=move || menu.get()>
            <h1>"BitMail"</h1>
            <nav>
                <button class:on=on(|p| matches!(p, Page::Folder("inbox", _))) on:click=ctx.to(Page::Folder("inbox", 0))>
                    {ctx.text("inbox")}
                    {move || (ctx.unread.get() > 0).then(|| format!(" ({})", ctx.unread.get()))}
                </button>
                {tab(Page::Folder("sent", 0), "sent", |p| matches!(p, Page::Folder("sent", _)))}
                <button class:on=on(|p| p == &Page::Compose) on:click=move |_| {
                    ctx.draft.set(Draft::default());
                    ctx.go(Page::Compose)
                }>{ctx.text("compose")}</button>
                {tab(Page::Status, "status", |p| p == &Page::Status)}
                {move || ctx.is_admin().then(|| admin_nav(ctx))}
                <button id="menu-btn" class="menu" aria-label=ctx.text("menu")
                    aria-expanded=move || if menu.get() { "true" } else { "false" }
                    on:click=move |_| menu.update(|m| *m = !*m)>"≡"</button>
            </nav>
            <select class="more" aria-label=ctx.text("language") on:change=switch prop:value=move || ctx.lang.get().code()>
                <option value="en">"English"</option>
                <option value="fr">"Français"</option>
            </select>
            <span class="meta more" style="color:#dfe6f0">{move || ctx.me.get().map(|m| m.address)}</span>
            <button class="more" on:click=sign_out>{ctx.text("sign_out")}</button>
        </header>
    }
}

#[component]
fn Login() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let name = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let submit = move |ev: ev::SubmitEvent| {
        ev.prevent_default();
        ctx.busy.set(true);
        spawn_local(async move {
            let body = json!({ "name": name.get_untracked(), "password": password.get_untracked() });
            match call("POST", "/api/session", Some(&body), "").await {
                Ok(v) => {
                    ctx.me.set(Some(me_from(&v)));
                    ctx.show(home(ctx));
                }
                Err(e) => ctx.error(&e),
            }
            ctx.busy.set(false);
        });
    };
    view! {
        <form class="card" id="login" on:submit=submit style="max-width:24rem;margin:2rem auto">
            <h2>"BitMail"</h2>
            <label for="name">{ctx.text("name")}</label>
            <input id="name" autocomplete="username" required
                on:input=move |ev| name.set(event_target_value(&ev))/>
            <label for="password">{ctx.text("password")}</label>
            <input id="password" type="password" autocomplete="current-password" required
                on:input=move |ev| password.set(event_target_value(&ev))/>
            <div class="row-actions">
                <button id="sign-in" disabled=move || ctx.busy.get()>{ctx.text("sign_in")}</button>
            </div>
            <p class="hint">{ctx.text("first_login")}</p>
        </form>
    }
}

fn in_field(e: &web_sys::KeyboardEvent) -> bool {
    e.target()
        .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
        .is_some_and(|el| matches!(el.tag_name().as_str(), "INPUT" | "TEXTAREA" | "SELECT"))
}

/// j/k move, Enter opens, c composes, r replies, # deletes, Ctrl+Enter sends.
fn shortcut(ctx: Ctx, e: &web_sys::KeyboardEvent) {
    if ctx.me.with_untracked(Option::is_none) {
        return;
    }
    let page = ctx.page.get_untracked();
    if e.key() == "Enter" && (e.ctrl_key() || e.meta_key()) {
        if page == Page::Compose {
            e.prevent_default();
            send_draft(ctx);
        }
        return;
    }
    if in_field(e) || e.ctrl_key() || e.alt_key() || e.meta_key() {
        return;
    }
    let selected_id = || ctx.list.with_untracked(|l| l.get(ctx.selected.get_untracked()).cloned());
    match (e.key().as_str(), &page) {
        ("j", Page::Folder(..)) => {
            let n = ctx.list.with_untracked(Vec::len);
            ctx.selected.update(|s| *s = (*s + 1).min(n.saturating_sub(1)));
        }
        ("k", Page::Folder(..)) => ctx.selected.update(|s| *s = s.saturating_sub(1)),
        ("Enter", Page::Folder(..)) => {
            if let Some(id) = selected_id() {
                ctx.go(Page::Message(id));
            }
        }
        ("c", _) => {
            ctx.draft.set(Draft::default());
            ctx.go(Page::Compose);
        }
        ("r", Page::Message(_)) => {
            if let Some(m) = ctx.current.get_untracked() {
                ctx.draft.set(Draft::reply_to(&m));
                ctx.go(Page::Compose);
            }
        }
        ("#", Page::Message(id)) => delete_message(ctx, id.clone()),
        ("#", Page::Folder(..)) => {
            if let Some(id) = selected_id() {
                delete_message(ctx, id);
            }
        }
        _ => return,
    }
    e.prevent_default();
}
