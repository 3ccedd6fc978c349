//! Rate limits: how many attempts of a kind a client (an address, an account, a session) may
//! make in a window, decided against counters that every instance shares.

mod ports;

#[cfg(any(test, feature = "mocks"))]
pub use ports::MockRateLimiter;
pub use ports::RateLimiter;

use time::{Duration, OffsetDateTime};

/// One limit: at most `limit` attempts per `window`, counted per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitPolicy {
    /// The stable name of the limit, in keys and in the `RateLimit-Policy` header.
    pub name: &'static str,
    /// Attempts allowed per window.
    pub limit: u32,
    /// The length of a window.
    pub window: Duration,
}

/// One counter: the attempts under `key` counted against `policy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitCounter {
    /// The caller's key (an address, an account, a session), without the policy's name.
    pub key: String,
    /// The limit the attempts count against.
    pub policy: LimitPolicy,
}

impl LimitCounter {
    /// The counter of `key` under `policy`.
    pub fn new(key: impl Into<String>, policy: LimitPolicy) -> Self {
        Self { key: key.into(), policy }
    }
}

/// What becomes of a counter once the attempt it counted turned out not to be a guess.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitSettlement {
    /// Take back the one attempt counted in the current window.
    Refund(LimitCounter),
    /// Forget every attempt counted (a successful login clears its account's failures).
    Clear(LimitCounter),
}

/// What a counter said about one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitDecision {
    /// The limit that decided.
    pub policy: LimitPolicy,
    /// Whether the attempt is within the limit.
    pub allowed: bool,
    /// Attempts left in this window after this one.
    pub remaining: u32,
    /// Time until the window ends and the count starts again.
    pub reset_after: Duration,
}

impl LimitDecision {
    /// The decision of a counter at `count` attempts in the window that started at
    /// `window_start`, seen at `now`.
    pub fn of_count(policy: LimitPolicy, count: u64, window_start: OffsetDateTime, now: OffsetDateTime) -> Self {
        let limit = u64::from(policy.limit);
        let reset_after = (window_start + policy.window - now).max(Duration::seconds(1));
        // What is left is at most the limit, which is a u32.
        let remaining = u32::try_from(limit.saturating_sub(count)).unwrap_or(policy.limit);
        Self { policy, allowed: count <= limit, remaining, reset_after }
    }
}

/// The start of the fixed window of `policy` that contains `now`: windows are aligned to the
/// Unix epoch, so every instance computes the same one.
pub fn window_start(policy: &LimitPolicy, now: OffsetDateTime) -> OffsetDateTime {
    let window = policy.window.whole_seconds().max(1);
    let seconds = now.unix_timestamp();
    OffsetDateTime::from_unix_timestamp(seconds - seconds.rem_euclid(window)).unwrap_or(now)
}

impl LimitSettings {
    /// The per-account login limits, shortest window first.
    pub fn account_login_limits(&self) -> [LimitPolicy; 2] {
        [self.login_failures_per_account, self.login_failures_per_account_daily]
    }

    /// The two tiers of wrong second-factor codes per account.
    pub fn second_factor_limits(&self) -> [LimitPolicy; 2] {
        [self.second_factor_failures_per_account, self.second_factor_failures_per_account_daily]
    }

    /// The counters a check of an account's password counts against: the session's first
    /// (when a session asks), then the account's and the client address's. None when limits
    /// are off.
    pub fn password_check_counters(
        &self,
        session: Option<crate::newtypes::SessionId>,
        account: crate::newtypes::AccountId,
        client_address: Option<&str>,
    ) -> Vec<(String, LimitPolicy)> {
        if !self.enabled {
            return Vec::new();
        }
        let session = session.map(|id| (id.to_string(), self.password_checks_per_session));
        let account = Some((account.to_string(), self.password_checks_per_account));
        let address = client_address.map(|address| (address_key(address), self.password_checks_per_address));
        [session, account, address].into_iter().flatten().collect()
    }

    /// The earliest login that still makes a client known at `now`: one that logged in to the
    /// account from the same address or device since then is exempt from the per-account limit.
    pub fn known_clients_since(&self, now: OffsetDateTime) -> OffsetDateTime {
        now - self.known_client_for
    }
}

/// Every limit flexauth applies, with its defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSettings {
    /// `false` turns every limit off (benchmarks, and tests that need it).
    pub enabled: bool,
    /// Failed logins per client address.
    pub login_failures_per_address: LimitPolicy,
    /// Failed logins per account (per email address typed, known or not), for clients that
    /// never logged in to it.
    pub login_failures_per_account: LimitPolicy,
    /// The same over a day: an attack that waits out the short window meets this one, so the
    /// wait it is told (`Retry-After`) grows from minutes to hours.
    pub login_failures_per_account_daily: LimitPolicy,
    /// Sign-ups, resends, forgot and reset requests per client address (each sends mail or
    /// spends a hash).
    pub mail_requests_per_address: LimitPolicy,
    /// Checks of a live session's password (re-authentications and password changes) per
    /// session; the session ends when it reaches the limit with a wrong password.
    pub password_checks_per_session: LimitPolicy,
    /// The same checks per account, from all its sessions together: what many stolen access
    /// tokens of one account could try.
    pub password_checks_per_account: LimitPolicy,
    /// Refreshes per session.
    pub refreshes_per_session: LimitPolicy,
    /// Refreshes per client address: a generous ceiling, since every refresh carries its own
    /// 256-bit secret and an office shares one address.
    pub refreshes_per_address: LimitPolicy,
    /// The same checks per client address (each spends a hash).
    pub password_checks_per_address: LimitPolicy,
    /// Emails of one kind (verification, reset, account-exists notice) per recipient.
    pub emails_per_recipient: LimitPolicy,
    /// Address-change requests per account (each mails two addresses).
    pub email_changes_per_account: LimitPolicy,
    /// Wrong second-factor codes per account in 15 minutes, and per day: with the
    /// per-challenge limit they bound a guesser who has the password to a few hundred of a
    /// million codes a year. A client that logged in to the account before is exempt, as at
    /// login, so a guesser never locks the owner out.
    pub second_factor_failures_per_account: LimitPolicy,
    pub second_factor_failures_per_account_daily: LimitPolicy,
    /// Passkey login ceremonies begun per client address: a passwordless start needs no
    /// credential, and each stores its state for 5 minutes.
    pub passkey_ceremonies_per_address: LimitPolicy,
    /// Wrong codes per session in a step-up (`POST /v1/auth/reauthenticate` with a code): a
    /// stolen access token gets five tries in 15 minutes, and is refused past them.
    pub second_factor_failures_per_session: LimitPolicy,
    /// How long a successful login keeps its client address known to the account, exempt
    /// from the per-account limit.
    pub known_client_for: Duration,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            login_failures_per_address: LimitPolicy {
                name: "login_failures_per_address",
                limit: 10,
                window: Duration::minutes(1),
            },
            login_failures_per_account: LimitPolicy {
                name: "login_failures_per_account",
                limit: 5,
                window: Duration::minutes(15),
            },
            login_failures_per_account_daily: LimitPolicy {
                name: "login_failures_per_account_daily",
                limit: 20,
                window: Duration::days(1),
            },
            mail_requests_per_address: LimitPolicy {
                name: "mail_requests_per_address",
                limit: 30,
                window: Duration::minutes(10),
            },
            password_checks_per_session: LimitPolicy {
                name: "password_checks_per_session",
                limit: 5,
                window: Duration::minutes(15),
            },
            password_checks_per_account: LimitPolicy {
                name: "password_checks_per_account",
                limit: 10,
                window: Duration::minutes(15),
            },
            refreshes_per_session: LimitPolicy {
                name: "refreshes_per_session",
                limit: 60,
                window: Duration::minutes(1),
            },
            refreshes_per_address: LimitPolicy {
                name: "refreshes_per_address",
                limit: 600,
                window: Duration::minutes(1),
            },
            password_checks_per_address: LimitPolicy {
                name: "password_checks_per_address",
                limit: 30,
                window: Duration::minutes(15),
            },
            emails_per_recipient: LimitPolicy { name: "emails_per_recipient", limit: 3, window: Duration::hours(1) },
            email_changes_per_account: LimitPolicy {
                name: "email_changes_per_account",
                limit: 5,
                window: Duration::hours(1),
            },
            second_factor_failures_per_account: LimitPolicy {
                name: "second_factor_failures_per_account",
                limit: 10,
                window: Duration::minutes(15),
            },
            second_factor_failures_per_account_daily: LimitPolicy {
                name: "second_factor_failures_per_account_daily",
                limit: 30,
                window: Duration::days(1),
            },
            passkey_ceremonies_per_address: LimitPolicy {
                name: "passkey_ceremonies_per_address",
                limit: 30,
                window: Duration::minutes(1),
            },
            second_factor_failures_per_session: LimitPolicy {
                name: "second_factor_failures_per_session",
                limit: 5,
                window: Duration::minutes(15),
            },
            known_client_for: Duration::days(30),
        }
    }
}

/// The attempt is over a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many attempts; try again later")]
pub struct RateLimited(pub LimitDecision);

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const POLICY: LimitPolicy = LimitPolicy { name: "test", limit: 3, window: Duration::minutes(1) };

    #[test]
    fn windows_are_aligned_so_every_instance_counts_in_the_same_one() {
        assert_eq!(window_start(&POLICY, datetime!(2026-12-01 10:00:59 UTC)), datetime!(2026-12-01 10:00 UTC));
        assert_eq!(window_start(&POLICY, datetime!(2026-12-01 10:01:00 UTC)), datetime!(2026-12-01 10:01 UTC));
    }

    #[test]
    fn the_attempt_past_the_limit_is_refused_until_the_window_ends() {
        let start = datetime!(2026-12-01 10:00 UTC);
        let third = LimitDecision::of_count(POLICY, 3, start, start + Duration::seconds(20));
        assert!(third.allowed);
        assert_eq!(third.remaining, 0);
        let fourth = LimitDecision::of_count(POLICY, 4, start, start + Duration::seconds(20));
        assert!(!fourth.allowed);
        assert_eq!(fourth.reset_after, Duration::seconds(40));
    }
}

/// The part of a client address that limits count by: the whole IPv4 address, the /64 prefix
/// of an IPv6 one (a single client usually holds a whole /64, so counting per address would
/// let it rotate through 2^64 of them). Text that is not an IP address counts as itself.
pub fn address_key(address: &str) -> String {
    match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let segments = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", segments[0], segments[1], segments[2], segments[3])
        }
        Ok(std::net::IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or_else(|| address.to_owned(), |v4| v4.to_string()),
        Ok(ip) => ip.to_string(),
        Err(_) => address.to_owned(),
    }
}

/// The key of a per-account or per-recipient counter: a digest of the normalised address, so
/// the counters table holds no email address.
pub fn email_key(email: &crate::newtypes::EmailAddress) -> String {
    let digest = crate::secret::TokenHash::of(email.as_str().as_bytes());
    digest.as_bytes()[..16].iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A limiter mock that allows everything and counts nothing, for tests of rules that are not
/// about limits.
#[cfg(any(test, feature = "mocks"))]
pub fn unlimited() -> MockRateLimiter {
    let mut limiter = MockRateLimiter::new();
    let allowed = |policy: &LimitPolicy| LimitDecision {
        policy: *policy,
        allowed: true,
        remaining: policy.limit,
        reset_after: policy.window,
    };
    limiter.expect_hit().returning(move |_, policy, _| Ok(allowed(policy)));
    limiter.expect_peek().returning(move |_, policy, _| Ok(allowed(policy)));
    limiter.expect_reset().returning(|_, _| Ok(()));
    limiter.expect_refund().returning(|_, _, _| Ok(()));
    limiter.expect_hit_all().returning(move |counters, _| Ok(counters.iter().map(|c| allowed(&c.policy)).collect()));
    limiter.expect_settle().returning(|_, _| Ok(()));
    limiter
}

#[cfg(test)]
mod address_tests {
    use super::address_key;

    #[test]
    fn ipv6_clients_count_by_their_64_prefix_and_mapped_ipv4_as_ipv4() {
        assert_eq!(address_key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(address_key("2001:db8:1:2:bbbb::9"), "2001:db8:1:2::/64");
        assert_eq!(address_key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(address_key("192.0.2.7"), "192.0.2.7");
    }
}
