//! Strata's binary as a library: the command line ([`cli`]), the configuration
//! ([`config`]) and `strata serve` ([`server`]). `main.rs` only calls [`cli::main`].

pub mod cli;
pub mod config;
pub mod logging;
pub mod server;
