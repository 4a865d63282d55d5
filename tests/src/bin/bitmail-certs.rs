//! A throwaway CA and a certificate per service, for mutual TLS between the services on
//! one machine (`cargo xtask run`) or in a lab; never for production, where the
//! operator's own CA signs them (see `deploy/README.md`).
//!
//! usage: bitmail-certs --dir DIR [--keep] NAME=HOST[,HOST...] ...
//!
//! Writes `DIR/ca.pem` and, for each NAME, `DIR/NAME.pem` and `DIR/NAME.key` (owner-only)
//! for those DNS names or IP addresses, good for both server and client authentication.
//! With `--keep`, nothing is written when every file is already there.

use std::path::PathBuf;

use anyhow::{Context, bail};
use bitmail_tests::ca::Ca;
use clap::Parser;

/// A throwaway CA and certificates signed by it, for mutual TLS between BitMail's services
#[derive(Debug, Parser)]
#[command(name = "bitmail-certs")]
struct Options {
    /// Where to write ca.pem, NAME.pem and NAME.key
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Write nothing when every file is already there
    #[arg(long)]
    keep: bool,
    /// A certificate to make: NAME=HOST[,HOST...] (DNS names or IP addresses)
    #[arg(value_name = "NAME=HOSTS", required = true)]
    certs: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let options = Options::try_parse().unwrap_or_else(|e| bitmail_runtime::cli::exit(&e));
    let mut wanted = Vec::new();
    for spec in &options.certs {
        let Some((name, hosts)) = spec.split_once('=') else { bail!("{spec:?}: expected NAME=HOST[,HOST...]") };
        let hosts: Vec<&str> = hosts.split(',').filter(|h| !h.is_empty()).collect();
        if name.is_empty() || hosts.is_empty() || name.contains('/') {
            bail!("{spec:?}: expected NAME=HOST[,HOST...]");
        }
        wanted.push((name, hosts));
    }
    let dir = &options.dir;
    let present = dir.join("ca.pem").is_file()
        && wanted
            .iter()
            .all(|(name, _)| dir.join(format!("{name}.pem")).is_file() && dir.join(format!("{name}.key")).is_file());
    if options.keep && present {
        return Ok(());
    }
    let ca = Ca::new(dir, "BitMail throwaway CA (bitmail-certs)")?;
    for (name, hosts) in &wanted {
        let issued = ca.issue(name, hosts).with_context(|| format!("the certificate {name}"))?;
        private(&issued.key)?;
    }
    println!("{}", ca.ca_file().display());
    Ok(())
}

#[cfg(unix)]
fn private(path: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making {} owner-only", path.display()))
}

#[cfg(not(unix))]
fn private(_path: &std::path::Path) -> anyhow::Result<()> {
    Ok(())
}
