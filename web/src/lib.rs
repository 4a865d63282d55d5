//! BitMail's webmail: a Leptos application compiled to WebAssembly and served by
//! `client-api`. This crate is a placeholder until the webmail issue; until then
//! `client-api` serves a small static page at `/`.
