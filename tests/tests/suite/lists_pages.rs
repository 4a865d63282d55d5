//! Mailing lists through the edge: the hosted subscribe form, the double opt-in link
//! (its GET changes nothing, its button confirms), a campaign's List-Unsubscribe
//! headers and RFC 8058's one-click POST, in English and in French; tampered tokens;
//! and the limits of the public forms (body size, posts per address, cross-origin).
//! backend-server, mta-server with a fake SendGrid, and client-api run in this process;
//! the app's key (scopes `send`, `read`) drives the lists API at `/app/v1`.

use std::net::IpAddr;
use std::time::Duration;

use bitmail_tests::eventually::eventually;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use bitmail_runtime::config::Secret;
use mta_server::config::ProviderConfig;

use crate::app_api::App;

/// A page as a browser (or a mail provider) got it.
struct Page {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl std::fmt::Debug for Page {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.text)
    }
}

/// A visitor from loopback address `from` (the forms are limited per address),
/// speaking `accept_language`, with no cookie.
struct Visitor {
    http: reqwest::Client,
    base: String,
    accept_language: &'static str,
}

impl Visitor {
    fn new(app: &App, from: &str, accept_language: &'static str) -> Visitor {
        let (http, base) = app.cluster.https_client_from(Some(from.parse::<IpAddr>().unwrap()));
        Visitor { http, base, accept_language }
    }

    async fn page(&self, request: reqwest::RequestBuilder) -> Page {
        let response = request.header("accept-language", self.accept_language).send().await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        Page { status, headers, text: response.text().await.unwrap() }
    }

    async fn get(&self, path: &str) -> Page {
        self.page(self.http.get(format!("{}{path}", self.base))).await
    }

    /// A urlencoded POST from another site (the embeddable form, a mail provider).
    async fn post(&self, path: &str, body: &str) -> Page {
        let request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("origin", "https://tenant-site.example")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned());
        self.page(request).await
    }
}

/// `method path` on the lists API with the app's key.
pub(crate) async fn api(app: &App, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let (http, base) = app.cluster.https_client();
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = http.request(method, format!("{base}/app/v1{path}")).bearer_auth(&app.key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The gateway; list mail links to `https://edge.test` (the tests read only the paths).
pub(crate) async fn start() -> App {
    App::start_with(|c| c.lists.public_url = "https://edge.test".into()).await
}

/// A double opt-in list of tenant `default` with the attribute `area`.
pub(crate) async fn new_list(app: &App, name: &str) -> String {
    let body = json!({
        "name": name, "description": "Planned power cuts", "double_opt_in": true,
        "from_email": "news@bitmail.test", "from_name": "Power board", "attributes": ["area"],
    });
    let (status, list) = api(app, "POST", "/lists", Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert!(
        list["subscribe_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/lists/{}/subscribe", list["id"].as_str().unwrap()))
    );
    list["id"].as_str().unwrap().to_owned()
}

/// The one subscriber of `list` with `email`.
pub(crate) async fn subscriber(app: &App, list: &str, email: &str) -> Value {
    let (status, page) = api(app, "GET", &format!("/lists/{list}/subscribers"), None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let found: Vec<&Value> = page["subscribers"].as_array().unwrap().iter().filter(|s| s["email"] == email).collect();
    assert_eq!(found.len(), 1, "{page}");
    found[0].clone()
}

/// The first `/lists/{kind}/TOKEN` path in `text` (a mail's body or header, as JSON).
pub(crate) fn link(text: &str, kind: &str) -> String {
    let start = text.find(&format!("/lists/{kind}/")).unwrap_or_else(|| panic!("no /lists/{kind}/ link in {text}"));
    let token_at = start + "/lists/".len() + kind.len() + 1;
    let token: String =
        text[token_at..].chars().take_while(|c| c.is_ascii_alphanumeric() || "-_.~=+".contains(*c)).collect();
    assert!(!token.is_empty(), "an empty token in {text}");
    format!("/lists/{kind}/{token}")
}

/// The mails to `to` the fake provider got, as their JSON bodies.
pub(crate) fn mails_to(app: &App, to: &str) -> Vec<Value> {
    app.fake.received().into_iter().map(|r| r.body).filter(|b| b.to_string().contains(to)).collect()
}

pub(crate) async fn wait_for_mails(app: &App, to: &str, n: usize) -> Vec<Value> {
    let what = format!("{n} mail(s) to {to} at the provider");
    eventually(Duration::from_secs(20), &what, || async { mails_to(app, to) }, |m| m.len() >= n).await
}

/// Words of each language the flow checks.
struct Words {
    accept_language: &'static str,
    language: &'static str,
    check_mail: &'static str,
    confirm_button: &'static str,
    confirmed: &'static str,
    unsubscribe_question: &'static str,
    unsubscribed: &'static str,
    invalid: &'static str,
}

const EN: Words = Words {
    accept_language: "en-GB,en;q=0.9",
    language: "en",
    check_mail: "Check your mail",
    confirm_button: "Confirm my subscription",
    confirmed: "Subscription confirmed",
    unsubscribe_question: "from Power cuts",
    unsubscribed: "is unsubscribed from",
    invalid: "This link is not valid or has expired.",
};

const FR: Words = Words {
    accept_language: "fr-FR,fr;q=0.9,en;q=0.5",
    language: "fr",
    check_mail: "Consultez votre messagerie",
    confirm_button: "Confirmer mon abonnement",
    confirmed: "Abonnement confirmé",
    unsubscribe_question: "de Power cuts ?",
    unsubscribed: "est désabonné(e) de",
    invalid: "Ce lien n’est pas valide ou a expiré.",
};

/// Subscribe → confirmation mail → GET (nothing changes) → POST (confirmed) → a campaign
/// with both List-Unsubscribe headers → GET the unsubscribe link (nothing changes) →
/// one-click POST (unsubscribed) → the next campaign skips them.
async fn whole_flow(w: &Words, email: &str) {
    let app = start().await;
    let list = new_list(&app, "Power cuts").await;
    let visitor = Visitor::new(&app, "127.0.0.1", w.accept_language);

    let form = visitor.get(&format!("/lists/{list}/subscribe")).await;
    assert_eq!(form.status, StatusCode::OK, "{form:?}");
    assert!(form.text.contains("name=\"area\"") && form.text.contains(&format!("<html lang=\"{}\">", w.language)));
    assert!(!form.text.contains("<script"), "{form:?}");
    let body = format!("email={}&name=Ada+Lovelace&language={}&area=Colombo+7", email.replace('@', "%40"), w.language);
    let done = visitor.post(&format!("/lists/{list}/subscribe"), &body).await;
    assert_eq!(done.status, StatusCode::OK, "{done:?}");
    assert!(done.text.contains(w.check_mail), "{done:?}");
    assert_eq!(subscriber(&app, &list, email).await["state"], "unconfirmed");

    let mails = wait_for_mails(&app, email, 1).await;
    let confirm = link(&mails[0].to_string(), "confirm");
    // A scanner following the link changes nothing.
    for _ in 0..2 {
        let page = visitor.get(&confirm).await;
        assert_eq!(page.status, StatusCode::OK, "{page:?}");
        assert!(page.text.contains(w.confirm_button) && page.text.contains("<form method=\"post\">"), "{page:?}");
        assert_eq!(page.headers["referrer-policy"], "no-referrer");
    }
    let after_get = subscriber(&app, &list, email).await;
    assert_eq!(after_get["state"], "unconfirmed", "{after_get}");
    // A tampered token is refused, on GET and POST, and changes nothing.
    let tampered = tamper(&confirm);
    for page in [visitor.get(&tampered).await, visitor.post(&tampered, "").await] {
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{page:?}");
        assert!(page.text.contains(w.invalid), "{page:?}");
    }
    assert_eq!(subscriber(&app, &list, email).await["state"], "unconfirmed");
    // A confirmation token is no unsubscribe token.
    let elsewhere = visitor.get(&confirm.replace("/confirm/", "/u/")).await;
    assert_eq!(elsewhere.status, StatusCode::FORBIDDEN, "{elsewhere:?}");
    // The subscriber's language before the browser's; `?lang=` before both.
    let other = if w.language == "fr" { &EN } else { &FR };
    let browser = Visitor::new(&app, "127.0.0.9", other.accept_language);
    assert!(browser.get(&confirm).await.text.contains(w.confirm_button));
    let asked = browser.get(&format!("{confirm}?lang={}", other.language)).await;
    assert!(asked.text.contains(other.confirm_button), "{asked:?}");
    let page = visitor.post(&confirm, "").await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert!(page.text.contains(w.confirmed), "{page:?}");
    let confirmed = subscriber(&app, &list, email).await;
    assert_eq!((confirmed["state"].as_str(), confirmed["language"].as_str()), (Some("confirmed"), Some(w.language)));

    // A campaign reaches them with both headers.
    let campaign =
        json!({ "list_id": list, "name": "June", "subject": "Cut in {{ area }}", "markdown": "Hello {{ name }}" });
    let (status, created) = api(&app, "POST", "/campaigns", Some(campaign)).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let mails = wait_for_mails(&app, email, 2).await;
    let sent = mails.iter().find(|m| m.to_string().contains("Cut in Colombo 7")).expect("the campaign's copy");
    let headers = &sent["headers"];
    let list_unsubscribe =
        headers["List-Unsubscribe"].as_str().unwrap_or_else(|| panic!("no List-Unsubscribe: {sent}"));
    assert_eq!(headers["List-Unsubscribe-Post"], "List-Unsubscribe=One-Click", "{sent}");
    let unsubscribe = link(list_unsubscribe, "u");

    let page = visitor.get(&unsubscribe).await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert!(page.text.contains(w.unsubscribe_question), "{page:?}");
    assert!(page.headers.get("location").is_none());
    assert_eq!(subscriber(&app, &list, email).await["state"], "confirmed", "a GET changes nothing");

    // The provider's one-click POST: no cookie, its own origin, 200, no redirect.
    let page = visitor.post(&unsubscribe, "List-Unsubscribe=One-Click").await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert!(page.text.contains(w.unsubscribed), "{page:?}");
    let gone = subscriber(&app, &list, email).await;
    assert_eq!(
        (gone["state"].as_str(), gone["unsubscribe_reason"].as_str()),
        (Some("unsubscribed"), Some("one-click"))
    );

    // The next campaign skips them.
    let campaign = json!({ "list_id": list, "name": "July", "subject": "July cut", "markdown": "Hello" });
    let (status, next) = api(&app, "POST", "/campaigns", Some(campaign)).await;
    assert_eq!(status, StatusCode::OK, "{next}");
    let path = format!("/campaigns/{}", next["id"].as_str().unwrap());
    let finished = eventually(
        Duration::from_secs(20),
        "the July campaign done",
        || api(&app, "GET", &path, None),
        |(_, c)| c["state"] == "done",
    )
    .await
    .1;
    assert_eq!(finished["stats"]["submitted"], 0, "{finished}");
    assert!(!mails_to(&app, email).iter().any(|m| m.to_string().contains("July cut")));
}

/// The token of `path` with one character changed.
fn tamper(path: &str) -> String {
    let (head, token) = path.rsplit_once('/').unwrap();
    let mut chars: Vec<char> = token.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    format!("{head}/{}", chars.into_iter().collect::<String>())
}

#[tokio::test]
async fn subscribing_confirming_and_one_click_unsubscribing_in_english() {
    whole_flow(&EN, "ada@example.net").await;
}

#[tokio::test]
async fn subscribing_confirming_and_one_click_unsubscribing_in_french() {
    whole_flow(&FR, "zoe@example.net").await;
}

#[tokio::test]
async fn bad_forms_are_refused_with_the_form_again_and_nothing_stored() {
    let app = start().await;
    let list = new_list(&app, "Power cuts").await;
    let visitor = Visitor::new(&app, "127.0.0.2", "fr");
    let path = format!("/lists/{list}/subscribe");
    for body in ["email=not-an-address&name=Eve", "email=eve%40example.net&name=Eve%0D%0ABcc%3A+x%40y.z"] {
        let page = visitor.post(&path, body).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{page:?}");
        assert!(
            page.text.contains("Veuillez corriger le formulaire") && page.text.contains("name=\"email\""),
            "{page:?}"
        );
    }
    // A 10 MB attribute: refused before it is read.
    let big = format!("email=eve%40example.net&area={}", "x".repeat(10 << 20));
    let page = visitor.post(&path, &big).await;
    assert_eq!(page.status, StatusCode::PAYLOAD_TOO_LARGE, "{page:?}");
    let (_, page) = api(&app, "GET", &format!("/lists/{list}/subscribers"), None).await;
    assert_eq!(page["subscribers"], json!([]), "nothing stored: {page}");
    assert!(app.fake.received().is_empty());
    // Whatever a list is named, its page shows it as text.
    let (status, scripted) = api(&app, "POST", "/lists", Some(json!({
        "name": "<script>alert(1)</script>", "from_email": "news@bitmail.test", "description": "\"><img src=x onerror=alert(1)>",
    })))
    .await;
    assert_eq!(status, StatusCode::OK, "{scripted}");
    let page = visitor.get(&format!("/lists/{}/subscribe", scripted["id"].as_str().unwrap())).await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert!(page.text.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !page.text.contains("<script"), "{page:?}");
    assert!(!page.text.contains("<img"), "{page:?}");
    assert!(page.headers["content-security-policy"].to_str().unwrap().starts_with("default-src 'none'"));
    // An unknown list: 404, in the visitor's language.
    let page = visitor.get("/lists/0193a000-0000-7000-8000-000000000000/subscribe").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND, "{page:?}");
    assert!(page.text.contains("Cette liste n’existe pas"), "{page:?}");
    // A link that is no token at all, and one in the wrong place (a confirm token is
    // no unsubscribe token).
    let page = visitor.get("/lists/u/not%20a%20token").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{page:?}");
}

#[tokio::test]
async fn the_public_forms_are_cross_origin_and_limited_per_address() {
    let app = start().await;
    let list = new_list(&app, "Power cuts").await;
    let visitor = Visitor::new(&app, "127.0.0.3", "en");
    let path = format!("/lists/{list}/subscribe");
    for i in 0..10 {
        let page = visitor.post(&path, &format!("email=user{i}%40example.net")).await;
        // From another origin, with no session: not refused as cross-origin or for CSRF.
        assert_eq!(page.status, StatusCode::OK, "post {i}: {page:?}");
    }
    let refused = visitor.post(&path, "email=user10%40example.net").await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{refused:?}");
    let retry: u64 = refused.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 500 && retry <= 600, "{retry}");
    // Another address is not held back.
    let other = Visitor::new(&app, "127.0.0.4", "en");
    assert_eq!(other.post(&path, "email=user11%40example.net").await.status, StatusCode::OK);
    let (_, page) = api(&app, "GET", &format!("/lists/{list}/subscribers?limit=100"), None).await;
    assert_eq!(page["subscribers"].as_array().unwrap().len(), 11, "{page}");
    // The JSON API is not cross-origin: an app's call with a browser's foreign Origin is.
    let (http, base) = app.cluster.https_client();
    let response = http
        .post(format!("{base}/app/v1/lists"))
        .header("origin", "https://evil.example")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // And a wrong key is 401.
    let response = http.get(format!("{base}/app/v1/lists")).bearer_auth("bmk_nope_nope").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

/// A subscriber confirmed by the app (its own tenant vouches), and a campaign to them:
/// its copy's preferences and unsubscribe links.
async fn confirmed_with_a_campaign(app: &App, list: &str, email: &str) -> (String, String) {
    let body = json!({ "email": email, "name": "Ada", "attributes": { "area": "North" }, "confirmed": true });
    let (status, added) = api(app, "POST", &format!("/lists/{list}/subscribers"), Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{added}");
    assert_eq!(
        (added["subscriber"]["state"].as_str(), added["confirmation_sent"].as_bool()),
        (Some("confirmed"), Some(false))
    );
    let campaign = json!({ "list_id": list, "name": "June", "subject": "News for {{ area }}", "markdown": "Hi" });
    let (status, created) = api(app, "POST", "/campaigns", Some(campaign)).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let mail = wait_for_mails(app, email, 1).await.remove(0).to_string();
    (link(&mail, "prefs"), link(&mail, "u"))
}

#[tokio::test]
async fn the_preferences_page_changes_name_language_and_attributes_and_leaves() {
    let app = start().await;
    let list = new_list(&app, "Power cuts").await;
    let (prefs, _) = confirmed_with_a_campaign(&app, &list, "ada@example.net").await;
    let visitor = Visitor::new(&app, "127.0.0.5", "en");
    let page = visitor.get(&prefs).await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert!(page.text.contains("value=\"North\"") && page.text.contains("value=\"Ada\""), "{page:?}");
    assert_eq!(
        subscriber(&app, &list, "ada@example.net").await["attributes"]["area"],
        "North",
        "a GET changes nothing"
    );

    // A bad value: the form again, nothing changed.
    let page = visitor.post(&prefs, "action=save&name=Ada&language=en&area=South%0ABcc").await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{page:?}");
    assert_eq!(subscriber(&app, &list, "ada@example.net").await["attributes"]["area"], "North");
    // Saved: the page answers in the language just chosen.
    let page = visitor.post(&prefs, "action=save&name=Ada+L&language=fr&area=South").await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert!(
        page.text.contains("Vos préférences sont enregistrées") && page.text.contains("value=\"South\""),
        "{page:?}"
    );
    let saved = subscriber(&app, &list, "ada@example.net").await;
    assert_eq!(
        (saved["name"].as_str(), saved["language"].as_str(), saved["attributes"]["area"].as_str()),
        (Some("Ada L"), Some("fr"), Some("South"))
    );
    let page = visitor.post(&prefs, "action=unsubscribe").await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert!(page.text.contains("désabonné"), "{page:?}");
    let gone = subscriber(&app, &list, "ada@example.net").await;
    assert_eq!(
        (gone["state"].as_str(), gone["unsubscribe_reason"].as_str()),
        (Some("unsubscribed"), Some("preferences"))
    );
    let page = visitor.get(&prefs).await;
    assert!(page.status == StatusCode::OK && !page.text.contains("action"), "no form once unsubscribed: {page:?}");
}

const INBOUND_PASSWORD: &str = "inbound lists password";

#[tokio::test]
async fn mail_to_the_unsubscribe_address_unsubscribes_and_reaches_no_mailbox() {
    let app = App::start_with(|c| {
        c.lists.public_url = "https://edge.test".into();
        if let Some(ProviderConfig::Sendgrid(p)) = c.providers.first_mut() {
            p.inbound_password = Some(Secret::new(INBOUND_PASSWORD));
        }
    })
    .await;
    let list = new_list(&app, "Power cuts").await;
    let (_, unsubscribe) = confirmed_with_a_campaign(&app, &list, "ada@example.net").await;
    let token = unsubscribe.rsplit('/').next().unwrap();
    let inbound = |to: String| {
        let raw = format!(
            "From: Ada <ada@example.net>\r\nTo: {to}\r\nSubject: unsubscribe\r\nMessage-ID: <{}@example.net>\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplease\r\n",
            crate::common::uuid_like()
        );
        let envelope = json!({ "to": [to], "from": "ada@example.net" }).to_string();
        reqwest::multipart::Form::new().text("email", raw).text("envelope", envelope)
    };
    let (http, base) = app.cluster.https_client();
    let post = |form| {
        http.post(format!("{base}/webhooks/sendgrid/inbound"))
            .basic_auth("bitmail", Some(INBOUND_PASSWORD))
            .multipart(form)
            .send()
    };
    // A tampered token unsubscribes nobody, and the mail is for nobody here.
    let response = post(inbound(format!("unsubscribe+{}@bitmail.test", &token[..token.len() - 2]))).await.unwrap();
    let text = response.text().await.unwrap();
    assert!(text.contains("no such recipient here: unsubscribe+"), "{text}");
    assert!(!text.contains(&token[..12]), "the token is not echoed whole: {text}");
    assert_eq!(subscriber(&app, &list, "ada@example.net").await["state"], "confirmed");
    let response = post(inbound(format!("unsubscribe+{token}@bitmail.test"))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{}", response.text().await.unwrap());
    let gone = subscriber(&app, &list, "ada@example.net").await;
    assert_eq!((gone["state"].as_str(), gone["unsubscribe_reason"].as_str()), (Some("unsubscribed"), Some("mail")));
}
