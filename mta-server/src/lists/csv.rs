//! The CSV of imports and exports (RFC 4180 with one record per line: a quoted field
//! may hold commas and doubled quotes, not line breaks). An import is checked whole
//! before anything is stored: the header, every line's length and field count.

/// Imports: the whole file, and one line.
pub const MAX_IMPORT_BYTES: usize = 16 << 20;
pub const MAX_LINE_BYTES: usize = 64 << 10;

/// The fields of one line; an error says what is wrong with it.
pub fn parse_line(line: &str) -> Result<Vec<String>, String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("a quoted field is not closed (a field cannot span lines)".into()),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(c) => return Err(format!("{c:?} after a closing quote")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err("a quote inside an unquoted field".into()),
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

/// One field, quoted when it must be; a leading `=`, `+`, `-` or `@` is prefixed with
/// `'` so that a spreadsheet does not run it as a formula.
pub fn field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) { format!("'{value}") } else { value.to_owned() };
    if value.contains([',', '"', '\n', '\r']) || value.starts_with(' ') {
        format!("\"{}\"", value.replace('"', "\"\"").replace(['\r', '\n'], " "))
    } else {
        value
    }
}

/// The columns of an import's header: `email` (required), `name`, `language`, then the
/// list's attribute names.
pub fn header(line: &str, attributes: &[String]) -> Result<Vec<String>, String> {
    let names = parse_line(line).map_err(|e| format!("line 1 (the header): {e}"))?;
    let mut seen = Vec::new();
    for n in &names {
        let n = n.trim().to_ascii_lowercase();
        if !["email", "name", "language"].contains(&n.as_str()) && !attributes.contains(&n) {
            return Err(format!(
                "line 1 (the header): column {n:?} is not email, name, language or an attribute of the list ({})",
                attributes.join(", ")
            ));
        }
        if seen.contains(&n) {
            return Err(format!("line 1 (the header): column {n:?} is there twice"));
        }
        seen.push(n);
    }
    if !seen.iter().any(|n| n == "email") {
        return Err("line 1 (the header): there is no `email` column".into());
    }
    Ok(seen)
}

/// Checks a whole import: the header and the length of every line. Answers the number
/// of data lines.
pub fn check_import(text: &str, attributes: &[String]) -> Result<u64, String> {
    let mut lines = text.split('\n');
    let first = lines.next().unwrap_or("");
    if first.trim().is_empty() {
        return Err("the file is empty: the first line must be a header such as `email,name`".into());
    }
    if first.len() > MAX_LINE_BYTES {
        return Err(format!("line 1 is {} bytes, at most {MAX_LINE_BYTES}", first.len()));
    }
    header(first, attributes)?;
    let mut rows = 0;
    for (i, line) in lines.enumerate() {
        if line.len() > MAX_LINE_BYTES {
            return Err(format!("line {} is {} bytes, at most {MAX_LINE_BYTES}", i + 2, line.len()));
        }
        if !line.trim().is_empty() {
            rows += 1;
        }
    }
    Ok(rows)
}

/// `text` cut into pieces of at most about `max` bytes, each ending at a line's end.
pub fn chunks(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let cut = rest[..max].rfind('\n').map_or_else(|| rest.find('\n').map_or(rest.len(), |i| i + 1), |i| i + 1);
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    if !rest.is_empty() || out.is_empty() {
        out.push(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_with_quotes_and_commas() {
        assert_eq!(parse_line("a,\"b, c\",\"d \"\"e\"\"\",\r").unwrap(), ["a", "b, c", "d \"e\"", ""]);
        assert!(parse_line("a,\"b").is_err());
        assert!(parse_line("a,b\"c").is_err());
        assert_eq!(field("=1+2"), "'=1+2");
        assert_eq!(field("a,b"), "\"a,b\"");
    }

    #[test]
    fn an_import_is_checked_whole() {
        let attrs = vec!["area".to_owned()];
        assert_eq!(check_import("email,area\na@x.org,A\n\nb@x.org,B\n", &attrs).unwrap(), 2);
        assert!(check_import("", &attrs).unwrap_err().contains("empty"));
        assert!(check_import("mail,area\n", &attrs).unwrap_err().contains("\"mail\""));
        assert!(check_import("name\n", &attrs).unwrap_err().contains("no `email`"));
        let long = format!("email\n{}\n", "a".repeat(MAX_LINE_BYTES + 1));
        assert!(check_import(&long, &attrs).unwrap_err().starts_with("line 2 is"));
    }

    #[test]
    fn chunks_end_at_line_ends() {
        let text = "email\na@x\nb@x\nc@x\n";
        let parts = chunks(text, 8);
        assert_eq!(parts.concat(), text);
        assert!(parts.iter().all(|p| p.ends_with('\n')));
    }
}
