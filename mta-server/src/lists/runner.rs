//! The campaign runner of a node: it sends the campaigns this node took, one task each,
//! walking the list's matching confirmed subscribers in id order from the ledger's
//! cursor. For each subscriber without a ledger entry, one copy goes through
//! [`MtaService::submit_copy`](crate::service::MtaService), which writes the copy and its
//! entry in one commit; the cursor moves after a whole page is durable. So a kill -9 at
//! any moment, then a restart (or a pause, then a resume), sends each subscriber exactly
//! one copy: those with an entry are passed over, the others get theirs.
//!
//! Throttling: at most `rate_per_second` copies a second when set; always within the
//! tenant's quota (a refusal for a quota waits and tries the same subscriber again) and
//! never more than `max_backlog` messages waiting in the spool, so the campaign goes as
//! fast as delivery does and no list is ever held in memory (a page of 200 at a time).
//!
//! Also here: the campaigns' figures written from the ledger to their documents once a
//! second while they change, and subscribers unsubscribed when a copy hard-bounces or
//! draws a complaint.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backend_server::store::{Fields, StoreError};
use bitmail_proto::v1::EventKind;
use tokio::sync::Semaphore;
use tokio::task::{AbortHandle, JoinSet};
use tonic::Code;
use tracing::{info, warn};

use super::Lists;
use super::mail::Prepared;
use super::model::{self, CAMPAIGN, Campaign, List, SUBSCRIBER, Stats, Subscriber};
use super::token::{Claims, Kind};
use crate::spool::ledger::{CAMPAIGN_KEY, LedgerKey, SUBSCRIBER_KEY};
use bitmail_runtime::sync::lock;
use bitmail_runtime::time::now_ms;

const PAGE: usize = 200;

/// Runs this node's campaigns until aborted; aborting it aborts them (a copy being
/// submitted then is either committed with its entry or not at all).
pub async fn run_forever(lists: Arc<Lists>) {
    let mut active: HashMap<String, AbortHandle> = HashMap::new();
    let mut running = JoinSet::new();
    loop {
        while running.try_join_next().is_some() {}
        active.retain(|_, h| !h.is_finished());
        if let Err(e) = start_due(&lists, &mut active, &mut running).await {
            warn!(error = %e, "cannot read this node's campaigns; trying again");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = lists.wake.notified() => {}
        }
    }
}

fn mine(lists: &Lists, state: &str) -> Fields {
    Fields::from([
        ("kind".into(), CAMPAIGN.into()),
        ("node".into(), lists.settings.node.clone()),
        ("state".into(), state.into()),
    ])
}

async fn start_due(
    lists: &Arc<Lists>,
    active: &mut HashMap<String, AbortHandle>,
    running: &mut JoinSet<()>,
) -> Result<(), StoreError> {
    let now = now_ms();
    for doc in lists.store.lookup(&mine(lists, model::SCHEDULED), 1000, None).await?.documents {
        let Some(c) = Campaign::from_doc(&doc) else { continue };
        if c.start_at_ms <= now {
            let fields = Fields::from([("state".into(), model::RUNNING.into())]);
            // Lost to a pause or cancel meanwhile: that one wins.
            let _ = lists.store.update(&c.id, fields, vec![], Some(c.version)).await;
        }
    }
    for doc in lists.store.lookup(&mine(lists, model::RUNNING), 1000, None).await?.documents {
        if !active.contains_key(&doc.id) {
            let (l, id) = (lists.clone(), doc.id.clone());
            active.insert(doc.id.clone(), running.spawn(async move { run(l, id).await }));
        }
    }
    Ok(())
}

/// Sets fields of a campaign, whatever its version.
async fn set(lists: &Lists, id: &str, fields: Fields) {
    if let Err(e) = lists.store.update(id, fields, vec![], None).await {
        warn!(campaign = id, error = %e, "cannot update the campaign");
    }
}

async fn run(lists: Arc<Lists>, id: String) {
    match send(&lists, &id).await {
        Ok(true) => {
            flush(&lists, &id).await;
            // Done only if still running: a cancel that came last stays a cancel.
            if let Ok(doc) = lists.store.get(&id).await
                && doc.fields.get("state").is_some_and(|s| s == model::RUNNING)
            {
                let fields = Fields::from([
                    ("state".into(), model::DONE.into()),
                    ("finished_ms".into(), now_ms().to_string()),
                    ("error".into(), String::new()),
                ]);
                let _ = lists.store.update(&id, fields, vec![], Some(doc.version)).await;
                info!(campaign = %id, "campaign done");
            }
        }
        Ok(false) => flush(&lists, &id).await,
        Err(e) => {
            warn!(campaign = %id, error = %e, "campaign failed");
            let fields = Fields::from([
                ("state".into(), model::FAILED.into()),
                ("error".into(), e),
                ("finished_ms".into(), now_ms().to_string()),
            ]);
            set(&lists, &id, fields).await;
        }
    }
}

/// The subset of a campaign's recipients.
fn audience(c: &Campaign) -> Fields {
    let mut subset = Fields::from([
        ("kind".into(), SUBSCRIBER.into()),
        ("list".into(), c.list.clone()),
        ("state".into(), "confirmed".into()),
    ]);
    for (k, v) in &c.filter {
        subset.insert(if k == "language" { k.clone() } else { format!("a.{k}") }, v.clone());
    }
    subset
}

/// Sends what is left of a campaign: `Ok(true)` when every subscriber was handled,
/// `Ok(false)` when it was paused or cancelled, `Err` when it cannot go on.
async fn send(lists: &Arc<Lists>, id: &str) -> Result<bool, String> {
    let doc = lists.store.get(id).await.map_err(|e| e.to_string())?;
    let c = Campaign::from_doc(&doc).ok_or("not a campaign")?;
    let list = lists.list(&c.tenant, &c.list).await.map_err(|e| e.message().to_owned())?;
    let prepared = Arc::new(Prepared::new(&c.content, &list, &c.attachments).map_err(|e| e.message().to_owned())?);
    let tenant = lists.tenant(&c.tenant).await.map_err(|e| e.message().to_owned())?;
    let base = lists.public_url().map_err(|e| e.message().to_owned())?.to_owned();
    let signer = lists.signer().await.map_err(|e| e.message().to_owned())?.clone();
    let subset = audience(&c);
    if c.started_ms == 0 {
        let total = count(lists, &subset).await.map_err(|e| e.to_string())?;
        let fields = Fields::from([("total".into(), total.to_string()), ("started_ms".into(), now_ms().to_string())]);
        lists.store.update(id, fields, vec![], None).await.map_err(|e| e.to_string())?;
        info!(campaign = id, total, "campaign started");
    }
    let stop = Arc::new(AtomicBool::new(false));
    // Dropped (aborted) with this future, whichever way it ends.
    let mut watcher = JoinSet::new();
    watcher.spawn(watch(lists.clone(), id.to_owned(), stop.clone()));
    walk(lists, &c, &list, &prepared, &tenant, &base, &signer, &subset, &stop).await
}

pub(super) async fn count(lists: &Lists, subset: &Fields) -> Result<u64, StoreError> {
    let (mut n, mut token) = (0u64, None::<String>);
    loop {
        let page = lists.store.lookup(subset, 1000, token.as_deref()).await?;
        n += page.documents.len() as u64;
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => return Ok(n),
        }
    }
}

/// Sets `stop` once the campaign is no longer running (paused, cancelled, deleted).
async fn watch(lists: Arc<Lists>, id: String, stop: Arc<AtomicBool>) {
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        match lists.store.get(&id).await {
            Ok(doc) if doc.fields.get("state").is_some_and(|s| s == model::RUNNING) => {}
            Ok(_) | Err(StoreError::NotFound(_)) => {
                stop.store(true, Ordering::SeqCst);
                return;
            }
            Err(_) => {}
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn walk(
    lists: &Arc<Lists>,
    c: &Campaign,
    list: &List,
    prepared: &Arc<Prepared>,
    tenant: &Arc<crate::tenant::Tenant>,
    base: &str,
    signer: &super::token::Signer,
    subset: &Fields,
    stop: &Arc<AtomicBool>,
) -> Result<bool, String> {
    let record = lists.spool.campaign_record(&c.id).await.map_err(|e| e.to_string())?;
    let mut cursor = (!record.cursor.is_empty()).then_some(record.cursor);
    let slots = Arc::new(Semaphore::new(lists.settings.concurrency.max(1)));
    let interval = (c.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / c.rate));
    let mut next = tokio::time::Instant::now();
    loop {
        let page = lists.store.lookup(subset, PAGE, cursor.as_deref()).await.map_err(|e| e.to_string())?;
        let ids: Vec<String> = page.documents.iter().map(|d| d.id.clone()).collect();
        let held = lists.spool.in_ledger(&c.id, ids.clone()).await.map_err(|e| e.to_string())?;
        let mut copies = JoinSet::new();
        for doc in &page.documents {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            if held.contains(&doc.id) {
                continue;
            }
            let Some(sub) = Subscriber::from_doc(doc) else { continue };
            if let Some(every) = interval {
                tokio::time::sleep_until(next).await;
                next = next.max(tokio::time::Instant::now() - every) + every;
            }
            while lists.spool.backlog().unwrap_or(0) > lists.settings.max_backlog && !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let slot = slots.clone().acquire_owned().await.map_err(|e| e.to_string())?;
            let now = now_ms() / 1000;
            let token = signer.sign(
                &Claims { kind: Kind::Subscriber, subscriber: sub.id.clone(), campaign: Some(c.id.clone()) },
                now,
            );
            let (unsubscribe, prefs) = (format!("{base}/lists/u/{token}"), format!("{base}/lists/prefs/{token}"));
            let mailto = (!lists.settings.unsubscribe_domain.is_empty()).then(|| {
                format!("mailto:unsubscribe@{}?subject=unsubscribe%20{token}", lists.settings.unsubscribe_domain)
            });
            let request = prepared.copy(list, &sub, &unsubscribe, &prefs, mailto.as_deref());
            let key = LedgerKey { campaign: c.id.clone(), subscriber: sub.id.clone() };
            let (lists, tenant, stop) = (lists.clone(), tenant.clone(), stop.clone());
            copies.spawn(async move {
                let answer = submit(&lists, &tenant, request, key, &stop).await;
                drop(slot);
                answer
            });
        }
        while let Some(done) = copies.join_next().await {
            done.map_err(|e| e.to_string())??;
        }
        lock(&lists.dirty).insert(c.id.clone());
        if stop.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let Some(last) = ids.last().cloned() else { return Ok(true) };
        lists.spool.move_cursor(c.id.clone(), last.clone()).await.map_err(|e| e.to_string())?;
        match page.next_page_token {
            Some(_) => cursor = Some(last),
            None => return Ok(true),
        }
    }
}

/// One copy, tried until the spool has it (with its ledger entry) or the subscriber is
/// passed over; `Err` stops the campaign.
async fn submit(
    lists: &Lists,
    tenant: &Arc<crate::tenant::Tenant>,
    request: bitmail_proto::v1::SubmitRequest,
    key: LedgerKey,
    stop: &AtomicBool,
) -> Result<(), String> {
    let mut wait = Duration::from_millis(50);
    loop {
        match lists.mta.submit_copy(tenant, request.clone(), key.clone()).await {
            Ok(_) => return Ok(()),
            Err(e) if e.code() == Code::InvalidArgument => {
                // A suppressed or unusable address: this subscriber only.
                return lists.spool.skip_subscriber(key, e.message().to_owned()).await.map_err(|e| e.to_string());
            }
            Err(e) if e.code() == Code::PermissionDenied => return Err(e.message().to_owned()),
            Err(e) => {
                if wait >= Duration::from_secs(2) {
                    set(lists, &key.campaign, Fields::from([("error".into(), format!("waiting: {}", e.message()))]))
                        .await;
                }
                if stop.load(Ordering::SeqCst) {
                    // Not sent: the ledger has no entry, so a resume sends it.
                    return Ok(());
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Writes a campaign's figures from the ledger to its document.
async fn flush(lists: &Lists, id: &str) {
    let Ok(r) = lists.spool.campaign_record(id).await else { return };
    let stats = Stats {
        submitted: r.submitted,
        skipped: r.skipped,
        sent: r.sent,
        failed: r.failed,
        delivered: r.delivered,
        bounced: r.bounced,
        complained: r.complained,
        possible_duplicates: r.possible_duplicates,
        ..Stats::default()
    };
    let mut fields = Campaign::stats_fields(&stats);
    // A campaign that waited and then went on is no longer waiting.
    if let Ok(doc) = lists.store.get(id).await
        && doc.fields.get("error").is_some_and(|e| e.starts_with("waiting: "))
        && doc.fields.get("state").is_some_and(|s| s != model::FAILED)
    {
        fields.insert("error".into(), String::new());
    }
    set(lists, id, fields).await;
}

/// Follows this node's copies: their figures, and hard bounces and complaints, which
/// unsubscribe the subscriber.
pub async fn follow_outcomes(lists: Arc<Lists>) {
    let mut changes = lists.spool.subscribe();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            change = changes.recv() => match change {
                Ok(status) => {
                    let (Some(campaign), Some(subscriber)) = (status.metadata.get(CAMPAIGN_KEY), status.metadata.get(SUBSCRIBER_KEY)) else { continue };
                    lock(&lists.dirty).insert(campaign.clone());
                    let reason = status.events.last().and_then(|e| match EventKind::try_from(e.kind) {
                        Ok(EventKind::Bounced) if e.permanent => Some("bounce"),
                        Ok(EventKind::Complained) => Some("complaint"),
                        _ => None,
                    });
                    if let Some(reason) = reason
                        && let Ok(Some(sub)) = lists.doc(subscriber).await.map(|d| d.as_ref().and_then(Subscriber::from_doc))
                    {
                        let _ = lists.unsubscribe(&sub, reason, None).await;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            _ = tick.tick() => {
                let dirty: Vec<String> = lock(&lists.dirty).drain().collect();
                for id in dirty {
                    flush(&lists, &id).await;
                }
            }
        }
    }
}
