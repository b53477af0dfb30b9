//! The run's report (the `--json` schema), thresholds with grades, and baseline
//! comparison.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::recorder::{Counts, Point};

/// Version of the JSON layout; bumped on any incompatible change.
pub const SCHEMA: u32 = 1;

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th.
    pub p90: f64,
    /// 95th.
    pub p95: f64,
    /// 99th.
    pub p99: f64,
    /// 99.9th.
    pub p999: f64,
    /// Slowest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Latency {
    /// Percentiles of a microsecond histogram.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Latency {
                p50: 0.0,
                p90: 0.0,
                p95: 0.0,
                p99: 0.0,
                p999: 0.0,
                max: 0.0,
                mean: 0.0,
            };
        }
        let q = |x: f64| h.value_at_quantile(x) as f64 / 1000.0;
        Latency {
            p50: q(0.5),
            p90: q(0.9),
            p95: q(0.95),
            p99: q(0.99),
            p999: q(0.999),
            max: h.max() as f64 / 1000.0,
            mean: h.mean() / 1000.0,
        }
    }
}

/// Generator resource use.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Resources {
    /// CPU seconds (user + system) of the generator during the run.
    pub cpu_seconds: f64,
    /// Peak resident memory of the generator, bytes.
    pub max_rss_bytes: u64,
}

/// A complete run, as written by `--json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// Layout version ([`SCHEMA`]).
    pub schema: u32,
    /// Run name (scenario runs), else `load-test`.
    pub name: String,
    /// Target description (no credentials).
    pub target: String,
    /// The settings, as given.
    pub settings: BTreeMap<String, String>,
    /// Measured seconds (after warm-up).
    pub duration_s: f64,
    /// Operations completed after warm-up.
    pub ops: u64,
    /// Operations per second after warm-up.
    pub rps: f64,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
    /// Errors / operations.
    pub error_rate: f64,
    /// Hits / (hits + misses), when the target reports them.
    pub hit_rate: Option<f64>,
    /// Latency from the intended start (coordinated omission corrected). Equal to
    /// `latency_sent` in a closed loop.
    pub latency: Latency,
    /// Latency from the actual send.
    pub latency_sent: Latency,
    /// Open loop: starts more than 1 ms late.
    pub late_starts: u64,
    /// Open loop: starts never sent.
    pub dropped_starts: u64,
    /// One point per second, warm-up included and flagged.
    pub timeline: Vec<Point>,
    /// The whole-run histograms (µs), HdrHistogram V2 + DEFLATE, base64: any
    /// percentile can be recomputed later.
    pub histograms: Histograms,
    /// Generator resource use.
    pub resources: Resources,
    /// Counter changes on the server over the run, when the target is strata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub server: BTreeMap<String, f64>,
}

/// Encoded histograms.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Histograms {
    /// Latency from the intended start.
    pub corrected: String,
    /// Latency from send.
    pub sent: String,
}

/// Encodes a histogram for the report.
pub fn encode(h: &Histogram<u64>) -> String {
    let mut buf = Vec::new();
    let _ = V2DeflateSerializer::new().serialize(h, &mut buf);
    base64::engine::general_purpose::STANDARD.encode(buf)
}

/// Decodes a histogram from a report.
pub fn decode(s: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("histogram: {e}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("histogram: {e:?}"))
}

impl Report {
    /// Builds the report of a finished run.
    pub fn new(
        name: &str,
        target: String,
        settings: BTreeMap<String, String>,
        totals: &Counts,
        timeline: Vec<Point>,
        measured: Duration,
        resources: Resources,
    ) -> Self {
        let secs = measured.as_secs_f64().max(1e-9);
        let errors: BTreeMap<String, u64> = totals
            .errors
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect();
        let seen = totals.hits + totals.misses;
        Report {
            schema: SCHEMA,
            name: name.to_owned(),
            target,
            settings,
            duration_s: secs,
            ops: totals.ops,
            rps: totals.ops as f64 / secs,
            error_rate: if totals.ops == 0 {
                0.0
            } else {
                totals.error_count() as f64 / totals.ops as f64
            },
            errors,
            hit_rate: (seen > 0).then(|| totals.hits as f64 / seen as f64),
            latency: Latency::of(&totals.corrected),
            latency_sent: Latency::of(&totals.actual),
            late_starts: totals.late,
            dropped_starts: totals.dropped,
            timeline,
            histograms: Histograms {
                corrected: encode(&totals.corrected),
                sent: encode(&totals.actual),
            },
            resources,
            server: BTreeMap::new(),
        }
    }

    /// The value of a figure by name: `p50`…`p999`, `max`, `mean` (ms, corrected),
    /// `sent_p99` and friends (ms, from send), `rps`, `error_rate`, `hit_rate`
    /// (fractions), `dropped`.
    pub fn figure(&self, name: &str) -> Option<f64> {
        let lat = |l: &Latency, p: &str| match p {
            "p50" => Some(l.p50),
            "p90" => Some(l.p90),
            "p95" => Some(l.p95),
            "p99" => Some(l.p99),
            "p99.9" | "p999" => Some(l.p999),
            "max" => Some(l.max),
            "mean" => Some(l.mean),
            _ => None,
        };
        match name {
            "rps" => Some(self.rps),
            "error_rate" => Some(self.error_rate),
            "hit_rate" => self.hit_rate,
            "dropped" => Some(self.dropped_starts as f64),
            n => match n.strip_prefix("sent_") {
                Some(p) => lat(&self.latency_sent, p),
                None => lat(&self.latency, n),
            },
        }
    }
}

/// Comparison of a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cmp {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// A gate like `p99<10ms`, `error_rate<0.1%`, `rps>5000`, `hit_rate>=90%`.
///
/// ```
/// use strata_bench::report::Threshold;
/// let t: Threshold = "p99<10ms".parse().unwrap();
/// assert_eq!(t.limit, 10.0);
/// let t: Threshold = "error_rate<0.1%".parse().unwrap();
/// assert_eq!(t.limit, 0.001);
/// assert!("p99<<3".parse::<Threshold>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    /// Figure name (see [`Report::figure`]).
    pub figure: String,
    /// Comparison.
    pub cmp: Cmp,
    /// Limit, in the figure's unit (ms for latencies, fraction for rates).
    pub limit: f64,
    /// As written.
    pub text: String,
}

impl std::str::FromStr for Threshold {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.replace(' ', "");
        let (pos, op) = ["<=", ">=", "<", ">"]
            .iter()
            .find_map(|op| t.find(op).map(|p| (p, *op)))
            .ok_or_else(|| format!("threshold `{s}`: write FIGURE<LIMIT, e.g. p99<10ms"))?;
        let figure = t[..pos].to_owned();
        let raw = &t[pos + op.len()..];
        let cmp = match op {
            "<" => Cmp::Lt,
            "<=" => Cmp::Le,
            ">" => Cmp::Gt,
            _ => Cmp::Ge,
        };
        let is_latency = figure.starts_with('p')
            || figure.starts_with("sent_")
            || figure == "max"
            || figure == "mean";
        let (num, scale) = if let Some(v) = raw.strip_suffix('%') {
            (v, 0.01)
        } else if let Some(v) = raw.strip_suffix("ms") {
            (v, 1.0)
        } else if let Some(v) = raw.strip_suffix("us").or_else(|| raw.strip_suffix("µs")) {
            (v, 0.001)
        } else if let Some(v) = raw.strip_suffix('s') {
            (v, if is_latency { 1000.0 } else { 1.0 })
        } else {
            (raw, 1.0)
        };
        let limit = num
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("threshold `{s}`: `{raw}` is not a number with a unit"))?
            * scale;
        let known = [
            "rps",
            "error_rate",
            "hit_rate",
            "dropped",
            "p50",
            "p90",
            "p95",
            "p99",
            "p99.9",
            "p999",
            "max",
            "mean",
        ];
        let base = figure.strip_prefix("sent_").unwrap_or(&figure);
        if !known.contains(&base) || (figure.starts_with("sent_") && !is_latency) {
            return Err(format!(
                "threshold `{s}`: unknown figure `{figure}` (p50, p90, p95, p99, p99.9, max, \
                 mean, sent_p99, rps, error_rate, hit_rate, dropped)"
            ));
        }
        Ok(Threshold {
            figure,
            cmp,
            limit,
            text: s.to_owned(),
        })
    }
}

/// How well a figure did against its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Grade {
    /// Within half the limit (or at least twice it, for lower bounds).
    Excellent,
    /// Within 80% of the limit (1.25×).
    Good,
    /// Passes, close to the limit.
    Poor,
    /// Fails.
    Fail,
}

impl std::fmt::Display for Grade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Grade::Excellent => "EXCELLENT",
            Grade::Good => "GOOD",
            Grade::Poor => "POOR",
            Grade::Fail => "FAIL",
        })
    }
}

/// A threshold's verdict.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Verdict {
    /// The threshold.
    pub threshold: String,
    /// The measured value (None when the figure does not exist for this run).
    pub value: Option<f64>,
    /// Grade.
    pub grade: Grade,
    /// For humans: how far from the limit.
    pub detail: String,
}

impl Threshold {
    /// Grades a report.
    pub fn check(&self, r: &Report) -> Verdict {
        let Some(v) = r.figure(&self.figure) else {
            return Verdict {
                threshold: self.text.clone(),
                value: None,
                grade: Grade::Fail,
                detail: format!("{} is not measured for this target", self.figure),
            };
        };
        let passes = match self.cmp {
            Cmp::Lt => v < self.limit,
            Cmp::Le => v <= self.limit,
            Cmp::Gt => v > self.limit,
            Cmp::Ge => v >= self.limit,
        };
        let upper = matches!(self.cmp, Cmp::Lt | Cmp::Le);
        let grade = if !passes {
            Grade::Fail
        } else if upper {
            if v <= self.limit * 0.5 {
                Grade::Excellent
            } else if v <= self.limit * 0.8 {
                Grade::Good
            } else {
                Grade::Poor
            }
        } else if v >= self.limit * 2.0 {
            Grade::Excellent
        } else if v >= self.limit * 1.25 {
            Grade::Good
        } else {
            Grade::Poor
        };
        let detail = if self.limit == 0.0 {
            format!("{v:.4} against 0")
        } else {
            let pct = (v / self.limit - 1.0) * 100.0;
            format!("{:.4} is {:+.1}% of the limit {}", v, pct, self.limit)
        };
        Verdict {
            threshold: self.text.clone(),
            value: Some(v),
            grade,
            detail,
        }
    }
}

/// One figure compared with a baseline.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Change {
    /// Figure.
    pub figure: String,
    /// Baseline value.
    pub baseline: f64,
    /// This run's value.
    pub current: f64,
    /// Relative change (+0.12 = 12% higher).
    pub change: f64,
    /// Whether it got worse by more than allowed.
    pub regressed: bool,
}

/// Compares a run with a baseline: throughput may not drop, and p50, p99 and the
/// error rate may not rise, by more than `max` (a fraction).
pub fn compare(base: &Report, cur: &Report, max: f64) -> Vec<Change> {
    let mut out = Vec::new();
    for (figure, higher_is_worse) in [
        ("rps", false),
        ("p50", true),
        ("p99", true),
        ("error_rate", true),
    ] {
        let (Some(b), Some(c)) = (base.figure(figure), cur.figure(figure)) else {
            continue;
        };
        let change = if b == 0.0 {
            if c == 0.0 {
                0.0
            } else {
                f64::INFINITY
            }
        } else {
            c / b - 1.0
        };
        let worse = if higher_is_worse { change } else { -change };
        // Error rates near zero: an absolute slack of 0.1 point avoids flagging 0 → 0.0001.
        let regressed = worse > max && !(figure == "error_rate" && c - b <= 0.001);
        out.push(Change {
            figure: figure.to_owned(),
            baseline: b,
            current: c,
            change,
            regressed,
        });
    }
    out
}

/// Resource use of this process so far: (CPU seconds, peak RSS bytes), from /proc.
pub fn own_resources() -> Resources {
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s[s.rfind(')')? + 2..].to_owned();
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(0.0);
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kb| kb * 1024);
    Resources {
        cpu_seconds: cpu,
        max_rss_bytes: rss,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::Outcome;

    fn report(latencies_ms: &[u64], errors: u64) -> Report {
        let mut c = Counts::default();
        for &ms in latencies_ms {
            let d = Duration::from_millis(ms);
            c.record(d, d, false, Outcome::OK);
        }
        for _ in 0..errors {
            let d = Duration::from_millis(1);
            c.record(d, d, false, Outcome::error("http_5xx"));
        }
        Report::new(
            "t",
            "x".into(),
            BTreeMap::new(),
            &c,
            vec![],
            Duration::from_secs(1),
            Resources::default(),
        )
    }

    #[test]
    fn grades_follow_the_margin() {
        let r = report(&[1; 100], 0);
        let g = |t: &str| t.parse::<Threshold>().unwrap().check(&r).grade;
        assert_eq!(g("p99<10ms"), Grade::Excellent);
        assert_eq!(g("p99<1.5ms"), Grade::Good);
        assert_eq!(g("p99<1.1ms"), Grade::Poor);
        assert_eq!(g("p99<0.5ms"), Grade::Fail);
        assert_eq!(g("rps>40"), Grade::Excellent);
        assert_eq!(g("rps>1000"), Grade::Fail);
        assert_eq!(g("error_rate<0.1%"), Grade::Excellent);
        assert_eq!(
            g("hit_rate>50%"),
            Grade::Fail,
            "no hits reported is a failure"
        );
    }

    #[test]
    fn histograms_round_trip_through_the_report() {
        let r = report(&[1, 2, 3, 50], 0);
        let h = decode(&r.histograms.corrected).unwrap();
        assert_eq!(h.len(), 4);
        assert!(h.max() >= 49_900);
        let json = serde_json::to_string(&r).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn regressions_are_flagged() {
        let base = report(&[1; 100], 0);
        let slow = report(&[2; 100], 0);
        let changes = compare(&base, &slow, 0.10);
        let p99 = changes.iter().find(|c| c.figure == "p99").unwrap();
        assert!(p99.regressed && p99.change > 0.9);
        assert!(compare(&base, &base, 0.10).iter().all(|c| !c.regressed));
    }
}
