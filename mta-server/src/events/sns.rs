//! Amazon SNS HTTPS subscriptions: how Amazon SES hands BitMail its events and the mail
//! it receives. Every SNS message is a JSON document signed by SNS with RSA (PKCS#1 v1.5)
//! over a canonical string of some of its fields; the public key is in an X.509
//! certificate that SNS serves over HTTPS at `SigningCertURL`.
//!
//! A message is accepted only when its `TopicArn` is configured, its `SigningCertURL` is
//! `https` on an SNS host (or a configured host, for tests), the signature verifies with
//! that certificate's key, and its `Timestamp` is at most [`SNS_MAX_AGE`] old. The
//! certificate is trusted because it was fetched over TLS from an SNS host; fetched
//! certificates are kept by URL, so SNS's certificate is fetched once, not per message.
//!
//! The canonical string (AWS, "Verifying the signatures of Amazon SNS messages") is
//! `key\nvalue\n` for each of, in this order:
//! - `Notification`: `Message`, `MessageId`, `Subject` (only when present), `Timestamp`,
//!   `TopicArn`, `Type`;
//! - `SubscriptionConfirmation` and `UnsubscribeConfirmation`: `Message`, `MessageId`,
//!   `SubscribeURL`, `Timestamp`, `Token`, `TopicArn`, `Type`.
//!
//! `SignatureVersion` 1 signs with SHA-1, 2 with SHA-256.
//!
//! SNS's `Timestamp` is the first publish time, kept across SNS's retries, so a message
//! may be up to an hour old ([`SNS_MAX_AGE`]) and at most [`super::MAX_SKEW`] in the
//! future. SNS hosts are `sns.<region>.amazonaws.com` and `sns.<region>.amazonaws.com.cn`
//! on port 443. A certificate URL that is not https, not on an allowed host or not a
//! `.pem` is refused before anything is fetched; a certificate that cannot be fetched
//! (network, TLS, a non-2xx answer) is [`Refused::Unavailable`] (503), which SNS retries.
//! A topic not configured is [`Refused::Forbidden`] (403). A verified
//! `SubscriptionConfirmation` is confirmed by visiting its `SubscribeURL` (https, allowed
//! host only); an `UnsubscribeConfirmation` is not confirmed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_lc_rs::signature::{
    RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY, RSA_PKCS1_2048_8192_SHA256, RsaParameters, UnparsedPublicKey,
};
use base64::prelude::*;
use bitmail_runtime::sync::lock;
use reqwest::Url;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;

use crate::webhook::MAX_SKEW;
use crate::webhook::Refused;

/// How old a message's `Timestamp` may be. SNS keeps the time of the first attempt
/// across its retries, which it spreads over up to an hour by default.
pub const SNS_MAX_AGE: Duration = Duration::from_secs(3600);

/// The largest certificate (PEM) accepted from `SigningCertURL`.
const MAX_CERT_BYTES: usize = 64 * 1024;
/// How long fetching a certificate or confirming a subscription may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How many certificates are kept. SNS uses one per region and rotates it rarely; past
/// this many distinct URLs the cache starts over.
const MAX_CACHED_CERTS: usize = 32;

/// Which SNS messages are accepted and where certificates may come from.
#[derive(Debug, Clone, Default)]
pub struct SnsSettings {
    /// TopicArns accepted; any other topic is refused.
    pub topics: Vec<String>,
    /// Hosts `SigningCertURL` and `SubscribeURL` may point to. Empty means SNS's own hosts
    /// only: `sns.<region>.amazonaws.com` and `sns.<region>.amazonaws.com.cn`, on port 443.
    /// An entry may carry a port (`localhost:8443`); without one it means port 443.
    pub cert_hosts: Vec<String>,
    /// Extra trusted root certificates (PEM) for the HTTPS fetches; for tests.
    pub extra_roots_pem: Option<Vec<u8>>,
}

/// The three kinds of message SNS posts to an HTTPS subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnsKind {
    Notification,
    SubscriptionConfirmation,
    UnsubscribeConfirmation,
}

impl SnsKind {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "Notification" => Some(SnsKind::Notification),
            "SubscriptionConfirmation" => Some(SnsKind::SubscriptionConfirmation),
            "UnsubscribeConfirmation" => Some(SnsKind::UnsubscribeConfirmation),
            _ => None,
        }
    }
}

/// A verified SNS message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnsMessage {
    pub kind: SnsKind,
    pub message_id: String,
    pub topic_arn: String,
    pub subject: Option<String>,
    /// The payload: for SES, a JSON document (an event or a received mail).
    pub message: String,
    /// When SNS first published the message.
    pub timestamp_ms: u64,
    /// For a confirmation: the URL to visit to confirm the subscription.
    pub subscribe_url: Option<String>,
}

/// Verifies SNS messages; holds the HTTPS client and the fetched certificates.
pub struct Verifier {
    settings: SnsSettings,
    client: reqwest::Client,
    /// SubjectPublicKeyInfo (DER) of each certificate fetched, by URL.
    keys: Mutex<HashMap<String, Vec<u8>>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("topics", &self.settings.topics).finish_non_exhaustive()
    }
}

impl Verifier {
    pub fn new(settings: SnsSettings) -> Result<Self, String> {
        if settings.topics.is_empty() {
            return Err("no SNS topic is allowed: list the TopicArns to accept".into());
        }
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(FETCH_TIMEOUT)
            .timeout(FETCH_TIMEOUT);
        if let Some(pem) = &settings.extra_roots_pem {
            let roots = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("the extra root certificates are not PEM: {e}"))?;
            if roots.is_empty() {
                return Err("the extra root certificates hold no certificate".into());
            }
            builder = builder.tls_certs_merge(roots);
        }
        let client = builder.build().map_err(|e| format!("cannot build the HTTPS client: {e}"))?;
        Ok(Verifier { settings, client, keys: Mutex::new(HashMap::new()) })
    }

    /// Parses and verifies one SNS message (the body SNS posted). `now_ms` is the time
    /// now in milliseconds since the epoch.
    ///
    /// A certificate that cannot be fetched is [`Refused::Unavailable`], so SNS retries.
    pub async fn verify(&self, body: &[u8], now_ms: u64) -> Result<SnsMessage, Refused> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| Refused::Malformed(format!("not a JSON document: {e}")))?;
        let fields = value.as_object().ok_or_else(|| Refused::Malformed("not a JSON object".into()))?;
        let text = |name: &str| fields.get(name).and_then(Value::as_str);
        let required = |name: &str| {
            text(name).ok_or_else(|| Refused::Malformed(format!("not an SNS message: `{name}` is missing")))
        };
        let type_name = required("Type")?;
        let kind = SnsKind::parse(type_name)
            .ok_or_else(|| Refused::Malformed(format!("not an SNS message: unknown Type {type_name:?}")))?;
        let (message_id, topic_arn, message, timestamp) =
            (required("MessageId")?, required("TopicArn")?, required("Message")?, required("Timestamp")?);
        let confirmation = kind != SnsKind::Notification;
        let (token, subscribe_url) =
            if confirmation { (Some(required("Token")?), Some(required("SubscribeURL")?)) } else { (None, None) };

        if !self.settings.topics.iter().any(|t| t == topic_arn) {
            return Err(Refused::Forbidden(format!("topic {topic_arn:?} is not one BitMail accepts")));
        }
        let signed = |name: &str| {
            text(name).ok_or_else(|| Refused::Unauthorized(format!("`{name}` is missing: the message is not signed")))
        };
        let algorithm: &'static RsaParameters = match signed("SignatureVersion")? {
            "1" => &RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            "2" => &RSA_PKCS1_2048_8192_SHA256,
            other => return Err(Refused::Unauthorized(format!("SignatureVersion {other:?} is not 1 or 2"))),
        };
        let signature = BASE64_STANDARD
            .decode(signed("Signature")?)
            .map_err(|_| Refused::Unauthorized("`Signature` is not base64".into()))?;
        let cert_url = self.allowed_url(signed("SigningCertURL")?, "SigningCertURL").map_err(Refused::Unauthorized)?;
        if !cert_url.path().ends_with(".pem") {
            return Err(Refused::Unauthorized(format!("SigningCertURL {cert_url} does not name a .pem certificate")));
        }
        // SNS's certificate URLs carry neither; each new query would be a new cache
        // entry and a new fetch (anyone could make the verifier fetch without end).
        if cert_url.query().is_some() || cert_url.fragment().is_some() {
            return Err(Refused::Unauthorized(format!("SigningCertURL {cert_url} carries a query or fragment")));
        }
        let timestamp_ms = parse_timestamp_ms(timestamp)
            .ok_or_else(|| Refused::Malformed(format!("Timestamp {timestamp:?} is not an ISO 8601 UTC time")))?;
        fresh(timestamp_ms, now_ms)?;

        let subject = if confirmation { None } else { text("Subject") };
        let mut canonical = String::with_capacity(message.len() + 512);
        let mut add = |key: &str, value: &str| {
            canonical.push_str(key);
            canonical.push('\n');
            canonical.push_str(value);
            canonical.push('\n');
        };
        add("Message", message);
        add("MessageId", message_id);
        if let Some(subject) = subject {
            add("Subject", subject);
        }
        if let Some(url) = subscribe_url {
            add("SubscribeURL", url);
        }
        add("Timestamp", timestamp);
        if let Some(token) = token {
            add("Token", token);
        }
        add("TopicArn", topic_arn);
        add("Type", type_name);

        let spki = self.public_key(&cert_url).await?;
        UnparsedPublicKey::new(algorithm, &spki)
            .verify(canonical.as_bytes(), &signature)
            .map_err(|_| Refused::Unauthorized("the signature does not match the message".into()))?;

        Ok(SnsMessage {
            kind,
            message_id: message_id.to_owned(),
            topic_arn: topic_arn.to_owned(),
            subject: subject.map(str::to_owned),
            message: message.to_owned(),
            timestamp_ms,
            subscribe_url: subscribe_url.map(str::to_owned),
        })
    }

    /// Confirms the subscription a verified `SubscriptionConfirmation` asks for, by
    /// visiting its `SubscribeURL` (https, on an allowed host) and expecting a 2xx.
    pub async fn confirm(&self, message: &SnsMessage) -> Result<(), String> {
        if message.kind != SnsKind::SubscriptionConfirmation {
            return Err(format!("message {} is not a SubscriptionConfirmation", message.message_id));
        }
        let raw = message.subscribe_url.as_deref().ok_or("the confirmation has no SubscribeURL")?;
        let url = self.allowed_url(raw, "SubscribeURL")?;
        let host = url.host_str().unwrap_or_default().to_owned();
        let answer = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("cannot reach {host} to confirm: {}", chain(&e.without_url())))?;
        let status = answer.status();
        if !status.is_success() {
            return Err(format!("{host} answered {status} to the subscription confirmation"));
        }
        tracing::info!(topic = %message.topic_arn, "confirmed the SNS subscription");
        Ok(())
    }

    /// `raw` parsed, when it is https on an allowed host and port.
    /// Errors show the URL without its query, which for a `SubscribeURL` holds the token.
    fn allowed_url(&self, raw: &str, what: &str) -> Result<Url, String> {
        let url = Url::parse(raw);
        let raw = raw.split('?').next().unwrap_or_default();
        let url = url.map_err(|e| format!("{what} {raw:?} is not a URL: {e}"))?;
        if url.scheme() != "https" {
            return Err(format!("{what} {raw:?} is not https"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("{what} {raw:?} carries credentials"));
        }
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let port = url.port_or_known_default().unwrap_or(443);
        let allowed = if self.settings.cert_hosts.is_empty() {
            port == 443 && is_sns_host(&host)
        } else {
            self.settings.cert_hosts.iter().any(|entry| {
                let entry = entry.trim().to_ascii_lowercase();
                match entry.rsplit_once(':') {
                    Some((h, p)) if p.parse::<u16>().is_ok() => h == host && p.parse() == Ok(port),
                    _ => entry == host && port == 443,
                }
            })
        };
        if !allowed {
            return Err(format!("{what} {raw:?} is not on an SNS host"));
        }
        Ok(url)
    }

    /// The SubjectPublicKeyInfo of the certificate at `url`, fetched once.
    async fn public_key(&self, url: &Url) -> Result<Vec<u8>, Refused> {
        if let Some(spki) = lock(&self.keys).get(url.as_str()) {
            return Ok(spki.clone());
        }
        let pem = self.fetch_certificate(url).await?;
        let der = CertificateDer::from_pem_slice(&pem)
            .map_err(|_| Refused::Unauthorized(format!("{url} does not hold a PEM certificate")))?;
        let cert = webpki::EndEntityCert::try_from(&der)
            .map_err(|e| Refused::Unauthorized(format!("the certificate at {url} cannot be read: {e}")))?;
        let spki = cert.subject_public_key_info().as_ref().to_vec();
        let mut keys = lock(&self.keys);
        if keys.len() >= MAX_CACHED_CERTS {
            keys.clear();
        }
        keys.insert(url.as_str().to_owned(), spki.clone());
        tracing::info!(url = %url, "fetched an SNS signing certificate");
        Ok(spki)
    }

    async fn fetch_certificate(&self, url: &Url) -> Result<Vec<u8>, Refused> {
        let unavailable = |why: String| Refused::Unavailable(format!("cannot fetch the certificate {url}: {why}"));
        let mut answer = self.client.get(url.clone()).send().await.map_err(|e| unavailable(chain(&e)))?;
        if !answer.status().is_success() {
            return Err(unavailable(format!("the server answered {}", answer.status())));
        }
        if answer.content_length().is_some_and(|n| n > MAX_CERT_BYTES as u64) {
            return Err(Refused::Unauthorized(format!(
                "the certificate at {url} is larger than {MAX_CERT_BYTES} bytes"
            )));
        }
        let mut pem = Vec::new();
        while let Some(chunk) = answer.chunk().await.map_err(|e| unavailable(chain(&e)))? {
            if pem.len() + chunk.len() > MAX_CERT_BYTES {
                return Err(Refused::Unauthorized(format!(
                    "the certificate at {url} is larger than {MAX_CERT_BYTES} bytes"
                )));
            }
            pem.extend_from_slice(&chunk);
        }
        Ok(pem)
    }

    /// How many certificates were fetched and kept.
    pub fn cached_certificates(&self) -> usize {
        lock(&self.keys).len()
    }
}

/// An error with its sources, which reqwest keeps the useful part in.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `sns.<region>.amazonaws.com` or `sns.<region>.amazonaws.com.cn`, the region being
/// lowercase letters, digits and dashes (`us-east-1`, `us-gov-west-1`, `cn-north-1`).
fn is_sns_host(host: &str) -> bool {
    let Some(rest) = host.strip_prefix("sns.") else { return false };
    let Some(region) = rest.strip_suffix(".amazonaws.com").or_else(|| rest.strip_suffix(".amazonaws.com.cn")) else {
        return false;
    };
    !region.is_empty()
        && !region.starts_with('-')
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// At most [`SNS_MAX_AGE`] old, and not more than [`MAX_SKEW`] in the future.
fn fresh(timestamp_ms: u64, now_ms: u64) -> Result<(), Refused> {
    if timestamp_ms > now_ms.saturating_add(MAX_SKEW.as_millis() as u64) {
        return Err(Refused::Unauthorized(format!(
            "Timestamp is {} s in the future; at most {} s are allowed",
            (timestamp_ms - now_ms) / 1000,
            MAX_SKEW.as_secs()
        )));
    }
    let age = now_ms.saturating_sub(timestamp_ms);
    if age > SNS_MAX_AGE.as_millis() as u64 {
        return Err(Refused::Unauthorized(format!(
            "Timestamp is {} s old; at most {} s are allowed",
            age / 1000,
            SNS_MAX_AGE.as_secs()
        )));
    }
    Ok(())
}

/// Milliseconds since the epoch of an ISO 8601 UTC time as AWS writes it:
/// `2012-04-25T21:49:25.719Z` (the fraction optional, of any length; `Z` or `+00:00`).
pub(crate) fn parse_timestamp_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-');
    let (year, month, day): (i64, i64, i64) =
        (d.next()?.parse().ok()?, d.next()?.parse().ok()?, d.next()?.parse().ok()?);
    if d.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) || year < 1970 {
        return None;
    }
    let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
    let mut t = clock.split(':');
    let (hour, minute, second): (u64, u64, u64) =
        (t.next()?.parse().ok()?, t.next()?.parse().ok()?, t.next()?.parse().ok()?);
    if t.next().is_some() || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let millis = fraction.bytes().chain(std::iter::repeat(b'0')).take(3).fold(0, |n, b| n * 10 + u64::from(b - b'0'));
    // A civil date to days since 1970-01-01 (H. Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
    Some(((days * 86_400 + hour * 3600 + minute * 60 + second) * 1000) + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_aws_timestamps() {
        assert_eq!(parse_timestamp_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_timestamp_ms("2012-04-25T21:49:25.719Z"), Some(1_335_390_565_719));
        assert_eq!(parse_timestamp_ms("2024-02-29T12:00:00.5Z"), Some(1_709_208_000_500));
        assert_eq!(parse_timestamp_ms("2016-10-19T23:20:52.240+00:00"), Some(1_476_919_252_240));
        for bad in ["", "2012-04-25 21:49:25Z", "2012-13-01T00:00:00Z", "2012-04-25T21:49:25", "yesterday"] {
            assert_eq!(parse_timestamp_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_sns_hosts_by_default() {
        for good in
            ["sns.us-east-1.amazonaws.com", "sns.us-gov-west-1.amazonaws.com", "sns.cn-north-1.amazonaws.com.cn"]
        {
            assert!(is_sns_host(good), "{good}");
        }
        for bad in [
            "sns.amazonaws.com",
            "sns..amazonaws.com",
            "evil.com",
            "sns.us-east-1.amazonaws.com.evil.com",
            "sns.us-east-1.evil.amazonaws.com",
            "xsns.us-east-1.amazonaws.com",
            "sns.us_east.amazonaws.com",
        ] {
            assert!(!is_sns_host(bad), "{bad}");
        }
    }

    #[test]
    fn allowed_urls() {
        let verifier = Verifier::new(SnsSettings { topics: vec!["t".into()], ..Default::default() }).unwrap();
        assert!(
            verifier.allowed_url("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-x.pem", "u").is_ok()
        );
        for bad in [
            "http://sns.eu-west-1.amazonaws.com/x.pem",
            "https://sns.eu-west-1.amazonaws.com:8443/x.pem",
            "https://user@sns.eu-west-1.amazonaws.com/x.pem",
            "https://example.com/x.pem",
            "not a url",
        ] {
            assert!(verifier.allowed_url(bad, "u").is_err(), "{bad}");
        }
        let local = Verifier::new(SnsSettings {
            topics: vec!["t".into()],
            cert_hosts: vec!["localhost:8443".into(), "sns.test".into()],
            extra_roots_pem: None,
        })
        .unwrap();
        assert!(local.allowed_url("https://localhost:8443/a.pem", "u").is_ok());
        assert!(local.allowed_url("https://sns.test/a.pem", "u").is_ok());
        assert!(local.allowed_url("https://localhost:9000/a.pem", "u").is_err());
        assert!(local.allowed_url("https://sns.test:8443/a.pem", "u").is_err());
        assert!(local.allowed_url("https://sns.us-east-1.amazonaws.com/a.pem", "u").is_err());
        let refused = local.allowed_url("https://example.com/confirm?Token=secret-token", "SubscribeURL").unwrap_err();
        assert!(!refused.contains("secret-token") && refused.contains("https://example.com/confirm"), "{refused}");
    }
}
