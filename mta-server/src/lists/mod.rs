//! Mailing lists and mass notification: the gRPC `bitmail.v1.Lists` service, the
//! campaign runner and the background tasks.
//!
//! Where things live, and why it cannot skip or repeat a subscriber:
//! - lists, subscribers, campaigns and tasks are documents in the shared store (the
//!   tenants' store, `[tenants] store`), so every node answers for them;
//! - a campaign is sent by one node, the one that took it (`node`): its **ledger**, one
//!   entry per (campaign, subscriber), is in that node's spool and is written in the same
//!   transaction as each copy (`spool/ledger.rs`). A copy is never in the spool without
//!   its entry nor the other way round; the runner asks the ledger before each
//!   subscriber, so a restart, a resume or a second runner passes over everyone who has
//!   a copy. The walk's cursor moves only after a page's copies are all durable. A copy
//!   whose delivery attempt was in flight at a crash is flagged a possible duplicate by
//!   delivery, as any message is, and counted;
//! - tasks (imports, exports) run on the node that took them too, their input and
//!   output kept as chunk documents in the shared store, their progress in the task.
//!
//! - `model`: the documents and the checks of what callers give;
//! - `token`: the signed links (confirm, unsubscribe, preferences);
//! - `template`: Markdown with variables, checked whole, rendered per subscriber;
//! - `service` (the calls; lists), `subscribers` (subscribing, the links' subscriber,
//!   unsubscribing) and `campaigns` (campaigns, triggers, tasks); `wire`: their types
//!   on the wire;
//! - `mail`: the mails themselves (a confirmation, a campaign copy with its
//!   `List-Unsubscribe` headers);
//! - `runner`: the campaign runner, the figures flushed to the campaigns, and
//!   subscribers unsubscribed on hard bounces and complaints;
//! - `tasks` and `csv`: imports and exports.

mod campaigns;
pub mod csv;
mod mail;
pub mod model;
mod runner;
mod service;
mod subscribers;
mod tasks;
pub mod template;
pub mod token;
mod wire;

use std::sync::Arc;

use backend_server::store::{Document, Fields, Store, StoreError};
use bitmail_proto::v1::lists_server::ListsServer;
use tokio::sync::{Notify, OnceCell};
use tonic::{Request, Status};

use crate::auth::caller;
use crate::service::MtaService;
use crate::spool::Spool;
use crate::tenant::{Caller, Registry, Scope, Tenant};
use model::{Campaign, List, Task};
use token::Signer;

/// The largest request the service takes: an import of 16 MiB, with room for the rest.
pub const MAX_REQUEST_BYTES: usize = csv::MAX_IMPORT_BYTES + (1 << 20);

/// `[lists]` as the service uses it.
#[derive(Debug, Clone)]
pub struct ListsSettings {
    /// The edge's base URL, for the links in mails; empty: lists cannot send mail.
    pub public_url: String,
    /// Where unsubscribing by mail goes (`[lists] unsubscribe_domain`); empty: no `mailto:`.
    pub unsubscribe_domain: String,
    /// This node's name: campaigns and tasks it takes are its own.
    pub node: String,
    /// Copies of one campaign submitted at once.
    pub concurrency: usize,
    /// The runner waits while the spool holds more messages than this.
    pub max_backlog: u64,
}

/// What the service, the runner and the tasks share.
pub struct Lists {
    store: Arc<dyn Store>,
    registry: Registry,
    mta: Arc<MtaService>,
    spool: Spool,
    signer: OnceCell<Signer>,
    settings: ListsSettings,
    /// Wakes the runner: a campaign or task was created, resumed or retried.
    wake: Notify,
    /// Campaigns whose figures changed since they were last written to their document.
    dirty: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// The gRPC service (a handle on [`Lists`]).
#[derive(Clone)]
pub struct ListsService(Arc<Lists>);

impl Lists {
    pub fn new(
        store: Arc<dyn Store>,
        registry: Registry,
        mta: Arc<MtaService>,
        spool: Spool,
        settings: ListsSettings,
    ) -> Arc<Lists> {
        Arc::new(Lists {
            store,
            registry,
            mta,
            spool,
            signer: OnceCell::new(),
            settings,
            wake: Notify::new(),
            dirty: Default::default(),
        })
    }

    pub fn service(self: &Arc<Self>) -> ListsServer<ListsService> {
        ListsServer::new(ListsService(self.clone()))
    }

    /// Runs the campaigns and tasks of this node until the answer is dropped.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinSet<()> {
        let mut set = tokio::task::JoinSet::new();
        set.spawn(runner::run_forever(self.clone()));
        set.spawn(runner::follow_outcomes(self.clone()));
        set.spawn(tasks::run_forever(self.clone()));
        set
    }

    async fn signer(&self) -> Result<&Signer, Status> {
        self.signer.get_or_try_init(|| Signer::load(&self.store)).await.map_err(Status::from)
    }

    fn public_url(&self) -> Result<&str, Status> {
        let url = self.settings.public_url.trim_end_matches('/');
        if url.is_empty() {
            return Err(Status::failed_precondition(
                "lists.public_url is not configured on this mta-server: list mail needs the edge's address for its links",
            ));
        }
        Ok(url)
    }

    async fn tenant(&self, id: &str) -> Result<Arc<Tenant>, Status> {
        let t = self.registry.get_tenant(id).await.map_err(Status::from)?;
        Ok(Arc::new(t.value))
    }

    async fn doc(&self, id: &str) -> Result<Option<Document>, Status> {
        if id.is_empty() || id.len() > 64 {
            return Ok(None);
        }
        match self.store.get(id).await {
            Ok(d) => Ok(Some(d)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// `tenant`'s list `id`; NOT_FOUND for another tenant's.
    async fn list(&self, tenant: &str, id: &str) -> Result<List, Status> {
        self.doc(id)
            .await?
            .and_then(|d| List::from_doc(&d))
            .filter(|l| l.tenant == tenant)
            .ok_or_else(|| Status::not_found(format!("no list {id:?}")))
    }

    async fn campaign(&self, tenant: &str, id: &str) -> Result<Campaign, Status> {
        self.doc(id)
            .await?
            .and_then(|d| Campaign::from_doc(&d))
            .filter(|c| c.tenant == tenant)
            .ok_or_else(|| Status::not_found(format!("no campaign {id:?}")))
    }

    async fn task(&self, tenant: &str, id: &str) -> Result<Task, Status> {
        self.doc(id)
            .await?
            .and_then(|d| Task::from_doc(&d))
            .filter(|t| t.tenant == tenant)
            .ok_or_else(|| Status::not_found(format!("no task {id:?}")))
    }

    /// Every document holding `subset`, page by page (at most `max`).
    async fn all(&self, subset: Fields, max: usize) -> Result<Vec<Document>, Status> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self.store.lookup(&subset, 1000, token.as_deref()).await?;
            out.extend(page.documents);
            match page.next_page_token {
                Some(t) if out.len() < max => token = Some(t),
                _ => return Ok(out),
            }
        }
    }
}

/// The tenant a call acts for: the key's own (`need`: `send` for changes, `read` or
/// `send` for reads), or the one it names with an `admin` key.
fn tenant_for<T>(request: &Request<T>, named: &str, need: Scope) -> Result<(Caller, String), Status> {
    let caller = caller(request)?;
    if named.is_empty() || named == caller.tenant.id {
        // Whoever may change a tenant's lists may read them.
        if need != Scope::Read || caller.require(Scope::Send).is_err() {
            caller.require(need)?;
        }
        let id = caller.tenant.id.clone();
        return Ok((caller, id));
    }
    caller.require(Scope::Admin)?;
    Ok((caller, named.to_owned()))
}

/// Whether the caller is the edge: a `service` key without `admin`.
fn is_edge<T>(request: &Request<T>) -> Result<bool, Status> {
    let caller = caller(request)?;
    Ok(caller.scopes.contains(&Scope::Service) && !caller.scopes.contains(&Scope::Admin))
}

/// The calls of the hosted pages: the edge's `service` key, or an `admin` key.
fn edge<T>(request: &Request<T>) -> Result<Caller, Status> {
    let caller = caller(request)?;
    if caller.scopes.contains(&Scope::Service) || caller.scopes.contains(&Scope::Admin) {
        Ok(caller)
    } else {
        Err(Status::permission_denied(format!(
            "key {} may not make the hosted pages' calls (needs `service`)",
            caller.prefix()
        )))
    }
}
