//! Imports and exports, run as durable tasks by the node that took them. A task's
//! state, progress and result are in its document; its input (the import's CSV) and
//! output (the export's CSV) are chunk documents of about 1 MiB. An import's cursor (the
//! data lines applied) is saved every 200 lines, and applying a line twice does
//! nothing new (one subscriber per address and list), so a restart goes on from there.
//! Cancel is seen at the next save; retry starts from the beginning.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use backend_server::store::{Fields, StoreError};
use tracing::{info, warn};

use super::Lists;
use super::csv::{field, header, parse_line};
use super::model::{self, CHUNK, Given, List, MAX_REJECTED_ROWS, Problems, SUBSCRIBER, Subscriber, TASK, Task};
use bitmail_runtime::time::now_ms;

const SAVE_EVERY: u64 = 200;

pub async fn run_forever(lists: Arc<Lists>) {
    loop {
        for state in [model::RUNNING, model::QUEUED] {
            let subset = Fields::from([
                ("kind".into(), TASK.into()),
                ("node".into(), lists.settings.node.clone()),
                ("state".into(), state.into()),
            ]);
            match lists.store.lookup(&subset, 100, None).await {
                Ok(page) => {
                    for doc in page.documents {
                        if let Some(task) = Task::from_doc(&doc) {
                            run(&lists, task).await;
                        }
                    }
                }
                Err(e) => warn!(error = %e, "cannot read this node's tasks"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = lists.wake.notified() => {}
        }
    }
}

/// Saves progress; `false` when the task was cancelled (or retried) meanwhile.
async fn save(lists: &Lists, task: &mut Task) -> Result<bool, StoreError> {
    task.updated_ms = now_ms();
    match lists.store.update(&task.id, task.fields(), vec![], Some(task.version)).await {
        Ok(doc) => {
            task.version = doc.version;
            Ok(true)
        }
        Err(StoreError::VersionMismatch { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

async fn run(lists: &Arc<Lists>, mut task: Task) {
    task.state = model::RUNNING.into();
    match save(lists, &mut task).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => return warn!(task = %task.id, error = %e, "cannot start the task"),
    }
    let outcome = match task.kind.as_str() {
        "import" => import(lists, &mut task).await,
        "export" => export(lists, &mut task).await,
        other => Err(format!("unknown task kind {other:?}")),
    };
    match outcome {
        Ok(true) => {
            task.state = model::DONE.into();
            task.done = task.total.max(task.done);
            info!(task = %task.id, kind = %task.kind, "task done");
        }
        Ok(false) => return,
        Err(e) => {
            task.state = model::FAILED.into();
            task.error = e;
        }
    }
    if let Err(e) = save(lists, &mut task).await {
        warn!(task = %task.id, error = %e, "cannot record the task's end");
    }
}

async fn chunk(lists: &Lists, task: &str, role: &str, n: u64) -> Result<String, String> {
    let subset = Fields::from([
        ("kind".into(), CHUNK.into()),
        ("task".into(), task.into()),
        ("role".into(), role.into()),
        ("n".into(), n.to_string()),
    ]);
    let page = lists.store.lookup(&subset, 1, None).await.map_err(|e| e.to_string())?;
    let doc = page.documents.into_iter().next().ok_or_else(|| format!("part {n} of the task's file is missing"))?;
    Ok(doc.fields.get("data").cloned().unwrap_or_default())
}

/// `Ok(false)`: cancelled. Lines are applied [`AT_ONCE`] at a time, in batches of
/// [`SAVE_EVERY`] whose end is the saved cursor.
async fn import(lists: &Arc<Lists>, task: &mut Task) -> Result<bool, String> {
    let list = lists.list(&task.tenant, &task.list).await.map_err(|e| e.message().to_owned())?;
    let mut columns = Vec::new();
    let mut line_no = 0u64;
    let mut data_line = 0u64;
    let mut batch: Vec<(u64, String)> = Vec::new();
    for n in 0..task.chunks {
        let text = chunk(lists, &task.id, "input", n).await?;
        for line in text.split_inclusive('\n') {
            line_no += 1;
            let line = line.trim_end_matches(['\n', '\r']);
            if line_no == 1 {
                columns = header(line.trim_start_matches('\u{feff}'), &list.attributes)?;
                continue;
            }
            if line.trim().is_empty() {
                continue;
            }
            data_line += 1;
            if data_line <= task.cursor {
                continue;
            }
            batch.push((line_no, line.to_owned()));
            if batch.len() as u64 == SAVE_EVERY && !apply(lists, &list, &columns, task, &mut batch, data_line).await? {
                return Ok(false);
            }
        }
    }
    if !batch.is_empty() && !apply(lists, &list, &columns, task, &mut batch, data_line).await? {
        return Ok(false);
    }
    task.result.rejected_rows.sort();
    Ok(true)
}

/// Lines applied at once.
const AT_ONCE: usize = 16;

/// Applies `batch` (line numbers and lines), then saves the cursor `through`.
async fn apply(
    lists: &Arc<Lists>,
    list: &List,
    columns: &[String],
    task: &mut Task,
    batch: &mut Vec<(u64, String)>,
    through: u64,
) -> Result<bool, String> {
    let confirmed = task.confirmed;
    let (list, columns) = (Arc::new(list.clone()), Arc::new(columns.to_vec()));
    let slots = Arc::new(tokio::sync::Semaphore::new(AT_ONCE));
    let mut running = tokio::task::JoinSet::new();
    for (n, line) in batch.drain(..) {
        let (lists, list, columns) = (lists.clone(), list.clone(), columns.clone());
        let slot = slots.clone().acquire_owned().await.map_err(|e| e.to_string())?;
        running.spawn(async move {
            let outcome = row(&lists, &list, &columns, &line, confirmed).await;
            drop(slot);
            (n, outcome)
        });
    }
    while let Some(done) = running.join_next().await {
        let (n, outcome) = done.map_err(|e| e.to_string())?;
        match outcome {
            Ok(true) => task.result.added += 1,
            Ok(false) => task.result.updated += 1,
            Err(reason) => {
                task.result.rejected += 1;
                if task.result.rejected_rows.len() < MAX_REJECTED_ROWS {
                    task.result.rejected_rows.push((n, reason));
                }
            }
        }
    }
    task.cursor = through;
    task.done = through;
    save(lists, task).await.map_err(|e| e.to_string())
}

/// Applies one line: `Ok(true)` added, `Ok(false)` updated, `Err` why it was refused.
async fn row(lists: &Lists, list: &List, columns: &[String], line: &str, confirmed: bool) -> Result<bool, String> {
    let values = parse_line(line)?;
    if values.len() != columns.len() {
        return Err(format!("{} fields, the header has {}", values.len(), columns.len()));
    }
    let mut by: BTreeMap<String, String> =
        columns.iter().cloned().zip(values.into_iter().map(|v| v.trim().to_owned())).collect();
    let email = by.remove("email").unwrap_or_default();
    let name = by.remove("name").unwrap_or_default();
    let language = by.remove("language").unwrap_or_default();
    let mut p = Problems::default();
    let (email, language, attributes) =
        Given { email: &email, name: &name, language: &language, attributes: &by }.check(list, &mut p);
    p.finish().map_err(|e| e.message().to_owned())?;
    let now = now_ms();
    let fresh = Subscriber {
        tenant: list.tenant.clone(),
        list: list.id.clone(),
        email: email.clone(),
        name: name.clone(),
        language,
        attributes: attributes.clone(),
        state: if confirmed { "confirmed" } else { "unconfirmed" }.into(),
        created_ms: now,
        confirmed_ms: if confirmed { now } else { 0 },
        ..Default::default()
    };
    match lists.store.create(&model::subscriber_key(&list.id, &email), fresh.fields()).await {
        Ok(_) => Ok(true),
        Err(StoreError::AlreadyExists { id }) => {
            // New values for what the file holds; the state stays, so an import never
            // brings back someone who unsubscribed.
            let mut fields = Fields::from([("name".into(), name)]);
            fields.extend(attributes.into_iter().map(|(k, v)| (format!("a.{k}"), v)));
            if confirmed {
                let doc = lists.store.get(&id).await.map_err(|e| e.to_string())?;
                if doc.fields.get("state").is_some_and(|s| s == "unconfirmed") {
                    fields.insert("state".into(), "confirmed".into());
                    fields.insert("confirmed_ms".into(), now.to_string());
                }
            }
            lists.store.update(&id, fields, vec![], None).await.map_err(|e| e.to_string())?;
            Ok(false)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// `Ok(false)`: cancelled.
async fn export(lists: &Lists, task: &mut Task) -> Result<bool, String> {
    let list = lists.list(&task.tenant, &task.list).await.map_err(|e| e.message().to_owned())?;
    let subset = Fields::from([("kind".into(), SUBSCRIBER.into()), ("list".into(), list.id.clone())]);
    // A rerun (after a crash, or a retry) writes every part again: the old ones go first.
    for doc in lists
        .all(
            Fields::from([
                ("kind".into(), CHUNK.into()),
                ("task".into(), task.id.clone()),
                ("role".into(), "output".into()),
            ]),
            usize::MAX,
        )
        .await
        .map_err(|e| e.message().to_owned())?
    {
        let _ = lists.store.delete(&doc.id).await;
    }
    task.total = super::runner::count(lists, &subset).await.map_err(|e| e.to_string())?;
    task.done = 0;
    task.chunks = 0;
    let mut out = String::from("email,name,language,state");
    for a in &list.attributes {
        out.push(',');
        out.push_str(&field(a));
    }
    out.push_str(",created_ms\n");
    let (mut token, mut bytes) = (None::<String>, 0u64);
    loop {
        let page = lists.store.lookup(&subset, 1000, token.as_deref()).await.map_err(|e| e.to_string())?;
        for sub in page.documents.iter().filter_map(Subscriber::from_doc) {
            let mut line = [sub.email.as_str(), &sub.name, &sub.language, &sub.state].map(field).join(",");
            for a in &list.attributes {
                line.push(',');
                line.push_str(&field(sub.attributes.get(a).map_or("", String::as_str)));
            }
            line.push_str(&format!(",{}\n", sub.created_ms));
            out.push_str(&line);
            task.done += 1;
        }
        if out.len() >= 1 << 20 || page.next_page_token.is_none() {
            bytes += out.len() as u64;
            let data = std::mem::take(&mut out);
            lists
                .store
                .put(model::chunk_fields(&task.id, "output", task.chunks, data))
                .await
                .map_err(|e| e.to_string())?;
            task.chunks += 1;
        }
        if !save(lists, task).await.map_err(|e| e.to_string())? {
            return Ok(false);
        }
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    task.result.exported = task.done;
    task.result.bytes = bytes;
    Ok(true)
}
