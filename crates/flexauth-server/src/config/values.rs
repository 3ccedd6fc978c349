//! The types of the settings, each parsed by clap from its flag or environment variable: a
//! value that does not parse stops the start with one line naming the variable
//! ([`super::explain`]). Each parser's error says what was expected and quotes the value,
//! except for secrets.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use flexauth_domain::newtypes::Scope;
use flexauth_store::DatabaseConfig;
use time::Duration;
use url::Url;

use crate::client::{ForwardedHeader, Network};

/// A positive duration of at most ten years: `3600` (seconds), `90s`, `15m`, `1h` or `30d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

impl FromStr for ConfigDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (digits, unit_seconds) = match text.char_indices().last() {
            Some((index, 's')) => (&text[..index], 1),
            Some((index, 'm')) => (&text[..index], 60),
            Some((index, 'h')) => (&text[..index], 3_600),
            Some((index, 'd')) => (&text[..index], 86_400),
            _ => (text, 1),
        };
        let amount: i64 =
            digits.parse().map_err(|_| format!("`{text}` is not a duration such as 3600, 90s, 15m, 1h or 30d"))?;
        if amount <= 0 {
            return Err(format!("`{text}` must be positive"));
        }
        amount
            .checked_mul(unit_seconds)
            .filter(|seconds| *seconds <= 10 * 365 * 86_400)
            .map(|seconds| Self(Duration::seconds(seconds)))
            .ok_or_else(|| format!("`{text}` is longer than ten years"))
    }
}

/// A [`ConfigDuration`] that may also be `0` (`0s`): off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationOrZero(pub Duration);

impl FromStr for DurationOrZero {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim() {
            "0" | "0s" => Ok(Self(Duration::ZERO)),
            other => ConfigDuration::from_str(other).map(|duration| Self(duration.0)),
        }
    }
}

/// `on`, `true`, `1` or `off`, `false`, `0`.
pub fn switch(text: &str) -> Result<bool, String> {
    match text.trim() {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        other => Err(format!("`{other}` is neither on (true, 1) nor off (false, 0)")),
    }
}

/// A value that must not be empty.
pub fn non_empty(text: &str) -> Result<String, String> {
    match text.trim() {
        "" => Err("must not be empty".to_owned()),
        value => Ok(value.to_owned()),
    }
}

/// The public URL: `http://` or `https://`, with a host, without a query or fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl(pub Url);

impl FromStr for PublicUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let url = Url::parse(text).map_err(|error| format!("`{text}`: {error}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!("`{text}` must be an http:// or https:// URL"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!("`{text}` must not have a query or fragment"));
        }
        Ok(Self(url))
    }
}

/// Where the data is: `postgres://…` (or `postgresql://…`) or `sqlite://<path>`. Never
/// written out: the URL may carry a password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(pub DatabaseConfig);

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseUrl(<set>)")
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let url = text.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self(DatabaseConfig::Postgres(url.to_owned())))
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            Ok(Self(DatabaseConfig::Sqlite(PathBuf::from(path))))
        } else {
            Err("must start with postgres://, postgresql:// or sqlite://".to_owned())
        }
    }
}

/// What stands between flexauth and PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PoolerSetting {
    /// Nothing, or a pooler in session mode (a pooler in transaction mode is seen at start).
    None,
    /// A pooler in transaction mode.
    Transaction,
}

impl From<PoolerSetting> for flexauth_store::Pooler {
    fn from(setting: PoolerSetting) -> Self {
        match setting {
            PoolerSetting::None => Self::None,
            PoolerSetting::Transaction => Self::Transaction,
        }
    }
}

/// The header the trusted proxies write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ForwardedHeaderSetting {
    /// `X-Forwarded-For`.
    XForwardedFor,
    /// `Forwarded` (RFC 7239).
    Forwarded,
}

impl From<ForwardedHeaderSetting> for ForwardedHeader {
    fn from(setting: ForwardedHeaderSetting) -> Self {
        match setting {
            ForwardedHeaderSetting::XForwardedFor => Self::XForwardedFor,
            ForwardedHeaderSetting::Forwarded => Self::Forwarded,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text per event.
    Text,
    /// One JSON object per event.
    Json,
}

/// A comma-separated list, each entry parsed by `T`; empty entries are skipped, so an empty
/// text is an empty list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List<T>(pub Vec<T>);

/// How an entry of a [`List`] is parsed.
pub trait ListEntry: Sized {
    /// Parses one trimmed, non-empty entry.
    ///
    /// # Errors
    /// A sentence naming the entry and what is wrong with it.
    fn parse_entry(entry: &str) -> Result<Self, String>;
}

impl<T: ListEntry> FromStr for List<T> {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        text.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(T::parse_entry)
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl ListEntry for Network {
    fn parse_entry(entry: &str) -> Result<Self, String> {
        Network::parse(entry)
    }
}

impl ListEntry for Scope {
    fn parse_entry(entry: &str) -> Result<Self, String> {
        Scope::parse(entry).map_err(|error| format!("`{entry}`: {error}"))
    }
}

impl ListEntry for PathBuf {
    fn parse_entry(entry: &str) -> Result<Self, String> {
        Ok(PathBuf::from(entry))
    }
}

/// An origin a browser sends in `Origin`, normalised (`https://app.example.com`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin(pub String);

impl ListEntry for Origin {
    fn parse_entry(entry: &str) -> Result<Self, String> {
        crate::browser::parse_origin(entry).map(Self)
    }
}

/// A socket address, or nothing when empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalAddress(pub Option<SocketAddr>);

impl FromStr for OptionalAddress {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim() {
            "" => Ok(Self(None)),
            address => {
                address.parse().map(|address| Self(Some(address))).map_err(|error| format!("`{address}`: {error}"))
            }
        }
    }
}

/// The key-encryption key: 32 random bytes in base64. Its error never quotes it.
pub fn key_encryption_key(text: &str) -> Result<flexauth_jwt::KeyEncryptionKey, String> {
    flexauth_jwt::KeyEncryptionKey::parse(text.trim()).map_err(|error| error.to_string())
}
