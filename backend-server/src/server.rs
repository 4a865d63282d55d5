//! Binding and serving backend-server: the `Store` service plus health and reflection.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::{Config, Engine};
use crate::embedded::EmbeddedStore;
use crate::memory::MemoryStore;
use crate::metered::MeteredStore;
use crate::postgres::PostgresStore;
use crate::proxy::ProxyStore;
use crate::service::StoreService;
use crate::store::{Limits, Store, StoreError};
use bitmail_runtime::metrics::Registry;

/// A bound, not yet serving, backend-server.
pub struct Server {
    listener: TcpListener,
    store: Arc<dyn Store>,
    metrics: Registry,
    limits: Limits,
    tls: Option<tonic::transport::ServerTlsConfig>,
    call_limits: bitmail_runtime::limits::GrpcLimits,
    grace: std::time::Duration,
}

/// Why backend-server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Store(StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("tls: {0}")]
    Tls(#[from] bitmail_runtime::grpc_tls::LinkTlsError),
}

/// The engine the config names, opened.
pub(crate) async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StoreError> {
    let limits = config.limits();
    Ok(match config.engine {
        Engine::Memory => Arc::new(MemoryStore::with_limits(limits)),
        Engine::Embedded => Arc::new(EmbeddedStore::open(&config.embedded.path, config.embedded.cache_bytes, limits)?),
        Engine::Postgres => Arc::new(
            PostgresStore::connect_with(
                config.postgres.url.expose(),
                config.postgres.pool_size,
                config.postgres.ca_file.as_deref(),
            )
            .await?
            .with_limits(limits),
        ),
        Engine::Proxy => {
            let proxy = &config.proxy;
            Arc::new(ProxyStore::new(&proxy.url, proxy.tls.as_ref(), proxy.connect_timeout(), proxy.timeout(), limits)?)
        }
    })
}

impl Server {
    /// Opens the engine and binds the listen address.
    pub async fn bind(config: &Config) -> Result<Self, StartError> {
        let store = open_store(config).await.map_err(StartError::Store)?;
        Self::bind_with_store(config, store).await
    }

    /// Binds the listen address to serve `store` instead of the engine the config names
    /// (its other settings apply): for tests that need a store failing on purpose.
    pub async fn bind_with_store(config: &Config, store: Arc<dyn Store>) -> Result<Self, StartError> {
        let tls = config.tls.as_ref().map(|t| t.server_config()).transpose()?;
        if config.engine == Engine::Memory && !config.listen.ip().is_loopback() {
            tracing::warn!(
                listen = %config.listen,
                "engine = \"memory\" on an address other nodes reach: every document is lost when this server stops; use \"embedded\" or \"postgres\""
            );
        }
        let metrics = Registry::new();
        let store: Arc<dyn Store> = Arc::new(MeteredStore::new(store, metrics.clone()));
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Listen { addr: config.listen, source })?;
        Ok(Self {
            listener,
            store,
            metrics,
            limits: config.limits(),
            tls,
            call_limits: config.call_limits.clone(),
            grace: std::time::Duration::from_secs(config.shutdown_grace_secs),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets in-flight calls
    /// finish.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let mut routes = tonic::service::RoutesBuilder::default();
        routes.add_service(StoreService::new(self.store, self.limits).into_server());
        bitmail_runtime::grpc::add_standard_services(&mut routes, &["bitmail.v1.Store"]).await?;
        let routes = bitmail_runtime::metrics::with_metrics_route(routes.routes(), self.metrics.clone());
        bitmail_runtime::grpc::serve(
            routes,
            self.listener,
            self.tls,
            shutdown,
            self.grace,
            &self.call_limits,
            self.metrics,
        )
        .await?;
        Ok(())
    }
}
