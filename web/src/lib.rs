//! BitMail's webmail: a Leptos application rendered in the browser (CSR), compiled to
//! WebAssembly and served by `client-api` (built by `cargo xtask web`).
//!
//! - `api`: calls to client-api's JSON API, with the CSRF token;
//! - [`i18n`]: English and French texts, and the words for each API error;
//! - `state`: what the pages share: the context of signals (`state::Ctx`), the page
//!   shown and how to go to another, the signed-in user, the draft being written;
//! - `folder`, `message`, `compose`, `status`: the pages (`message` uses
//!   `folder`'s delivery badge; otherwise they import only `state`, `api` and `i18n`);
//! - `admin`: the admin console (tenants with their keys and usage, providers,
//!   suppressions, the audit log), its own pages under `admin/`; the shell shows it only
//!   to users whose role is `admin`;
//! - `app`: the shell that assembles the pages: the navigation bar, the log-in page,
//!   the keyboard shortcuts; nothing imports it.
//!
//! Everything here is for wasm32 only; natively this crate is empty.
//!
//! The release build uses the profile `wasm-release` (opt-level z, fat LTO, one codegen
//! unit, panic abort), then `wasm-bindgen --target web`, then `wasm-opt -Oz` from npm's
//! `binaryen`, never Debian's (too old).
#![cfg(target_arch = "wasm32")]

mod admin;
mod api;
mod app;
mod compose;
mod folder;
mod i18n;
mod message;
mod state;
mod status;

use wasm_bindgen::prelude::wasm_bindgen;

#[wasm_bindgen(start)]
pub fn start() {
    leptos::mount::mount_to_body(app::App);
}
