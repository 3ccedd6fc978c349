//! The system clock and the operating system's random source, behind the domain's ports.

use flexauth_domain::system::{Clock, SecureRandom};
use time::OffsetDateTime;

/// Reads the system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// The operating system's CSPRNG (getrandom).
#[derive(Debug, Clone, Copy, Default)]
pub struct OsRandom;

impl SecureRandom for OsRandom {
    #[allow(clippy::panic)]
    fn fill(&self, buffer: &mut [u8]) {
        // Without randomness no token can be issued safely; the port's contract is to stop
        // rather than hand out predictable secrets.
        if let Err(error) = getrandom::getrandom(buffer) {
            panic!("the operating system's random source failed: {error}");
        }
    }
}

/// An instant as operators read it in the commands' JSON and in start messages: RFC 3339.
/// Milliseconds, as stored and as the API writes instants, so a command prints the same
/// instant as `keys list` shows later.
pub(crate) fn instant(at: time::OffsetDateTime) -> String {
    let at = at.replace_millisecond(at.millisecond()).unwrap_or(at);
    at.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| at.to_string())
}
