//! What every handler shares: the one `AppState` the router holds.

use std::sync::Arc;

use bitmail_proto::v1::admin_client::AdminClient;
use bitmail_proto::v1::mta_client::MtaClient;
use bitmail_runtime::grpc::{Bearer, WithKey};
use bitmail_runtime::metrics::Registry;
use tonic::transport::Channel;

use crate::accounts::Accounts;
use crate::assets::WebAssets;
use crate::deliveries::DeliveryLog;
use crate::limiter::LoginLimiter;
use crate::mailbox::Mailbox;
use crate::mta_pool::{MtaPool, Node};
use crate::send_limit::SendLimiter;
use crate::subscribe_limit::SubscribeLimiter;

/// mta-server as the admin console reaches it: both services with `mta_admin_key`, on
/// the node the pool picks. Tenants, keys, usage and the audit log are in the shared
/// `[tenants] store`, so any node answers for them.
#[derive(Clone)]
pub(crate) struct AdminUpstream {
    pub(crate) pool: Arc<MtaPool>,
    pub(crate) bearer: Bearer,
}

impl AdminUpstream {
    pub(crate) fn admin(&self) -> AdminClient<WithKey> {
        self.pool.pick().admin(&self.bearer)
    }

    pub(crate) fn mta(&self) -> MtaClient<WithKey> {
        self.pool.pick().mta(&self.bearer)
    }
}

/// What every handler shares.
pub(crate) struct AppState {
    pub(crate) accounts: Accounts,
    pub(crate) mailbox: Mailbox,
    /// Every mta-server, and which to ask ([`crate::mta_pool`]).
    pub(crate) pool: Arc<MtaPool>,
    /// The edge's own key at mta-server (`mta_key`).
    pub(crate) mta_bearer: Bearer,
    /// The largest message the edge sends mta-server (a received message comes back
    /// parsed, up to twice that).
    pub(crate) mta_max_message: usize,
    pub(crate) backend_channel: Channel,
    pub(crate) mail_domain: String,
    pub(crate) session_secs: u64,
    pub(crate) limiter: Arc<LoginLimiter>,
    /// Subscriptions through the hosted list forms, per client address.
    pub(crate) subscribe_limit: SubscribeLimiter,
    /// One user's sends per minute and recipients per message.
    pub(crate) send_limit: SendLimiter,
    /// None without `mta_admin_key`: the admin API answers 503.
    pub(crate) admin: Option<AdminUpstream>,
    pub(crate) max_attachment_bytes: usize,
    /// The built webmail; None serves the bare page.
    pub(crate) web: Option<WebAssets>,
    pub(crate) deliveries: Arc<DeliveryLog>,
    pub(crate) metrics: Registry,
}

impl AppState {
    /// mta-server's `Mta` service on `node` with the edge's key, sized for received
    /// mail.
    pub(crate) fn mta_on(&self, node: &Node) -> MtaClient<WithKey> {
        node.mta(&self.mta_bearer)
            .max_encoding_message_size(self.mta_max_message)
            .max_decoding_message_size(2 * self.mta_max_message)
    }
}
