//! The spool's tables (listed in the module docs of [`super`]) and the time windows
//! that govern them. Changing a name or a key type here changes the on-disk format.

use redb::{Table, TableDefinition, WriteTransaction};

pub(crate) const MESSAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("messages");
pub(crate) const STATUSES: TableDefinition<&str, &[u8]> = TableDefinition::new("statuses");
pub(crate) const DUE: TableDefinition<(u64, &str), ()> = TableDefinition::new("due");
pub(crate) const IDEMPOTENCY: TableDefinition<&str, (&str, u64)> = TableDefinition::new("idempotency");
pub(crate) const IDEMPOTENCY_BY_TIME: TableDefinition<(u64, &str), ()> = TableDefinition::new("idempotency_by_time");
pub(crate) const HEALTH: TableDefinition<&str, &[u8]> = TableDefinition::new("health");
/// "ev:{provider}:{event id}" or "tok:{provider}:{token}" → (event id, seen at ms).
pub(crate) const WEBHOOK_SEEN: TableDefinition<&str, (&str, u64)> = TableDefinition::new("webhook_seen");
pub(crate) const WEBHOOK_SEEN_BY_TIME: TableDefinition<(u64, &str), ()> = TableDefinition::new("webhook_seen_by_time");
pub(crate) const SUPPRESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("suppressions");
pub(crate) const UNFINISHED: TableDefinition<(u64, &str), ()> = TableDefinition::new("unfinished");
/// The tenants' event log (`event_log.rs`): sequence number → [`super::record::LoggedEvent`],
/// (tenant, sequence number) → (), and `"next"` → the next sequence number.
pub(crate) const EVENT_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("event_log");
pub(crate) const EVENT_LOG_BY_TENANT: TableDefinition<(&str, u64), ()> = TableDefinition::new("event_log_by_tenant");
pub(crate) const EVENT_SEQ: TableDefinition<&str, u64> = TableDefinition::new("event_seq");
/// Webhook id → [`super::record::OutboxState`]: how far this node delivered the
/// tenant's event log to that webhook, and how it is going.
pub(crate) const OUTBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("outbox");
/// (campaign id, subscriber id) → [`super::ledger::LedgerEntry`] (`ledger.rs`).
pub(crate) const LEDGER: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("ledger");
/// Campaign id → [`super::ledger::CampaignRecord`]: figures and cursor.
pub(crate) const CAMPAIGNS: TableDefinition<&str, &[u8]> = TableDefinition::new("campaigns");

/// How long an event id or token is remembered: past the providers' retry periods
/// (SendGrid retries for 24 hours), and past [`crate::events::MAX_SKEW`] for tokens.
pub(crate) const WEBHOOK_MEMORY_MS: u64 = 3 * 24 * 3600 * 1000;

/// How long an idempotency key keeps answering the first message's id.
pub(crate) const IDEMPOTENCY_WINDOW_MS: u64 = 24 * 3600 * 1000;

/// The most entries of each kind one prune commit removes.
pub(crate) const PRUNE_BATCH: usize = 2048;

/// Every table, open for writing in one transaction: what each apply function works on.
pub(crate) struct Tables<'txn> {
    pub(crate) messages: Table<'txn, &'static str, &'static [u8]>,
    pub(crate) statuses: Table<'txn, &'static str, &'static [u8]>,
    pub(crate) due: Table<'txn, (u64, &'static str), ()>,
    pub(crate) keys: Table<'txn, &'static str, (&'static str, u64)>,
    pub(crate) keys_by_time: Table<'txn, (u64, &'static str), ()>,
    pub(crate) health: Table<'txn, &'static str, &'static [u8]>,
    pub(crate) seen: Table<'txn, &'static str, (&'static str, u64)>,
    pub(crate) seen_by_time: Table<'txn, (u64, &'static str), ()>,
    pub(crate) suppressions: Table<'txn, &'static str, &'static [u8]>,
    pub(crate) unfinished: Table<'txn, (u64, &'static str), ()>,
    pub(crate) event_log: Table<'txn, u64, &'static [u8]>,
    pub(crate) event_log_by_tenant: Table<'txn, (&'static str, u64), ()>,
    pub(crate) event_seq: Table<'txn, &'static str, u64>,
    pub(crate) outbox: Table<'txn, &'static str, &'static [u8]>,
    pub(crate) ledger: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    pub(crate) campaigns: Table<'txn, &'static str, &'static [u8]>,
}

impl<'txn> Tables<'txn> {
    /// Opens (creating them if missing) all sixteen tables.
    pub(crate) fn open(txn: &'txn WriteTransaction) -> Result<Self, redb::TableError> {
        Ok(Tables {
            messages: txn.open_table(MESSAGES)?,
            statuses: txn.open_table(STATUSES)?,
            due: txn.open_table(DUE)?,
            keys: txn.open_table(IDEMPOTENCY)?,
            keys_by_time: txn.open_table(IDEMPOTENCY_BY_TIME)?,
            health: txn.open_table(HEALTH)?,
            seen: txn.open_table(WEBHOOK_SEEN)?,
            seen_by_time: txn.open_table(WEBHOOK_SEEN_BY_TIME)?,
            suppressions: txn.open_table(SUPPRESSIONS)?,
            unfinished: txn.open_table(UNFINISHED)?,
            event_log: txn.open_table(EVENT_LOG)?,
            event_log_by_tenant: txn.open_table(EVENT_LOG_BY_TENANT)?,
            event_seq: txn.open_table(EVENT_SEQ)?,
            outbox: txn.open_table(OUTBOX)?,
            ledger: txn.open_table(LEDGER)?,
            campaigns: txn.open_table(CAMPAIGNS)?,
        })
    }
}
