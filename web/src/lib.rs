//! BitMail's webmail: a Leptos application rendered in the browser (CSR), compiled to
//! WebAssembly and served by `client-api` (built by `cargo xtask web`).
//!
//! - `api`: calls to client-api's JSON API, with the CSRF token;
//! - [`i18n`]: English and French texts, and the words for each API error;
//! - `state`: what the pages share: the context of signals (`state::Ctx`), the page
//!   shown and how to go to another, the signed-in user, the draft being written;
//! - `route`: each page's URL, pushed into the history, read at start and on back and
//!   forward (the History API, no router);
//! - `live`: the live stream of the mailbox's changes (server-sent events), which reads
//!   the page shown again when it changes;
//! - `folder`, `message`, `compose`, `status`: the pages (`message` uses
//!   `folder`'s delivery badge; otherwise they import only `state`, `api` and `i18n`);
//! - `admin`: the admin console (tenants with their keys and usage, providers,
//!   suppressions, the audit log, mailing lists with their subscribers, campaigns and
//!   background tasks), its own pages under `admin/`, compiled only with the
//!   feature `console`; the shell shows it only to users whose role is `admin`;
//! - `app`: the shell that assembles the pages: the navigation bar (on a phone, one bar
//!   and a menu: the end of `style.css`), the log-in page, the keyboard shortcuts; nothing imports it.
//!
//! Two bundles, both built by `cargo xtask web`: the webmail (`target/web/`, served at
//! `/`), which every user downloads and which has nothing of the console but, for an
//! admin, a link `#admin-nav` to `/admin/`; and the same webmail with the console
//! (feature `console`, `target/web/admin/`, served at `/admin/`), which only admins
//! load, and which opens on the console when started under `/admin/`. The feature
//! gates only the `admin` module, `state`'s `Page::Admin`, the shell's arms for it and
//! its navigation entry, and the console's texts in `i18n`.
//!
//! Everything here is for wasm32 only; natively this crate is empty.
//!
//! The release build uses the profile `wasm-release` (opt-level z, fat LTO, one codegen
//! unit, panic abort), then `wasm-bindgen --target web`, then `wasm-opt -Oz --converge`
//! from npm's `binaryen`, never Debian's (too old).
#![cfg(target_arch = "wasm32")]

#[cfg(feature = "console")]
mod admin;
mod api;
mod app;
mod compose;
mod folder;
mod i18n;
mod live;
mod message;
mod route;
mod state;
mod status;
mod trust;

use wasm_bindgen::prelude::wasm_bindgen;

#[wasm_bindgen(start)]
pub fn start() {
    leptos::mount::mount_to_body(app::App);
}
