//! Identifiers: record ids (UUIDv7) and replica identities (`ActorId`).

use std::fmt;

/// A new UUIDv7 (time-ordered) id.
///
/// v7 rather than v4 so that ids minted on one node sort roughly by creation time, which keeps
/// SQLite's primary-key b-trees append-mostly instead of scattering inserts across pages.
pub fn new_id() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}

/// The longest accepted actor id, in bytes (every accepted char is one byte of ASCII).
pub const ACTOR_ID_MAX_LEN: usize = 64;

/// Identity of a replica (a node or the hub): 1..=64 chars of `[A-Za-z0-9._-]`.
///
/// The alphabet is deliberately narrow: actor ids end up inside HLC timestamp text (see
/// [`crate::hlc::Timestamp`]), SQL TEXT columns, metric labels and log fields, and none of those
/// should need escaping. Ordering is plain byte order, the same as SQLite's TEXT order.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct ActorId(String);

/// Why a string is not an [`ActorId`].
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum IdError {
    #[error("actor id must not be empty")]
    Empty,
    #[error("actor id is {len} characters long; at most {ACTOR_ID_MAX_LEN} are allowed")]
    TooLong { len: usize },
    #[error("actor id contains {ch:?}; only A-Z, a-z, 0-9, '.', '_' and '-' are allowed")]
    InvalidChar { ch: char },
}

fn is_actor_char(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-')
}

impl ActorId {
    /// Parses and validates an actor id.
    pub fn parse(s: &str) -> Result<ActorId, IdError> {
        if s.is_empty() {
            return Err(IdError::Empty);
        }
        // Check characters before length so that the length below is a char count too.
        if let Some(ch) = s.chars().find(|&c| !is_actor_char(c)) {
            return Err(IdError::InvalidChar { ch });
        }
        if s.len() > ACTOR_ID_MAX_LEN {
            return Err(IdError::TooLong { len: s.len() });
        }
        Ok(ActorId(s.to_owned()))
    }

    /// The hub's identity, `"hub"`. Nodes must not be configured with this id.
    pub fn hub() -> ActorId {
        ActorId("hub".to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ActorId {
    type Error = IdError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        // Validate through `parse` so there is one rule; reuse the allocation on success.
        ActorId::parse(&s)?;
        Ok(ActorId(s))
    }
}

impl From<ActorId> for String {
    fn from(id: ActorId) -> String {
        id.0
    }
}

impl std::str::FromStr for ActorId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ActorId::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for ok in ["hub", "node-1", "kiosk_7.paris", "A", &"x".repeat(64)] {
            assert_eq!(ActorId::parse(ok).map(|a| a.to_string()), Ok(ok.to_owned()));
        }
    }

    #[test]
    fn rejects_bad_ids() {
        assert_eq!(ActorId::parse(""), Err(IdError::Empty));
        assert_eq!(
            ActorId::parse(&"x".repeat(65)),
            Err(IdError::TooLong { len: 65 })
        );
        assert_eq!(
            ActorId::parse("node 1"),
            Err(IdError::InvalidChar { ch: ' ' })
        );
        assert_eq!(
            ActorId::parse("nöde"),
            Err(IdError::InvalidChar { ch: 'ö' })
        );
        assert_eq!(ActorId::parse("a/b"), Err(IdError::InvalidChar { ch: '/' }));
    }

    #[test]
    fn hub_is_a_valid_id() {
        assert_eq!(ActorId::parse("hub"), Ok(ActorId::hub()));
        assert_eq!(ActorId::hub().as_str(), "hub");
    }

    #[test]
    fn serde_is_a_plain_string_and_validates() {
        let id = ActorId::parse("node-1").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), r#""node-1""#);
        assert_eq!(serde_json::from_str::<ActorId>(r#""node-1""#).unwrap(), id);
        assert!(serde_json::from_str::<ActorId>(r#""""#).is_err());
        assert!(serde_json::from_str::<ActorId>(r#""a b""#).is_err());
    }

    #[test]
    fn new_ids_are_v7_and_time_ordered() {
        let a = new_id();
        let b = new_id();
        assert_eq!(a.get_version_num(), 7);
        assert!(a < b, "uuid v7 from one process must increase");
    }
}
