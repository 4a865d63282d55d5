//! The JSON shapes of the lists API: the proto messages field by field in snake_case,
//! times in ms since the epoch (0: none), maps as objects, bytes as base64.
//!
//! ```text
//! List       {id, tenant, name, description, double_opt_in, from_email, from_name,
//!             attributes: [name], confirmation: {lang: Content}, templates: {name: Content},
//!             created_ms, updated_ms, subscribe_url, form_html}
//! Content    {subject, markdown}
//! Subscriber {id, list_id, email, name, language, attributes: {name: value}, state,
//!             created_ms, confirmed_ms, unsubscribed_ms, unsubscribe_reason}
//! Campaign   {id, tenant, list_id, name, subject, markdown, filter: {name: value},
//!             rate_per_second, start_at_ms, state, error, node, created_ms, started_ms,
//!             finished_ms, stats: Stats, idempotency_key,
//!             attachments: [{filename, content_type, content_base64, content_id}]}
//! Stats      {total, submitted, skipped, sent, failed, delivered, bounced, complained,
//!             unsubscribed, possible_duplicates}
//! Task       {id, tenant, kind, list_id, state, done, total, error, node, created_ms,
//!             updated_ms, result: Result | null, campaign_id}
//! Result     {added, updated, rejected, rejected_rows: [{line, reason}], exported, bytes}
//! ```
//!
//! Bodies (`deny_unknown_fields`: a misspelt field is a 400, not ignored) are read into
//! the proto's requests here too.

use std::collections::{BTreeMap, HashMap};

use base64::Engine as _;
use bitmail_proto::v1 as pb;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::ApiError;

fn sorted<V: Clone>(map: &HashMap<String, V>) -> BTreeMap<String, V> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

pub(crate) fn content_json(c: &pb::Content) -> Value {
    json!({ "subject": c.subject, "markdown": c.markdown })
}

fn contents_json(map: &HashMap<String, pb::Content>) -> Value {
    let map: Map<String, Value> = sorted(map).iter().map(|(k, c)| (k.clone(), content_json(c))).collect();
    Value::Object(map)
}

pub(crate) fn list_json(l: &pb::MailingList) -> Value {
    json!({
        "id": l.id, "tenant": l.tenant, "name": l.name, "description": l.description,
        "double_opt_in": l.double_opt_in, "from_email": l.from_email, "from_name": l.from_name,
        "attributes": l.attributes, "confirmation": contents_json(&l.confirmation),
        "templates": contents_json(&l.templates), "created_ms": l.created_ms, "updated_ms": l.updated_ms,
        "subscribe_url": l.subscribe_url, "form_html": l.form_html,
    })
}

pub(crate) fn subscriber_json(s: &pb::Subscriber) -> Value {
    json!({
        "id": s.id, "list_id": s.list_id, "email": s.email, "name": s.name, "language": s.language,
        "attributes": sorted(&s.attributes), "state": s.state, "created_ms": s.created_ms,
        "confirmed_ms": s.confirmed_ms, "unsubscribed_ms": s.unsubscribed_ms,
        "unsubscribe_reason": s.unsubscribe_reason,
    })
}

fn stats_json(s: &pb::CampaignStats) -> Value {
    json!({
        "total": s.total, "submitted": s.submitted, "skipped": s.skipped, "sent": s.sent, "failed": s.failed,
        "delivered": s.delivered, "bounced": s.bounced, "complained": s.complained,
        "unsubscribed": s.unsubscribed, "possible_duplicates": s.possible_duplicates,
    })
}

pub(crate) fn campaign_json(c: &pb::Campaign) -> Value {
    let content = c.content.clone().unwrap_or_default();
    let attachments: Vec<Value> = c
        .attachments
        .iter()
        .map(|a| {
            json!({
                "filename": a.filename, "content_type": a.content_type,
                "content_base64": base64::engine::general_purpose::STANDARD.encode(&a.content),
                "content_id": a.content_id,
            })
        })
        .collect();
    json!({
        "id": c.id, "tenant": c.tenant, "list_id": c.list_id, "name": c.name,
        "subject": content.subject, "markdown": content.markdown, "filter": sorted(&c.filter),
        "rate_per_second": c.rate_per_second, "start_at_ms": c.start_at_unix_ms, "state": c.state,
        "error": c.error, "node": c.node, "created_ms": c.created_ms, "started_ms": c.started_ms,
        "finished_ms": c.finished_ms, "stats": stats_json(&c.stats.unwrap_or_default()),
        "idempotency_key": c.idempotency_key, "attachments": attachments,
    })
}

pub(crate) fn task_json(t: &pb::Task) -> Value {
    let result = t.result.as_ref().map_or(Value::Null, |r| {
        let rows: Vec<Value> =
            r.rejected_rows.iter().map(|row| json!({ "line": row.line, "reason": row.reason })).collect();
        json!({
            "added": r.added, "updated": r.updated, "rejected": r.rejected, "rejected_rows": rows,
            "exported": r.exported, "bytes": r.bytes,
        })
    });
    json!({
        "id": t.id, "tenant": t.tenant, "kind": t.kind, "list_id": t.list_id, "state": t.state,
        "done": t.done, "total": t.total, "error": t.error, "node": t.node, "created_ms": t.created_ms,
        "updated_ms": t.updated_ms, "result": result, "campaign_id": t.campaign_id,
    })
}

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContentBody {
    subject: String,
    markdown: String,
}

fn contents(map: Option<HashMap<String, ContentBody>>) -> HashMap<String, pb::Content> {
    map.unwrap_or_default()
        .into_iter()
        .map(|(k, c)| (k, pb::Content { subject: c.subject, markdown: c.markdown }))
        .collect()
}

/// A list as a body: every field for a new one (those left out are empty); for an
/// edit, the fields present are the ones replaced.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListBody {
    name: Option<String>,
    description: Option<String>,
    double_opt_in: Option<bool>,
    from_email: Option<String>,
    from_name: Option<String>,
    attributes: Option<Vec<String>>,
    confirmation: Option<HashMap<String, ContentBody>>,
    templates: Option<HashMap<String, ContentBody>>,
}

/// The fields an edit may name, as `UpdateListRequest.update_fields` spells them.
const LIST_FIELDS: [&str; 8] =
    ["name", "description", "double_opt_in", "from_email", "from_name", "attributes", "confirmation", "templates"];

impl ListBody {
    pub(crate) fn into_list(self) -> pb::MailingList {
        pb::MailingList {
            name: self.name.unwrap_or_default(),
            description: self.description.unwrap_or_default(),
            double_opt_in: self.double_opt_in.unwrap_or_default(),
            from_email: self.from_email.unwrap_or_default(),
            from_name: self.from_name.unwrap_or_default(),
            attributes: self.attributes.unwrap_or_default(),
            confirmation: contents(self.confirmation),
            templates: contents(self.templates),
            ..Default::default()
        }
    }
}

/// A PATCH body: the list holding the fields present, and their names. `null` is no
/// value for any of them; an empty object changes nothing and is refused.
pub(crate) fn list_patch(body: Value) -> Result<(pb::MailingList, Vec<String>), ApiError> {
    let Value::Object(fields) = &body else {
        return Err(ApiError::BadRequest("the body must be a JSON object of the fields to change".into()));
    };
    let mut named = Vec::new();
    for (name, value) in fields {
        if !LIST_FIELDS.contains(&name.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "{name}: not a field of a list; one of {}",
                LIST_FIELDS.join(", ")
            )));
        }
        if value.is_null() {
            return Err(ApiError::BadRequest(format!("{name}: null; leave the field out to keep it")));
        }
        named.push(name.clone());
    }
    if named.is_empty() {
        return Err(ApiError::BadRequest(format!("no field to change; name any of {}", LIST_FIELDS.join(", "))));
    }
    let list: ListBody = serde_json::from_value(body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok((list.into_list(), named))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SubscriberBody {
    pub(crate) email: String,
    #[serde(default)]
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) language: String,
    #[serde(default)]
    pub(crate) attributes: HashMap<String, String>,
    #[serde(default)]
    pub(crate) confirmed: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AttachmentBody {
    filename: String,
    #[serde(default)]
    content_type: String,
    content_base64: String,
    #[serde(default)]
    content_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CampaignBody {
    list_id: String,
    name: String,
    subject: String,
    markdown: String,
    #[serde(default)]
    filter: HashMap<String, String>,
    #[serde(default)]
    rate_per_second: f64,
    #[serde(default)]
    start_at_ms: i64,
    pub(crate) idempotency_key: Option<String>,
    #[serde(default)]
    attachments: Vec<AttachmentBody>,
}

impl CampaignBody {
    /// The campaign, with `idempotency_key` (the body's or the header's, already
    /// reconciled); an attachment that is not base64 is named.
    pub(crate) fn into_campaign(self, idempotency_key: String) -> Result<pb::Campaign, ApiError> {
        let mut attachments = Vec::with_capacity(self.attachments.len());
        for (i, a) in self.attachments.into_iter().enumerate() {
            let content = base64::engine::general_purpose::STANDARD
                .decode(a.content_base64.trim())
                .map_err(|e| ApiError::BadRequest(format!("attachments[{i}].content_base64: not base64 ({e})")))?;
            attachments.push(pb::Attachment {
                filename: a.filename,
                content_type: a.content_type,
                content,
                content_id: a.content_id,
            });
        }
        Ok(pb::Campaign {
            list_id: self.list_id,
            name: self.name,
            content: Some(pb::Content { subject: self.subject, markdown: self.markdown }),
            filter: self.filter,
            rate_per_second: self.rate_per_second,
            start_at_unix_ms: self.start_at_ms,
            idempotency_key,
            attachments,
            ..Default::default()
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TriggerBody {
    pub(crate) template: String,
    #[serde(default)]
    pub(crate) filter: HashMap<String, String>,
    pub(crate) idempotency_key: Option<String>,
}

/// The one idempotency key of a request: the body's or the `Idempotency-Key` header's;
/// both is fine only when they agree.
pub(crate) fn one_key(body: Option<String>, header: Option<String>) -> Result<Option<String>, ApiError> {
    match (body, header) {
        (Some(b), Some(h)) if b != h => Err(ApiError::BadRequest(
            "idempotency_key: differs from the Idempotency-Key header; send one of them".into(),
        )),
        (Some(b), _) => Ok(Some(b)),
        (None, h) => Ok(h),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_names_the_fields_present() {
        let (list, mut fields) =
            list_patch(json!({ "name": "News", "double_opt_in": false, "attributes": [] })).unwrap();
        fields.sort();
        assert_eq!(fields, ["attributes", "double_opt_in", "name"]);
        assert_eq!(list.name, "News");
        assert!(!list.double_opt_in && list.attributes.is_empty());
        let (list, fields) = list_patch(
            json!({ "confirmation": { "fr": { "subject": "Confirmez", "markdown": "{{ confirm_url }}" } } }),
        )
        .unwrap();
        assert_eq!(fields, ["confirmation"]);
        assert_eq!(list.confirmation["fr"].subject, "Confirmez");
        for bad in [json!({}), json!({ "id": "x" }), json!({ "name": null }), json!([1]), json!({ "name": 3 })] {
            assert!(matches!(list_patch(bad.clone()), Err(ApiError::BadRequest(_))), "{bad}");
        }
    }

    #[test]
    fn campaigns_mirror_the_proto_with_content_flattened() {
        let body: CampaignBody = serde_json::from_value(json!({
            "list_id": "l1", "name": "Cuts", "subject": "Power cut in {{ area }}", "markdown": "Hello {{ name }}",
            "filter": { "area": "Colombo 7" }, "rate_per_second": 5.0, "start_at_ms": 1_800_000_000_000i64,
            "attachments": [{ "filename": "map.pdf", "content_type": "application/pdf", "content_base64": "JVBERg==" }],
        }))
        .unwrap();
        let campaign = body.into_campaign("k1".into()).unwrap();
        assert_eq!(campaign.attachments[0].content, b"%PDF");
        let v = campaign_json(&pb::Campaign { id: "c1".into(), ..campaign });
        assert_eq!(v["subject"], "Power cut in {{ area }}");
        assert_eq!(v["markdown"], "Hello {{ name }}");
        assert_eq!(v["filter"]["area"], "Colombo 7");
        assert_eq!(v["start_at_ms"], 1_800_000_000_000i64);
        assert_eq!(v["idempotency_key"], "k1");
        assert_eq!(v["stats"]["possible_duplicates"], 0);
        assert_eq!(v["attachments"][0]["content_base64"], "JVBERg==");
        assert!(v.get("content").is_none());
        let bad: CampaignBody = serde_json::from_value(json!({
            "list_id": "l1", "name": "n", "subject": "s", "markdown": "m",
            "attachments": [{ "filename": "a", "content_base64": "***" }],
        }))
        .unwrap();
        let Err(ApiError::BadRequest(message)) = bad.into_campaign(String::new()) else { panic!("not refused") };
        assert!(message.starts_with("attachments[0].content_base64"), "{message}");
        let unknown = serde_json::from_value::<CampaignBody>(
            json!({ "list_id": "l", "name": "n", "subject": "s", "markdown": "m", "html": "x" }),
        );
        assert!(unknown.is_err(), "a misspelt field is refused");
    }

    #[test]
    fn tasks_and_subscribers_mirror_the_proto() {
        let task = pb::Task {
            id: "t1".into(),
            kind: "import".into(),
            state: "done".into(),
            done: 3,
            total: 3,
            result: Some(pb::TaskResult {
                added: 2,
                rejected: 1,
                rejected_rows: vec![pb::RejectedRow { line: 3, reason: "email: not an address".into() }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = task_json(&task);
        assert_eq!((v["done"].as_u64(), v["result"]["added"].as_u64()), (Some(3), Some(2)));
        assert_eq!(v["result"]["rejected_rows"][0]["line"], 3);
        assert!(task_json(&pb::Task::default())["result"].is_null());
        let s = pb::Subscriber {
            email: "a@b.co".into(),
            attributes: HashMap::from([("area".into(), "7".into())]),
            state: "unsubscribed".into(),
            unsubscribe_reason: "one-click".into(),
            ..Default::default()
        };
        let v = subscriber_json(&s);
        assert_eq!(
            (v["attributes"]["area"].as_str(), v["unsubscribe_reason"].as_str()),
            (Some("7"), Some("one-click"))
        );
    }

    #[test]
    fn one_idempotency_key() {
        assert_eq!(one_key(Some("a".into()), None).unwrap().as_deref(), Some("a"));
        assert_eq!(one_key(None, Some("h".into())).unwrap().as_deref(), Some("h"));
        assert_eq!(one_key(Some("a".into()), Some("a".into())).unwrap().as_deref(), Some("a"));
        assert!(one_key(Some("a".into()), Some("b".into())).is_err());
        assert_eq!(one_key(None, None).unwrap(), None);
    }
}
