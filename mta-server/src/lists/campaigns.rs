//! Campaigns, triggers and tasks: what their gRPC calls do (the trait impl is in
//! `service.rs`).

use std::collections::BTreeMap;

use backend_server::store::{Fields, StoreError};
use base64::Engine as _;
use bitmail_proto::v1 as pb;
use tonic::Status;
use tracing::info;

use super::mail::Prepared;
use super::model::{self, CAMPAIGN, Campaign, Content, Problems, StoredAttachment, TASK, Task};
use super::{Lists, wire};
use bitmail_runtime::time::now_ms;

/// Campaign attachments: each copy carries them, so they stay small.
const MAX_ATTACHMENTS: usize = 10;
const MAX_ATTACHMENT_BYTES: usize = 2 << 20;
/// The furthest a campaign may be scheduled ahead.
const MAX_AHEAD_MS: u64 = 366 * 24 * 3600 * 1000;

impl Lists {
    pub(super) async fn create_campaign(&self, tenant: &str, given: pb::Campaign) -> Result<Campaign, Status> {
        let list = self.list(tenant, &given.list_id).await?;
        self.public_url()?;
        let content = given.content.as_ref().map(wire::from_content).unwrap_or_default();
        let mut p = Problems::default();
        p.name("name", &given.name, true, model::MAX_NAME_CHARS);
        let filter: BTreeMap<String, String> = given.filter.clone().into_iter().collect();
        for (k, v) in &filter {
            if k != "language" && !list.attributes.contains(k) {
                p.add(format!("filter.{k}"), format!("not an attribute of list {:?}", list.name));
            }
            p.name(&format!("filter.{k}"), v, true, model::MAX_ATTRIBUTE_VALUE_CHARS);
        }
        if !given.rate_per_second.is_finite() || given.rate_per_second < 0.0 || given.rate_per_second > 100_000.0 {
            p.add("rate_per_second", "0 (as fast as the quota allows) up to 100000");
        }
        let now = now_ms();
        if given.start_at_unix_ms < 0 || given.start_at_unix_ms as u64 > now + MAX_AHEAD_MS {
            p.add("start_at_unix_ms", "0 (now) or a time within a year");
        }
        if given.idempotency_key.len() > 200 || given.idempotency_key.chars().any(char::is_control) {
            p.add("idempotency_key", "at most 200 characters, no control characters");
        }
        if given.attachments.len() > MAX_ATTACHMENTS {
            p.add("attachments", format!("{} files, at most {MAX_ATTACHMENTS}", given.attachments.len()));
        }
        let bytes: usize = given.attachments.iter().map(|a| a.content.len()).sum();
        if bytes > MAX_ATTACHMENT_BYTES {
            p.add(
                "attachments",
                format!("{bytes} bytes together, at most {MAX_ATTACHMENT_BYTES} (every copy carries them)"),
            );
        }
        let attachments: Vec<StoredAttachment> = given
            .attachments
            .iter()
            .map(|a| StoredAttachment {
                filename: a.filename.clone(),
                content_type: a.content_type.clone(),
                content: base64::engine::general_purpose::STANDARD.encode(&a.content),
                content_id: a.content_id.clone(),
            })
            .collect();
        p.finish()?;
        // The whole template, now: an error stops the campaign before its first copy.
        let prepared = Prepared::new(&content, &list, &attachments)?;
        // And one copy checked as a submission would be (addresses, sizes, headers).
        let probe =
            model::Subscriber { email: "probe@example.org".into(), language: "en".into(), ..Default::default() };
        let mut copy = prepared.copy(&list, &probe, "https://x.invalid/u", "https://x.invalid/p", None);
        copy.validate_only = true;
        let t = self.tenant(tenant).await?;
        self.mta
            .submit_as(&t, "lists:check", copy, None, None)
            .await
            .map_err(|e| Status::invalid_argument(format!("the campaign's mail would be refused: {}", e.message())))?;
        let start = given.start_at_unix_ms as u64;
        let campaign = Campaign {
            tenant: tenant.to_owned(),
            list: list.id.clone(),
            name: given.name.trim().to_owned(),
            content,
            filter,
            rate: given.rate_per_second,
            start_at_ms: start,
            state: if start > now { model::SCHEDULED } else { model::RUNNING }.into(),
            node: self.settings.node.clone(),
            created_ms: now,
            idempotency_key: given.idempotency_key.clone(),
            attachments,
            ..Default::default()
        };
        let doc = if campaign.idempotency_key.is_empty() {
            self.store.put(campaign.fields()).await?
        } else {
            let key = format!("campaign/{tenant}/{}", campaign.idempotency_key);
            match self.store.create(&key, campaign.fields()).await {
                Ok(doc) => doc,
                Err(StoreError::AlreadyExists { id }) => self.store.get(&id).await?,
                Err(e) => return Err(e.into()),
            }
        };
        self.wake.notify_waiters();
        let stored = Campaign::from_doc(&doc).ok_or_else(|| Status::internal("the campaign could not be read back"))?;
        info!(campaign = %stored.id, list = %list.id, tenant, "campaign created");
        Ok(stored)
    }

    pub(super) async fn trigger(&self, tenant: &str, r: &pb::TriggerRequest) -> Result<Campaign, Status> {
        let list = self.list(tenant, &r.list_id).await?;
        let mut p = Problems::default();
        if r.idempotency_key.is_empty() {
            p.add("idempotency_key", "required: the same key must never notify twice");
        }
        let content: Option<&Content> = list.templates.get(&r.template);
        if content.is_none() {
            let names: Vec<&str> = list.templates.keys().map(String::as_str).collect();
            p.add(
                "template",
                format!("{:?} is not a template of list {:?} ({})", r.template, list.name, names.join(", ")),
            );
        }
        p.finish()?;
        let content = content.cloned().unwrap_or_default();
        let given = pb::Campaign {
            list_id: list.id.clone(),
            name: format!("{} (trigger)", r.template),
            content: Some(wire::content(&content)),
            filter: r.filter.clone(),
            idempotency_key: format!("trigger:{}", r.idempotency_key),
            ..Default::default()
        };
        self.create_campaign(tenant, given).await
    }

    pub(super) async fn campaigns(&self, tenant: &str, list: &str) -> Result<Vec<Campaign>, Status> {
        let mut subset = Fields::from([("kind".into(), CAMPAIGN.into()), ("tenant".into(), tenant.into())]);
        if !list.is_empty() {
            subset.insert("list".into(), list.into());
        }
        let docs = self.all(subset, 10_000).await?;
        let mut out: Vec<Campaign> = docs.iter().filter_map(Campaign::from_doc).collect();
        out.reverse();
        Ok(out)
    }

    /// Pauses, resumes or cancels a campaign: its document's state, which its runner
    /// reads between copies.
    pub(super) async fn move_campaign(&self, tenant: &str, id: &str, to: &str) -> Result<Campaign, Status> {
        loop {
            let c = self.campaign(tenant, id).await?;
            if model::is_finished(&c.state) {
                return Err(Status::failed_precondition(format!(
                    "campaign {id:?} is {}: it cannot change now",
                    c.state
                )));
            }
            let state = match (c.state.as_str(), to) {
                (model::PAUSED, model::RUNNING) if c.start_at_ms > now_ms() && c.started_ms == 0 => model::SCHEDULED,
                _ => to,
            };
            let mut fields = Fields::from([("state".into(), state.to_owned())]);
            if to == model::CANCELLED {
                fields.insert("finished_ms".into(), now_ms().to_string());
            }
            match self.store.update(id, fields, vec![], Some(c.version)).await {
                Ok(doc) => {
                    self.wake.notify_waiters();
                    info!(campaign = id, state, "campaign state changed");
                    return Campaign::from_doc(&doc)
                        .ok_or_else(|| Status::internal("the campaign could not be read back"));
                }
                Err(StoreError::VersionMismatch { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub(super) async fn start_import(&self, tenant: &str, r: &pb::ImportRequest) -> Result<Task, Status> {
        let list = self.list(tenant, &r.list_id).await?;
        if r.csv.len() > super::csv::MAX_IMPORT_BYTES {
            return Err(Status::invalid_argument(format!(
                "csv: {} bytes, at most {}",
                r.csv.len(),
                super::csv::MAX_IMPORT_BYTES
            )));
        }
        let text = std::str::from_utf8(&r.csv).map_err(|e| {
            let line = r.csv[..e.valid_up_to()].iter().filter(|b| **b == b'\n').count() + 1;
            Status::invalid_argument(format!("csv: line {line} is not UTF-8 (save the file as UTF-8 and try again)"))
        })?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let rows = super::csv::check_import(text, &list.attributes)
            .map_err(|e| Status::invalid_argument(format!("csv: {e}")))?;
        let now = now_ms();
        let mut task = Task {
            tenant: tenant.into(),
            kind: "import".into(),
            list: list.id.clone(),
            state: model::QUEUED.into(),
            total: rows,
            node: self.settings.node.clone(),
            created_ms: now,
            updated_ms: now,
            confirmed: r.confirmed,
            ..Default::default()
        };
        // The input first, the task last: a failure midway leaves no task to run.
        let placeholder = self.store.put(Fields::from([("kind".into(), "task-pending".into())])).await?;
        let chunks = super::csv::chunks(text, 1 << 20);
        for (n, chunk) in chunks.iter().enumerate() {
            self.store.put(model::chunk_fields(&placeholder.id, "input", n as u64, (*chunk).to_owned())).await?;
        }
        task.chunks = chunks.len() as u64;
        let doc = self.store.update(&placeholder.id, task.fields(), vec![], Some(placeholder.version)).await?;
        self.wake.notify_waiters();
        info!(task = %doc.id, list = %list.id, rows, "import queued");
        Task::from_doc(&doc).ok_or_else(|| Status::internal("the task could not be read back"))
    }

    pub(super) async fn start_export(&self, tenant: &str, list: &str) -> Result<Task, Status> {
        let list = self.list(tenant, list).await?;
        let now = now_ms();
        let task = Task {
            tenant: tenant.into(),
            kind: "export".into(),
            list: list.id.clone(),
            state: model::QUEUED.into(),
            node: self.settings.node.clone(),
            created_ms: now,
            updated_ms: now,
            ..Default::default()
        };
        let doc = self.store.put(task.fields()).await?;
        self.wake.notify_waiters();
        Task::from_doc(&doc).ok_or_else(|| Status::internal("the task could not be read back"))
    }

    pub(super) async fn get_task(&self, tenant: &str, id: &str) -> Result<pb::Task, Status> {
        if let Ok(t) = self.task(tenant, id).await {
            return Ok(wire::task(&t));
        }
        Ok(wire::campaign_task(
            &self.campaign(tenant, id).await.map_err(|_| Status::not_found(format!("no task {id:?}")))?,
        ))
    }

    pub(super) async fn tasks(&self, tenant: &str) -> Result<Vec<pb::Task>, Status> {
        let docs =
            self.all(Fields::from([("kind".into(), TASK.into()), ("tenant".into(), tenant.into())]), 10_000).await?;
        let mut tasks: Vec<pb::Task> = docs.iter().filter_map(Task::from_doc).map(|t| wire::task(&t)).collect();
        tasks.extend(self.campaigns(tenant, "").await?.iter().map(wire::campaign_task));
        tasks.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(b.id.cmp(&a.id)));
        Ok(tasks)
    }

    async fn set_task_state(
        &self,
        tenant: &str,
        id: &str,
        allowed: &[&str],
        fields: Fields,
    ) -> Result<pb::Task, Status> {
        let t = self.task(tenant, id).await?;
        if !allowed.contains(&t.state.as_str()) {
            return Err(Status::failed_precondition(format!("task {id:?} is {}", t.state)));
        }
        let doc = self.store.update(id, fields, vec![], Some(t.version)).await.map_err(|e| match e {
            StoreError::VersionMismatch { .. } => Status::aborted("the task moved on meanwhile; read it and try again"),
            e => e.into(),
        })?;
        self.wake.notify_waiters();
        Ok(wire::task(&Task::from_doc(&doc).ok_or_else(|| Status::internal("the task could not be read back"))?))
    }

    pub(super) async fn cancel_task(&self, tenant: &str, id: &str) -> Result<pb::Task, Status> {
        if self.task(tenant, id).await.is_err() && self.campaign(tenant, id).await.is_ok() {
            return Ok(wire::campaign_task(&self.move_campaign(tenant, id, model::CANCELLED).await?));
        }
        let fields =
            Fields::from([("state".into(), model::CANCELLED.into()), ("updated_ms".into(), now_ms().to_string())]);
        self.set_task_state(tenant, id, &[model::QUEUED, model::RUNNING], fields).await
    }

    pub(super) async fn retry_task(&self, tenant: &str, id: &str) -> Result<pb::Task, Status> {
        if self.task(tenant, id).await.is_err() && self.campaign(tenant, id).await.is_ok() {
            return Err(Status::failed_precondition("a campaign is resumed, not retried: it never sends anyone twice"));
        }
        let fresh = Task { state: model::QUEUED.into(), ..Default::default() };
        let mut fields = Fields::from([
            ("state".into(), model::QUEUED.into()),
            ("done".into(), "0".into()),
            ("cursor".into(), "0".into()),
            ("error".into(), String::new()),
            ("updated_ms".into(), now_ms().to_string()),
        ]);
        fields.insert("result".into(), fresh.fields()["result"].clone());
        self.set_task_state(tenant, id, &[model::FAILED, model::CANCELLED], fields).await
    }

    pub(super) async fn read_export(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::ExportChunk, Status>> + Send>>, Status>
    {
        let t = self.task(tenant, id).await?;
        if t.kind != "export" || t.state != model::DONE {
            return Err(Status::failed_precondition(format!(
                "task {id:?} is not a finished export ({} {})",
                t.kind, t.state
            )));
        }
        let mut chunks = Vec::new();
        for n in 0..t.chunks {
            let subset = Fields::from([
                ("kind".into(), model::CHUNK.into()),
                ("task".into(), t.id.clone()),
                ("role".into(), "output".into()),
                ("n".into(), n.to_string()),
            ]);
            let page = self.store.lookup(&subset, 1, None).await?;
            let doc = page
                .documents
                .into_iter()
                .next()
                .ok_or_else(|| Status::data_loss(format!("part {n} of the export is missing")))?;
            chunks.push(Ok(pb::ExportChunk { data: doc.fields.get("data").cloned().unwrap_or_default().into_bytes() }));
        }
        Ok(Box::pin(tokio_stream::iter(chunks)))
    }
}
