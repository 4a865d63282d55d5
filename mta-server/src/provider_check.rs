//! The operator's provider check (`cargo xtask test-manual`, the `bitmail-provider-check`
//! binary): one clearly labelled message through each configured provider in turn,
//! straight through [`Provider::send`](crate::provider::Provider::send) (no spool, no scheduler, no retry), the answer
//! shown, the operator asked whether it arrived, and a dated report written.
//!
//! `dry_run` turns on SendGrid's sandbox mode and Mailgun's test mode, so the providers
//! check the request and deliver nothing; an SMTP relay has no such mode and is left
//! out of a dry run.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::{Config, ProviderConfig};
use crate::message::{Mailbox, Message, parse_mailbox};
use crate::provider::{Outcome, OutcomeClass};

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// The mailbox the operator watches.
    pub to: String,
    /// The sender; Mailgun providers default to `bitmail-check@<their domain>`.
    pub from: Option<String>,
    /// Only this provider (by its configured name).
    pub provider: Option<String>,
    pub dry_run: bool,
    /// Where the report file goes.
    pub report_dir: PathBuf,
}

/// Bad input: nothing was sent.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot write the report {path}: {source}")]
    Report { path: PathBuf, source: std::io::Error },
    #[error("cannot build provider {name}: {detail}")]
    Build { name: String, detail: String },
}

/// Whether the message reached the mailbox, as the operator said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrived {
    Yes,
    No,
    /// The input ended before an answer.
    NoAnswer,
    /// Not asked: nothing was sent, or a dry run.
    NotAsked(&'static str),
}

/// One provider's line of the report.
#[derive(Debug, Clone)]
pub struct ProviderResult {
    pub provider: String,
    pub kind: &'static str,
    /// `None` when the provider was left out (an SMTP relay in a dry run).
    pub class: Option<OutcomeClass>,
    pub message_id: Option<String>,
    /// What the provider said when it did not accept.
    pub detail: String,
    pub took: Duration,
    pub arrived: Arrived,
}

impl ProviderResult {
    /// Accepted, and (in a live run) seen in the mailbox.
    pub fn passed(&self, dry_run: bool) -> bool {
        self.class == Some(OutcomeClass::Accepted) && (dry_run || self.arrived == Arrived::Yes)
    }
}

/// The whole run.
#[derive(Debug)]
pub struct Report {
    pub results: Vec<ProviderResult>,
    pub path: PathBuf,
    pub dry_run: bool,
}

impl Report {
    pub fn all_passed(&self) -> bool {
        self.results.iter().all(|r| r.passed(self.dry_run))
    }
}

fn kind(config: &ProviderConfig) -> &'static str {
    match config {
        ProviderConfig::Sendgrid(_) => "sendgrid",
        ProviderConfig::Mailgun(_) => "mailgun",
        ProviderConfig::Smtp(_) => "smtp",
        ProviderConfig::Ses(_) => "ses",
    }
}

fn class_name(class: OutcomeClass) -> &'static str {
    match class {
        OutcomeClass::Accepted => "accepted",
        OutcomeClass::Transient => "transient",
        OutcomeClass::ProviderRefused => "provider-refused",
        OutcomeClass::MessageRejected => "message-rejected",
        OutcomeClass::Ambiguous => "ambiguous",
    }
}

/// Checks the options against the configuration, sends through each selected provider,
/// asks on `input`, reports on `out`, and writes the report file. Every input problem is
/// found before anything is sent.
pub async fn run(
    config: &Config,
    options: &CheckOptions,
    input: &mut impl BufRead,
    out: &mut impl Write,
    now: SystemTime,
) -> Result<Report, CheckError> {
    let to = parse_mailbox("--to", &options.to).map_err(|e| CheckError::Usage(e.to_string()))?;
    let from = options
        .from
        .as_deref()
        .map(|f| parse_mailbox("--from", f))
        .transpose()
        .map_err(|e| CheckError::Usage(e.to_string()))?;
    let names: Vec<&str> = config.providers.iter().map(ProviderConfig::name).collect();
    if names.is_empty() {
        return Err(CheckError::Usage("the configuration has no [[providers]]".into()));
    }
    let selected: Vec<&ProviderConfig> = match &options.provider {
        Some(wanted) => {
            let found: Vec<_> = config.providers.iter().filter(|p| p.name() == wanted).collect();
            if found.is_empty() {
                return Err(CheckError::Usage(format!(
                    "--provider: no provider named `{wanted}` (configured: {})",
                    names.join(", ")
                )));
            }
            found
        }
        None => config.providers.iter().collect(),
    };
    let mut plan = Vec::new();
    let mut missing_sender = Vec::new();
    for provider in selected {
        let sender = match (&from, provider) {
            (Some(f), _) => Some(f.clone()),
            (None, ProviderConfig::Mailgun(c)) => {
                Some(Mailbox { name: Some("BitMail check".into()), email: format!("bitmail-check@{}", c.domain) })
            }
            (None, _) => None,
        };
        match sender {
            Some(sender) => plan.push((provider, sender)),
            None => missing_sender.push(provider.name()),
        }
    }
    if !missing_sender.is_empty() {
        return Err(CheckError::Usage(format!(
            "--from is needed for {} (a sender address the provider's account may use)",
            missing_sender.join(", ")
        )));
    }

    let stamp = utc(now);
    let mode = if options.dry_run {
        "dry run: SendGrid sandbox mode and Mailgun test mode, nothing is delivered"
    } else {
        "live: real messages"
    };
    let _ = writeln!(out, "BitMail provider check, {stamp} ({mode}), to {to}");
    let mut results = Vec::new();
    let total = plan.len();
    for (i, (provider_config, sender)) in plan.into_iter().enumerate() {
        let name = provider_config.name().to_owned();
        let kind = kind(provider_config);
        let _ = write!(out, "[{}/{total}] {name} ({kind}): ", i + 1);
        let mut config = provider_config.clone();
        match &mut config {
            ProviderConfig::Sendgrid(c) => c.sandbox |= options.dry_run,
            ProviderConfig::Mailgun(c) => c.test_mode |= options.dry_run,
            ProviderConfig::Smtp(_) | ProviderConfig::Ses(_) if options.dry_run => {
                // SES has no test mode either; its mailbox simulator
                // (success@simulator.amazonses.com as --to) is the way to try it.
                let why = if kind == "ses" { "SES has no test mode" } else { "SMTP has no test mode" };
                let _ = writeln!(out, "left out: {why}");
                results.push(ProviderResult {
                    provider: name,
                    kind,
                    class: None,
                    message_id: None,
                    detail: format!("left out of the dry run: {why}"),
                    took: Duration::ZERO,
                    arrived: Arrived::NotAsked("not sent"),
                });
                continue;
            }
            ProviderConfig::Smtp(_) | ProviderConfig::Ses(_) => {}
        }
        let provider = crate::provider::from_config(&config)
            .map_err(|e| CheckError::Build { name: name.clone(), detail: e.to_string() })?;
        let message = check_message(&name, kind, &stamp, sender, to.clone());
        let _ = writeln!(out, "sending \"{}\"", message.subject);
        let started = Instant::now();
        let outcome = provider.send(&message).await;
        let took = started.elapsed();
        let class = outcome.class();
        let message_id = match &outcome {
            Outcome::Accepted { provider_message_id } => Some(provider_message_id.clone()),
            Outcome::PartlyAccepted { provider_message_id, .. } => Some(provider_message_id.clone()),
            _ => None,
        };
        let detail = outcome.detail().to_owned();
        let shown_id = message_id.as_deref().filter(|s| !s.is_empty()).unwrap_or("none");
        let _ = writeln!(out, "  answer: {}, message id {shown_id}, {} ms", class_name(class), took.as_millis());
        if !detail.is_empty() {
            let _ = writeln!(out, "  the provider said: {detail}");
        }
        let arrived = if class != OutcomeClass::Accepted {
            Arrived::NotAsked("not sent")
        } else if options.dry_run {
            Arrived::NotAsked("dry run")
        } else {
            ask(input, out, &format!("  Did it arrive at {}? [y/n] ", to.email))
        };
        results.push(ProviderResult { provider: name, kind, class: Some(class), message_id, detail, took, arrived });
    }

    let file_stamp: String = stamp.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let path = options.report_dir.join(format!("bitmail-provider-check-{file_stamp}.md"));
    let report = Report { results, path, dry_run: options.dry_run };
    write_report(&report, &report.path, &stamp, &to, mode)?;
    let passed = report.results.iter().filter(|r| r.passed(options.dry_run)).count();
    let _ = writeln!(out, "{passed} of {total} provider(s) passed; report: {}", report.path.display());
    Ok(report)
}

/// The check message: labelled in its subject, explained in its body.
fn check_message(provider: &str, kind: &str, stamp: &str, from: Mailbox, to: Mailbox) -> Message {
    let id = uuid::Uuid::now_v7().to_string();
    Message {
        subject: format!("BitMail provider check: {provider} {stamp}"),
        text: Some(format!(
            "This message checks that BitMail can send through its provider `{provider}` ({kind}).\n\
             It was sent at {stamp} by `cargo xtask test-manual`, BitMail id {id}.\n\
             If you can read it, answer y at the operator's prompt. No reply is needed.\n"
        )),
        id,
        from,
        to: vec![to],
        cc: Vec::new(),
        bcc: Vec::new(),
        reply_to: Vec::new(),
        html: None,
        headers: Vec::new(),
        attachments: Vec::new(),
        tags: vec!["bitmail-check".into()],
        metadata: Default::default(),
        submitted_at: SystemTime::now(),
        raw: None,
        already_sent_to: Default::default(),
    }
}

/// Asks until the answer is y or n; the end of the input is no answer.
fn ask(input: &mut impl BufRead, out: &mut impl Write, question: &str) -> Arrived {
    loop {
        let _ = write!(out, "{question}");
        let _ = out.flush();
        let mut line = String::new();
        match input.read_line(&mut line) {
            Ok(0) | Err(_) => {
                let _ = writeln!(out, "(no answer)");
                return Arrived::NoAnswer;
            }
            Ok(_) => match line.trim().to_ascii_lowercase().as_str() {
                "y" | "yes" => return Arrived::Yes,
                "n" | "no" => return Arrived::No,
                _ => {
                    let _ = writeln!(out, "  please answer y or n");
                }
            },
        }
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn write_report(report: &Report, path: &Path, stamp: &str, to: &Mailbox, mode: &str) -> Result<(), CheckError> {
    let mut text = format!("# BitMail provider check, {stamp}\n\n- to: {to}\n- mode: {mode}\n\n");
    text.push_str(
        "| provider | kind | answer | message id | time | arrived |\n| --- | --- | --- | --- | --- | --- |\n",
    );
    for r in &report.results {
        let answer = match (r.class, r.detail.is_empty()) {
            (None, _) => r.detail.clone(),
            (Some(c), true) => class_name(c).to_owned(),
            (Some(c), false) => format!("{}: {}", class_name(c), r.detail),
        };
        let arrived = match &r.arrived {
            Arrived::Yes => "yes",
            Arrived::No => "no",
            Arrived::NoAnswer => "no answer",
            Arrived::NotAsked(why) => why,
        };
        text.push_str(&format!(
            "| {} | {} | {} | {} | {} ms | {} |\n",
            cell(&r.provider),
            r.kind,
            cell(&answer),
            cell(r.message_id.as_deref().filter(|s| !s.is_empty()).unwrap_or("-")),
            r.took.as_millis(),
            arrived
        ));
    }
    let passed = report.results.iter().filter(|r| r.passed(report.dry_run)).count();
    text.push_str(&format!("\n{passed} of {} provider(s) passed.\n", report.results.len()));
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))
        .and_then(|()| std::fs::write(path, text))
        .map_err(|source| CheckError::Report { path: path.to_owned(), source })
}

/// `2025-06-11 10:15:30Z`.
fn utc(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let c = bitmail_runtime::time::civil(secs);
    format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z", c.year, c.month, c.day, c.hour, c.minute, c.second)
}

/// The command line of `bitmail-provider-check`. Errors (a missing `--to`, an unknown
/// argument) are the binary's to print with the usage, exiting 64.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "bitmail-provider-check",
    version,
    about = "One labelled message through each provider of an mta-server configuration, asking whether each arrived (cargo xtask test-manual).",
    // As before clap: an option given twice takes the last value.
    args_override_self = true
)]
pub struct Args {
    /// The mailbox you will look at.
    #[arg(long, value_name = "ADDRESS")]
    pub to: String,
    /// Only this provider (by its configured name).
    #[arg(long, value_name = "NAME")]
    pub provider: Option<String>,
    /// The mta-server configuration; without it, the built-in defaults.
    #[arg(long, value_name = "mta.toml")]
    pub config: Option<PathBuf>,
    /// The sender; Mailgun providers default to `bitmail-check@<their domain>`.
    #[arg(
        long,
        value_name = "ADDRESS",
        help = "The sender; Mailgun providers default to bitmail-check@<their domain>"
    )]
    pub from: Option<String>,
    /// SendGrid sandbox mode and Mailgun test mode: nothing is delivered; SMTP and SES
    /// providers are left out.
    #[arg(long)]
    pub dry_run: bool,
    /// Where the report file goes.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub report_dir: PathBuf,
}

impl Args {
    /// The options of [`run`], and the configuration file to load.
    pub fn into_options(self) -> (CheckOptions, Option<PathBuf>) {
        let options = CheckOptions {
            to: self.to,
            from: self.from,
            provider: self.provider,
            dry_run: self.dry_run,
            report_dir: self.report_dir,
        };
        (options, self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<(CheckOptions, Option<PathBuf>), clap::Error> {
        <Args as clap::Parser>::try_parse_from(std::iter::once("bitmail-provider-check").chain(args.iter().copied()))
            .map(Args::into_options)
    }

    #[test]
    fn dates_and_arguments() {
        assert_eq!(utc(UNIX_EPOCH + Duration::from_secs(1_718_100_930)), "2024-06-11 10:15:30Z");
        let (o, config) = parse(&["--to", "a@x.org", "--dry-run", "--provider", "sg"]).unwrap();
        assert_eq!((o.to.as_str(), o.dry_run, o.provider.as_deref(), config), ("a@x.org", true, Some("sg"), None));
        assert_eq!((o.from, o.report_dir), (None, PathBuf::from(".")));
        let (o, config) = parse(&[
            "--config",
            "m.toml",
            "--to",
            "a@x.org",
            "--from",
            "f@x.org",
            "--report-dir",
            "r",
            "--to",
            "b@x.org",
        ])
        .unwrap();
        assert_eq!((o.to.as_str(), o.from.as_deref(), o.report_dir), ("b@x.org", Some("f@x.org"), PathBuf::from("r")));
        assert_eq!((o.dry_run, config), (false, Some(PathBuf::from("m.toml"))));

        let missing = parse(&["--dry-run"]).unwrap_err();
        assert_eq!(missing.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert!(missing.to_string().contains("--to") && missing.to_string().contains("Usage:"), "{missing}");
        let unknown = parse(&["--too", "a@x.org"]).unwrap_err();
        assert!(unknown.to_string().contains("--too"), "{unknown}");
        assert!(parse(&["--to"]).unwrap_err().use_stderr());
        assert!(!parse(&["--help"]).unwrap_err().use_stderr(), "help is not an error");
        assert!(!parse(&["--version"]).unwrap_err().use_stderr(), "nor is the version");
    }

    #[test]
    fn asking_repeats_until_y_or_n_and_the_end_is_no_answer() {
        let mut out = Vec::new();
        assert_eq!(ask(&mut &b"maybe\nY\n"[..], &mut out, "? "), Arrived::Yes);
        assert_eq!(String::from_utf8(out).unwrap(), "?   please answer y or n\n? ");
        assert_eq!(ask(&mut &b"no\n"[..], &mut Vec::new(), "? "), Arrived::No);
        assert_eq!(ask(&mut &b""[..], &mut Vec::new(), "? "), Arrived::NoAnswer);
    }
}
