//! Strata's binary as a library: the command line ([`cli`]), the configuration
//! ([`config`]), `strata serve` ([`server`]), `strata load-test` ([`loadtest`]) and `strata db`
//! ([`db`]). `main.rs` only calls [`cli::main`].

pub mod cli;
pub mod config;
pub mod db;
pub mod invtest;
pub mod loadtest;
pub mod logging;
pub mod scenario;
pub mod server;
pub mod watch;
