//! Campaign and confirmation templates: Markdown with `{{ name }}` variables, checked
//! whole once (an unknown variable or a syntax error is refused before anything is
//! stored or sent) and rendered per subscriber to a subject, HTML and text.
//!
//! Values are the subscriber's (their name, attributes): in the HTML they are escaped
//! for Markdown and HTML alike, so a name can neither add a link nor a tag; in the
//! subject and text they stay as they are, with line breaks turned into spaces (a
//! subject never gains a header).

use std::collections::{BTreeMap, BTreeSet};

/// A checked template: text and variables in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Template(Vec<Part>);

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Var(String),
}

impl Template {
    /// Parses `source`, whose variables must all be in `known`; the error says where.
    pub fn parse(source: &str, known: &BTreeSet<String>) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = source;
        let mut line = 1;
        while let Some(open) = rest.find("{{") {
            let (text, after) = rest.split_at(open);
            line += text.matches('\n').count();
            if text.contains("}}") {
                return Err(format!("line {line}: `}}}}` without `{{{{`"));
            }
            parts.push(Part::Text(text.to_owned()));
            let after = &after[2..];
            let close = after.find("}}").ok_or_else(|| format!("line {line}: `{{{{` is never closed by `}}}}`"))?;
            let name = after[..close].trim();
            if name.is_empty() || name.contains(['{', '\n']) {
                return Err(format!("line {line}: `{{{{{}}}}}` is not a variable", &after[..close]));
            }
            if !known.contains(name) {
                let names: Vec<&str> = known.iter().map(String::as_str).collect();
                return Err(format!("line {line}: unknown variable `{name}` (known: {})", names.join(", ")));
            }
            parts.push(Part::Var(name.to_owned()));
            rest = &after[close + 2..];
        }
        if rest.contains("}}") {
            return Err(format!(
                "line {}: `}}}}` without `{{{{`",
                line + rest.split("}}").next().unwrap_or("").matches('\n').count()
            ));
        }
        parts.push(Part::Text(rest.to_owned()));
        Ok(Template(parts))
    }

    fn fill(&self, values: &BTreeMap<String, String>, escape: fn(&str) -> String) -> String {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var(v) => out.push_str(&escape(values.get(v).map_or("", String::as_str))),
            }
        }
        out
    }

    /// The text with plain values (subjects, the text part).
    pub fn plain(&self, values: &BTreeMap<String, String>) -> String {
        self.fill(values, |v| v.replace(['\r', '\n'], " "))
    }

    /// The Markdown with values that stay text, rendered to HTML.
    pub fn html(&self, values: &BTreeMap<String, String>) -> String {
        let markdown = self.fill(values, escape_markdown);
        let mut html = String::new();
        let parser = pulldown_cmark::Parser::new_ext(&markdown, pulldown_cmark::Options::ENABLE_TABLES);
        pulldown_cmark::html::push_html(&mut html, parser);
        html
    }
}

/// Every ASCII punctuation character backslash-escaped (CommonMark makes each literal,
/// and the HTML renderer escapes `<`, `>`, `&` and `"`), line breaks as spaces.
fn escape_markdown(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\r' | '\n' => out.push(' '),
            c if c.is_ascii_punctuation() => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// The variables a campaign may use: the built-in ones, the list's attributes, and the
/// links each copy carries.
pub fn campaign_variables(attributes: &[String]) -> BTreeSet<String> {
    let mut known: BTreeSet<String> = super::model::BUILT_IN.iter().map(|s| s.to_string()).collect();
    known.extend(attributes.iter().cloned());
    known.insert("unsubscribe_url".into());
    known.insert("preferences_url".into());
    known
}

/// The variables of a confirmation mail.
pub fn confirmation_variables(attributes: &[String]) -> BTreeSet<String> {
    let mut known: BTreeSet<String> = super::model::BUILT_IN.iter().map(|s| s.to_string()).collect();
    known.extend(attributes.iter().cloned());
    known.insert("confirm_url".into());
    known.insert("list_name".into());
    known
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> BTreeSet<String> {
        campaign_variables(&["area".into()])
    }

    fn values() -> BTreeMap<String, String> {
        BTreeMap::from([("name".into(), "Ann <b>*x*</b>\r\nBcc: e@x".into()), ("area".into(), "Colombo 7".into())])
    }

    #[test]
    fn variables_are_filled_and_escaped_in_html() {
        let t = Template::parse("Hello **{{ name }}** of {{area}}", &known()).unwrap();
        let html = t.html(&values());
        assert!(html.contains("<strong>Ann &lt;b&gt;*x*&lt;/b&gt;  Bcc: e@x</strong> of Colombo 7"), "{html}");
        assert_eq!(t.plain(&values()), "Hello **Ann <b>*x*</b>  Bcc: e@x** of Colombo 7");
        let link = Template::parse("[{{ name }}](https://x)", &known()).unwrap();
        let v = BTreeMap::from([("name".into(), "](javascript:alert(1))".into())]);
        assert!(!link.html(&v).contains("href=\"javascript"), "{}", link.html(&v));
    }

    #[test]
    fn unknown_variables_and_broken_syntax_are_refused_with_the_line() {
        let e = Template::parse("Hi\n{{ nmae }}", &known()).unwrap_err();
        assert!(e.starts_with("line 2: unknown variable `nmae`"), "{e}");
        assert!(Template::parse("Hi {{ name", &known()).unwrap_err().contains("never closed"));
        assert!(Template::parse("Hi {{ }}", &known()).unwrap_err().contains("not a variable"));
        assert!(Template::parse("Hi }} there", &known()).unwrap_err().contains("without"));
        assert!(Template::parse("plain text", &known()).is_ok());
    }
}
