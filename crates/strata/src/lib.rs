//! Strata's binary as a library: the command line ([`cli`]), the configuration
//! ([`config`]), `strata serve` ([`server`]) and `strata load-test` ([`loadtest`]). `main.rs` only calls [`cli::main`].

pub mod cli;
pub mod config;
pub mod invtest;
pub mod loadtest;
pub mod logging;
pub mod scenario;
pub mod server;
pub mod watch;
