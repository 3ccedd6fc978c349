//! The policy for signing keys kept in a database: which stored keys an instance may use, and,
//! when none can sign yet, until when. It reads plain records ([`StoredKey`]); reading them from
//! the database is the caller's business.

use time::OffsetDateTime;

use crate::ring::{RingKey, RingPlan};
use crate::sealed::{is_sealed, open as open_sealed, KeyEncryptionKey, SealError};
use crate::{KeyError, SigningKeyPair};

/// A signing key as stored: its private key sealed with a key-encryption key, or a PEM in the
/// clear.
#[derive(Debug, Clone, Copy)]
pub struct StoredKey<'a> {
    /// Its slot, which is its key id.
    pub slot: &'a str,
    /// The sealed text, or the PEM.
    pub private_key: &'a str,
    /// When it was stored: from then on it is published.
    pub created_at: OffsetDateTime,
    /// When it signs from.
    pub activates_at: OffsetDateTime,
    /// When it stopped signing, if it was retired.
    pub retired_at: Option<OffsetDateTime>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<OffsetDateTime>,
}

/// Why the stored keys are read, which decides what a key that cannot be used does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLoad {
    /// At start: every sealed key must open; with a key-encryption key, a key stored in the
    /// clear is left out: only someone writing to the database could have put it there (a
    /// forgery backdoor), unless the operator seals it with `flexauth keys seal`.
    Start,
    /// By an operator's command: every key must open, keys in the clear included.
    Command,
    /// Again and again while serving: a key that does not open is left out (and counted), so
    /// one damaged row cannot freeze the ring; a key in the clear is left out as at start.
    Refresh,
}

/// Why a stored key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoredKeyError {
    /// It is sealed and does not open with the key-encryption key given (or none was).
    #[error(transparent)]
    Seal(#[from] SealError),
    /// It opened, but is not an Ed25519 private key.
    #[error("the stored key of slot {slot} is not a signing key: {source}")]
    Damaged {
        /// The key's slot.
        slot: String,
        /// What is wrong with it.
        source: KeyError,
    },
}

/// The stored keys this instance may use, opened, and how many were left out.
///
/// # Errors
/// [`StoredKeyError`] for a key that cannot be used, except with [`KeyLoad::Refresh`], which
/// leaves it out.
pub fn open_stored<'a>(
    stored: impl IntoIterator<Item = StoredKey<'a>>,
    kek: Option<&KeyEncryptionKey>,
    load: KeyLoad,
) -> Result<(Vec<RingKey>, usize), StoredKeyError> {
    let mut keys = Vec::new();
    let mut left_out = 0;
    for stored in stored {
        let opened = open_sealed(kek, stored.slot, stored.private_key).map_err(StoredKeyError::from).and_then(|pem| {
            SigningKeyPair::from_pem(&pem)
                .map_err(|source| StoredKeyError::Damaged { slot: stored.slot.to_owned(), source })
        });
        let in_the_clear = !is_sealed(stored.private_key);
        let key = match (opened, load) {
            (Ok(_), KeyLoad::Start | KeyLoad::Refresh) if kek.is_some() && in_the_clear => {
                left_out += 1;
                continue;
            }
            (Ok(key), _) => key,
            (Err(_), KeyLoad::Refresh) => {
                left_out += 1;
                continue;
            }
            (Err(error), _) => return Err(error),
        };
        keys.push(RingKey {
            slot: stored.slot.to_owned(),
            key,
            published_at: stored.created_at,
            activates_at: stored.activates_at,
            retired_at: stored.retired_at,
            revoked_at: stored.revoked_at,
        });
    }
    Ok((keys, left_out))
}

impl RingPlan {
    /// When no key of `keys` signs at `now`: the scheduled key that signs first, and when.
    /// `None` when no key is scheduled either (every key is retired or revoked).
    pub fn next_signer<'a>(&self, keys: &'a [RingKey], now: OffsetDateTime) -> Option<(&'a RingKey, OffsetDateTime)> {
        keys.iter()
            .filter(|key| key.revoked_at.is_none() && key.retired_at.is_none())
            .map(|key| (key, self.activation(key)))
            .filter(|(_, activation)| *activation > now)
            .min_by_key(|(_, activation)| *activation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;
    use time::Duration;

    const NOW: OffsetDateTime = datetime!(2026-12-06 12:00 UTC);

    fn pem() -> String {
        SigningKeyPair::generate_pem().unwrap()
    }

    fn record<'a>(slot: &'a str, private_key: &'a str) -> StoredKey<'a> {
        StoredKey { slot, private_key, created_at: NOW, activates_at: NOW, retired_at: None, revoked_at: None }
    }

    #[test]
    fn a_key_in_the_clear_is_left_out_where_a_key_encryption_key_is_set_but_for_a_command() {
        let kek = KeyEncryptionKey::parse(&"A".repeat(43)).unwrap();
        let clear = pem();
        let sealed = kek.seal("sealed", &pem()).unwrap();
        let stored = [record("clear", &clear), record("sealed", &sealed)];
        let (keys, left_out) = open_stored(stored, Some(&kek), KeyLoad::Start).unwrap();
        assert_eq!((keys.len(), keys[0].slot.as_str(), left_out), (1, "sealed", 1));
        assert_eq!(open_stored(stored, Some(&kek), KeyLoad::Command).unwrap().0.len(), 2);
        // Without the key-encryption key, a sealed key stops a start, and is left out while serving.
        assert!(matches!(open_stored(stored, None, KeyLoad::Start), Err(StoredKeyError::Seal(SealError::KeyMissing))));
        let (keys, left_out) = open_stored(stored, None, KeyLoad::Refresh).unwrap();
        assert_eq!((keys.len(), keys[0].slot.as_str(), left_out), (1, "clear", 1));
    }

    #[test]
    fn with_only_scheduled_keys_the_first_to_sign_is_named() {
        let plan = RingPlan {
            access_ttl: Duration::hours(1),
            refresh_ttl: Duration::days(30),
            publish_before_signing: Duration::minutes(5),
        };
        let (early, late) = (pem(), pem());
        let stored = [
            StoredKey { activates_at: NOW + Duration::minutes(20), ..record("late", &late) },
            StoredKey { activates_at: NOW + Duration::minutes(10), ..record("early", &early) },
        ];
        let (keys, _) = open_stored(stored, None, KeyLoad::Command).unwrap();
        let (key, at) = plan.next_signer(&keys, NOW).unwrap();
        assert_eq!((key.slot.as_str(), at), ("early", NOW + Duration::minutes(10)));
        assert!(plan.next_signer(&keys, NOW + Duration::hours(1)).is_none(), "both sign by then");
    }
}
