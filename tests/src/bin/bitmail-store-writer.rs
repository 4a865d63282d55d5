//! A process that writes to an embedded store until it is killed, for the crash and
//! full-disk tests in `tests/tests/suite/store_crash.rs`.
//!
//! usage: bitmail-store-writer PATH crash|fill
//!
//! It prints `ready` once the store is open, then one line per acknowledged write:
//! `put ID`, `made ID KEY` (a `create` with unique key KEY), `upd ID VERSION`, `del ID`,
//! always after the store answered `Ok`; and
//! `deleting ID` before it asks for a delete (which may be committed and then killed
//! before it is reported). Every
//! document it writes carries a payload and its checksum (`sum`), so a reader can tell a
//! whole document from a torn one.
//!
//! - `crash`: 8 tasks put, update and delete forever (until SIGKILL);
//! - `fill`: puts 64 KiB documents until the store refuses 20 in a row, printing
//!   `err full ...` or `err other ...` for each refusal, then exits.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use backend_server::embedded::EmbeddedStore;
use backend_server::store::{Fields, Limits, Store, StoreError};
use bitmail_tests::store_engines::checksum;
use clap::{Parser, ValueEnum};

fn document(task: usize, seq: u64, payload_len: usize) -> Fields {
    let c = char::from(b'a' + (seq % 26) as u8);
    let payload: String = std::iter::repeat_n(c, payload_len).collect();
    let mut fields = Fields::new();
    fields.insert("kind".into(), "crash".into());
    fields.insert("task".into(), task.to_string());
    fields.insert("seq".into(), seq.to_string());
    fields.insert("sum".into(), checksum(&payload));
    fields.insert("payload".into(), payload);
    fields
}

fn say(line: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn crash(store: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut seq = 0u64;
                let mut mine: Vec<(String, u64)> = Vec::new();
                loop {
                    seq += 1;
                    let len = fastrand::usize(10..8_000);
                    match fastrand::u8(..6) {
                        // Rewrite one of ours whole, with a new payload and checksum.
                        3 if !mine.is_empty() => {
                            let i = fastrand::usize(..mine.len());
                            let (id, version) = mine[i].clone();
                            if let Ok(d) = store.update(&id, document(task, seq, len), vec![], Some(version)).await {
                                say(format!("upd {id} {}", d.version));
                                mine[i].1 = d.version;
                            }
                        }
                        4 if mine.len() > 1 => {
                            let (id, _) = mine.swap_remove(fastrand::usize(..mine.len()));
                            // Said first: a kill may come after the delete is committed
                            // but before it is reported.
                            say(format!("deleting {id}"));
                            if store.delete(&id).await.is_ok() {
                                say(format!("del {id}"));
                            }
                        }
                        // Half the new documents hold a unique key, unique over the
                        // writer's lives (the process id).
                        2 => {
                            let key = format!("crash/{}/{task}/{seq}", std::process::id());
                            if let Ok(d) = store.create(&key, document(task, seq, len)).await {
                                say(format!("made {} {key}", d.id));
                                mine.push((d.id, 1));
                            }
                        }
                        _ => {
                            if let Ok(d) = store.put(document(task, seq, len)).await {
                                say(format!("put {}", d.id));
                                mine.push((d.id, 1));
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

async fn fill(store: Arc<dyn Store>) {
    let mut refused_in_a_row = 0;
    let mut seq = 0;
    while refused_in_a_row < 20 {
        seq += 1;
        match store.put(document(0, seq, 64 << 10)).await {
            Ok(d) => {
                refused_in_a_row = 0;
                say(format!("put {}", d.id));
            }
            Err(e) => {
                refused_in_a_row += 1;
                let kind = if matches!(e, StoreError::Full(_)) { "full" } else { "other" };
                say(format!("err {kind} {e}"));
            }
        }
    }
}

/// Writes to an embedded store until killed (crash) or full (fill), printing each
/// acknowledged write
#[derive(Debug, Parser)]
#[command(name = "bitmail-store-writer")]
struct Options {
    /// The store file
    path: PathBuf,
    /// What to do
    #[arg(value_enum)]
    mode: Mode,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    /// 8 tasks put, update and delete until SIGKILL
    Crash,
    /// 64 KiB puts until the store refuses 20 in a row
    Fill,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Options { path, mode } = Options::try_parse().unwrap_or_else(|e| bitmail_runtime::cli::exit(&e));
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&path, 8 << 20, Limits::default())?);
    say("ready".into());
    match mode {
        Mode::Crash => crash(store).await,
        Mode::Fill => fill(store).await,
    }
    Ok(())
}
