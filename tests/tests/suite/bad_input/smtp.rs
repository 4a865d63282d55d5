//! SMTP: commands out of order, malformed or refused, and messages refused after DATA,
//! on the local listener (no AUTH), each on its own connection.

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::Corpus;

/// One reply, its lines joined by ` | `.
async fn reply(reader: &mut BufReader<TcpStream>) -> String {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
            lines.push("(closed)".to_owned());
            break;
        }
        let line = line.trim_end().to_owned();
        let last = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line);
        if last {
            break;
        }
    }
    lines.join(" | ")
}

/// Sends `setup` (answers ignored) and then `last`, and answers the reply to `last`.
async fn converse(corpus: &Corpus, setup: &[&str], last: &[u8]) -> String {
    let stream = TcpStream::connect(corpus.cluster.smtp.local.expect("local listener")).await.unwrap();
    let mut reader = BufReader::new(stream);
    reply(&mut reader).await;
    for line in setup {
        reader.get_mut().write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
        reply(&mut reader).await;
    }
    reader.get_mut().write_all(last).await.unwrap();
    reply(&mut reader).await
}

const EHLO: &str = "EHLO corpus.example";
const MAIL: &str = "MAIL FROM:<ada@bitmail.test>";
const RCPT: &str = "RCPT TO:<bob@example.org>";

pub(super) async fn local(corpus: &Corpus) -> usize {
    let body = |text: &str| format!("{text}\r\n.\r\n").into_bytes();
    let long = format!("MAIL FROM:<{}@bitmail.test>\r\n", "a".repeat(2000));
    let cases: Vec<(&str, Vec<&str>, Vec<u8>)> = vec![
        ("MAIL before EHLO", vec![], format!("{MAIL}\r\n").into_bytes()),
        ("RCPT before MAIL", vec![EHLO], format!("{RCPT}\r\n").into_bytes()),
        ("DATA before RCPT", vec![EHLO, MAIL], b"DATA\r\n".to_vec()),
        ("MAIL twice", vec![EHLO, MAIL], format!("{MAIL}\r\n").into_bytes()),
        ("HELO without a name", vec![], b"HELO\r\n".to_vec()),
        ("unknown command", vec![EHLO], b"FROB the widget\r\n".to_vec()),
        ("MAIL FROM not an address", vec![EHLO], b"MAIL FROM:<nope>\r\n".to_vec()),
        ("MAIL FROM without brackets", vec![EHLO], b"MAIL FROM: ada@bitmail.test junk\r\n".to_vec()),
        ("MAIL FROM outside the tenant", vec![EHLO], b"MAIL FROM:<ada@elsewhere.example>\r\n".to_vec()),
        ("MAIL with a SIZE over the limit", vec![EHLO], b"MAIL FROM:<ada@bitmail.test> SIZE=999999999999\r\n".to_vec()),
        ("MAIL with an unknown parameter", vec![EHLO], b"MAIL FROM:<ada@bitmail.test> FROB=1\r\n".to_vec()),
        ("RCPT not an address", vec![EHLO, MAIL], b"RCPT TO:<bob>\r\n".to_vec()),
        ("RCPT empty", vec![EHLO, MAIL], b"RCPT TO:<>\r\n".to_vec()),
        ("a line too long", vec![EHLO], long.into_bytes()),
        ("BDAT", vec![EHLO, MAIL, RCPT], b"BDAT 5 LAST\r\nhello".to_vec()),
        ("AUTH on the local listener", vec![EHLO], b"AUTH PLAIN AGFkYQBwYXNz\r\n".to_vec()),
        ("STARTTLS on the local listener", vec![EHLO], b"STARTTLS\r\n".to_vec()),
        (
            "a message From outside the tenant",
            vec![EHLO, MAIL, RCPT, "DATA"],
            body("From: eve@evil.example\r\nTo: bob@example.org\r\n\r\nhi"),
        ),
        (
            "a message From ours and another's",
            vec![EHLO, MAIL, RCPT, "DATA"],
            body("From: ada@bitmail.test, boss@evil.example\r\nTo: bob@example.org\r\n\r\nhi"),
        ),
        (
            "a message with a NUL",
            vec![EHLO, MAIL, RCPT, "DATA"],
            body("From: ada@bitmail.test\r\nTo: bob@example.org\r\n\r\nh\0i"),
        ),
        (
            "a message with 8-bit headers and no SMTPUTF8",
            vec![EHLO, MAIL, RCPT, "DATA"],
            body("From: ada@bitmail.test\r\nTo: bob@example.org\r\nSubject: café\r\n\r\nhi"),
        ),
    ];
    let mut got = Vec::new();
    for (case, setup, last) in cases {
        got.push((format!("smtp: {case}"), converse(corpus, &setup, &last).await));
    }
    let n = got.len();
    corpus.check("SMTP", &got, SMTP);
    n
}

const SMTP: &[(&str, &str)] = &[
    ("smtp: MAIL before EHLO", "503 5.5.1 send EHLO first"),
    ("smtp: RCPT before MAIL", "503 5.5.1 send MAIL first"),
    ("smtp: DATA before RCPT", "554 5.5.1 no valid recipients"),
    ("smtp: MAIL twice", "503 5.5.1 a transaction is open: RSET first"),
    ("smtp: HELO without a name", "501 5.5.4 syntax: HELO domain"),
    ("smtp: unknown command", "500 5.5.1 command unrecognized"),
    ("smtp: MAIL FROM not an address", "501 5.1.7 bad sender address syntax"),
    ("smtp: MAIL FROM without brackets", "501 5.5.4 syntax: MAIL FROM:<reverse-path> [parameters]"),
    (
        "smtp: MAIL FROM outside the tenant",
        "550 5.7.1 ada@elsewhere.example is not a sending domain or address of tenant \"default\"",
    ),
    ("smtp: MAIL with a SIZE over the limit", "552 5.3.4 message too big: at most 14046549 bytes"),
    ("smtp: MAIL with an unknown parameter", "555 5.5.4 unsupported parameter FROB=1"),
    ("smtp: RCPT not an address", "501 5.1.3 bad recipient address syntax"),
    ("smtp: RCPT empty", "550 5.1.3 <> is not an address: local@domain"),
    ("smtp: a line too long", "500 5.5.2 line too long: at most 1000 bytes"),
    ("smtp: BDAT", "502 5.5.1 BDAT is not offered here; use DATA"),
    ("smtp: AUTH on the local listener", "503 5.5.1 no AUTH here: this listener sends as its configured tenant"),
    ("smtp: STARTTLS on the local listener", "502 5.5.1 STARTTLS is not offered on this port"),
    (
        "smtp: a message From outside the tenant",
        "550 5.7.1 from: eve@evil.example is not a sending domain or address of tenant \"default\"",
    ),
    ("smtp: a message From ours and another's", "550 5.7.1 From must name one address (put the others in Reply-To)"),
    ("smtp: a message with a NUL", "554 5.6.0 the message holds a NUL byte"),
    (
        "smtp: a message with 8-bit headers and no SMTPUTF8",
        "554 5.6.7 the header holds 8-bit characters: send MAIL FROM with SMTPUTF8, or encode them (RFC 2047)",
    ),
];
