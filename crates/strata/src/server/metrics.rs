//! `/metrics`: the engine's `strata_cache_*` families, the API server's
//! `strata_api_*` families, and the standard `process_*` families.

use std::sync::atomic::AtomicI64;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// Labels of an API request. `route` is the matched route template, never a raw path.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// e.g. `/v1/cache/{ns}/{*key}`.
    pub route: String,
    /// HTTP method.
    pub method: String,
    /// Status code.
    pub status: u16,
}

/// Labels of the duration histogram.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Matched route template.
    pub route: String,
    /// HTTP method.
    pub method: String,
}

/// The API server's own metrics.
#[derive(Clone)]
pub struct ApiMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Open client connections.
    pub connections: Gauge<i64, AtomicI64>,
    /// Connections accepted.
    pub connections_total: Counter,
    /// Requests in flight.
    pub in_flight: Gauge<i64, AtomicI64>,
}

fn duration_histogram() -> Histogram {
    // 25 µs .. ~13 s.
    Histogram::new(exponential_buckets(0.000025, 2.0, 20))
}

impl ApiMetrics {
    /// Creates the families and registers them, the cache's and the process's.
    pub fn register(registry: &mut Registry, cache: &strata_cache::Cache) -> Self {
        let m = ApiMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            connections: Gauge::default(),
            connections_total: Counter::default(),
            in_flight: Gauge::default(),
        };
        cache.register_metrics(registry);
        let api = registry.sub_registry_with_prefix("strata_api");
        api.register("requests", "API requests answered.", m.requests.clone());
        api.register(
            "request_duration_seconds",
            "API request latency, from headers read to response started.",
            m.duration.clone(),
        );
        api.register(
            "connections",
            "Open client connections.",
            m.connections.clone(),
        );
        api.register(
            "connections_accepted",
            "Client connections accepted.",
            m.connections_total.clone(),
        );
        api.register(
            "requests_in_flight",
            "Requests being served.",
            m.in_flight.clone(),
        );
        registry.register_collector(Box::new(ProcessCollector::new()));
        m
    }

    /// Records one answered request.
    pub fn observe(&self, route: &str, method: &str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status,
            })
            .inc();
        self.duration
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
                method: method.to_owned(),
            })
            .observe(took.as_secs_f64());
    }
}

/// `process_*` from /proc (Linux); absent elsewhere.
#[derive(Debug)]
struct ProcessCollector {
    page_size: u64,
    ticks_per_second: f64,
    boot_time: Option<u64>,
}

impl ProcessCollector {
    fn new() -> Self {
        // Linux fixes USER_HZ at 100 for userspace and x86-64/arm64 pages at 4 KiB;
        // reading sysconf would need libc for two constants.
        let boot_time = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse().ok())
        });
        ProcessCollector {
            page_size: 4096,
            ticks_per_second: 100.0,
            boot_time,
        }
    }
}

/// Fields of /proc/self/stat after the command name.
fn stat_fields() -> Option<Vec<String>> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name is in parentheses and may contain spaces.
    let rest = &s[s.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

fn max_fds() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

impl Collector for ProcessCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(f) = stat_fields() else {
            return Ok(());
        };
        // Indexes are field numbers from proc(5) minus 3.
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let cpu = (num(11) + num(12)) as f64 / self.ticks_per_second;
        let m = ConstCounter::new(cpu);
        m.encode(enc.encode_descriptor(
            "process_cpu",
            "Total user and system CPU time spent in seconds.",
            Some(&prometheus_client::registry::Unit::Seconds),
            MetricType::Counter,
        )?)?;
        let gauges: [(&str, &str, f64); 2] = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                (num(21) * self.page_size) as f64,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                num(20) as f64,
            ),
        ];
        for (name, help, v) in gauges {
            ConstGauge::new(v).encode(enc.encode_descriptor(
                name,
                help,
                None,
                MetricType::Gauge,
            )?)?;
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            ConstGauge::new(dir.count() as f64).encode(enc.encode_descriptor(
                "process_open_fds",
                "Number of open file descriptors.",
                None,
                MetricType::Gauge,
            )?)?;
        }
        if let Some(n) = max_fds() {
            ConstGauge::new(n as f64).encode(enc.encode_descriptor(
                "process_max_fds",
                "Maximum number of open file descriptors.",
                None,
                MetricType::Gauge,
            )?)?;
        }
        if let Some(boot) = self.boot_time {
            let start = boot as f64 + num(19) as f64 / self.ticks_per_second;
            ConstGauge::new(start).encode(enc.encode_descriptor(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                None,
                MetricType::Gauge,
            )?)?;
        }
        Ok(())
    }
}

/// Rewrites OpenMetrics text (what prometheus-client writes) as Prometheus text
/// format 0.0.4, for scrapers and tools that do not ask for OpenMetrics (`promtool
/// check metrics`, older Prometheus, most ad-hoc `curl`s): counters' HELP and TYPE
/// name the `_total` series, `# UNIT` and `# EOF` go, `unknown` becomes `untyped`.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 1024);
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let rewritten = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            let tail = if tail == "unknown" { "untyped" } else { tail };
            let name = if counters.contains(name) {
                format!("{name}_total")
            } else {
                name.to_owned()
            };
            Some(format!("{p}{name} {tail}"))
        });
        match rewritten {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_for_their_series() {
        let om = "# HELP a_hits Hits.\n# TYPE a_hits counter\n# UNIT a_hits hits\n\
                  a_hits_total{x=\"1\"} 2\n# HELP b Bytes.\n# TYPE b gauge\nb 3\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP a_hits_total Hits.\n# TYPE a_hits_total counter\n\
             a_hits_total{x=\"1\"} 2\n# HELP b Bytes.\n# TYPE b gauge\nb 3\n"
        );
    }
}
