//! Local stand-ins for the providers, for `cargo xtask run` and manual trials.
//!
//! usage: bitmail-fakes [--sendgrid ADDR] [--mailgun ADDR] [--ses ADDR] [--key KEY]
//!
//! All accept the one key (SendGrid as a bearer token, Mailgun as the Basic-auth
//! password of user `api`, SES as the SigV4 access key id). Accepted messages are
//! logged and listed at `GET http://ADDR/_fake/messages`.

use std::net::SocketAddr;

use anyhow::Context;
use bitmail_tests::mailgun::FakeMailgun;
use bitmail_tests::sendgrid::FakeSendGrid;
use bitmail_tests::ses::FakeSes;
use clap::Parser;

/// Local stand-ins for SendGrid, Mailgun and Amazon SES; what each accepted is listed at
/// GET http://ADDR/_fake/messages
#[derive(Debug, Parser)]
#[command(name = "bitmail-fakes")]
struct Options {
    /// Where the SendGrid stand-in listens
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8025")]
    sendgrid: SocketAddr,
    /// Where the Mailgun stand-in listens
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8026")]
    mailgun: SocketAddr,
    /// Where the Amazon SES stand-in listens
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8027")]
    ses: SocketAddr,
    /// The one key all accept: SendGrid's bearer token, Mailgun's password of user `api`,
    /// SES's access key id
    #[arg(long, default_value = "bitmail-dev-key")]
    key: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Options { sendgrid, mailgun, ses, key } =
        Options::try_parse().unwrap_or_else(|e| bitmail_runtime::cli::exit(&e));
    bitmail_runtime::init_tracing("BITMAIL_FAKES_LOG");
    let shutdown = bitmail_runtime::shutdown::signal();
    let fake = FakeSendGrid::start_on(sendgrid, &key).await.with_context(|| format!("cannot listen on {sendgrid}"))?;
    tracing::info!(url = %fake.base_url(), "fake SendGrid listening; accepted messages at /_fake/messages");
    let fake_mailgun =
        FakeMailgun::start_on(mailgun, &key).await.with_context(|| format!("cannot listen on {mailgun}"))?;
    tracing::info!(url = %fake_mailgun.base_url(), "fake Mailgun listening; accepted messages at /_fake/messages");
    let fake_ses = FakeSes::start_on(ses, &key).await.with_context(|| format!("cannot listen on {ses}"))?;
    tracing::info!(url = %fake_ses.endpoint_url(), "fake SES listening; accepted messages at /_fake/messages");
    shutdown.await;
    Ok(())
}
