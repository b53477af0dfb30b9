//! What can be invalidated, and the message other instances receive.

use serde::{Deserialize, Serialize};

/// Which entries of a namespace to drop.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Target {
    /// One key.
    Key {
        /// The key.
        key: String,
    },
    /// Several keys.
    Keys {
        /// The keys.
        keys: Vec<String>,
    },
    /// Every key starting with a prefix.
    Prefix {
        /// The prefix.
        prefix: String,
    },
    /// Every key matching a Redis glob (`*`, `?`, `[a-z]`).
    Pattern {
        /// The glob.
        pattern: String,
    },
    /// Every key written with a tag.
    Tag {
        /// The tag.
        tag: String,
    },
    /// The whole namespace.
    Namespace,
}

/// Only drop entries that satisfy a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Condition {
    /// Entries created before this Unix time in milliseconds. Lets a writer say
    /// "anything cached before my write is stale" without touching newer entries.
    OlderThan(u64),
    /// Entries written with a version below this one ([`crate::SetOptions::version`];
    /// entries written without a version count as 0). Lets a writer that knows its
    /// row's new version drop older copies without dropping a newer value a racing
    /// writer has already cached.
    VersionBelow(u64),
}

impl Condition {
    /// Whether an entry with this creation time and version is to be dropped.
    pub fn matches(self, created_ms: u64, version: u64) -> bool {
        match self {
            Condition::OlderThan(t) => created_ms < t,
            Condition::VersionBelow(v) => version < v,
        }
    }
}

/// An invalidation request.
///
/// ```
/// use strata_cache::Invalidation;
/// let inv = Invalidation::tag("user", "team:7");
/// assert_eq!(inv.namespace, "user");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Invalidation {
    /// Namespace.
    #[serde(rename = "ns")]
    pub namespace: String,
    /// Which entries.
    #[serde(flatten)]
    pub target: Target,
    /// Optional condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
}

impl Invalidation {
    fn new(namespace: &str, target: Target) -> Self {
        Invalidation {
            namespace: namespace.to_owned(),
            target,
            condition: None,
        }
    }
    /// One key.
    pub fn key(namespace: &str, key: impl Into<String>) -> Self {
        Self::new(namespace, Target::Key { key: key.into() })
    }
    /// Several keys.
    pub fn keys(namespace: &str, keys: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self::new(
            namespace,
            Target::Keys {
                keys: keys.into_iter().map(Into::into).collect(),
            },
        )
    }
    /// Keys starting with `prefix`.
    pub fn prefix(namespace: &str, prefix: impl Into<String>) -> Self {
        Self::new(
            namespace,
            Target::Prefix {
                prefix: prefix.into(),
            },
        )
    }
    /// Keys matching a glob.
    pub fn pattern(namespace: &str, pattern: impl Into<String>) -> Self {
        Self::new(
            namespace,
            Target::Pattern {
                pattern: pattern.into(),
            },
        )
    }
    /// Keys written with `tag`.
    pub fn tag(namespace: &str, tag: impl Into<String>) -> Self {
        Self::new(namespace, Target::Tag { tag: tag.into() })
    }
    /// The whole namespace.
    pub fn namespace(namespace: &str) -> Self {
        Self::new(namespace, Target::Namespace)
    }
    /// Restricts to entries created before `unix_ms`.
    pub fn older_than(mut self, unix_ms: u64) -> Self {
        self.condition = Some(Condition::OlderThan(unix_ms));
        self
    }
    /// Restricts to entries written with a version below `version`.
    pub fn version_below(mut self, version: u64) -> Self {
        self.condition = Some(Condition::VersionBelow(version));
        self
    }
}

/// Application events that know which entries they make stale.
///
/// Declare the mapping once, next to the event, and fire the event from every place
/// that causes it:
///
/// ```
/// use strata_cache::{Invalidation, InvalidationEvent};
///
/// struct UserUpdated(u64);
///
/// impl InvalidationEvent for UserUpdated {
///     fn invalidations(&self) -> Vec<Invalidation> {
///         vec![
///             Invalidation::key("user", self.0.to_string()),
///             Invalidation::tag("feed", format!("user:{}", self.0)),
///         ]
///     }
/// }
/// assert_eq!(UserUpdated(7).invalidations().len(), 2);
/// ```
pub trait InvalidationEvent {
    /// The invalidations this event implies.
    fn invalidations(&self) -> Vec<Invalidation>;
}

/// One pub/sub message: every invalidation an instance made since its last message.
///
/// This is the wire format on the `strata:invalidate` channel, stable across
/// versions with the same `v`. Any program can publish one to make every strata
/// instance drop entries from its memory tier:
///
/// ```
/// use strata_cache::InvalidationMessage;
/// let m = InvalidationMessage::parse(br#"{"v":1,"origin":"billing-job","items":[{"ns":"user","op":"key","key":"42"}]}"#).unwrap();
/// assert_eq!(m.items[0].invalidation.namespace, "user");
/// assert!(InvalidationMessage::parse(b"not json").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvalidationMessage {
    /// Format version (1).
    pub v: u8,
    /// Instance id of the sender; receivers skip their own messages.
    pub origin: String,
    /// The invalidations.
    pub items: Vec<MessageItem>,
}

/// An invalidation as sent to other instances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageItem {
    /// What to drop.
    #[serde(flatten)]
    pub invalidation: Invalidation,
    /// Keys the sender found under a tag (receivers may not know the tag's members).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolved: Vec<String>,
}

impl InvalidationMessage {
    /// Parses and checks a message: at most 16 MiB, version 1, valid namespace names.
    pub fn parse(payload: &[u8]) -> crate::Result<Self> {
        if payload.len() > MAX_MESSAGE {
            return Err(crate::CacheError::Codec(format!(
                "message of {} bytes is over 16 MiB",
                payload.len()
            )));
        }
        let m: InvalidationMessage = serde_json::from_slice(payload)
            .map_err(|e| crate::CacheError::Codec(format!("bad message: {e}")))?;
        if m.v != 1 {
            return Err(crate::CacheError::Codec(format!(
                "unknown message version {}",
                m.v
            )));
        }
        for i in &m.items {
            crate::key::validate_namespace(&i.invalidation.namespace)?;
        }
        Ok(m)
    }

    /// Serializes the message.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a message always serializes")
    }
}

/// Largest message accepted from the channel; anything bigger is garbage or hostile.
pub(crate) const MAX_MESSAGE: usize = 16 << 20;

/// Debounce key for delayed invalidations.
pub(crate) fn debounce_key(inv: &Invalidation) -> String {
    serde_json::to_string(inv).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_format_is_stable_json() {
        let m = InvalidationMessage {
            v: 1,
            origin: "a1".into(),
            items: vec![
                MessageItem {
                    invalidation: Invalidation::key("user", "42"),
                    resolved: vec![],
                },
                MessageItem {
                    invalidation: Invalidation::tag("feed", "t").older_than(5),
                    resolved: vec!["k".into()],
                },
                MessageItem {
                    invalidation: Invalidation::namespace("x"),
                    resolved: vec![],
                },
            ],
        };
        let s = serde_json::to_string(&m).unwrap();
        assert_eq!(
            s,
            r#"{"v":1,"origin":"a1","items":[{"ns":"user","op":"key","key":"42"},{"ns":"feed","op":"tag","tag":"t","condition":{"older_than":5},"resolved":["k"]},{"ns":"x","op":"namespace"}]}"#
        );
        let back: InvalidationMessage = serde_json::from_str(&s).unwrap();
        assert_eq!(back.items[1].invalidation, m.items[1].invalidation);
    }
}
