//! Log lines leave the request path: each event is formatted into its own buffer (the one
//! allocation a line needs) and handed to a thread that writes to stdout, batching lines
//! into one `write` while more are queued. After each batch the thread pauses for
//! [`BATCH_PAUSE`] before it looks again, so under load it wakes a few hundred times a second
//! instead of once per line (each wake-up is a futex call by the request's thread and a
//! context switch). A request never waits on a slow stdout (a pipe
//! that a log collector drains late); when the queue is full the line is dropped and counted,
//! and the count is written as soon as there is room again.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How many lines may wait for the writer thread.
const QUEUE_LINES: usize = 65_536;
/// How long [`StdoutLinesGuard::flush`] waits for the queue to drain.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the writer thread lets lines gather after writing a batch: the most a line
/// waits beyond its predecessors, and short enough that the queue cannot fill at any rate
/// a process reaches (65,536 lines per 5 ms).
const BATCH_PAUSE: Duration = Duration::from_millis(5);

enum Message {
    Line(Vec<u8>),
    /// Everything queued before this has been written; answer on the channel.
    Flush(SyncSender<()>),
}

/// The writer the log layer formats into; cheap to clone.
#[derive(Clone)]
pub struct StdoutLines {
    queue: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for StdoutLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdoutLines").finish_non_exhaustive()
    }
}

/// Keeps the writer thread; [`Self::flush`] writes out what is queued (at exit).
#[derive(Debug)]
pub struct StdoutLinesGuard {
    queue: SyncSender<Message>,
    _thread: Option<JoinHandle<()>>,
}

impl StdoutLines {
    /// Starts the writer thread on `out` (stdout in the binaries).
    pub fn start(out: impl Write + Send + 'static) -> (StdoutLines, StdoutLinesGuard) {
        let (queue, lines) = mpsc::sync_channel(QUEUE_LINES);
        let dropped = Arc::new(AtomicU64::new(0));
        let thread = std::thread::Builder::new()
            .name("log-writer".to_owned())
            .spawn({
                let dropped = Arc::clone(&dropped);
                move || write_lines(&lines, out, &dropped)
            })
            .ok();
        let guard = StdoutLinesGuard {
            queue: queue.clone(),
            _thread: thread,
        };
        (StdoutLines { queue, dropped }, guard)
    }
}

impl StdoutLinesGuard {
    /// Waits (at most 5 s) until every line queued so far is written and flushed.
    pub fn flush(&self) {
        let (done, written) = mpsc::sync_channel(1);
        if self.queue.send(Message::Flush(done)).is_ok() {
            let _ = written.recv_timeout(FLUSH_TIMEOUT);
        }
    }
}

fn write_lines(lines: &Receiver<Message>, out: impl Write, dropped: &AtomicU64) {
    let mut out = io::BufWriter::with_capacity(64 * 1024, out);
    loop {
        // Block for the first line, then take whatever else is queued before flushing.
        let mut message = match lines.recv() {
            Ok(message) => message,
            Err(_) => return,
        };
        loop {
            match message {
                Message::Line(line) => {
                    let _ = out.write_all(&line);
                }
                Message::Flush(done) => {
                    report_drops(&mut out, dropped);
                    let _ = out.flush();
                    let _ = done.send(());
                }
            }
            message = match lines.recv_timeout(Duration::ZERO) {
                Ok(next) => next,
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = out.flush();
                    return;
                }
            };
        }
        report_drops(&mut out, dropped);
        let _ = out.flush();
        std::thread::sleep(BATCH_PAUSE);
    }
}

fn report_drops(out: &mut impl Write, dropped: &AtomicU64) {
    let lost = dropped.swap(0, Ordering::Relaxed);
    if lost > 0 {
        let _ = writeln!(
            out,
            "{lost} log lines were dropped: stdout was not read fast enough"
        );
    }
}

/// One event's line, handed to the writer thread when the formatter is done with it.
pub struct Line<'a> {
    buffer: Vec<u8>,
    lines: &'a StdoutLines,
}

impl Write for Line<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.buffer);
        if let Err(TrySendError::Full(_)) = self.lines.queue.try_send(Message::Line(line)) {
            self.lines.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<'a> MakeWriter<'a> for StdoutLines {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Line {
            buffer: Vec::with_capacity(256),
            lines: self,
        }
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // test helpers report failure by panicking
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Clone, Default)]
    struct Collected(Arc<Mutex<Vec<u8>>>);

    impl Write for Collected {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_arrive_whole_and_in_order_after_a_flush() {
        let collected = Collected::default();
        let (lines, guard) = StdoutLines::start(collected.clone());
        for index in 0..1000 {
            let mut line = lines.make_writer();
            write!(line, "line {index}").expect("write");
            writeln!(line, " end").expect("write");
        }
        // An event that wrote nothing sends nothing.
        drop(lines.make_writer());
        guard.flush();
        let text = String::from_utf8(collected.0.lock().expect("lock").clone()).expect("utf-8");
        let expected: String = (0..1000)
            .map(|index| format!("line {index} end\n"))
            .collect();
        assert_eq!(text, expected);
    }

    /// A writer that blocks until released, like a pipe nobody reads.
    struct Stalled(Arc<Mutex<()>>, Collected);

    impl Write for Stalled {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let _released = self.0.lock().expect("lock");
            self.1.write(bytes)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_stdout_drops_lines_instead_of_blocking_and_says_how_many() {
        let gate = Arc::new(Mutex::new(()));
        let collected = Collected::default();
        let held = gate.lock().expect("lock");
        let (lines, guard) = StdoutLines::start(Stalled(Arc::clone(&gate), collected.clone()));
        // More than the queue holds, while nothing is written: none of these may block.
        for index in 0..QUEUE_LINES * 2 {
            writeln!(lines.make_writer(), "line {index}").expect("write");
        }
        drop(held);
        guard.flush();
        writeln!(lines.make_writer(), "after").expect("write");
        guard.flush();
        let text = String::from_utf8(collected.0.lock().expect("lock").clone()).expect("utf-8");
        assert!(text.contains("log lines were dropped"), "no drop report");
        assert!(text.contains("\nafter\n"));
    }
}
