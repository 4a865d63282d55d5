//! The mails lists send: a confirmation (double opt-in) and a campaign's copy for one
//! subscriber, with its `List-Unsubscribe` (an HTTPS link with the subscriber's signed
//! token) and `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058), and a
//! footer with the same links in the subscriber's language.

use bitmail_proto::v1 as pb;
use tonic::Status;

use super::model::{Content, List, StoredAttachment, Subscriber};
use super::template::{Template, campaign_variables, confirmation_variables};

/// BitMail's confirmation mail, for a language the list has no wording for.
pub fn default_confirmation(language: &str) -> Content {
    match language {
        "fr" => Content {
            subject: "Confirmez votre abonnement à {{ list_name }}".into(),
            markdown: "Bonjour,\n\nPour recevoir les messages de **{{ list_name }}**, confirmez votre abonnement :\n\n\
                       [Confirmer mon abonnement]({{ confirm_url }})\n\n\
                       Si vous n'avez rien demandé, ignorez ce message : vous ne serez pas inscrit."
                .into(),
        },
        _ => Content {
            subject: "Confirm your subscription to {{ list_name }}".into(),
            markdown: "Hello,\n\nTo receive mail from **{{ list_name }}**, please confirm your subscription:\n\n\
                       [Confirm my subscription]({{ confirm_url }})\n\n\
                       If you did not ask for this, ignore this mail: you will not be subscribed."
                .into(),
        },
    }
}

/// Checks a content's subject and body against `known`, naming `field` in the error.
pub fn check_content(
    field: &str,
    content: &Content,
    known: &std::collections::BTreeSet<String>,
    p: &mut super::model::Problems,
) -> Option<(Template, Template)> {
    if content.subject.trim().is_empty() {
        p.add(format!("{field}.subject"), "required");
    } else if content.subject.len() > 998 || content.subject.contains(['\r', '\n']) {
        p.add(format!("{field}.subject"), "at most 998 bytes on one line");
    }
    if content.markdown.len() > 1 << 20 {
        p.add(format!("{field}.markdown"), format!("{} bytes, at most 1 MiB", content.markdown.len()));
    }
    let subject = Template::parse(&content.subject, known).map_err(|e| p.add(format!("{field}.subject"), e)).ok();
    let body = Template::parse(&content.markdown, known).map_err(|e| p.add(format!("{field}.markdown"), e)).ok();
    Some((subject?, body?))
}

fn from(list: &List) -> String {
    if list.from_name.is_empty() {
        list.from_email.clone()
    } else {
        format!("\"{}\" <{}>", list.from_name.replace(['"', '\\'], ""), list.from_email)
    }
}

fn to(sub: &Subscriber) -> String {
    sub.email.clone()
}

fn list_id(list: &List) -> String {
    let domain = list.from_email.rsplit_once('@').map_or("localhost", |(_, d)| d);
    format!("<{}.lists.{domain}>", list.id)
}

/// The confirmation mail for `sub`, whose link is `confirm_url`.
pub fn confirmation(list: &List, sub: &Subscriber, confirm_url: &str) -> Result<pb::SubmitRequest, Status> {
    let content = list.confirmation.get(&sub.language).cloned().unwrap_or_else(|| default_confirmation(&sub.language));
    let known = confirmation_variables(&list.attributes);
    let mut p = super::model::Problems::default();
    let Some((subject, body)) = check_content("confirmation", &content, &known, &mut p) else {
        p.finish()?;
        return Err(Status::internal("the confirmation template could not be read"));
    };
    let mut values = sub.variables();
    values.insert("confirm_url".into(), confirm_url.to_owned());
    values.insert("list_name".into(), list.name.clone());
    // The link is escaped as any value; CommonMark reads the escapes in a link's
    // destination back into the characters, so it arrives whole.
    let (text, html) = (body.plain(&values), body.html(&values));
    Ok(pb::SubmitRequest {
        from: from(list),
        to: vec![to(sub)],
        subject: subject.plain(&values),
        text,
        html,
        headers: vec![pb::Header {
            name: "List-Id".into(),
            value: format!("\"{}\" {}", list.name.replace('"', ""), list_id(list)),
        }],
        tags: vec!["list-confirmation".into()],
        ..Default::default()
    })
}

/// A campaign ready to render: its templates checked once.
pub struct Prepared {
    pub subject: Template,
    pub body: Template,
    pub attachments: Vec<pb::Attachment>,
}

impl Prepared {
    pub fn new(content: &Content, list: &List, attachments: &[StoredAttachment]) -> Result<Prepared, Status> {
        use base64::Engine as _;
        let mut p = super::model::Problems::default();
        let checked = check_content("content", content, &campaign_variables(&list.attributes), &mut p);
        p.finish()?;
        let (subject, body) = checked.ok_or_else(|| Status::internal("the campaign's template could not be read"))?;
        let attachments = attachments
            .iter()
            .map(|a| pb::Attachment {
                filename: a.filename.clone(),
                content_type: a.content_type.clone(),
                content: base64::engine::general_purpose::STANDARD.decode(&a.content).unwrap_or_default(),
                content_id: a.content_id.clone(),
            })
            .collect();
        Ok(Prepared { subject, body, attachments })
    }

    /// The copy for `sub`, with its links (`mailto`: the unsubscribe address by mail).
    pub fn copy(
        &self,
        list: &List,
        sub: &Subscriber,
        unsubscribe_url: &str,
        preferences_url: &str,
        mailto: Option<&str>,
    ) -> pb::SubmitRequest {
        let mut values = sub.variables();
        values.insert("unsubscribe_url".into(), unsubscribe_url.to_owned());
        values.insert("preferences_url".into(), preferences_url.to_owned());
        let (leave, prefs) = match sub.language.as_str() {
            "fr" => ("Se désabonner", "Préférences"),
            _ => ("Unsubscribe", "Preferences"),
        };
        let text =
            format!("{}\n\n-- \n{leave}: {unsubscribe_url}\n{prefs}: {preferences_url}\n", self.body.plain(&values));
        let html = format!(
            "{}<hr><p style=\"font-size:small;color:#555\"><a href=\"{unsubscribe_url}\">{leave}</a> · \
             <a href=\"{preferences_url}\">{prefs}</a></p>",
            self.body.html(&values)
        );
        pb::SubmitRequest {
            from: from(list),
            to: vec![to(sub)],
            subject: self.subject.plain(&values),
            text,
            html,
            headers: vec![
                pb::Header {
                    name: "List-Unsubscribe".into(),
                    value: match mailto {
                        Some(m) => format!("<{unsubscribe_url}>, <{m}>"),
                        None => format!("<{unsubscribe_url}>"),
                    },
                },
                pb::Header { name: "List-Unsubscribe-Post".into(), value: "List-Unsubscribe=One-Click".into() },
                pb::Header {
                    name: "List-Id".into(),
                    value: format!("\"{}\" {}", list.name.replace('"', ""), list_id(list)),
                },
            ],
            attachments: self.attachments.clone(),
            tags: vec!["campaign".into()],
            ..Default::default()
        }
    }
}
