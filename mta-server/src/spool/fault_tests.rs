//! The spool on a disk that fills up and empties again: a failed commit stores nothing,
//! is answered as "disk full", and the next write after the disk has room succeeds
//! without a restart, with everything stored before still there.

use std::fs::OpenOptions;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use redb::StorageBackend;
use redb::backends::FileBackend;

use super::tests::{message, settings, temp_path};
use super::*;

/// A file whose writes fail with `ENOSPC` while `full` is set, like a disk with no room.
#[derive(Debug)]
struct FillingDisk {
    file: FileBackend,
    full: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
}

impl FillingDisk {
    fn refuse(&self) -> Result<(), io::Error> {
        if self.full.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        Ok(())
    }
}

impl StorageBackend for FillingDisk {
    fn len(&self) -> Result<u64, io::Error> {
        self.file.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.file.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.refuse()?;
        self.file.set_len(len)
    }
    fn sync_data(&self) -> Result<(), io::Error> {
        self.refuse()?;
        self.file.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.refuse()?;
        self.file.write(offset, data)
    }
}

/// A spool on a [`FillingDisk`], with the switch and the count of refused writes.
fn on_filling_disk(name: &str) -> (Spool, Arc<AtomicBool>, Arc<AtomicU64>) {
    let path = temp_path(name);
    let _ = std::fs::remove_file(&path);
    let (full, refused) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let (f, r, p) = (full.clone(), refused.clone(), path.clone());
    let open: Opener = Box::new(move || {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&p)?;
        let disk = FillingDisk { file: FileBackend::new(file)?, full: f.clone(), refused: r.clone() };
        Database::builder().create_with_backend(disk)
    });
    (Spool::open_with(&path, settings(), open).unwrap(), full, refused)
}

#[tokio::test]
async fn a_full_disk_refuses_as_full_and_the_spool_recovers_when_it_has_room() {
    let (spool, full, refused) = on_filling_disk("filling-disk");
    spool.accept(&message("before"), "default", None, None).await.unwrap();

    full.store(true, Ordering::SeqCst);
    let err = spool.accept(&message("during"), "default", None, None).await.unwrap_err();
    assert!(matches!(err, SpoolError::DiskFull(_)), "{err:?}");
    assert!(refused.load(Ordering::SeqCst) > 0, "the write reached the disk");
    // Still full: refused again, never a handle that refuses for ever.
    let again = spool.accept(&message("during-2"), "default", None, None).await.unwrap_err();
    assert!(matches!(again, SpoolError::DiskFull(_) | SpoolError::Recovering), "{again:?}");

    full.store(false, Ordering::SeqCst);
    assert_eq!(spool.accept(&message("after"), "default", None, None).await.unwrap(), Accepted::New);
    assert!(spool.message("before").await.unwrap().is_some(), "what was stored before is kept");
    assert!(spool.message("after").await.unwrap().is_some());
    assert_eq!(spool.message("during").await.unwrap(), None, "a refused message is not half stored");
    assert_eq!(spool.status("during-2").await.unwrap(), None);
    let due = tokio::task::spawn_blocking({
        let spool = spool.clone();
        move || spool.due_blocking(u64::MAX, 10, |_| false)
    })
    .await
    .unwrap()
    .unwrap()
    .0;
    assert_eq!(due, ["before", "after"], "the schedule holds exactly what was accepted");
}

#[tokio::test]
async fn reads_go_on_after_a_failed_commit_without_waiting_for_the_next_write() {
    let (spool, full, _) = on_filling_disk("reads-after-failure");
    spool.accept(&message("kept"), "default", None, None).await.unwrap();
    full.store(true, Ordering::SeqCst);
    spool.accept(&message("refused"), "default", None, None).await.unwrap_err();
    full.store(false, Ordering::SeqCst);
    // No write comes: a read that finds the file closed asks the writer to open it.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        match spool.status("kept").await {
            Ok(Some(status)) => break status,
            Err(SpoolError::Recovering) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await
            }
            other => panic!("reading after the disk has room again: {other:?}"),
        }
    };
    assert_eq!(status.id, "kept");
}
