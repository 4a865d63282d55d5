//! The two SASL mechanisms offered: PLAIN (RFC 4616) and LOGIN (the de-facto one every
//! client has). Both carry a user name and a password, base64-encoded; the exchange
//! itself (334 challenges) is the session's.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The prompts of LOGIN: "Username:" and "Password:", base64.
pub(crate) const LOGIN_USER: &str = "VXNlcm5hbWU6";
pub(crate) const LOGIN_PASSWORD: &str = "UGFzc3dvcmQ6";

/// What a client sent, or why it cannot be read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    Value(String),
    /// `*`: the client gave up (RFC 4954 §4).
    Cancelled,
    Invalid(&'static str),
}

/// One base64 response line; `=` is an empty initial response.
pub(crate) fn decode(line: &str) -> Decoded {
    let line = line.trim_end_matches(['\r', '\n']);
    match line {
        "*" => Decoded::Cancelled,
        "=" => Decoded::Value(String::new()),
        _ => match STANDARD.decode(line) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(s) => Decoded::Value(s),
                Err(_) => Decoded::Invalid("the response is not UTF-8"),
            },
            Err(_) => Decoded::Invalid("the response is not base64"),
        },
    }
}

/// PLAIN's message: `authzid NUL authcid NUL passwd`. The identity is the authcid; an
/// authzid other than it (acting for someone else) is not offered.
pub(crate) fn plain(message: &str) -> Result<(String, String), &'static str> {
    let mut parts = message.split('\0');
    let (Some(authz), Some(user), Some(password), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("PLAIN wants authorization id, user name and password separated by NUL");
    };
    if !authz.is_empty() && authz != user {
        return Err("PLAIN: acting for another identity is not supported");
    }
    Ok((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_login_responses_decode() {
        let encoded = STANDARD.encode("\0apikey\0bmk_secret");
        let Decoded::Value(message) = decode(&encoded) else { panic!() };
        assert_eq!(plain(&message).unwrap(), ("apikey".into(), "bmk_secret".into()));
        assert_eq!(plain("apikey\0apikey\0k").unwrap().0, "apikey");
        assert!(plain("someone\0apikey\0k").is_err());
        assert!(plain("apikey-k").is_err());
        assert_eq!(decode("*\r\n"), Decoded::Cancelled);
        assert_eq!(decode("="), Decoded::Value(String::new()));
        assert_eq!(decode("%%%"), Decoded::Invalid("the response is not base64"));
        assert_eq!(decode(LOGIN_USER), Decoded::Value("Username:".into()));
    }
}
