//! Users and sessions, kept as documents in backend-server.
//!
//! - user: `{kind: "user", name, password_hash (argon2id PHC string), created_at, tenant,
//!   role}`: `tenant` is the mta-server tenant the user sends for (`default` when the
//!   field is missing, as in users made before tenants); `role` is `admin` or `user`
//!   (missing: `user`). Users made by the first-login signup are `user`s of `default`;
//!   admins are made with `client-api create-user --admin` ([`crate::create_user`]);
//! - session: `{kind: "session", token_sha256, user_id, name, tenant, role,
//!   expires_at}`. Only the SHA-256 of the token is stored, so a copy of the store
//!   opens no session. The session's role is what it was at sign-in; the admin API reads
//!   the user again ([`Accounts::current_role`]), so a demotion takes effect at once.
//!
//! A user is stored once per name: with the unique key `user/NAME` ([`crate::unique`]),
//! so two first sign-ins (or a sign-in and `create-user`) with one name make one
//! account. The one that loses the race signs in against the winner's account: it
//! succeeds, as the same user, when its password is the winner's (a double click, two
//! tabs), and gets the wrong-password answer otherwise, as for any taken name.
//!
//! Password hashing and checking run on the blocking pool: argon2id is deliberately
//! slow and must not stall the async workers.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use bitmail_proto::v1 as pb;
use bitmail_proto::v1::store_client::StoreClient;
use tonic::transport::Channel;

use crate::error::ApiError;
use crate::unique::{self, Created};

/// The tenant of users made without naming one.
pub(crate) const DEFAULT_TENANT: &str = "default";

/// What a user may do here: `Admin`s also use the admin console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Admin,
    User,
}

impl Role {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }

    /// A stored role; anything but `admin` is `user`, so a bad field grants nothing.
    fn parse(value: Option<&String>) -> Role {
        if value.is_some_and(|v| v == "admin") { Role::Admin } else { Role::User }
    }
}

/// A signed-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct User {
    pub(crate) id: String,
    pub(crate) name: String,
    /// The mta-server tenant this user's mail is sent for.
    pub(crate) tenant: String,
    pub(crate) role: Role,
}

impl User {
    /// A user from its stored fields (a user document, or a session's copy).
    pub(crate) fn from_fields(id: String, name: &str, fields: &HashMap<String, String>) -> User {
        let tenant = fields.get("tenant").filter(|t| !t.is_empty()).map_or(DEFAULT_TENANT, String::as_str);
        User { id, name: name.to_owned(), tenant: tenant.to_owned(), role: Role::parse(fields.get("role")) }
    }
}

/// A request to mta-server on behalf of `user`: `x-bitmail-actor: user:NAME`, which
/// mta-server records in its audit log beside the edge's key.
pub(crate) fn acting_for<T>(user: &User, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("user:{}", user.name).parse() {
        request.metadata_mut().insert("x-bitmail-actor", value);
    }
    request
}

/// Why `create-user` made no user.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CreateUserError {
    #[error("there is already a user named {0:?}")]
    Exists(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Failed(ApiError),
}

impl From<ApiError> for CreateUserError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::BadRequest(m) => CreateUserError::Invalid(m),
            other => CreateUserError::Failed(other),
        }
    }
}

/// A tenant id as mta-server accepts one: 1 to 63 of a-z, 0-9 and `-`, not starting or
/// ending with `-`.
pub(crate) fn check_tenant(tenant: &str) -> Result<(), ApiError> {
    let ok = (1..=63).contains(&tenant.len())
        && tenant.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !tenant.starts_with('-')
        && !tenant.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest("tenant: 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'".into()))
    }
}

/// Users and sessions over a `Store` client.
#[derive(Clone)]
pub(crate) struct Accounts {
    store: StoreClient<Channel>,
    signup_on_first_login: bool,
    session_ttl: Duration,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn token_digest(token: &str) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref())
}

/// A name is what users type to sign in and the local part of their address.
pub(crate) fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..");
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(
            "name: 1 to 64 characters of a-z, 0-9, '.', '_' and '-', not starting or ending with '.'".into(),
        ))
    }
}

/// Names that mail to a domain reaches by convention (RFC 2142, RFC 5321's postmaster)
/// or that look like the operator's: sign-up on first login may not take them; an
/// operator makes them with `client-api create-user`.
const RESERVED_NAMES: &[&str] = &[
    "abuse",
    "admin",
    "administrator",
    "ftp",
    "hostmaster",
    "mailer-daemon",
    "news",
    "noc",
    "postmaster",
    "root",
    "security",
    "usenet",
    "uucp",
    "webmaster",
    "www",
];

fn check_not_reserved(name: &str) -> Result<(), ApiError> {
    if RESERVED_NAMES.contains(&name) {
        return Err(ApiError::Forbidden(format!(
            "name: `{name}` is reserved for the operators of this domain; they create it with `client-api create-user`"
        )));
    }
    Ok(())
}

pub(crate) fn check_password(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < 8 || password.len() > 1024 {
        return Err(ApiError::BadRequest("password: 8 to 1024 characters".into()));
    }
    Ok(())
}

impl Accounts {
    pub(crate) fn new(store: StoreClient<Channel>, signup_on_first_login: bool, session_ttl: Duration) -> Self {
        Self { store, signup_on_first_login, session_ttl }
    }

    async fn lookup(&self, subset: &[(&str, &str)], limit: u32) -> Result<Vec<pb::Document>, ApiError> {
        let request = pb::LookupRequest {
            subset: subset.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            limit,
            page_token: String::new(),
            newest_first: false,
        };
        let mut stream = self.store.clone().lookup(request).await?.into_inner();
        let mut docs = Vec::new();
        while let Some(item) = stream.message().await? {
            if let Some(pb::lookup_response::Item::Document(d)) = item.item {
                docs.push(d);
            }
        }
        Ok(docs)
    }

    async fn put(&self, fields: HashMap<String, String>) -> Result<String, ApiError> {
        Ok(self.store.clone().put(pb::PutRequest { fields }).await?.into_inner().id)
    }

    /// The user `name`, if the password is right. With signup on, an unknown name
    /// becomes a new account with this password, if `may_sign_up` agrees (the caller's
    /// rate of sign-ups). A wrong password and an unknown name give the same answer.
    pub(crate) async fn sign_in(
        &self,
        name: &str,
        password: &str,
        may_sign_up: impl FnOnce() -> Result<(), ApiError>,
    ) -> Result<User, ApiError> {
        check_name(name)?;
        check_password(password)?;
        let users = self.lookup(&[("kind", "user"), ("name", name)], 2).await?;
        let user = match users.into_iter().next() {
            Some(doc) => doc,
            None if self.signup_on_first_login => {
                check_not_reserved(name)?;
                may_sign_up()?;
                return self.sign_up(name, password).await;
            }
            None => {
                // As long as a wrong password for a known name: the answer's time does
                // not tell whether the name exists.
                let _ = verify_password(password.to_owned(), UNKNOWN_USER_HASH.clone()).await?;
                return Err(ApiError::Unauthorized);
            }
        };
        let hash = user.fields.get("password_hash").cloned().unwrap_or_default();
        if verify_password(password.to_owned(), hash).await? {
            Ok(User::from_fields(user.id, name, &user.fields))
        } else {
            Err(ApiError::Unauthorized)
        }
    }

    /// Makes the user `name` unless one exists (`create-user`): the bootstrap of the
    /// first admin, without the webmail.
    pub(crate) async fn create_user(
        &self,
        name: &str,
        password: &str,
        tenant: &str,
        role: Role,
    ) -> Result<User, CreateUserError> {
        check_name(name)?;
        check_password(password)?;
        check_tenant(tenant)?;
        if !self.lookup(&[("kind", "user"), ("name", name)], 1).await?.is_empty() {
            return Err(CreateUserError::Exists(name.to_owned()));
        }
        let fields = user_fields(name, hash_password(password.to_owned()).await?, tenant, role);
        match unique::create(&self.store, unique::user_key(name), fields.clone()).await? {
            Created::New(id) => Ok(User::from_fields(id, name, &fields)),
            Created::Taken(_) => Err(CreateUserError::Exists(name.to_owned())),
        }
    }

    /// The user's role as stored now (not as when the session was opened).
    pub(crate) async fn current_role(&self, user: &User) -> Result<Role, ApiError> {
        let users = self.lookup(&[("kind", "user"), ("name", &user.name)], 1).await?;
        Ok(users.first().filter(|d| d.id == user.id).map_or(Role::User, |d| Role::parse(d.fields.get("role"))))
    }

    async fn sign_up(&self, name: &str, password: &str) -> Result<User, ApiError> {
        let hash = hash_password(password.to_owned()).await?;
        let fields = user_fields(name, hash, DEFAULT_TENANT, Role::User);
        match unique::create(&self.store, unique::user_key(name), fields.clone()).await? {
            Created::New(id) => {
                tracing::info!(user = name, "account created at first login");
                Ok(User::from_fields(id, name, &fields))
            }
            // Another first login of this name got there first: sign in against its
            // account like anyone else.
            Created::Taken(id) => {
                let winner = match self.store.clone().get(pb::GetRequest { id }).await {
                    Ok(doc) => doc.into_inner(),
                    Err(s) if s.code() == tonic::Code::NotFound => return Err(ApiError::Unauthorized),
                    Err(s) => return Err(s.into()),
                };
                let hash = winner.fields.get("password_hash").cloned().unwrap_or_default();
                if verify_password(password.to_owned(), hash).await? {
                    Ok(User::from_fields(winner.id, name, &winner.fields))
                } else {
                    Err(ApiError::Unauthorized)
                }
            }
        }
    }

    /// Opens a session for `user` and returns its token (to be set as a cookie).
    pub(crate) async fn open_session(&self, user: &User) -> Result<String, ApiError> {
        let token = hex(&random_bytes::<32>()?);
        let expires_at = now_secs() + self.session_ttl.as_secs();
        let fields = HashMap::from([
            ("kind".to_owned(), "session".to_owned()),
            ("token_sha256".to_owned(), token_digest(&token)),
            ("user_id".to_owned(), user.id.clone()),
            ("name".to_owned(), user.name.clone()),
            ("tenant".to_owned(), user.tenant.clone()),
            ("role".to_owned(), user.role.as_str().to_owned()),
            ("expires_at".to_owned(), expires_at.to_string()),
        ]);
        self.put(fields).await?;
        Ok(token)
    }

    /// The user a session token belongs to, if it is valid and not expired.
    pub(crate) async fn session_user(&self, token: &str) -> Result<User, ApiError> {
        if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ApiError::Unauthorized);
        }
        let sessions = self.lookup(&[("kind", "session"), ("token_sha256", &token_digest(token))], 1).await?;
        let session = sessions.into_iter().next().ok_or(ApiError::Unauthorized)?;
        let expires_at: u64 = session.fields.get("expires_at").and_then(|v| v.parse().ok()).unwrap_or(0);
        if expires_at <= now_secs() {
            let _ = self.store.clone().delete(pb::DeleteRequest { id: session.id }).await;
            return Err(ApiError::Unauthorized);
        }
        let field = |k: &str| session.fields.get(k).cloned().unwrap_or_default();
        Ok(User::from_fields(field("user_id"), &field("name"), &session.fields))
    }

    /// Ends the session of this token, if there is one.
    pub(crate) async fn close_session(&self, token: &str) -> Result<(), ApiError> {
        for s in self.lookup(&[("kind", "session"), ("token_sha256", &token_digest(token))], 10).await? {
            let _ = self.store.clone().delete(pb::DeleteRequest { id: s.id }).await;
        }
        Ok(())
    }
}

fn user_fields(name: &str, password_hash: String, tenant: &str, role: Role) -> HashMap<String, String> {
    HashMap::from([
        ("kind".to_owned(), "user".to_owned()),
        ("name".to_owned(), name.to_owned()),
        ("password_hash".to_owned(), password_hash),
        ("created_at".to_owned(), now_secs().to_string()),
        ("tenant".to_owned(), tenant.to_owned()),
        ("role".to_owned(), role.as_str().to_owned()),
    ])
}

/// Bytes from the operating system's generator.
fn random_bytes<const N: usize>() -> Result<[u8; N], ApiError> {
    let mut out = [0u8; N];
    aws_lc_rs::rand::fill(&mut out).map_err(|_| ApiError::Internal("the system random generator failed".into()))?;
    Ok(out)
}

async fn hash_password(password: String) -> Result<String, ApiError> {
    let _permit = HASHING.acquire().await.map_err(|_| ApiError::Internal("the hashing gate is closed".into()))?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&random_bytes::<16>()?)
            .map_err(|e| ApiError::Internal(format!("salt encoding failed: {e}")))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ApiError::Internal(format!("password hashing failed: {e}")))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("password hashing task failed: {e}")))?
}

/// Password hashes computed at once: each takes tens of milliseconds of a core and
/// 19 MiB, so a burst of sign-ins waits here instead of exhausting the machine.
static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// A hash of no one's password, checked for unknown names.
static UNKNOWN_USER_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let salt = SaltString::encode_b64(b"bitmail-no-user!").expect("16 bytes encode");
    Argon2::default().hash_password(b"no such user", &salt).map(|h| h.to_string()).unwrap_or_default()
});

async fn verify_password(password: String, hash: String) -> Result<bool, ApiError> {
    let _permit = HASHING.acquire().await.map_err(|_| ApiError::Internal("the hashing gate is closed".into()))?;
    tokio::task::spawn_blocking(move || {
        let Ok(parsed) = PasswordHash::new(&hash) else {
            return Ok(false);
        };
        Ok(Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
    })
    .await
    .map_err(|e| ApiError::Internal(format!("password check task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_passwords_are_checked() {
        for ok in ["ada", "ada.lovelace", "a_b-c9"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Ada", "a b", ".ada", "ada.", "a..b", "ada@x", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_password("short").is_err());
        assert!(check_tenant("acme-2").is_ok());
        for bad in ["", "-a", "a-", "Acme", "a_b", &"a".repeat(64)] {
            assert!(check_tenant(bad).is_err(), "{bad}");
        }
        assert!(check_password("long enough").is_ok());
    }

    #[test]
    fn users_without_tenant_or_role_are_users_of_default() {
        let old = User::from_fields("1".into(), "ada", &HashMap::new());
        assert_eq!((old.tenant.as_str(), old.role), (DEFAULT_TENANT, Role::User));
        let fields = HashMap::from([("tenant".to_owned(), "acme".to_owned()), ("role".to_owned(), "admin".to_owned())]);
        let admin = User::from_fields("2".into(), "bob", &fields);
        assert_eq!((admin.tenant.as_str(), admin.role), ("acme", Role::Admin));
        let odd = HashMap::from([("role".to_owned(), "root".to_owned())]);
        assert_eq!(User::from_fields("3".into(), "eve", &odd).role, Role::User);
    }

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let hash = hash_password("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse".into(), hash.clone()).await.unwrap());
        assert!(!verify_password("wrong horse".into(), hash).await.unwrap());
        assert!(!verify_password("x".into(), "not a hash".into()).await.unwrap());
    }
}
