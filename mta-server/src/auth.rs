//! Who is calling, for every gRPC service of mta-server but health and reflection.
//!
//! [`Authenticated`] wraps a tonic service (`MtaServer`, `AdminServer`) the way a tower
//! layer would: before the call reaches the service, it reads `authorization: Bearer
//! KEY`, runs the one key check ([`KeyCheck::authenticate_from`]) and puts the
//! [`Caller`] into the request's extensions; a call without a usable key is answered
//! here and never reaches the service. Handlers then take the caller with [`caller`]
//! and check the scope the call needs (`Caller::require`): authentication is in one
//! place, authorisation beside the code that knows what a call does.
//!
//! | presented | answer |
//! | --- | --- |
//! | nothing, not `Bearer`, malformed, unknown, revoked, expired | `UNAUTHENTICATED` |
//! | a key of a suspended tenant; a key without the call's scope | `PERMISSION_DENIED` |
//! | the store cannot be read | `UNAVAILABLE` |
//!
//! A refused use is counted per key prefix and client address ([`KeyCheck::refused`]),
//! and logged at debug level with the prefix only: the secret never reaches a log.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::Status;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;
use tonic::transport::server::TcpConnectInfo;

use crate::tenant::{AuthError, Caller, Denied, KeyCheck, OverQuota, Scope};

/// A gRPC service whose calls are authenticated first.
#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    check: Arc<KeyCheck>,
}

impl<S> Authenticated<S> {
    pub fn new(inner: S, check: Arc<KeyCheck>) -> Self {
        Authenticated { inner, check }
    }
}

impl<S: NamedService> NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for Authenticated<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The clone that was polled ready serves this call; the fresh one waits for the
        // next `poll_ready` (tower's rule for services cloned into futures).
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let check = self.check.clone();
        Box::pin(async move {
            let address = client_address(&request);
            match authenticate(&check, request.headers(), address).await {
                Ok(caller) => {
                    request.extensions_mut().insert(caller);
                    inner.call(request).await
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

fn client_address<B>(request: &http::Request<B>) -> IpAddr {
    request
        .extensions()
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip())
}

/// The caller of `headers`' bearer key, or the status that refuses the call.
async fn authenticate(check: &KeyCheck, headers: &http::HeaderMap, address: IpAddr) -> Result<Caller, Status> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        check.refused("(none)", address);
        return Err(Status::unauthenticated("an API key is required: `authorization: Bearer bmk_...`"));
    };
    let key = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
    let Some(key) = key else {
        check.refused("(malformed)", address);
        return Err(Status::unauthenticated("the authorization metadata must be `Bearer bmk_...`"));
    };
    check.authenticate_from(key, address).await.map_err(|e| {
        tracing::debug!(error = %e, %address, "API key refused");
        auth_status(&e)
    })
}

/// The gRPC status of a refused key.
pub fn auth_status(e: &AuthError) -> Status {
    match e {
        AuthError::Suspended { .. } => Status::permission_denied(e.to_string()),
        AuthError::Unavailable(_) => Status::unavailable(e.to_string()),
        AuthError::Malformed(_) | AuthError::Unknown | AuthError::Revoked | AuthError::Expired => {
            Status::unauthenticated(e.to_string())
        }
    }
}

/// The caller [`Authenticated`] found for this request. A request that did not pass
/// through it (a handler called directly) has none: `UNAUTHENTICATED`.
pub fn caller<T>(request: &tonic::Request<T>) -> Result<Caller, Status> {
    request.extensions().get::<Caller>().cloned().ok_or_else(|| Status::unauthenticated("no API key was checked"))
}

impl From<Denied> for Status {
    fn from(e: Denied) -> Self {
        Status::permission_denied(e.to_string())
    }
}

/// `RESOURCE_EXHAUSTED` naming the quota, with `retry-after-ms` metadata when waiting
/// helps; `UNAVAILABLE` when the count cannot be read.
pub fn quota_status(e: &OverQuota) -> Status {
    match e {
        OverQuota::Rate { retry_after_ms, .. } => {
            let mut status = Status::resource_exhausted(e.to_string());
            if let Ok(value) = retry_after_ms.to_string().parse() {
                status.metadata_mut().insert("retry-after-ms", value);
            }
            status
        }
        OverQuota::Size { .. } => Status::resource_exhausted(e.to_string()),
        OverQuota::Unavailable(_) => Status::unavailable(e.to_string()),
    }
}

/// Who made a change, for the audit log: the key, and the person a `service` or `admin`
/// key said it acts for (`x-bitmail-actor: user:NAME`; client-api's keys, for the
/// webmail and its admin console); and the client address of the call. Other keys
/// cannot name anyone: the entry names the key alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    pub address: String,
}

impl Actor {
    pub fn of<T>(request: &tonic::Request<T>, caller: &Caller) -> Actor {
        let key = format!("key:{}", caller.prefix());
        let person = request
            .metadata()
            .get("x-bitmail-actor")
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.starts_with("user:") && v.len() <= 128 && !v.chars().any(char::is_control))
            .filter(|_| caller.scopes.iter().any(|s| matches!(s, Scope::Service | Scope::Admin)));
        let name = match person {
            Some(person) => format!("{person} via {key}"),
            None => key,
        };
        let address = request.remote_addr().map_or_else(String::new, |a| a.ip().to_string());
        Actor { name, address }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::Tenant;

    fn caller(scopes: &[Scope]) -> Caller {
        let tenant = Tenant::new("acme", "Acme", &["acme.test".into()], &[], Default::default(), 1).unwrap();
        Caller { tenant: Arc::new(tenant), key_id: "abcdefghijkl".into(), scopes: scopes.iter().copied().collect() }
    }

    fn actor_of(scopes: &[Scope], header: Option<&str>) -> String {
        let mut request = tonic::Request::new(());
        if let Some(value) = header {
            request.metadata_mut().insert("x-bitmail-actor", value.parse().unwrap());
        }
        Actor::of(&request, &caller(scopes)).name
    }

    #[test]
    fn service_and_admin_keys_may_name_the_person_they_act_for() {
        for scopes in [&[Scope::Service][..], &[Scope::Admin], &[Scope::Send, Scope::Admin]] {
            assert_eq!(actor_of(scopes, Some("user:ada")), "user:ada via key:bmk_abcdefghijkl", "{scopes:?}");
            assert_eq!(actor_of(scopes, None), "key:bmk_abcdefghijkl");
        }
    }

    #[test]
    fn other_keys_and_malformed_names_are_recorded_as_the_key_alone() {
        assert_eq!(actor_of(&[Scope::Send, Scope::Read], Some("user:ada")), "key:bmk_abcdefghijkl");
        assert_eq!(actor_of(&[Scope::Admin], Some("ada")), "key:bmk_abcdefghijkl");
        let long = format!("user:{}", "a".repeat(200));
        assert_eq!(actor_of(&[Scope::Admin], Some(&long)), "key:bmk_abcdefghijkl");
    }
}
