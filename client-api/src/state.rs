//! What every handler shares: the one `AppState` the router holds.

use std::sync::Arc;

use bitmail_proto::v1::admin_client::AdminClient;
use bitmail_proto::v1::mta_client::MtaClient;
use bitmail_runtime::grpc::WithKey;
use bitmail_runtime::metrics::Registry;
use tonic::transport::Channel;

use crate::accounts::Accounts;
use crate::assets::WebAssets;
use crate::deliveries::DeliveryLog;
use crate::limiter::LoginLimiter;
use crate::mailbox::Mailbox;
use crate::send_limit::SendLimiter;

/// mta-server as the admin console reaches it: both services with `mta_admin_key`.
#[derive(Clone)]
pub(crate) struct AdminUpstream {
    pub(crate) admin: AdminClient<WithKey>,
    pub(crate) mta: MtaClient<WithKey>,
}

/// What every handler shares.
pub(crate) struct AppState {
    pub(crate) accounts: Accounts,
    pub(crate) mailbox: Mailbox,
    pub(crate) mta: MtaClient<WithKey>,
    pub(crate) mta_channel: Channel,
    pub(crate) backend_channel: Channel,
    pub(crate) mail_domain: String,
    pub(crate) session_secs: u64,
    pub(crate) limiter: Arc<LoginLimiter>,
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
