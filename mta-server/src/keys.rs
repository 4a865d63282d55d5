//! Parsing the keys written in the configuration, shared by config validation (a key
//! that does not parse is a config error) and the verifiers that use them. A leaf:
//! imports no other module of the crate.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, ParsedPublicKey};
use base64::prelude::*;

/// SendGrid's Event Webhook verification key, as SendGrid shows it (base64 of the DER
/// public key).
pub fn sendgrid_verification_key(public_key_base64: &str) -> Result<ParsedPublicKey, String> {
    let der = BASE64_STANDARD
        .decode(public_key_base64.trim())
        .map_err(|e| format!("the verification key is not base64: {e}"))?;
    ParsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, der)
        .map_err(|e| format!("the verification key is not a P-256 public key: {e}"))
}
