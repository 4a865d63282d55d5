//! HTML mail made safe to show: `ammonia` (html5ever's parser, an allow-list of tags,
//! attributes and URL schemes) removes scripts, event handlers, `javascript:` links,
//! styles and forms. Remote images are removed too unless the reader asked for them, so
//! opening a message tells no sender that it was read.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Sanitized HTML and whether remote images were removed from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Clean {
    pub(crate) html: String,
    pub(crate) remote_images_blocked: bool,
}

/// Sanitizes mail HTML; with `allow_remote_images` false, `<img>` from other hosts loses
/// its source. `inline` maps the content ids of the message's inline parts to the URLs
/// that serve them here: `<img src="cid:logo">` shows the part, always (it comes with
/// the message, so showing it tells the sender nothing).
pub(crate) fn mail_html(html: &str, allow_remote_images: bool, inline: &HashMap<String, String>) -> Clean {
    let blocked = Arc::new(AtomicBool::new(false));
    let seen = blocked.clone();
    let inline = inline.clone();
    let html = ammonia::Builder::default()
        .attribute_filter(move |element, attribute, value| {
            // `cid:` passes the scheme allow-list only to be replaced here.
            if let Some(cid) = value.get(..4).filter(|s| s.eq_ignore_ascii_case("cid:")).map(|_| &value[4..]) {
                let url = (element == "img" && attribute == "src")
                    .then(|| inline.get(cid.trim_matches(['<', '>'])))
                    .flatten();
                return url.map(|u| Cow::Owned(u.clone()));
            }
            if element == "img" && attribute == "src" && !allow_remote_images {
                seen.store(true, Ordering::Relaxed);
                return None;
            }
            Some(Cow::Borrowed(value))
        })
        .set_tag_attribute_value("a", "target", "_blank")
        .add_url_schemes(&["cid"])
        .clean(html)
        .to_string();
    Clean { html, remote_images_blocked: blocked.load(Ordering::Relaxed) }
}

/// Markdown written by a user, as the HTML that is sent (and previewed): CommonMark
/// with tables and strikethrough, then sanitized like received mail.
pub(crate) fn markdown(source: &str) -> String {
    use pulldown_cmark::{Options, Parser, html};
    let parser = Parser::new_ext(source, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH);
    let mut out = String::with_capacity(source.len() * 3 / 2);
    html::push_html(&mut out, parser);
    ammonia::Builder::default().clean(&out).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_handlers_and_javascript_links_are_removed() {
        let dirty = r#"<p onclick="steal()">Hi<script>alert(1)</script>
            <a href="javascript:alert(2)">x</a><a href="https://example.org/">ok</a>
            <img src="https://tracker.example/p.gif" onerror="alert(3)"><style>body{}</style></p>"#;
        let clean = mail_html(dirty, false, &HashMap::new());
        for bad in ["script", "onclick", "onerror", "javascript:", "tracker.example", "<style"] {
            assert!(!clean.html.contains(bad), "{bad} survived: {}", clean.html);
        }
        assert!(clean.html.contains(r#"href="https://example.org/""#), "{}", clean.html);
        assert!(clean.remote_images_blocked);

        let shown = mail_html(dirty, true, &HashMap::new());
        assert!(shown.html.contains("tracker.example/p.gif"));
        assert!(!shown.remote_images_blocked);
        assert!(!mail_html("<p>plain</p>", false, &HashMap::new()).remote_images_blocked);
    }

    #[test]
    fn inline_parts_show_from_here_and_unknown_ones_do_not() {
        let inline = HashMap::from([("logo@x".to_owned(), "/api/mail/7/attachments/0".to_owned())]);
        let clean = mail_html(r#"<img src="cid:logo@x"><img src="CID:missing">"#, false, &inline);
        assert!(clean.html.contains(r#"src="/api/mail/7/attachments/0""#), "{}", clean.html);
        assert!(!clean.html.contains("missing"), "{}", clean.html);
    }

    #[test]
    fn markdown_becomes_safe_html() {
        assert_eq!(markdown("**bold** text"), "<p><strong>bold</strong> text</p>\n");
        let html = markdown("hi <script>alert(1)</script> [x](javascript:alert(1))");
        assert!(!html.contains("<script") && !html.contains("javascript:"), "{html}");
    }
}
