//! Load generation for `strata load-test` and friends.

pub mod dist;
