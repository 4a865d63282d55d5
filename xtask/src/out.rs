//! Printing that survives a reader who left: `cargo xtask deploy | head -n 3`.
//!
//! `println!` panics when stdout is a closed pipe (Rust ignores SIGPIPE, so the write
//! fails with `BrokenPipe` instead of killing the process, and the macro turns the error
//! into a panic). Restoring SIGPIPE would need `unsafe`. Here a failed write is no
//! error: once a stream is gone its lines are dropped and the work goes on, because
//! stopping halfway is worse than silence, above all during a deploy, whose rollback
//! must still run. The exit code still says how it ended. Loops that only produce
//! output (the benchmarks) ask [`stdout_gone`] and stop early.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_GONE: AtomicBool = AtomicBool::new(false);
static STDERR_GONE: AtomicBool = AtomicBool::new(false);

/// `println!` that never panics; see the module.
macro_rules! say {
    () => { $crate::out::stdout(format_args!("")) };
    ($($arg:tt)*) => { $crate::out::stdout(format_args!($($arg)*)) };
}

/// `eprintln!` that never panics; see the module.
macro_rules! tell {
    ($($arg:tt)*) => { $crate::out::stderr(format_args!($($arg)*)) };
}

pub(crate) use {say, tell};

/// Writes one line to stdout, unless a write there failed before.
pub(crate) fn stdout(line: fmt::Arguments<'_>) {
    write_line(&mut std::io::stdout().lock(), line, &STDOUT_GONE);
}

/// Writes one line to stderr, unless a write there failed before.
pub(crate) fn stderr(line: fmt::Arguments<'_>) {
    write_line(&mut std::io::stderr().lock(), line, &STDERR_GONE);
}

/// Whether stdout's reader went away: nobody will see what is printed from now on.
pub(crate) fn stdout_gone() -> bool {
    STDOUT_GONE.load(Ordering::Relaxed)
}

fn write_line(out: &mut impl Write, line: fmt::Arguments<'_>, gone: &AtomicBool) {
    if gone.load(Ordering::Relaxed) {
        return;
    }
    // Any failure, not only BrokenPipe: a full disk behind `> log` must not stop a
    // deploy halfway either.
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        gone.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that left after `room` bytes.
    struct Closing {
        room: usize,
        got: Vec<u8>,
    }

    impl Write for Closing {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.got.len() + buf.len() > self.room {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            self.got.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_stream_drops_the_rest_without_panicking() {
        let gone = AtomicBool::new(false);
        let mut out = Closing { room: 8, got: Vec::new() };
        write_line(&mut out, format_args!("one"), &gone);
        assert!(!gone.load(Ordering::Relaxed));
        write_line(&mut out, format_args!("two and more"), &gone);
        assert!(gone.load(Ordering::Relaxed));
        out.room = 1000;
        write_line(&mut out, format_args!("three"), &gone);
        assert_eq!(out.got, b"one\n");
    }
}
