//! The public pages' HTML: the language a page is in, the words in each language, one
//! page shell, and escaping. Every value from outside (a list's name, an address, a
//! message of mta-server) goes through [`escape`]; the words here are the only
//! unescaped text.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The languages of the pages (and of subscribers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    En,
    Fr,
}

impl Lang {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Fr => "fr",
        }
    }

    /// `en`, `fr`, or a tag of either (`fr-CA`), any case.
    pub(crate) fn parse(tag: &str) -> Option<Lang> {
        let primary = tag.trim().split(['-', '_']).next().unwrap_or_default();
        if primary.eq_ignore_ascii_case("en") {
            Some(Lang::En)
        } else if primary.eq_ignore_ascii_case("fr") {
            Some(Lang::Fr)
        } else {
            None
        }
    }

    pub(crate) fn words(self) -> &'static Words {
        match self {
            Lang::En => &EN,
            Lang::Fr => &FR,
        }
    }
}

/// The first of English and French in an `Accept-Language` header, by quality (ties:
/// the order given); None when it names neither.
pub(crate) fn from_accept_language(header: &str) -> Option<Lang> {
    let mut best: Option<(f32, Lang)> = None;
    for item in header.split(',') {
        let mut parts = item.split(';');
        let Some(lang) = parts.next().and_then(Lang::parse) else { continue };
        let q =
            parts.filter_map(|p| p.trim().strip_prefix("q=")).find_map(|q| q.trim().parse::<f32>().ok()).unwrap_or(1.0);
        if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
            best = Some((q, lang));
        }
    }
    best.map(|(_, lang)| lang)
}

/// The page's language: `?lang=`, else the subscriber's, else `Accept-Language`, else
/// English.
pub(crate) fn choose(query: Option<&str>, subscriber: Option<&str>, accept_language: Option<&str>) -> Lang {
    query
        .and_then(Lang::parse)
        .or_else(|| subscriber.and_then(Lang::parse))
        .or_else(|| accept_language.and_then(from_accept_language))
        .unwrap_or(Lang::En)
}

/// Text made safe inside HTML elements and quoted attributes.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `template` with each `{name}` replaced by its value, escaped; one pass over the
/// template, so a value holding `{list}` is not filled in turn.
pub(crate) fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&escape(&rest[..open]));
        let after = &rest[open + 1..];
        let value = after.find('}').and_then(|close| {
            let name = &after[..close];
            values.iter().find(|(n, _)| *n == name).map(|(_, v)| (close, *v))
        });
        match value {
            Some((close, v)) => {
                out.push_str(&escape(v));
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(&escape(rest));
    out
}

/// The words of the pages in one language.
pub(crate) struct Words {
    pub(crate) subscribe_to: &'static str,
    pub(crate) email: &'static str,
    pub(crate) name: &'static str,
    pub(crate) language: &'static str,
    pub(crate) subscribe: &'static str,
    pub(crate) check_mail_title: &'static str,
    pub(crate) check_mail: &'static str,
    pub(crate) subscribed_title: &'static str,
    pub(crate) subscribed: &'static str,
    pub(crate) confirm_title: &'static str,
    pub(crate) confirm_question: &'static str,
    pub(crate) confirm: &'static str,
    pub(crate) confirmed_title: &'static str,
    pub(crate) confirmed: &'static str,
    pub(crate) unsubscribe_title: &'static str,
    pub(crate) unsubscribe_question: &'static str,
    pub(crate) unsubscribe: &'static str,
    pub(crate) unsubscribed_title: &'static str,
    pub(crate) unsubscribed: &'static str,
    pub(crate) already_unsubscribed: &'static str,
    pub(crate) prefs_title: &'static str,
    pub(crate) prefs_intro: &'static str,
    pub(crate) save: &'static str,
    pub(crate) saved: &'static str,
    pub(crate) leave: &'static str,
    pub(crate) error_title: &'static str,
    pub(crate) invalid_link: &'static str,
    pub(crate) not_found: &'static str,
    pub(crate) too_many: &'static str,
    pub(crate) too_large: &'static str,
    pub(crate) unavailable: &'static str,
    pub(crate) internal: &'static str,
    pub(crate) fix_below: &'static str,
    pub(crate) bad_email: &'static str,
    pub(crate) bad_name: &'static str,
    pub(crate) bad_language: &'static str,
    pub(crate) bad_attribute: &'static str,
}

static EN: Words = Words {
    subscribe_to: "Subscribe to {list}",
    email: "E-mail address",
    name: "Name",
    language: "Language",
    subscribe: "Subscribe",
    check_mail_title: "Check your mail",
    check_mail: "We sent a message to {email}. Open the link in it to confirm your subscription to {list}.",
    subscribed_title: "Subscribed",
    subscribed: "{email} is subscribed to {list}.",
    confirm_title: "Confirm your subscription",
    confirm_question: "Confirm the subscription of {email} to {list}?",
    confirm: "Confirm my subscription",
    confirmed_title: "Subscription confirmed",
    confirmed: "{email} is now subscribed to {list}. Thank you.",
    unsubscribe_title: "Unsubscribe",
    unsubscribe_question: "Unsubscribe {email} from {list}?",
    unsubscribe: "Unsubscribe",
    unsubscribed_title: "Unsubscribed",
    unsubscribed: "{email} is unsubscribed from {list}. You will get no more of its mail.",
    already_unsubscribed: "{email} is not subscribed to {list} any more.",
    prefs_title: "Your preferences",
    prefs_intro: "Your subscription of {email} to {list}.",
    save: "Save",
    saved: "Your preferences are saved.",
    leave: "Unsubscribe from this list",
    error_title: "Something is wrong",
    invalid_link: "This link is not valid or has expired.",
    not_found: "This list does not exist.",
    too_many: "Too many attempts from your address. Please try again later.",
    too_large: "The form is too large.",
    unavailable: "The service is not available right now. Please try again shortly.",
    internal: "Something went wrong on our side. Please try again later.",
    fix_below: "Please correct the form:",
    bad_email: "This is not a valid e-mail address.",
    bad_name: "The name must be at most 100 characters, on one line.",
    bad_language: "Choose English or French.",
    bad_attribute: "At most 256 characters, on one line.",
};

static FR: Words = Words {
    subscribe_to: "S’abonner à {list}",
    email: "Adresse e-mail",
    name: "Nom",
    language: "Langue",
    subscribe: "S’abonner",
    check_mail_title: "Consultez votre messagerie",
    check_mail: "Nous avons envoyé un message à {email}. Ouvrez le lien qu’il contient pour confirmer votre abonnement à {list}.",
    subscribed_title: "Abonnement enregistré",
    subscribed: "{email} est abonné(e) à {list}.",
    confirm_title: "Confirmez votre abonnement",
    confirm_question: "Confirmer l’abonnement de {email} à {list} ?",
    confirm: "Confirmer mon abonnement",
    confirmed_title: "Abonnement confirmé",
    confirmed: "{email} est maintenant abonné(e) à {list}. Merci.",
    unsubscribe_title: "Désabonnement",
    unsubscribe_question: "Désabonner {email} de {list} ?",
    unsubscribe: "Me désabonner",
    unsubscribed_title: "Désabonnement effectué",
    unsubscribed: "{email} est désabonné(e) de {list}. Vous ne recevrez plus ses messages.",
    already_unsubscribed: "{email} n’est plus abonné(e) à {list}.",
    prefs_title: "Vos préférences",
    prefs_intro: "Votre abonnement de {email} à {list}.",
    save: "Enregistrer",
    saved: "Vos préférences sont enregistrées.",
    leave: "Me désabonner de cette liste",
    error_title: "Un problème est survenu",
    invalid_link: "Ce lien n’est pas valide ou a expiré.",
    not_found: "Cette liste n’existe pas.",
    too_many: "Trop de tentatives depuis votre adresse. Veuillez réessayer plus tard.",
    too_large: "Le formulaire est trop volumineux.",
    unavailable: "Le service n’est pas disponible pour le moment. Veuillez réessayer dans un instant.",
    internal: "Une erreur s’est produite de notre côté. Veuillez réessayer plus tard.",
    fix_below: "Veuillez corriger le formulaire :",
    bad_email: "Cette adresse e-mail n’est pas valide.",
    bad_name: "Le nom doit tenir sur une ligne, en 100 caractères au plus.",
    bad_language: "Choisissez le français ou l’anglais.",
    bad_attribute: "256 caractères au plus, sur une ligne.",
};

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f4f5f7;color:#1f2328;margin:0}\
main{max-width:32rem;margin:3rem auto;background:#fff;padding:2rem;border-radius:8px;\
box-shadow:0 1px 3px rgba(0,0,0,.1)}h1{font-size:1.4rem;margin-top:0}\
label{display:block;margin:.8rem 0 .2rem;font-weight:600}\
input,select{width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem;border:1px solid #bbb;border-radius:4px}\
button{margin-top:1.2rem;padding:.6rem 1.2rem;font-size:1rem;border:0;border-radius:4px;background:#0b5cad;color:#fff;cursor:pointer}\
button.secondary{background:#6e7781}.error{background:#fdecea;color:#8a1c12;padding:.8rem;border-radius:4px}\
.field-error{color:#8a1c12;font-size:.9rem}.lang{font-size:.85rem;text-align:right}";

/// The Content-Security-Policy of every page: no script at all, the inline style, forms
/// posting only here, never framed.
const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A whole page: `title` is plain text (escaped here), `body` HTML already safe.
pub(crate) fn page(status: StatusCode, lang: Lang, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"{code}\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title}</title>\
<style>{STYLE}</style></head><body><main><h1>{title}</h1>{body}</main></body></html>",
        code = lang.code(),
        title = escape(title),
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    // The token is in the URL: no other site learns it from a Referer, and no cache
    // keeps the page.
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// A page that only says something (a result, an error), as a paragraph.
pub(crate) fn message(status: StatusCode, lang: Lang, title: &str, text_html: &str) -> Response {
    page(status, lang, title, &format!("<p>{text_html}</p>"))
}

/// An error page; with `retry_after_secs`, the `Retry-After` header too.
pub(crate) fn error(status: StatusCode, lang: Lang, text: &str, retry_after_secs: Option<u64>) -> Response {
    let body = format!("<p class=\"error\">{}</p>", escape(text));
    let mut response = page(status, lang, lang.words().error_title, &body);
    if let Some(secs) = retry_after_secs
        && let Ok(value) = HeaderValue::from_str(&secs.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// A text input; `error` (already words of the page) shown under it.
pub(crate) fn input(name: &str, label: &str, kind: &str, value: &str, required: bool, error: Option<&str>) -> String {
    let name = escape(name);
    let mut html = format!(
        "<label for=\"f-{name}\">{}</label><input id=\"f-{name}\" name=\"{name}\" type=\"{kind}\" value=\"{}\"{}>",
        escape(label),
        escape(value),
        if required { " required" } else { "" },
    );
    if let Some(error) = error {
        html.push_str(&format!("<div class=\"field-error\">{}</div>", escape(error)));
    }
    html
}

/// The language choice, `selected` chosen.
pub(crate) fn language_select(words: &Words, selected: Lang, error: Option<&str>) -> String {
    let option = |lang: Lang, label: &str| {
        let chosen = if lang == selected { " selected" } else { "" };
        format!("<option value=\"{}\"{chosen}>{label}</option>", lang.code())
    };
    let mut html = format!(
        "<label for=\"f-language\">{}</label><select id=\"f-language\" name=\"language\">{}{}</select>",
        escape(words.language),
        option(Lang::En, "English"),
        option(Lang::Fr, "Français"),
    );
    if let Some(error) = error {
        html.push_str(&format!("<div class=\"field-error\">{}</div>", escape(error)));
    }
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_is_the_query_then_the_subscriber_then_the_browser() {
        assert_eq!(choose(Some("fr"), Some("en"), Some("en")), Lang::Fr);
        assert_eq!(choose(None, Some("fr"), Some("en")), Lang::Fr);
        assert_eq!(choose(Some("de"), None, Some("fr-CA,fr;q=0.9,en;q=0.8")), Lang::Fr);
        assert_eq!(choose(None, Some(""), Some("de-DE,de;q=0.9,en;q=0.5,fr;q=0.7")), Lang::Fr);
        assert_eq!(choose(None, None, Some("de, en;q=0.2")), Lang::En);
        assert_eq!(choose(None, None, Some("fr;q=0, en;q=0.1")), Lang::En);
        assert_eq!(choose(None, None, Some("de")), Lang::En);
        assert_eq!(choose(None, None, None), Lang::En);
        assert_eq!(from_accept_language("EN-gb;q=0.5, FR;q=0.5"), Some(Lang::En), "ties keep the order given");
        assert_eq!(from_accept_language("*"), None);
    }

    #[test]
    fn values_are_escaped_and_words_are_not() {
        assert_eq!(
            escape("<a href=\"x\">O'Neil & co</a>"),
            "&lt;a href=&quot;x&quot;&gt;O&#39;Neil &amp; co&lt;/a&gt;"
        );
        let filled = fill(EN.unsubscribe_question, &[("email", "a@b.c"), ("list", "<script>alert(1)</script>")]);
        assert_eq!(filled, "Unsubscribe a@b.c from &lt;script&gt;alert(1)&lt;/script&gt;?");
        // A value holding a placeholder is not filled again.
        assert_eq!(fill("{email} {list}", &[("email", "{list}"), ("list", "x")]), "{list} x");
        let html = input("area\"><script>", "<b>", "text", "\"><img src=x>", true, Some("<i>"));
        assert!(!html.contains("<script>") && !html.contains("<img") && !html.contains("<b>") && !html.contains("<i>"));
    }

    #[tokio::test]
    async fn pages_carry_their_language_and_no_script() {
        let response = error(StatusCode::TOO_MANY_REQUESTS, Lang::Fr, FR.too_many, Some(120));
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "120");
        assert!(response.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("default-src 'none'"));
        assert_eq!(response.headers()[header::REFERRER_POLICY], "no-referrer");
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.contains("<html lang=\"fr\">") && text.contains("Trop de tentatives"), "{text}");
        assert!(!text.contains("<script"), "{text}");
    }
}
