//! Binding and serving backend-server: the `Store` service plus health and reflection.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::{Config, Engine};
use crate::memory::MemoryStore;
use crate::postgres::PostgresStore;
use crate::service::StoreService;
use crate::store::Store;

/// A bound, not yet serving, backend-server.
pub struct Server {
    listener: TcpListener,
    store: Arc<dyn Store>,
    grace: std::time::Duration,
}

impl Server {
    /// Opens the engine and binds the listen address. An engine that cannot be opened
    /// (PostgreSQL unreachable) is an error of kind `Other` carrying the store's message.
    pub async fn bind(config: &Config) -> std::io::Result<Self> {
        let store: Arc<dyn Store> = match config.engine {
            Engine::Memory => Arc::new(MemoryStore::new()),
            Engine::Postgres => Arc::new(
                PostgresStore::connect(config.postgres.url.expose(), config.postgres.pool_size)
                    .await
                    .map_err(std::io::Error::other)?,
            ),
        };
        let listener = TcpListener::bind(config.listen).await?;
        Ok(Self { listener, store, grace: std::time::Duration::from_secs(config.shutdown_grace_secs) })
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
        routes.add_service(StoreService::new(self.store).into_server());
        bitmail_runtime::grpc::add_standard_services(&mut routes, &["bitmail.v1.Store"]).await?;
        bitmail_runtime::grpc::serve(routes.routes(), self.listener, shutdown, self.grace).await?;
        Ok(())
    }
}
