//! Captures this thread's log output so that tests can check what the transports write.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};

use tracing::subscriber::DefaultGuard;
use tracing_subscriber::fmt::MakeWriter;

/// Everything logged while the guard returned by [`capture`] lives.
#[derive(Debug, Clone, Default)]
pub(crate) struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

impl io::Write for CapturedLogs {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(buffer);
        Ok(buffer.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl MakeWriter<'_> for CapturedLogs {
    type Writer = Self;

    fn make_writer(&self) -> Self::Writer {
        self.clone()
    }
}

/// Routes this thread's events to a buffer; `#[tokio::test]` runs the whole test on one thread.
///
/// tracing caches, per call site, whether any subscriber wants its events. A test thread that
/// reaches a call site while no subscriber exists would cache "never" for every thread, and the
/// capture of a test running beside it would then miss that event. A global subscriber that
/// wants everything (and writes it nowhere) keeps every call site live; the capture, set for
/// this thread, takes precedence over it.
pub(crate) fn capture() -> (CapturedLogs, DefaultGuard) {
    static EVERY_CALL_SITE_LIVE: std::sync::Once = std::sync::Once::new();
    EVERY_CALL_SITE_LIVE.call_once(|| {
        let sink = tracing_subscriber::fmt().with_writer(io::sink).with_max_level(tracing::Level::TRACE).finish();
        let _ = tracing::subscriber::set_global_default(sink);
    });
    let logs = CapturedLogs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}
