//! What the pages share: the page shown, the signed-in user, and the context ([`Ctx`]:
//! all signals) with its helpers for the API, notices and navigation (each page at its
//! URL, see `route`); also the draft being written, which the shell's shortcuts and the
//! pages fill or reset.

use leptos::prelude::*;
use serde_json::Value;

use wasm_bindgen::JsValue;

use crate::api::{ApiErr, send};
use crate::i18n::{Lang, error_text, t};

#[derive(Debug, Clone, PartialEq)]
pub enum Page {
    Loading,
    Login,
    /// A folder and its page (from 0).
    Folder(&'static str, usize),
    Message(String),
    Compose,
    Status,
    /// The admin console (feature `console`); the shell shows it only to an admin.
    #[cfg(feature = "console")]
    Admin(Admin),
}

/// The pages of the admin console.
#[cfg(feature = "console")]
#[derive(Debug, Clone, PartialEq)]
pub enum Admin {
    Tenants,
    /// One tenant: its settings, keys and usage.
    Tenant(String),
    Providers,
    Suppressions,
    Audit,
    /// A tenant's mailing lists (empty: the admin's own tenant).
    Lists(String),
    /// One list: (tenant, list id).
    List(String, String),
}

/// The signed-in user.
#[derive(Debug, Clone, PartialEq)]
pub struct Me {
    pub name: String,
    pub address: String,
    pub csrf: String,
    pub tenant: String,
    /// `admin` or `user`.
    pub role: String,
}

impl Me {
    pub fn is_admin(&self) -> bool {
        self.role == "admin"
    }
}

/// Everything the pages share; all signals, so it is `Copy`.
#[derive(Clone, Copy)]
pub struct Ctx {
    pub me: RwSignal<Option<Me>>,
    pub lang: RwSignal<Lang>,
    pub page: RwSignal<Page>,
    /// A notice: (is an error, text).
    pub flash: RwSignal<Option<(bool, String)>>,
    pub unread: RwSignal<usize>,
    /// The list shown (ids, in order) and the selected row, for j/k/Enter/#.
    pub list: RwSignal<Vec<String>>,
    pub selected: RwSignal<usize>,
    /// The message shown, for r and #.
    pub current: RwSignal<Option<Value>>,
    pub draft: RwSignal<Draft>,
    pub busy: RwSignal<bool>,
    /// Bumped to reload the list shown.
    pub refresh: RwSignal<u32>,
    /// Whether the navigation's menu is open (on a phone); going anywhere closes it.
    pub menu: RwSignal<bool>,
}

impl Ctx {
    pub fn t(&self, key: &str) -> &'static str {
        t(self.lang.get(), key)
    }

    /// A text that follows the language, for views: one closure type for every key, so
    /// the code that renders it is in the bundle once, not once per text.
    pub fn text(self, key: &'static str) -> impl Fn() -> &'static str + Copy + 'static {
        move || t(self.lang.get(), key)
    }

    /// A date that follows the language (as `text`, one closure type for all).
    pub fn date(self, ms: f64) -> impl Fn() -> String + Copy + 'static {
        move || crate::api::date(ms, self.lang.get().locale())
    }

    /// A click that goes to `page` (as `text`, one handler type for all).
    pub fn to(self, page: Page) -> impl Fn(leptos::ev::MouseEvent) + Clone + 'static {
        move |_| self.go(page.clone())
    }

    /// A text in the current language, not followed: for views the shell renders again
    /// when the language changes (the admin console).
    #[cfg(feature = "console")]
    pub fn tr(&self, key: &str) -> &'static str {
        t(self.lang.get_untracked(), key)
    }

    pub fn csrf(&self) -> String {
        self.me.with_untracked(|m| m.as_ref().map(|m| m.csrf.clone()).unwrap_or_default())
    }

    pub async fn api(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, ApiErr> {
        self.send(method, path, body.map(|b| ("application/json", JsValue::from_str(&b.to_string())))).await
    }

    /// A call with a body of any type (`api::send`); a lapsed session goes to the log-in.
    pub async fn send(&self, method: &str, path: &str, body: Option<(&str, JsValue)>) -> Result<Value, ApiErr> {
        let result = send(method, path, body, &self.csrf()).await;
        if let Err(e) = &result
            && e.code == "unauthorized"
        {
            self.me.set(None);
            self.page.set(Page::Login);
        }
        result
    }

    pub fn error(&self, e: &ApiErr) {
        self.flash.set(Some((true, error_text(self.lang.get_untracked(), e))));
    }

    pub fn notice(&self, key: &str) {
        self.flash.set(Some((false, t(self.lang.get_untracked(), key).to_owned())));
    }

    /// Whether the signed-in user may see the admin console.
    pub fn is_admin(&self) -> bool {
        self.me.with(|m| m.as_ref().is_some_and(Me::is_admin))
    }

    /// Goes to `page`, a new entry in the history (back returns here).
    pub fn go(&self, page: Page) {
        crate::route::show(&page, true);
        self.show(page);
    }

    /// Goes to `page` in place of the page shown in the history (after sending or
    /// deleting: back does not return to the draft or the message gone).
    pub fn redirect(&self, page: Page) {
        crate::route::show(&page, false);
        self.show(page);
    }

    /// Shows `page` and leaves the URL as it is (the page it names: at start, after
    /// signing in, on back and forward).
    pub fn show(&self, page: Page) {
        self.menu.set(false);
        self.flash.set(None);
        self.page.set(page);
    }
}

/// A file picked for sending: name, type, base64 content, size.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Picked {
    pub filename: String,
    pub content_type: String,
    pub content_base64: String,
    pub size: usize,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Draft {
    pub to: String,
    pub cc: String,
    pub bcc: String,
    pub subject: String,
    pub body: String,
    pub files: Vec<Picked>,
    /// The message this one replies to (its id): the reply joins its conversation.
    pub in_reply_to: String,
}

impl Draft {
    pub fn reply_to(m: &Value) -> Draft {
        let subject = m["subject"].as_str().unwrap_or_default();
        let subject =
            if subject.to_ascii_lowercase().starts_with("re:") { subject.to_owned() } else { format!("Re: {subject}") };
        let quoted: String = m["text"].as_str().unwrap_or_default().lines().map(|l| format!("> {l}\n")).collect();
        let to = if m["folder"] == "sent" {
            m["to"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("; "))
                .unwrap_or_default()
        } else {
            // The Reply-To when there is one (a group's mail replies to the group).
            m["reply_to"].as_str().or(m["from"].as_str()).unwrap_or_default().to_owned()
        };
        let in_reply_to = m["id"].as_str().unwrap_or_default().to_owned();
        Draft { to, subject, body: format!("\n\n{quoted}"), in_reply_to, ..Draft::default() }
    }
}
