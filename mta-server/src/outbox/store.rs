//! Webhook registrations in the tenancy store: one document per webhook
//! (`kind=app_webhook`, `tenant`, `url`, `format`, `secret`, `created_ms`, and for the
//! SendGrid shape `signing_key`), its id the store's. The secret and the signing key sign
//! what is sent, so they are kept as they are (unlike API keys, whose hash is enough to
//! check them).

use std::net::IpAddr;
use std::sync::Arc;

use backend_server::store::{Document, Fields, Store, StoreError};

pub use super::payload::WebhookFormat;
use base64::Engine as _;

const KIND: &str = "app_webhook";
/// At most this many webhooks per tenant.
pub const MAX_PER_TENANT: usize = 10;

/// A registered webhook.
#[derive(Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: String,
    pub tenant: String,
    pub url: String,
    pub format: WebhookFormat,
    pub secret: String,
    pub created_ms: u64,
    /// SendGrid-shaped webhooks are also signed as SendGrid signs its Event Webhook:
    /// ECDSA P-256, this PKCS#8 key (base64 DER).
    pub signing_key: Option<String>,
}

impl Webhook {
    /// The verification key of [`Webhook::signing_key`], base64 DER
    /// SubjectPublicKeyInfo: what SendGrid shows as the Event Webhook's public key.
    pub fn public_key(&self) -> Option<String> {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::signature::KeyPair;
        let pair = super::payload::ecdsa_key(self.signing_key.as_deref()?)?;
        let der = pair.public_key().as_der().ok()?;
        Some(base64::engine::general_purpose::STANDARD.encode(der.as_ref()))
    }
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook").field("id", &self.id).field("tenant", &self.tenant).field("url", &self.url).finish()
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WebhookError {
    #[error("url: {0}")]
    Url(String),
    #[error("format: {0:?} is not bitmail or sendgrid")]
    Format(String),
    #[error("tenant {0:?} has {MAX_PER_TENANT} webhooks already")]
    TooMany(String),
    #[error("no webhook {0:?}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The registrations.
#[derive(Clone)]
pub struct Webhooks {
    store: Arc<dyn Store>,
}

impl Webhooks {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Webhooks { store }
    }

    /// Registers `url` for `tenant` (checked by [`check_url`] first); the answer holds
    /// the new secret.
    pub async fn create(
        &self,
        tenant: &str,
        url: &str,
        format: WebhookFormat,
        allow_private: bool,
        now_ms: u64,
    ) -> Result<Webhook, WebhookError> {
        check_url(url, allow_private).await?;
        if self.list(Some(tenant)).await?.len() >= MAX_PER_TENANT {
            return Err(WebhookError::TooMany(tenant.to_owned()));
        }
        let secret = format!("whsec_{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let mut fields = Fields::from([
            ("kind".to_owned(), KIND.to_owned()),
            ("tenant".to_owned(), tenant.to_owned()),
            ("url".to_owned(), url.to_owned()),
            ("format".to_owned(), format.as_str().to_owned()),
            ("secret".to_owned(), secret),
            ("created_ms".to_owned(), now_ms.to_string()),
        ]);
        if format == WebhookFormat::Sendgrid {
            fields.insert("signing_key".to_owned(), super::payload::new_ecdsa_key());
        }
        let doc = self.store.put(fields).await?;
        webhook_of(&doc).ok_or_else(|| WebhookError::NotFound(doc.id.clone()))
    }

    /// Every webhook (of `tenant` only, when given), oldest first.
    pub async fn list(&self, tenant: Option<&str>) -> Result<Vec<Webhook>, WebhookError> {
        let mut subset = Fields::from([("kind".to_owned(), KIND.to_owned())]);
        if let Some(tenant) = tenant {
            subset.insert("tenant".to_owned(), tenant.to_owned());
        }
        let (mut out, mut token): (Vec<Webhook>, Option<String>) = (Vec::new(), None);
        loop {
            let page = self.store.lookup(&subset, 1000, token.as_deref()).await?;
            out.extend(page.documents.iter().filter_map(webhook_of));
            match page.next_page_token {
                Some(next) if !next.is_empty() => token = Some(next),
                _ => return Ok(out),
            }
        }
    }

    /// Removes `tenant`'s webhook `id`.
    pub async fn delete(&self, tenant: &str, id: &str) -> Result<Webhook, WebhookError> {
        let not_found = || WebhookError::NotFound(id.to_owned());
        let doc = match self.store.get(id).await {
            Ok(doc) => doc,
            Err(StoreError::NotFound(_)) => return Err(not_found()),
            Err(e) => return Err(e.into()),
        };
        let webhook = webhook_of(&doc).filter(|w| w.tenant == tenant).ok_or_else(not_found)?;
        self.store.delete(id).await?;
        Ok(webhook)
    }
}

fn webhook_of(doc: &Document) -> Option<Webhook> {
    let field = |name: &str| doc.fields.get(name).cloned();
    if field("kind").as_deref() != Some(KIND) {
        return None;
    }
    Some(Webhook {
        id: doc.id.clone(),
        tenant: field("tenant")?,
        url: field("url")?,
        format: WebhookFormat::parse(&field("format")?)?,
        secret: field("secret")?,
        created_ms: field("created_ms")?.parse().ok()?,
        signing_key: field("signing_key"),
    })
}

/// The rule for webhook URLs: `https`, at most 2000 characters, with a host; unless
/// `allow_private`, not `http` and not a host that is, or resolves to, a loopback,
/// private (RFC 1918, unique-local), link-local, shared or unspecified address.
pub async fn check_url(url: &str, allow_private: bool) -> Result<(), WebhookError> {
    let bad = |why: &str| Err(WebhookError::Url(format!("{}: {why}", url.escape_debug())));
    if url.len() > 2000 || url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return bad("at most 2000 characters, no spaces or control characters");
    }
    let Ok(parsed) = reqwest::Url::parse(url) else { return bad("not a URL") };
    let Some(host) = parsed.host_str().filter(|h| !h.is_empty()) else { return bad("no host") };
    match (parsed.scheme(), allow_private) {
        ("https", _) | ("http", true) => {}
        _ => return bad("the scheme must be https"),
    }
    if allow_private {
        return Ok(());
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => match tokio::net::lookup_host((host, parsed.port_or_known_default().unwrap_or(443))).await {
            Ok(found) => found.map(|a| a.ip()).collect(),
            Err(e) => return bad(&format!("the host does not resolve ({e})")),
        },
    };
    if addresses.iter().any(|ip| is_private(*ip)) {
        return bad("the host is a loopback, private or link-local address, which this deployment forbids");
    }
    Ok(())
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| is_private(IpAddr::V4(v4)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urls_are_https_and_public_unless_the_deployment_allows_private_ones() {
        for url in [
            "http://example.org/hook",
            "https://127.0.0.1/hook",
            "https://10.1.2.3/hook",
            "https://192.168.0.9/hook",
            "https://169.254.169.254/latest",
            "https://[::1]/hook",
            "https://[fd00::1]/hook",
            "https://localhost/hook",
            "https://100.64.0.1/",
            "not a url",
            "https:///nohost",
        ] {
            assert!(matches!(check_url(url, false).await, Err(WebhookError::Url(_))), "{url}");
        }
        assert!(check_url("https://93.184.215.14/hook", false).await.is_ok());
        assert!(check_url("http://127.0.0.1:9/hook", true).await.is_ok());
        assert!(check_url("ftp://127.0.0.1/hook", true).await.is_err());
    }
}
