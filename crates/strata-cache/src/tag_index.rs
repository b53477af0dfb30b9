//! The local index of tags → L1 keys written on this instance with tags.
//!
//! It lets a tag invalidation drop L1 entries that Redis knows nothing about
//! (memory-only namespaces) and that other instances' messages could not resolve.
//! It is bounded: past [`MAX_MEMBERS`] it stops indexing and says so, and a tag
//! invalidation in that namespace then flushes the namespace's L1 (coarser, never
//! wrong). A namespace flush resets it.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// Most (tag, key) pairs indexed per namespace.
pub(crate) const MAX_MEMBERS: usize = 100_000;

/// What the index knows about a tag.
pub(crate) enum TagMembers {
    /// These keys (possibly none).
    Known(HashSet<String>),
    /// The index overflowed: any key may carry the tag.
    Unknown,
}

#[derive(Default)]
struct State {
    map: HashMap<String, HashSet<String>>,
    members: usize,
    overflowed: bool,
}

/// Tag index of one namespace. Touched only by writes with tags and by tag
/// invalidations, never by reads.
#[derive(Default)]
pub(crate) struct TagIndex {
    state: Mutex<State>,
}

impl TagIndex {
    /// Records that `keys` were written with `tags`.
    pub(crate) fn add<'a>(&self, tags: &[String], keys: impl Iterator<Item = &'a str> + Clone) {
        let mut s = self.state.lock().expect("tag index lock");
        if s.overflowed {
            return;
        }
        for t in tags {
            let set = s.map.entry(t.clone()).or_default();
            let before = set.len();
            set.extend(keys.clone().map(str::to_owned));
            let added = set.len() - before;
            s.members += added;
        }
        if s.members > MAX_MEMBERS {
            *s = State {
                overflowed: true,
                ..State::default()
            };
        }
    }

    /// Removes and returns what is known of a tag.
    pub(crate) fn take(&self, tag: &str) -> TagMembers {
        let mut s = self.state.lock().expect("tag index lock");
        if s.overflowed {
            return TagMembers::Unknown;
        }
        let members = s.map.remove(tag).unwrap_or_default();
        s.members -= members.len();
        TagMembers::Known(members)
    }

    /// Forgets everything (the namespace's L1 was flushed).
    pub(crate) fn clear(&self) {
        *self.state.lock().expect("tag index lock") = State::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_until_the_bound_then_says_unknown() {
        let idx = TagIndex::default();
        let tags = vec!["a".to_string(), "b".to_string()];
        idx.add(&tags, ["k1", "k2"].into_iter());
        idx.add(&tags, ["k2"].into_iter());
        match idx.take("a") {
            TagMembers::Known(m) => assert_eq!(m.len(), 2),
            TagMembers::Unknown => panic!("not overflowed"),
        }
        assert!(matches!(idx.take("a"), TagMembers::Known(m) if m.is_empty()));
        let many: Vec<String> = (0..MAX_MEMBERS).map(|i| format!("k{i}")).collect();
        idx.add(&tags[..1], many.iter().map(String::as_str));
        assert!(matches!(idx.take("b"), TagMembers::Unknown));
        idx.clear();
        assert!(matches!(idx.take("b"), TagMembers::Known(_)));
    }
}
