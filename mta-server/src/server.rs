//! Building and serving mta-server: the providers and the scheduler from config (built
//! by [`crate::provider::from_config`] and [`crate::scheduler::from_config`]), the spool
//! and delivery, the gRPC service with health and reflection, and graceful shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::admin::AdminService;
use crate::auth::Authenticated;
use crate::config::{Config, ProviderConfig};
use crate::delivery::{Delivery, DeliverySettings, Providers};
use crate::health::Health;
use crate::limits::Limiter;
use crate::message::Limits;
use crate::receive::Webhook;
use crate::service::MtaService;
use crate::smtp::{SmtpAddrs, SmtpServer};
use crate::spool::Spool;
use crate::tenant::KeyCheck;
use bitmail_runtime::metrics::Registry;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The gRPC health service name that reports whether delivery can progress: SERVING
/// when at least one provider can be tried, NOT_SERVING when all are paused or open.
pub const DELIVERY_HEALTH: &str = "bitmail.v1.Mta.delivery";

/// A bound, not yet serving, mta-server.
pub struct Server {
    listener: TcpListener,
    /// Mutual TLS on the gRPC listener (`[tls]`).
    tls: Option<tonic::transport::ServerTlsConfig>,
    service: Arc<MtaService>,
    smtp: Option<SmtpServer>,
    admin: AdminService,
    /// Mailing lists: the gRPC service, and this node's campaigns and tasks.
    lists: Arc<crate::lists::Lists>,
    keys: Arc<KeyCheck>,
    delivery: Delivery,
    health: Arc<Health>,
    spool: Spool,
    metrics: Registry,
    keep_statuses: Duration,
    grace: Duration,
    call_limits: bitmail_runtime::limits::GrpcLimits,
    /// Delivers the tenants' webhooks from the spool's event log.
    outbox: crate::outbox::dispatch::Dispatcher,
    /// The shared store and this node's name, for its report (none with a local tenants
    /// file): see `node_report`.
    report: Option<(Arc<dyn backend_server::store::Store>, String)>,
}

impl Server {
    pub async fn bind(config: &Config) -> Result<Self, BoxError> {
        let tls = config.tls.as_ref().map(|t| t.server_config()).transpose().map_err(|e| format!("tls: {e}"))?;
        let providers = config.providers.iter().map(crate::provider::from_config).collect::<Result<Vec<_>, _>>()?;
        if providers.is_empty() {
            tracing::warn!("no providers configured: messages are accepted and deferred, none is sent");
        }
        let scheduler = crate::scheduler::from_config(config.scheduler, &config.providers);
        let spool = Spool::open(&config.spool.path, (&config.spool).into())?;
        match spool.backlog() {
            Ok(0) => {}
            Ok(n) => tracing::info!(backlog = n, "resuming delivery of spooled messages"),
            Err(e) => tracing::warn!(error = %e, "cannot count the spooled backlog"),
        }
        let names = providers.iter().map(|p| p.name().to_owned()).collect();
        let health = Arc::new(Health::new(names, (&config.health).into()));
        for (name, record) in spool.load_health().await? {
            health.restore(&name, &record);
        }
        let limiter = Arc::new(Limiter::new(
            config.providers.iter().zip(&providers).map(|(c, p)| (c.limits(), p.max_message_bytes())),
        ));
        let wake = Arc::new(tokio::sync::Notify::new());
        let metrics = Registry::new();
        register_collectors(&metrics, &spool, &health);
        let delivery = Delivery::new(
            spool.clone(),
            Providers { list: providers, scheduler, health: health.clone(), limiter },
            metrics.clone(),
            DeliverySettings::from_config(&config.delivery, &config.retry),
            wake.clone(),
        );
        let tenancy = crate::tenancy::open(config).await?;
        let outbox = crate::outbox::dispatch::Dispatcher::new(
            spool.clone(),
            crate::outbox::Webhooks::new(tenancy.tenancy.registry.store().clone()),
            (&config.outbox).into(),
        )?;
        let report = tenancy.shared.then(|| (tenancy.tenancy.registry.store().clone(), tenancy.node_id.clone()));
        let listener = TcpListener::bind(config.listen).await?;
        let service = Arc::new(
            MtaService::new(
                spool.clone(),
                Limits { max_message_bytes: config.max_message_bytes, max_recipients: config.max_recipients },
                health.clone(),
                wake,
                webhooks(config)?,
                (&config.suppression).into(),
                metrics.clone(),
                tenancy.tenancy.clone(),
            )
            .allow_private_webhooks(config.outbox.allow_private_urls),
        );
        let state_dir = config.spool.path.parent().unwrap_or(std::path::Path::new("."));
        let smtp = SmtpServer::bind(
            &config.smtp,
            config.max_message_bytes,
            config.max_recipients,
            state_dir,
            service.clone(),
            tenancy.keys.clone(),
            metrics.clone(),
        )
        .await?;
        let lists = crate::lists::Lists::new(
            tenancy.tenancy.registry.store().clone(),
            tenancy.tenancy.registry.clone(),
            service.clone(),
            spool.clone(),
            crate::lists::ListsSettings {
                public_url: config.lists.public_url.clone(),
                unsubscribe_domain: config.lists.unsubscribe_domain.clone(),
                node: tenancy.node_id.clone(),
                concurrency: config.lists.concurrency,
                max_backlog: config.lists.max_backlog,
            },
        );
        Ok(Self {
            listener,
            tls,
            smtp,
            lists,
            admin: AdminService::new(
                tenancy.tenancy.registry.clone(),
                tenancy.keys.clone(),
                tenancy.tenancy.quota.clone(),
                tenancy.tenancy.audit.clone(),
            ),
            keys: tenancy.keys,
            service,
            metrics,
            spool,
            keep_statuses: Duration::from_secs(config.spool.keep_statuses_days * 24 * 3600),
            health,
            delivery,
            grace: Duration::from_secs(config.shutdown_grace_secs),
            call_limits: config.call_limits.clone(),
            outbox,
            report,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Where the SMTP submission listeners are bound (none unless `[smtp]` names them).
    pub fn smtp_addrs(&self) -> SmtpAddrs {
        self.smtp.as_ref().map(SmtpServer::addrs).unwrap_or_default()
    }

    /// Serves until `shutdown` resolves: then stops accepting, finishes the calls in
    /// flight, and gives delivery rounds in flight up to the grace period. Everything
    /// acknowledged is already on disk, so nothing needs flushing.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), BoxError> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut stop_workers = stop_rx.clone();
        let workers = tokio::spawn(self.delivery.run(
            async move {
                let _ = stop_workers.wait_for(|stop| *stop).await;
            },
            self.grace,
        ));

        let mut routes = tonic::service::RoutesBuilder::default();
        // Every call of `Mta` is authenticated; health and reflection stay open (they
        // reveal nothing).
        routes.add_service(Authenticated::new(self.service.shared_server(), self.keys.clone()));
        routes.add_service(Authenticated::new(self.admin.into_server(), self.keys.clone()));
        routes.add_service(Authenticated::new(
            self.lists.service().max_decoding_message_size(crate::lists::MAX_REQUEST_BYTES),
            self.keys.clone(),
        ));
        // Stopped with the server: they hold the spool, which a restart in the same
        // process must open again.
        let lists = self.lists.spawn();
        let reporter = bitmail_runtime::grpc::add_standard_services(
            &mut routes,
            &["bitmail.v1.Mta", "bitmail.v1.Admin", "bitmail.v1.Lists"],
        )
        .await?;
        // "bitmail.v1.Mta" stays SERVING while mail is accepted; DELIVERY_HEALTH says
        // whether any provider can be tried now.
        let health = self.health.clone();
        let watcher = tokio::spawn(async move {
            let mut last = None;
            loop {
                let degraded = health.degraded(bitmail_runtime::time::now_ms());
                if last != Some(degraded) {
                    let status = if degraded {
                        tracing::warn!("degraded: no provider can be tried now; mail is kept in the spool");
                        tonic_health::ServingStatus::NotServing
                    } else {
                        tonic_health::ServingStatus::Serving
                    };
                    reporter.set_service_status(DELIVERY_HEALTH, status).await;
                    last = Some(degraded);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        let pruner = tokio::spawn(prune_forever(self.spool.clone(), self.keep_statuses));
        let report = self
            .report
            .map(|(store, node)| tokio::spawn(crate::node_report::report_forever(store, node, self.spool.clone())));
        let smtp = self.smtp.map(|smtp| tokio::spawn(smtp.serve(stop_rx.clone())));
        let mut stop_outbox = stop_rx.clone();
        let outbox = tokio::spawn(self.outbox.run(async move {
            let _ = stop_outbox.wait_for(|stop| *stop).await;
        }));
        let routes = bitmail_runtime::metrics::with_metrics_route(routes.routes(), self.metrics.clone());
        let served = bitmail_runtime::grpc::serve(
            routes,
            self.listener,
            self.tls,
            shutdown,
            self.grace,
            &self.call_limits,
            self.metrics,
        )
        .await;

        pruner.abort();
        drop(lists);
        if let Some(report) = report {
            report.abort();
        }
        watcher.abort();
        outbox.abort();
        let _ = stop_tx.send(true);
        if let Some(smtp) = smtp {
            let _ = smtp.await;
        }
        let _ = workers.await;
        served?;
        Ok(())
    }
}

/// Every minute, forgets expired idempotency keys and old sent or failed messages, in
/// short commits so that submissions never wait long behind it.
async fn prune_forever(spool: Spool, keep_statuses: Duration) {
    let keep_ms = u64::try_from(keep_statuses.as_millis()).unwrap_or(u64::MAX);
    loop {
        loop {
            match spool.prune(bitmail_runtime::time::now_ms(), keep_ms).await {
                Ok(p) if [p.statuses, p.keys, p.events].contains(&crate::spool::PRUNE_BATCH) => {
                    tokio::task::yield_now().await;
                }
                Ok(p) => {
                    if p.statuses + p.keys > 0 {
                        tracing::debug!(statuses = p.statuses, keys = p.keys, "pruned the spool");
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot prune the spool");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}

/// The webhook verifier of every provider that has a webhook key configured.
fn webhooks(config: &Config) -> Result<HashMap<String, Webhook>, BoxError> {
    let mut out = HashMap::new();
    for p in &config.providers {
        let webhook = match p {
            ProviderConfig::Sendgrid(c) if c.webhook_public_key.is_some() || c.inbound_password.is_some() => {
                Webhook::SendGrid {
                    events: c.webhook_public_key.as_deref().map(crate::events::sendgrid::Verifier::new).transpose()?,
                    inbound_password: c.inbound_password.clone(),
                }
            }
            ProviderConfig::Mailgun(c) => match &c.webhook_signing_key {
                Some(key) => Webhook::Mailgun(crate::events::mailgun::Verifier::new(key.expose())),
                None => continue,
            },
            ProviderConfig::Ses(c) if !c.sns_topics.is_empty() => {
                let extra_roots_pem = match &c.sns_ca_file {
                    Some(path) => Some(
                        std::fs::read(path).map_err(|e| format!("{}.sns_ca_file {}: {e}", c.name, path.display()))?,
                    ),
                    None => None,
                };
                Webhook::Ses(crate::events::sns::Verifier::new(crate::events::sns::SnsSettings {
                    topics: c.sns_topics.clone(),
                    cert_hosts: c.sns_cert_hosts.clone(),
                    extra_roots_pem,
                })?)
            }
            _ => continue,
        };
        out.insert(p.name().to_owned(), webhook);
    }
    Ok(out)
}

/// Gauges read at each scrape of `/metrics`.
fn register_collectors(metrics: &Registry, spool: &Spool, health: &Arc<Health>) {
    let s = spool.clone();
    metrics.collect(
        "bitmail_mta_queue_depth",
        "Messages queued, being sent or deferred.",
        Box::new(move || vec![(vec![], s.backlog().unwrap_or(0) as f64)]),
    );
    let s = spool.clone();
    metrics.collect(
        "bitmail_mta_oldest_queued_seconds",
        "Age of the oldest message not yet sent or failed (0 when none).",
        Box::new(move || {
            let now = bitmail_runtime::time::now_ms();
            let age = s.oldest_unfinished().ok().flatten().map_or(0, |at| now.saturating_sub(at));
            vec![(vec![], age as f64 / 1000.0)]
        }),
    );
    let h = health.clone();
    metrics.collect(
        "bitmail_mta_provider_up",
        "1 when the provider can be tried (circuit closed or half-open), 0 when open or paused.",
        Box::new(move || {
            h.snapshot(bitmail_runtime::time::now_ms())
                .into_iter()
                .map(|p| {
                    let up = matches!(p.circuit, crate::health::Circuit::Closed | crate::health::Circuit::HalfOpen);
                    (vec![("provider", p.name)], if up { 1.0 } else { 0.0 })
                })
                .collect()
        }),
    );
    let h = health.clone();
    metrics.collect(
        "bitmail_mta_provider_in_flight",
        "Provider calls under way.",
        Box::new(move || {
            h.snapshot(bitmail_runtime::time::now_ms())
                .into_iter()
                .map(|p| (vec![("provider", p.name)], f64::from(p.in_flight)))
                .collect()
        }),
    );
}
