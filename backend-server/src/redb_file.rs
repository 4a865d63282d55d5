//! A redb file that survives a failed commit without a restart, shared by the embedded
//! engine and mta-server's spool.
//!
//! After a storage failure (disk full, file size limit, I/O error) redb refuses every
//! later operation on that `Database` (`PreviousIo`) until it is opened again. The one
//! writer thread of each file marks the handle broken when a commit fails; readers then
//! answer "unavailable" at once instead of queueing on a dead handle, and the writer
//! reopens the file before its next batch, once the reads that started before the
//! failure have let go of the old handle (redb allows one open handle per file). A disk
//! that was full and has room again needs no restart.

use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use bitmail_runtime::sync;
use redb::Database;

/// The database, or nothing while the writer reopens it after a storage failure.
pub struct Reopenable {
    db: RwLock<Option<Arc<Database>>>,
    /// The handle given up after a failure, to know when every reader let go of it.
    old: Mutex<Weak<Database>>,
}

impl Reopenable {
    pub fn new(db: Database) -> Self {
        Reopenable { db: RwLock::new(Some(Arc::new(db))), old: Mutex::new(Weak::new()) }
    }

    /// The open database; `None` between a failure and the writer's reopening.
    pub fn current(&self) -> Option<Arc<Database>> {
        sync::read(&self.db).clone()
    }

    /// Called by the writer after a failed commit, once it dropped its own clone.
    pub fn set_broken(&self) {
        let old = sync::write(&self.db).take();
        if let Some(old) = old {
            *sync::lock(&self.old) = Arc::downgrade(&old);
        }
    }

    /// The open database, reopening it with `open` first if a failure closed it. Waits
    /// up to 10 s for reads in flight on the old handle.
    pub fn current_or_reopen<E>(&self, open: impl FnOnce() -> Result<Database, E>) -> Result<Arc<Database>, Reopen<E>> {
        if let Some(db) = self.current() {
            return Ok(db);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while sync::lock(&self.old).strong_count() > 0 {
            if Instant::now() > deadline {
                return Err(Reopen::Busy);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let db = Arc::new(open().map_err(Reopen::Failed)?);
        *sync::write(&self.db) = Some(db.clone());
        Ok(db)
    }
}

/// Why [`Reopenable::current_or_reopen`] has no database to give.
#[derive(Debug)]
pub enum Reopen<E> {
    /// Reads started before the failure still hold the old handle (after 10 s).
    Busy,
    /// Opening the file failed.
    Failed(E),
}

impl<E: std::fmt::Display> std::fmt::Display for Reopen<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reopen::Busy => f.write_str("reads started before the failure are still running"),
            Reopen::Failed(e) => write!(f, "cannot open the file again: {e}"),
        }
    }
}

/// Whether a redb error means the disk (or the process's file size limit) is full: a
/// caller should answer "full, try later", not "broken".
pub fn is_full(e: &redb::Error) -> bool {
    use std::io::ErrorKind::{FileTooLarge, QuotaExceeded, StorageFull};
    match e {
        redb::Error::Io(io) => matches!(io.kind(), StorageFull | FileTooLarge | QuotaExceeded),
        _ => false,
    }
}
