//! The admin console sees each tenant's app webhooks and how their delivery is going.

use bitmail_proto::v1 as pb;
use reqwest::StatusCode;

use super::deployment::Deployment;

#[tokio::test]
async fn an_admin_sees_a_tenants_webhooks_with_their_delivery_and_never_their_secret() {
    let d = Deployment::start(|_| {}).await;
    // An app of tenant `default` registers one (a documentation address: public, unused).
    let mut mta = d.mta_with(&d.admin_key).await;
    let request = pb::CreateWebhookRequest {
        url: "https://192.0.2.10/bitmail".into(),
        format: "sendgrid".into(),
        tenant: "default".into(),
    };
    let created = mta.create_webhook(request).await.unwrap().into_inner();
    assert!(created.secret.starts_with("whsec_") && !created.public_key.is_empty());

    d.create_user("ops", "default", true).await.unwrap();
    let ops = d.sign_in("ops").await;
    let (status, body) = ops.call("GET", "/api/admin/tenants/default/webhooks", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let hooks = body["webhooks"].as_array().unwrap();
    assert_eq!(hooks.len(), 1, "{body}");
    assert_eq!(
        (hooks[0]["id"].as_str(), hooks[0]["url"].as_str()),
        (Some(created.id.as_str()), Some("https://192.0.2.10/bitmail"))
    );
    assert_eq!((hooks[0]["format"].as_str(), hooks[0]["delivery"]["failures"].as_u64()), (Some("sendgrid"), Some(0)));
    assert!(hooks[0].get("secret").is_none(), "{body}");
    let (_, other) = ops.call("GET", "/api/admin/tenants/nobody/webhooks", None).await;
    assert_eq!(other["webhooks"], serde_json::json!([]));
    // The registration is in the audit log.
    let (_, audit) = ops.call("GET", "/api/admin/audit", None).await;
    assert!(audit.to_string().contains("webhook.create"), "{audit}");
}
