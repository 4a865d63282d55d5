//! Lists, subscribers, campaigns and tasks as store documents, and the checks of what a
//! caller gives. Every document holds `kind` and `tenant`; a subscriber's attributes are
//! fields `a.NAME`, so that a campaign's filter is a store lookup, not a scan.

use std::collections::BTreeMap;

use backend_server::store::{Document, Fields};
use serde::{Deserialize, Serialize};

use crate::tenant::domain::normalize_address;

pub const LIST: &str = "list";
pub const SUBSCRIBER: &str = "subscriber";
pub const CAMPAIGN: &str = "campaign";
pub const TASK: &str = "task";
pub const CHUNK: &str = "task-chunk";

pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_ATTRIBUTES: usize = 32;
pub const MAX_ATTRIBUTE_VALUE_CHARS: usize = 256;
pub const LANGUAGES: [&str; 2] = ["en", "fr"];
/// Variables every template may use besides the list's attributes.
pub const BUILT_IN: [&str; 3] = ["email", "name", "language"];

/// Collects every problem of a request, each naming its field.
#[derive(Default)]
pub struct Problems(Vec<String>);

impl Problems {
    pub fn add(&mut self, field: impl AsRef<str>, problem: impl AsRef<str>) {
        self.0.push(format!("{}: {}", field.as_ref(), problem.as_ref()));
    }

    pub fn finish(self) -> Result<(), tonic::Status> {
        if self.0.is_empty() { Ok(()) } else { Err(tonic::Status::invalid_argument(self.0.join("; "))) }
    }

    /// A name for people: 1..=max characters without control characters.
    pub fn name(&mut self, field: &str, value: &str, required: bool, max: usize) {
        let len = value.chars().count();
        if required && value.trim().is_empty() {
            self.add(field, "required");
        } else if len > max {
            self.add(field, format!("{len} characters, at most {max}"));
        } else if let Some(c) = value.chars().find(|c| c.is_control()) {
            self.add(field, format!("holds the control character U+{:04X}", c as u32));
        }
    }

    /// An address, normalized; `None` (and a problem) when it is not one.
    pub fn address(&mut self, field: &str, value: &str) -> Option<String> {
        match normalize_address(value.trim()) {
            Ok(a) => Some(a),
            Err(why) => {
                self.add(field, format!("{value:?} is not an email address ({why})"));
                None
            }
        }
    }
}

/// An attribute name: 1 to 64 of `[a-z0-9_]`.
pub fn is_attribute_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A subject and a Markdown body.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Content {
    pub subject: String,
    pub markdown: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct List {
    pub id: String,
    pub version: u64,
    pub tenant: String,
    pub name: String,
    pub description: String,
    pub double_opt_in: bool,
    pub from_email: String,
    pub from_name: String,
    pub attributes: Vec<String>,
    pub confirmation: BTreeMap<String, Content>,
    pub templates: BTreeMap<String, Content>,
    pub created_ms: u64,
    pub updated_ms: u64,
}

fn get(f: &Fields, k: &str) -> String {
    f.get(k).cloned().unwrap_or_default()
}

fn num(f: &Fields, k: &str) -> u64 {
    f.get(k).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn json<T: for<'a> Deserialize<'a> + Default>(f: &Fields, k: &str) -> T {
    f.get(k).and_then(|v| serde_json::from_str(v).ok()).unwrap_or_default()
}

fn to_json(v: &impl Serialize) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

impl List {
    pub fn from_doc(d: &Document) -> Option<List> {
        let f = &d.fields;
        (f.get("kind")? == LIST).then(|| List {
            id: d.id.clone(),
            version: d.version,
            tenant: get(f, "tenant"),
            name: get(f, "name"),
            description: get(f, "description"),
            double_opt_in: f.get("double_opt_in").is_some_and(|v| v == "true"),
            from_email: get(f, "from_email"),
            from_name: get(f, "from_name"),
            attributes: json(f, "attributes"),
            confirmation: json(f, "confirmation"),
            templates: json(f, "templates"),
            created_ms: num(f, "created_ms"),
            updated_ms: num(f, "updated_ms"),
        })
    }

    pub fn fields(&self) -> Fields {
        Fields::from([
            ("kind".into(), LIST.into()),
            ("tenant".into(), self.tenant.clone()),
            ("name".into(), self.name.clone()),
            ("description".into(), self.description.clone()),
            ("double_opt_in".into(), self.double_opt_in.to_string()),
            ("from_email".into(), self.from_email.clone()),
            ("from_name".into(), self.from_name.clone()),
            ("attributes".into(), to_json(&self.attributes)),
            ("confirmation".into(), to_json(&self.confirmation)),
            ("templates".into(), to_json(&self.templates)),
            ("created_ms".into(), self.created_ms.to_string()),
            ("updated_ms".into(), self.updated_ms.to_string()),
        ])
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Subscriber {
    pub id: String,
    pub version: u64,
    pub tenant: String,
    pub list: String,
    pub email: String,
    pub name: String,
    pub language: String,
    pub attributes: BTreeMap<String, String>,
    /// `unconfirmed`, `confirmed`, `unsubscribed`.
    pub state: String,
    pub created_ms: u64,
    pub confirmed_ms: u64,
    pub unsubscribed_ms: u64,
    pub reason: String,
    /// When the last confirmation mail went out.
    pub confirm_sent_ms: u64,
}

/// The unique key that makes one subscriber per address and list.
pub fn subscriber_key(list: &str, email: &str) -> String {
    format!("sub/{list}/{email}")
}

impl Subscriber {
    pub fn from_doc(d: &Document) -> Option<Subscriber> {
        let f = &d.fields;
        (f.get("kind")? == SUBSCRIBER).then(|| Subscriber {
            id: d.id.clone(),
            version: d.version,
            tenant: get(f, "tenant"),
            list: get(f, "list"),
            email: get(f, "email"),
            name: get(f, "name"),
            language: get(f, "language"),
            attributes: f.iter().filter_map(|(k, v)| k.strip_prefix("a.").map(|k| (k.to_owned(), v.clone()))).collect(),
            state: get(f, "state"),
            created_ms: num(f, "created_ms"),
            confirmed_ms: num(f, "confirmed_ms"),
            unsubscribed_ms: num(f, "unsubscribed_ms"),
            reason: get(f, "reason"),
            confirm_sent_ms: num(f, "confirm_sent_ms"),
        })
    }

    pub fn fields(&self) -> Fields {
        let mut f = Fields::from([
            ("kind".into(), SUBSCRIBER.into()),
            ("tenant".into(), self.tenant.clone()),
            ("list".into(), self.list.clone()),
            ("email".into(), self.email.clone()),
            ("name".into(), self.name.clone()),
            ("language".into(), self.language.clone()),
            ("state".into(), self.state.clone()),
            ("created_ms".into(), self.created_ms.to_string()),
            ("confirmed_ms".into(), self.confirmed_ms.to_string()),
            ("unsubscribed_ms".into(), self.unsubscribed_ms.to_string()),
            ("reason".into(), self.reason.clone()),
            ("confirm_sent_ms".into(), self.confirm_sent_ms.to_string()),
        ]);
        f.extend(self.attributes.iter().map(|(k, v)| (format!("a.{k}"), v.clone())));
        f
    }

    /// The template variables of this subscriber.
    pub fn variables(&self) -> BTreeMap<String, String> {
        let mut v = self.attributes.clone();
        v.insert("email".into(), self.email.clone());
        v.insert("name".into(), self.name.clone());
        v.insert("language".into(), self.language.clone());
        v
    }
}

/// A subscriber's own fields as given (a form, the API, a CSV row), checked against the
/// list: every problem is added to `p`.
pub struct Given<'a> {
    pub email: &'a str,
    pub name: &'a str,
    pub language: &'a str,
    pub attributes: &'a BTreeMap<String, String>,
}

impl Given<'_> {
    /// The normalized address, language and attributes; problems into `p`.
    pub fn check(&self, list: &List, p: &mut Problems) -> (String, String, BTreeMap<String, String>) {
        // Lowercased whole: one subscriber per mailbox, as the suppression list counts them.
        let email = p.address("email", self.email).unwrap_or_default().to_lowercase();
        p.name("name", self.name, false, MAX_NAME_CHARS);
        let language = if self.language.is_empty() { "en".to_owned() } else { self.language.to_ascii_lowercase() };
        if !LANGUAGES.contains(&language.as_str()) {
            p.add("language", format!("{:?} is not one of en, fr", self.language));
        }
        let mut attributes = BTreeMap::new();
        for (k, v) in self.attributes {
            let field = format!("attributes.{k}");
            if !list.attributes.contains(k) {
                p.add(&field, format!("not an attribute of list {:?} ({})", list.name, list.attributes.join(", ")));
                continue;
            }
            p.name(&field, v, false, MAX_ATTRIBUTE_VALUE_CHARS);
            if !v.is_empty() {
                attributes.insert(k.clone(), v.clone());
            }
        }
        (email, language, attributes)
    }
}

/// The figures of a campaign, as kept in its document: `stats` flushed from the
/// ledger of its node, `total` counted when it starts, `unsubscribed` counted by
/// whichever node takes the unsubscription.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Stats {
    pub total: u64,
    pub submitted: u64,
    pub skipped: u64,
    pub sent: u64,
    pub failed: u64,
    pub delivered: u64,
    pub bounced: u64,
    pub complained: u64,
    pub unsubscribed: u64,
    pub possible_duplicates: u64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StoredAttachment {
    pub filename: String,
    pub content_type: String,
    /// Base64.
    pub content: String,
    pub content_id: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Campaign {
    pub id: String,
    pub version: u64,
    pub tenant: String,
    pub list: String,
    pub name: String,
    pub content: Content,
    pub filter: BTreeMap<String, String>,
    pub rate: f64,
    pub start_at_ms: u64,
    pub state: String,
    pub error: String,
    pub node: String,
    pub created_ms: u64,
    pub started_ms: u64,
    pub finished_ms: u64,
    pub stats: Stats,
    pub idempotency_key: String,
    pub attachments: Vec<StoredAttachment>,
}

pub const RUNNING: &str = "running";
pub const SCHEDULED: &str = "scheduled";
pub const PAUSED: &str = "paused";
pub const CANCELLED: &str = "cancelled";
pub const DONE: &str = "done";
pub const FAILED: &str = "failed";
pub const QUEUED: &str = "queued";

pub fn is_finished(state: &str) -> bool {
    matches!(state, DONE | CANCELLED | FAILED)
}

impl Campaign {
    pub fn from_doc(d: &Document) -> Option<Campaign> {
        let f = &d.fields;
        (f.get("kind")? == CAMPAIGN).then(|| Campaign {
            id: d.id.clone(),
            version: d.version,
            tenant: get(f, "tenant"),
            list: get(f, "list"),
            name: get(f, "name"),
            content: Content { subject: get(f, "subject"), markdown: get(f, "markdown") },
            filter: json(f, "filter"),
            rate: f.get("rate").and_then(|v| v.parse().ok()).unwrap_or(0.0),
            start_at_ms: num(f, "start_at_ms"),
            state: get(f, "state"),
            error: get(f, "error"),
            node: get(f, "node"),
            created_ms: num(f, "created_ms"),
            started_ms: num(f, "started_ms"),
            finished_ms: num(f, "finished_ms"),
            stats: Stats { total: num(f, "total"), unsubscribed: num(f, "unsubscribed"), ..json(f, "stats") },
            idempotency_key: get(f, "idempotency_key"),
            attachments: json(f, "attachments"),
        })
    }

    pub fn fields(&self) -> Fields {
        Fields::from([
            ("kind".into(), CAMPAIGN.into()),
            ("tenant".into(), self.tenant.clone()),
            ("list".into(), self.list.clone()),
            ("name".into(), self.name.clone()),
            ("subject".into(), self.content.subject.clone()),
            ("markdown".into(), self.content.markdown.clone()),
            ("filter".into(), to_json(&self.filter)),
            ("rate".into(), self.rate.to_string()),
            ("start_at_ms".into(), self.start_at_ms.to_string()),
            ("state".into(), self.state.clone()),
            ("error".into(), self.error.clone()),
            ("node".into(), self.node.clone()),
            ("created_ms".into(), self.created_ms.to_string()),
            ("started_ms".into(), self.started_ms.to_string()),
            ("finished_ms".into(), self.finished_ms.to_string()),
            ("stats".into(), to_json(&self.stats)),
            ("total".into(), self.stats.total.to_string()),
            ("unsubscribed".into(), self.stats.unsubscribed.to_string()),
            ("idempotency_key".into(), self.idempotency_key.clone()),
            ("attachments".into(), to_json(&self.attachments)),
        ])
    }

    /// The fields that hold its figures.
    pub fn stats_fields(stats: &Stats) -> Fields {
        Fields::from([("stats".into(), to_json(stats))])
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TaskResult {
    pub added: u64,
    pub updated: u64,
    pub rejected: u64,
    pub rejected_rows: Vec<(u64, String)>,
    pub exported: u64,
    pub bytes: u64,
}

pub const MAX_REJECTED_ROWS: usize = 1000;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Task {
    pub id: String,
    pub version: u64,
    pub tenant: String,
    pub kind: String,
    pub list: String,
    pub state: String,
    pub done: u64,
    pub total: u64,
    pub error: String,
    pub node: String,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub result: TaskResult,
    /// Import: as confirmed.
    pub confirmed: bool,
    /// Input chunks (import) or output chunks (export).
    pub chunks: u64,
    /// Import: the data lines already applied.
    pub cursor: u64,
}

impl Task {
    pub fn from_doc(d: &Document) -> Option<Task> {
        let f = &d.fields;
        (f.get("kind")? == TASK).then(|| Task {
            id: d.id.clone(),
            version: d.version,
            tenant: get(f, "tenant"),
            kind: get(f, "task_kind"),
            list: get(f, "list"),
            state: get(f, "state"),
            done: num(f, "done"),
            total: num(f, "total"),
            error: get(f, "error"),
            node: get(f, "node"),
            created_ms: num(f, "created_ms"),
            updated_ms: num(f, "updated_ms"),
            result: json(f, "result"),
            confirmed: f.get("confirmed").is_some_and(|v| v == "true"),
            chunks: num(f, "chunks"),
            cursor: num(f, "cursor"),
        })
    }

    pub fn fields(&self) -> Fields {
        Fields::from([
            ("kind".into(), TASK.into()),
            ("tenant".into(), self.tenant.clone()),
            ("task_kind".into(), self.kind.clone()),
            ("list".into(), self.list.clone()),
            ("state".into(), self.state.clone()),
            ("done".into(), self.done.to_string()),
            ("total".into(), self.total.to_string()),
            ("error".into(), self.error.clone()),
            ("node".into(), self.node.clone()),
            ("created_ms".into(), self.created_ms.to_string()),
            ("updated_ms".into(), self.updated_ms.to_string()),
            ("result".into(), to_json(&self.result)),
            ("confirmed".into(), self.confirmed.to_string()),
            ("chunks".into(), self.chunks.to_string()),
            ("cursor".into(), self.cursor.to_string()),
        ])
    }
}

/// The fields of one chunk of a task's input or output.
pub fn chunk_fields(task: &str, role: &str, n: u64, data: String) -> Fields {
    Fields::from([
        ("kind".into(), CHUNK.into()),
        ("task".into(), task.into()),
        ("role".into(), role.into()),
        ("n".into(), n.to_string()),
        ("data".into(), data),
    ])
}
