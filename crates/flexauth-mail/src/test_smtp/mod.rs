//! A real SMTP server inside the test process, so that black-box tests exercise the
//! production [`SmtpMailer`](crate::SmtpMailer) over TCP and read what it sent.
//!
//! It speaks the part of SMTP that lettre's client uses (greeting, `EHLO`/`HELO`, `MAIL FROM`,
//! `RCPT TO`, `DATA`, `RSET`, `NOOP`, `QUIT`), offers no `STARTTLS` and no authentication, and
//! keeps every accepted message in memory. [`SmtpSink::pause`] simulates a mail server outage
//! without giving up the port (which a parallel test could take meanwhile): every connection
//! is answered `421` and closed, and counted, so a test can wait for the client's failed
//! attempts instead of sleeping. Only for tests: it has no limits on line length or message
//! size.

mod received;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

pub use received::ReceivedMessage;

/// How long [`SmtpSink::start_on`] keeps trying an address that is still taken.
const BIND_RETRY: Duration = Duration::from_secs(5);

/// A running in-process SMTP server that accepts every message (unless told to reject
/// recipients) and remembers it.
///
/// Dropping it, or calling [`SmtpSink::stop`], stops accepting, closes the open connections
/// and releases the port.
pub struct SmtpSink {
    addr: SocketAddr,
    messages: watch::Receiver<Vec<ReceivedMessage>>,
    rcpt_reply: Arc<AtomicU16>,
    paused: Arc<AtomicBool>,
    refused: watch::Receiver<u64>,
    server: JoinHandle<()>,
}

impl std::fmt::Debug for SmtpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSink")
            .field("addr", &self.addr)
            .field("messages", &self.messages.borrow().len())
            .finish_non_exhaustive()
    }
}

/// What the connection tasks share with the sink.
#[derive(Clone)]
struct Shared {
    messages: Arc<watch::Sender<Vec<ReceivedMessage>>>,
    rcpt_reply: Arc<AtomicU16>,
    paused: Arc<AtomicBool>,
    refused: Arc<watch::Sender<u64>>,
    refused_total: Arc<AtomicU64>,
}

impl SmtpSink {
    /// Starts a sink on a free port of 127.0.0.1.
    ///
    /// # Errors
    /// The [`io::Error`] of binding the listener.
    pub async fn start() -> io::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts a sink on `addr`, typically the address of a sink just stopped, to bring the
    /// "mail server" back after an outage.
    ///
    /// # Errors
    /// The [`io::Error`] of binding the listener; an address still in use is retried for a
    /// few seconds first.
    pub async fn start_on(addr: SocketAddr) -> io::Result<Self> {
        let listener = bind(addr).await?;
        let addr = listener.local_addr()?;
        let (sender, messages) = watch::channel(Vec::new());
        let rcpt_reply = Arc::new(AtomicU16::new(0));
        let paused = Arc::new(AtomicBool::new(false));
        let (refused_sender, refused) = watch::channel(0);
        let shared = Shared {
            messages: Arc::new(sender),
            rcpt_reply: Arc::clone(&rcpt_reply),
            paused: Arc::clone(&paused),
            refused: Arc::new(refused_sender),
            refused_total: Arc::new(AtomicU64::new(0)),
        };
        let server = tokio::spawn(accept_loop(listener, shared));
        Ok(Self { addr, messages, rcpt_reply, paused, refused, server })
    }

    /// Starts an outage: from now on every connection gets `421` and is closed, while the
    /// port stays bound.
    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
    }

    /// Ends the outage.
    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }

    /// How many connections were refused during outages so far.
    pub fn refused_connections(&self) -> u64 {
        *self.refused.borrow()
    }

    /// Waits until at least `count` connections were refused, or until `timeout` passed;
    /// returns the count by then.
    pub async fn wait_for_refusals(&self, count: u64, timeout: Duration) -> u64 {
        let mut refused = self.refused.clone();
        let _ = tokio::time::timeout(timeout, refused.wait_for(|refused| *refused >= count)).await;
        self.refused_connections()
    }

    /// The address the sink listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL to configure the SMTP transport with: `smtp://127.0.0.1:PORT`, plain text.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Every message accepted so far, in order of arrival.
    pub fn messages(&self) -> Vec<ReceivedMessage> {
        self.messages.borrow().clone()
    }

    /// Waits until at least `count` messages arrived, or until `timeout` passed, and returns
    /// the messages received by then (fewer than `count` after a timeout).
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<ReceivedMessage> {
        let mut messages = self.messages.clone();
        // Both a timeout and a stopped server end the wait; the caller checks the count.
        let _ = tokio::time::timeout(timeout, messages.wait_for(|received| received.len() >= count)).await;
        self.messages()
    }

    /// Makes every following `RCPT TO` fail with reply `code` (for example 550 for a
    /// permanent refusal or 450 for a temporary one); `None` accepts recipients again.
    pub fn reject_recipients(&self, code: Option<u16>) {
        self.rcpt_reply.store(code.unwrap_or(0), Ordering::SeqCst);
    }

    /// Stops the sink: no new connections, open ones closed, port released.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        // Aborting the accept task drops the listener and, with the task's JoinSet, every
        // connection task. The runtime does this the next time it gets to the task, which is
        // why `start_on` retries an address that is still taken.
        self.server.abort();
    }
}

async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let deadline = Instant::now() + BIND_RETRY;
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(error) if error.kind() == io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Shared) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let shared = shared.clone();
                    connections.spawn(async move {
                        if let Err(error) = serve(stream, shared).await {
                            tracing::debug!(%error, "test SMTP connection ended with an error");
                        }
                    });
                }
                Err(error) => {
                    // Running out of file descriptors must not turn into a busy loop.
                    tracing::debug!(%error, "test SMTP accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            // Reaping finished connections keeps the set from growing over a long test.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// The envelope of the message being received on one connection.
#[derive(Default)]
struct Envelope {
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
}

async fn serve(stream: TcpStream, shared: Shared) -> io::Result<()> {
    if shared.paused.load(Ordering::SeqCst) {
        let (_, mut writer) = stream.into_split();
        let outcome = writer.write_all(b"421 4.3.2 flexauth-test-smtp is unavailable (simulated outage)\r\n").await;
        let total = shared.refused_total.fetch_add(1, Ordering::SeqCst) + 1;
        shared.refused.send_replace(total);
        return outcome;
    }
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    writer.write_all(b"220 flexauth-test-smtp ESMTP ready\r\n").await?;
    let mut envelope = Envelope::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let command = text.trim_end_matches(['\r', '\n']);
        let (verb, argument) = command.split_once(' ').unwrap_or((command, ""));
        let reply: String = match verb.to_ascii_uppercase().as_str() {
            // 8BITMIME and SMTPUTF8 make lettre's MAIL FROM parameters legal should it need
            // them; STARTTLS and AUTH are deliberately absent, so the client stays in plain text.
            "EHLO" => "250-flexauth-test-smtp greets you\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n".into(),
            "HELO" => "250 flexauth-test-smtp\r\n".into(),
            "MAIL" => match path_after(argument, "FROM:") {
                Some(from) => {
                    envelope = Envelope { mail_from: Some(from), rcpt_to: Vec::new() };
                    "250 2.1.0 OK\r\n".into()
                }
                None => "501 5.5.4 syntax: MAIL FROM:<address>\r\n".into(),
            },
            "RCPT" => match (envelope.mail_from.is_some(), path_after(argument, "TO:")) {
                (false, _) => "503 5.5.1 MAIL first\r\n".into(),
                (true, None) => "501 5.5.4 syntax: RCPT TO:<address>\r\n".into(),
                (true, Some(to)) => match shared.rcpt_reply.load(Ordering::SeqCst) {
                    0 => {
                        envelope.rcpt_to.push(to);
                        "250 2.1.5 OK\r\n".into()
                    }
                    code => format!("{code} recipient rejected by the test sink\r\n"),
                },
            },
            "DATA" => {
                if envelope.mail_from.is_none() || envelope.rcpt_to.is_empty() {
                    "503 5.5.1 RCPT first\r\n".into()
                } else {
                    writer.write_all(b"354 end data with <CR><LF>.<CR><LF>\r\n").await?;
                    let data = read_data(&mut reader).await?;
                    let Envelope { mail_from, rcpt_to } = std::mem::take(&mut envelope);
                    let message = ReceivedMessage { mail_from: mail_from.unwrap_or_default(), rcpt_to, data };
                    // Stored before the reply, so a client whose send returned finds it.
                    shared.messages.send_modify(|messages| messages.push(message));
                    "250 2.0.0 OK queued\r\n".into()
                }
            }
            "RSET" => {
                envelope = Envelope::default();
                "250 2.0.0 OK\r\n".into()
            }
            "NOOP" => "250 2.0.0 OK\r\n".into(),
            "QUIT" => {
                writer.write_all(b"221 2.0.0 bye\r\n").await?;
                return writer.shutdown().await;
            }
            _ => "502 5.5.2 command not implemented\r\n".into(),
        };
        writer.write_all(reply.as_bytes()).await?;
    }
}

/// The address in `FROM:<address> PARAMETERS` (or `TO:…`), without the brackets; `None` when
/// the keyword is missing.
fn path_after(argument: &str, keyword: &str) -> Option<String> {
    let head = argument.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let path = argument.get(keyword.len()..)?.trim_start();
    let address = match path.strip_prefix('<') {
        Some(bracketed) => bracketed.split_once('>')?.0,
        None => path.split_whitespace().next().unwrap_or_default(),
    };
    Some(address.to_owned())
}

/// Reads the message after `DATA` up to the line holding a single `.`, undoing the
/// dot-stuffing of RFC 5321 section 4.5.2 (a line starting with `.` was sent with one more).
async fn read_data<R: AsyncBufReadExt + Unpin>(reader: &mut R) -> io::Result<String> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed during DATA"));
        }
        if line == b".\r\n" || line == b".\n" {
            return Ok(String::from_utf8_lossy(&data).into_owned());
        }
        let unstuffed = line.strip_prefix(b".").unwrap_or(&line);
        data.extend_from_slice(unstuffed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_read_with_or_without_brackets_and_parameters() {
        assert_eq!(path_after("FROM:<a@b.example> BODY=8BITMIME", "FROM:").as_deref(), Some("a@b.example"));
        assert_eq!(path_after("from: <>", "FROM:").as_deref(), Some(""));
        assert_eq!(path_after("TO:c@d.example", "TO:").as_deref(), Some("c@d.example"));
        assert_eq!(path_after("<c@d.example>", "TO:"), None);
    }

    #[tokio::test]
    async fn speaks_smtp_to_a_plain_client() {
        let sink = SmtpSink::start().await.unwrap();
        let stream = TcpStream::connect(sink.addr()).await.unwrap();
        let (reader, mut writer) = stream.into_split();
        let mut reader = BufReader::new(reader).lines();
        let mut expect = async |send: &str, code: &str| {
            if !send.is_empty() {
                writer.write_all(send.as_bytes()).await.unwrap();
            }
            loop {
                let line = reader.next_line().await.unwrap().unwrap();
                assert!(line.starts_with(code), "{send:?} got {line:?}");
                if line.as_bytes().get(3) != Some(&b'-') {
                    break;
                }
            }
        };
        expect("", "220").await;
        expect("EHLO client.example\r\n", "250").await;
        expect("DATA\r\n", "503").await;
        expect("MAIL FROM:<a@b.example>\r\n", "250").await;
        expect("RCPT TO:<c@d.example>\r\n", "250").await;
        expect("DATA\r\n", "354").await;
        expect("Subject: hi\r\n\r\n..starts with a dot\r\n.\r\n", "250").await;
        expect("NOOP\r\n", "250").await;
        expect("VRFY c\r\n", "502").await;
        expect("RSET\r\n", "250").await;
        expect("QUIT\r\n", "221").await;

        let messages = sink.wait_for(1, Duration::from_secs(5)).await;
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].mail_from, "a@b.example");
        assert_eq!(messages[0].rcpt_to, vec!["c@d.example".to_owned()]);
        assert_eq!(messages[0].data, "Subject: hi\r\n\r\n.starts with a dot\r\n");
        assert_eq!(messages[0].subject().as_deref(), Some("hi"));
    }

    #[tokio::test]
    async fn a_paused_sink_refuses_and_counts_connections_on_the_same_port() {
        let sink = SmtpSink::start().await.unwrap();
        sink.pause();
        let stream = TcpStream::connect(sink.addr()).await.unwrap();
        let mut lines = BufReader::new(stream).lines();
        assert!(lines.next_line().await.unwrap().unwrap().starts_with("421"));
        assert_eq!(sink.wait_for_refusals(1, Duration::from_secs(5)).await, 1);
        sink.resume();
        let stream = TcpStream::connect(sink.addr()).await.unwrap();
        let mut lines = BufReader::new(stream).lines();
        assert!(lines.next_line().await.unwrap().unwrap().starts_with("220"));
        assert_eq!(sink.refused_connections(), 1);
    }
}
