//! django-anymail 15's SendGrid and Mailgun backends, pointed at the edge by their API
//! URL setting: the message goes out with its attachment, metadata and tag, anymail
//! reports it queued, and an unknown Mailgun domain is the error
//! anymail explains.

use base64::prelude::*;
use serde_json::{Value, json};

use super::App;

#[tokio::test]
async fn django_anymail_sends_through_both_shapes_and_reads_the_answers() {
    let app = App::start().await;
    for esp in ["sendgrid", "mailgun"] {
        let answer = app.sdk("anymail_send", json!({ "esp": esp })).await;
        assert_eq!((answer.status, answer.raised.as_deref()), (200, None), "{esp}: {answer:?}");
        let report: Value = answer.json();
        assert_eq!(report["status"], json!(["queued"]), "{esp}: {report}");
        // anymail names a SendGrid message by its own id, which it sends as the custom
        // arg `anymail_id`; a Mailgun message by the `id` answered (BitMail's).
        let reported = report["message_id"].as_str().unwrap().to_owned();
        let sent = if esp == "sendgrid" {
            let found = || async {
                app.fake.received().into_iter().find(|r| r.body["custom_args"]["anymail_id"] == reported.as_str())
            };
            bitmail_tests::eventually::eventually(
                std::time::Duration::from_secs(10),
                "at the provider",
                found,
                Option::is_some,
            )
            .await
            .unwrap()
            .body
        } else {
            app.delivered(reported.trim_start_matches('<').split('@').next().unwrap()).await
        };
        assert_eq!(sent["personalizations"][0]["to"][0]["email"], "bob@example.net", "{esp}");
        assert_eq!(sent["subject"], "Hello from Django");
        assert_eq!(sent["content"][1]["value"], "<p>HTML body</p>");
        assert_eq!(sent["custom_args"]["order"], "42", "{esp}: the metadata travels");
        assert_eq!(sent["categories"], json!(["welcome"]), "{esp}");
        let report_pdf =
            sent["attachments"].as_array().unwrap().iter().find(|a| a["filename"] == "report.pdf").cloned();
        let content = report_pdf.unwrap_or_else(|| panic!("{esp}: no attachment in {sent}"))["content"].clone();
        assert_eq!(BASE64_STANDARD.decode(content.as_str().unwrap()).unwrap(), b"%PDF-1.4 report");
    }
    let unknown = app.sdk("anymail_send", json!({ "esp": "mailgun", "domain": "not-ours.test" })).await;
    assert_eq!(unknown.raised.as_deref(), Some("AnymailRequestsAPIError"), "{unknown:?}");
    assert!(unknown.body.contains("Domain not found"), "{unknown:?}");
}
