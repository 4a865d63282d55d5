//! Binding and serving client-api over HTTPS, with graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use bitmail_proto::v1::store_client::StoreClient;
use bitmail_runtime::grpc::Bearer;
use bitmail_runtime::grpc_tls::ClientTls;
use tonic::transport::Channel;

use crate::accounts::Accounts;
use crate::assets::WebAssets;
use crate::config::Config;
use crate::conn_cap::ConnectionCap;
use crate::deliveries::DeliveryLog;
use crate::limiter::LoginLimiter;
use crate::limits::EdgeLimits;
use crate::live::Live;
use crate::mailbox::Mailbox;
use crate::mta_pool::MtaPool;
use crate::routes::router;
use crate::send_limit::SendLimiter;
use crate::session_sweep::{self, Sweeper};
use crate::shared_counts::SharedCounts;
use crate::state::{AdminUpstream, AppState};
use crate::status::follow;
use bitmail_runtime::tls::{self, CertPaths};

/// The largest store message client-api reads or writes: backend-server's own wire
/// limit for its default document limit (2 x 16 MiB + 64 KiB).
const STORE_WIRE_LIMIT: usize = (32 << 20) + (64 << 10);

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A gRPC channel that connects on first use and reconnects after failures, so the
/// edge starts (and reports itself degraded) even while an upstream is down. With `tls`,
/// mutual TLS (`bitmail_runtime::grpc_tls`).
pub(crate) fn upstream(url: &str, tls: Option<&ClientTls>) -> Result<Channel, BoxError> {
    Ok(bitmail_runtime::grpc_tls::endpoint(url, tls)?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(30))
        .connect_lazy())
}

/// A bound, not yet serving, client-api.
pub struct Server {
    listener: std::net::TcpListener,
    tls: rustls::ServerConfig,
    state: Arc<AppState>,
    max_body_bytes: usize,
    max_inbound_bytes: usize,
    limits: EdgeLimits,
    grace: Duration,
    sweeper: Sweeper,
    sweep_every: Duration,
    pub cert: CertPaths,
}

impl Server {
    pub async fn bind(config: &Config) -> Result<Self, BoxError> {
        let configured = config.tls.as_ref().map(|t| (t.cert_path.as_path(), t.key_path.as_path()));
        let cert = tls::ensure_certificate(configured, &config.state_dir.join("tls"))?;
        let tls = tls::server_config(&cert, &[b"h2", b"http/1.1"])?;
        let mut nodes = Vec::new();
        for node in config.mta_nodes() {
            // One [mta_tls] for every node, each with its own certificate name.
            let tls = config.mta_tls.clone().map(|tls| ClientTls { server_name: node.server_name.clone(), ..tls });
            let channel = upstream(&node.url, tls.as_ref())?;
            nodes.push((node, channel));
        }
        let metrics = bitmail_runtime::metrics::Registry::new();
        let pool = Arc::new(MtaPool::new(nodes, Duration::from_millis(config.mta_timeout_ms), metrics.clone()));
        let bearer = Bearer::new(config.mta_key.as_ref().map(|k| k.expose()))?;
        if config.mta_key.is_none() {
            tracing::warn!("no mta_key configured: mta-server will refuse every call, and nothing can be sent");
        }
        let admin = match &config.mta_admin_key {
            Some(key) => Some(AdminUpstream { pool: pool.clone(), bearer: Bearer::new(Some(key.expose()))? }),
            None => {
                tracing::info!("no mta_admin_key configured: the admin console API answers 503");
                None
            }
        };
        let backend_channel = upstream(&config.backend_url, config.backend_tls.as_ref())?;
        let max_decode = config.max_body_bytes.max(config.max_inbound_bytes) + 256 * 1024;
        let web = match config.web_dir.clone() {
            Some(dir) => Some(tokio::task::spawn_blocking(move || WebAssets::load(&dir)).await??),
            None => None,
        };
        // The store answers documents up to its limit (16 MiB by default, twice that on
        // the wire); tonic's 4 MiB default would make a large document unreadable here.
        let store = || {
            StoreClient::new(backend_channel.clone())
                .max_decoding_message_size(STORE_WIRE_LIMIT)
                .max_encoding_message_size(STORE_WIRE_LIMIT)
        };
        let sweeper = Sweeper::new(store());
        let limiter = Arc::new(LoginLimiter::new(
            config.signin_failures_per_address,
            config.signin_failures_per_name,
            Some(SharedCounts::new(store())),
        ));
        let state = Arc::new(AppState {
            accounts: Accounts::new(
                store(),
                config.signup_on_first_login,
                Duration::from_secs(config.session_hours * 3600),
            ),
            // Received mail comes back parsed: its text, HTML and attachments together are
            // about the size of the raw message, twice at most (a text part made from HTML).
            pool,
            mta_bearer: bearer,
            mta_max_message: max_decode,
            mailbox: Mailbox::new(
                store(),
                Arc::new(Live::new(
                    config.limits.max_live_streams,
                    Duration::from_secs(config.limits.live_stream_secs),
                    metrics.clone(),
                )),
            ),
            backend_channel,
            mail_domain: config.mail_domain.clone(),
            session_secs: config.session_hours * 3600,
            limiter,
            subscribe_limit: Default::default(),
            send_limit: SendLimiter::new(config.user_sends_per_minute, config.user_max_recipients),
            admin,
            max_attachment_bytes: config.max_attachment_bytes,
            web,
            deliveries: Arc::new(DeliveryLog::default()),
            metrics,
        });
        let listener = std::net::TcpListener::bind(config.listen)?;
        listener.set_nonblocking(true)?;
        Ok(Self {
            listener,
            tls,
            state,
            max_body_bytes: config.max_body_bytes,
            max_inbound_bytes: config.max_inbound_bytes,
            limits: config.limits.clone(),
            grace: Duration::from_secs(config.shutdown_grace_secs),
            sweeper,
            sweep_every: Duration::from_secs(config.session_sweep_secs),
            cert,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves HTTPS until `shutdown` resolves, then stops accepting and gives requests in
    /// flight up to the grace period.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), BoxError> {
        let handle = axum_server::Handle::new();
        let stopper = handle.clone();
        let grace = self.grace;
        let live = self.state.mailbox.live().clone();
        tokio::spawn(async move {
            shutdown.await;
            // Open live streams would hold the shutdown for the whole grace period.
            live.close();
            stopper.graceful_shutdown(Some(grace));
        });
        // One follower per node, each reconnecting on its own.
        let followers: Vec<_> = self
            .state
            .pool
            .nodes()
            .iter()
            .map(|node| {
                let mta = node.mta(&self.state.mta_bearer);
                let name = node.name().to_owned();
                tokio::spawn(follow(mta, name, self.state.deliveries.clone(), self.state.mailbox.clone()))
            })
            .collect();
        let sweeper = tokio::spawn(session_sweep::run(self.sweeper, self.sweep_every));
        let prober = tokio::spawn(crate::mta_pool::probe_forever(self.state.pool.clone()));
        let limits = self.limits;
        let ms = Duration::from_millis;
        // The cap runs first, so a connection over it is closed before its handshake.
        let acceptor = RustlsAcceptor::new(RustlsConfig::from_config(Arc::new(self.tls)))
            .handshake_timeout(ms(limits.tls_handshake_timeout_ms))
            .acceptor(ConnectionCap::new(limits.max_connections, self.state.metrics.clone()));
        let app = router(self.state, self.max_body_bytes, self.max_inbound_bytes, &limits);
        // A slow-loris client (a header sent a byte at a time, or never finished) is
        // closed after `header_read_timeout_ms`: hyper times each HTTP/1.1 request's
        // headers, idle keep-alive included, and axum-server the first request of every
        // connection, which also covers the protocol detection hyper does not time.
        let header_timeout = ms(limits.header_read_timeout_ms);
        let mut server = axum_server::from_tcp(self.listener)?
            .acceptor(acceptor)
            .first_request_timeout(header_timeout)
            .handle(handle);
        server.http_builder().http1().header_read_timeout(header_timeout);
        // A dead HTTP/2 peer is found by PING rather than kept until the cap fills.
        server.http_builder().http2().keep_alive_interval(Duration::from_secs(30)).keep_alive_timeout(ms(20_000));
        let served = server.serve(app.into_make_service_with_connect_info::<SocketAddr>()).await;
        followers.iter().for_each(tokio::task::JoinHandle::abort);
        sweeper.abort();
        prober.abort();
        served?;
        Ok(())
    }
}
