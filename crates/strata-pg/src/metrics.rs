//! `strata_pg_*` metric families. Labels are bounded: the statement kind
//! (`select`, `insert`, …), never SQL or a fingerprint.

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Statement kind.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabel {
    /// `select`, `insert`, `update`, `delete`, `transaction`, `ddl`, `other`.
    pub command: &'static str,
}

fn histogram() -> Histogram {
    // 25 µs .. ~13 s.
    Histogram::new(exponential_buckets(0.000025, 2.0, 20))
}

/// The PostgreSQL proxy's metrics; clones share the same counters.
#[derive(Clone)]
pub struct PgMetrics {
    /// Queries by kind.
    pub queries: Family<CommandLabel, Counter>,
    /// Server time per query by kind.
    pub duration: Family<CommandLabel, Histogram, fn() -> Histogram>,
    /// Failed queries by kind.
    pub errors: Family<CommandLabel, Counter>,
    /// Queries over the slow threshold.
    pub slow: Counter,
    /// Distinct N+1 patterns found.
    pub n_plus_one: Gauge<i64, AtomicI64>,
    /// Open client sessions.
    pub clients: Gauge<i64, AtomicI64>,
    /// Open server connections.
    pub servers: Gauge<i64, AtomicI64>,
    /// The configured client limit (for "connections near the limit" alerts).
    pub max_clients: Gauge<i64, AtomicI64>,
    /// Clients refused at the limit.
    pub refused: Counter,
    /// Sessions ended by a protocol violation.
    pub protocol_errors: Counter,
    /// Server connections that could not be made.
    pub connect_errors: Counter,
    /// Query events dropped because the insight thread fell behind.
    pub dropped: Counter,
}

/// One statement kind's handles, looked up once instead of per query.
#[derive(Clone)]
pub(crate) struct CommandHandles {
    pub(crate) queries: Counter,
    pub(crate) duration: Histogram,
    pub(crate) errors: Counter,
}

impl Default for PgMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl PgMetrics {
    /// New, unregistered families.
    pub fn new() -> Self {
        PgMetrics {
            queries: Family::default(),
            duration: Family::new_with_constructor(histogram),
            errors: Family::default(),
            slow: Counter::default(),
            n_plus_one: Gauge::default(),
            clients: Gauge::default(),
            servers: Gauge::default(),
            max_clients: Gauge::default(),
            refused: Counter::default(),
            protocol_errors: Counter::default(),
            connect_errors: Counter::default(),
            dropped: Counter::default(),
        }
    }

    pub(crate) fn for_command(&self, command: &'static str) -> CommandHandles {
        let label = CommandLabel { command };
        CommandHandles {
            queries: self.queries.get_or_create(&label).clone(),
            duration: self.duration.get_or_create(&label).clone(),
            errors: self.errors.get_or_create(&label).clone(),
        }
    }

    /// Registers every family under `strata_pg_`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("strata_pg");
        r.register(
            "queries",
            "Queries through the proxy, by statement kind.",
            self.queries.clone(),
        );
        r.register(
            "query_duration_seconds",
            "Server time per query, from when the server could start it to its last response.",
            self.duration.clone(),
        );
        r.register(
            "query_errors",
            "Queries that failed, by statement kind.",
            self.errors.clone(),
        );
        r.register(
            "slow_queries",
            "Queries over the slow-query threshold.",
            self.slow.clone(),
        );
        r.register(
            "n_plus_one_findings",
            "Distinct N+1 query patterns found.",
            self.n_plus_one.clone(),
        );
        r.register(
            "client_connections",
            "Open client sessions.",
            self.clients.clone(),
        );
        r.register(
            "server_connections",
            "Open connections to PostgreSQL.",
            self.servers.clone(),
        );
        r.register(
            "max_client_connections",
            "The configured limit on client sessions.",
            self.max_clients.clone(),
        );
        r.register(
            "connections_refused",
            "Clients refused at the connection limit.",
            self.refused.clone(),
        );
        r.register(
            "protocol_errors",
            "Sessions closed for a protocol violation (client or server).",
            self.protocol_errors.clone(),
        );
        r.register(
            "server_connect_errors",
            "Connections to PostgreSQL that could not be made.",
            self.connect_errors.clone(),
        );
        r.register(
            "insight_dropped",
            "Query events dropped because the insight thread fell behind.",
            self.dropped.clone(),
        );
    }
}
