//! What can be invalidated, and the message other instances receive.

use std::time::Duration;

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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Message {
    /// Format version.
    pub(crate) v: u8,
    /// Instance id of the sender; receivers skip their own messages.
    pub(crate) origin: String,
    /// The invalidations, with tag targets resolved to keys where the sender knew them.
    pub(crate) items: Vec<Item>,
}

/// An invalidation as sent to other instances.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Item {
    #[serde(flatten)]
    pub(crate) inv: Invalidation,
    /// Keys the sender found under a tag (receivers may not know the tag's members).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) resolved: Vec<String>,
}

/// Largest message accepted from the channel; anything bigger is garbage or hostile.
pub(crate) const MAX_MESSAGE: usize = 16 << 20;

/// Debounce key for delayed invalidations.
pub(crate) fn debounce_key(inv: &Invalidation) -> String {
    serde_json::to_string(inv).unwrap_or_default()
}

/// Default debounce window for delayed invalidation.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_format_is_stable_json() {
        let m = Message {
            v: 1,
            origin: "a1".into(),
            items: vec![
                Item {
                    inv: Invalidation::key("user", "42"),
                    resolved: vec![],
                },
                Item {
                    inv: Invalidation::tag("feed", "t").older_than(5),
                    resolved: vec!["k".into()],
                },
                Item {
                    inv: Invalidation::namespace("x"),
                    resolved: vec![],
                },
            ],
        };
        let s = serde_json::to_string(&m).unwrap();
        assert_eq!(
            s,
            r#"{"v":1,"origin":"a1","items":[{"ns":"user","op":"key","key":"42"},{"ns":"feed","op":"tag","tag":"t","condition":{"older_than":5},"resolved":["k"]},{"ns":"x","op":"namespace"}]}"#
        );
        let back: Message = serde_json::from_str(&s).unwrap();
        assert_eq!(back.items[1].inv, m.items[1].inv);
    }
}
