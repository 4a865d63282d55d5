//! The service's documents on the wire.

use bitmail_proto::v1 as pb;

use super::model::{Campaign, Content, List, Subscriber, Task};

pub fn content(c: &Content) -> pb::Content {
    pb::Content { subject: c.subject.clone(), markdown: c.markdown.clone() }
}

pub fn from_content(c: &pb::Content) -> Content {
    Content { subject: c.subject.clone(), markdown: c.markdown.clone() }
}

pub fn list(l: &List, public_url: &str) -> pb::MailingList {
    let subscribe_url =
        if public_url.is_empty() { String::new() } else { format!("{public_url}/lists/{}/subscribe", l.id) };
    let mut form_html = String::new();
    if !subscribe_url.is_empty() {
        form_html.push_str(&format!("<form method=\"post\" action=\"{subscribe_url}\">\n"));
        form_html.push_str("  <label>Email <input type=\"email\" name=\"email\" required></label>\n");
        form_html.push_str("  <label>Name <input type=\"text\" name=\"name\"></label>\n");
        for a in &l.attributes {
            form_html.push_str(&format!("  <label>{a} <input type=\"text\" name=\"{a}\"></label>\n"));
        }
        form_html.push_str("  <input type=\"hidden\" name=\"language\" value=\"en\">\n");
        form_html.push_str("  <button type=\"submit\">Subscribe</button>\n</form>\n");
    }
    pb::MailingList {
        id: l.id.clone(),
        tenant: l.tenant.clone(),
        name: l.name.clone(),
        description: l.description.clone(),
        double_opt_in: l.double_opt_in,
        from_email: l.from_email.clone(),
        from_name: l.from_name.clone(),
        attributes: l.attributes.clone(),
        confirmation: l.confirmation.iter().map(|(k, v)| (k.clone(), content(v))).collect(),
        templates: l.templates.iter().map(|(k, v)| (k.clone(), content(v))).collect(),
        created_ms: l.created_ms,
        updated_ms: l.updated_ms,
        subscribe_url,
        form_html,
    }
}

pub fn subscriber(s: &Subscriber) -> pb::Subscriber {
    pb::Subscriber {
        id: s.id.clone(),
        list_id: s.list.clone(),
        email: s.email.clone(),
        name: s.name.clone(),
        language: s.language.clone(),
        attributes: s.attributes.clone().into_iter().collect(),
        state: s.state.clone(),
        created_ms: s.created_ms,
        confirmed_ms: s.confirmed_ms,
        unsubscribed_ms: s.unsubscribed_ms,
        unsubscribe_reason: s.reason.clone(),
    }
}

pub fn campaign(c: &Campaign) -> pb::Campaign {
    let s = &c.stats;
    pb::Campaign {
        id: c.id.clone(),
        tenant: c.tenant.clone(),
        list_id: c.list.clone(),
        name: c.name.clone(),
        content: Some(content(&c.content)),
        filter: c.filter.clone().into_iter().collect(),
        rate_per_second: c.rate,
        start_at_unix_ms: c.start_at_ms as i64,
        state: c.state.clone(),
        error: c.error.clone(),
        node: c.node.clone(),
        created_ms: c.created_ms,
        started_ms: c.started_ms,
        finished_ms: c.finished_ms,
        stats: Some(pb::CampaignStats {
            total: s.total,
            submitted: s.submitted,
            skipped: s.skipped,
            sent: s.sent,
            failed: s.failed,
            delivered: s.delivered,
            bounced: s.bounced,
            complained: s.complained,
            unsubscribed: s.unsubscribed,
            possible_duplicates: s.possible_duplicates,
        }),
        idempotency_key: c.idempotency_key.clone(),
        // Their bytes stay in the store: a listing would carry them every time.
        attachments: c
            .attachments
            .iter()
            .map(|a| pb::Attachment {
                filename: a.filename.clone(),
                content_type: a.content_type.clone(),
                content: Vec::new(),
                content_id: a.content_id.clone(),
            })
            .collect(),
    }
}

pub fn task(t: &Task) -> pb::Task {
    pb::Task {
        id: t.id.clone(),
        tenant: t.tenant.clone(),
        kind: t.kind.clone(),
        list_id: t.list.clone(),
        state: t.state.clone(),
        done: t.done,
        total: t.total,
        error: t.error.clone(),
        node: t.node.clone(),
        created_ms: t.created_ms,
        updated_ms: t.updated_ms,
        result: Some(pb::TaskResult {
            added: t.result.added,
            updated: t.result.updated,
            rejected: t.result.rejected,
            rejected_rows: t
                .result
                .rejected_rows
                .iter()
                .map(|(line, reason)| pb::RejectedRow { line: *line, reason: reason.clone() })
                .collect(),
            exported: t.result.exported,
            bytes: t.result.bytes,
        }),
        campaign_id: String::new(),
    }
}

/// A campaign as a task, for the task list.
pub fn campaign_task(c: &Campaign) -> pb::Task {
    pb::Task {
        id: c.id.clone(),
        tenant: c.tenant.clone(),
        kind: "campaign".into(),
        list_id: c.list.clone(),
        state: c.state.clone(),
        done: c.stats.submitted + c.stats.skipped,
        total: c.stats.total,
        error: c.error.clone(),
        node: c.node.clone(),
        created_ms: c.created_ms,
        updated_ms: c.finished_ms.max(c.started_ms).max(c.created_ms),
        result: None,
        campaign_id: c.id.clone(),
    }
}
