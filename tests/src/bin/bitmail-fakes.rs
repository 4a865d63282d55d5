//! Local stand-ins for the providers, for `cargo xtask run` and manual trials.
//!
//! usage: bitmail-fakes [--sendgrid ADDR] [--mailgun ADDR] [--ses ADDR] [--key KEY]
//!
//! All accept the one key (SendGrid as a bearer token, Mailgun as the Basic-auth
//! password of user `api`, SES as the SigV4 access key id). Accepted messages are
//! logged and listed at `GET http://ADDR/_fake/messages`.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use bitmail_tests::mailgun::FakeMailgun;
use bitmail_tests::sendgrid::FakeSendGrid;
use bitmail_tests::ses::FakeSes;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bitmail_runtime::init_tracing("BITMAIL_FAKES_LOG");
    let shutdown = bitmail_runtime::shutdown::signal();
    let mut sendgrid: SocketAddr = "127.0.0.1:8025".parse()?;
    let mut mailgun: SocketAddr = "127.0.0.1:8026".parse()?;
    let mut ses: SocketAddr = "127.0.0.1:8027".parse()?;
    let mut key = String::from("bitmail-dev-key");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--sendgrid" => {
                sendgrid = value()?.parse().context("--sendgrid takes an address such as 127.0.0.1:8025")?
            }
            "--mailgun" => mailgun = value()?.parse().context("--mailgun takes an address such as 127.0.0.1:8026")?,
            "--ses" => ses = value()?.parse().context("--ses takes an address such as 127.0.0.1:8027")?,
            "--key" => key = value()?,
            other => {
                bail!(
                    "unknown argument `{other}`\nusage: bitmail-fakes [--sendgrid ADDR] [--mailgun ADDR] [--ses ADDR] [--key KEY]"
                )
            }
        }
    }
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
