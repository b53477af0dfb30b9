//! Reading Prometheus text exposition (what `/metrics` serves): samples, sums over
//! labels, and quantiles from histogram buckets.

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name (`strata_api_requests_total`).
    pub name: String,
    /// Label pairs in order.
    pub labels: Vec<(String, String)>,
    /// Value.
    pub value: f64,
}

impl Sample {
    /// A label's value.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses sample lines; comments and malformed lines are skipped.
///
/// ```
/// use strata_bench::promtext::parse;
/// let s = parse("# HELP x y\nx_total{a=\"1\",b=\"q\\\"x\"} 3\ny 4.5\n");
/// assert_eq!(s[0].label("b"), Some("q\"x"));
/// assert_eq!(s[1].value, 4.5);
/// ```
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => return None,
    };
    let mut labels = Vec::new();
    let rest = if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        let end: Option<usize>;
        loop {
            // name
            let start = chars.peek()?.0;
            let mut key_end = start;
            while let Some(&(i, c)) = chars.peek() {
                if c == '=' || c == '}' {
                    key_end = i;
                    break;
                }
                chars.next();
            }
            let (i, c) = chars.next()?;
            if c == '}' {
                end = Some(i);
                break;
            }
            let key = body[start..key_end]
                .trim()
                .trim_start_matches(',')
                .trim()
                .to_owned();
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                let (_, c) = chars.next()?;
                match c {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    '"' => break,
                    other => value.push(other),
                }
            }
            labels.push((key, value));
            match chars.peek()?.1 {
                ',' => {
                    chars.next();
                    if chars.peek()?.1 == '}' {
                        end = Some(chars.next()?.0);
                        break;
                    }
                }
                '}' => {
                    end = Some(chars.next()?.0);
                    break;
                }
                _ => return None,
            }
        }
        &body[end? + 1..]
    } else {
        rest
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Sum of a metric's samples that pass `keep`.
pub fn sum(samples: &[Sample], name: &str, keep: impl Fn(&Sample) -> bool) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && keep(s))
        .map(|s| s.value)
        .sum()
}

/// Cumulative buckets `(le, count)` of a histogram family, summed over its other labels.
pub fn buckets(samples: &[Sample], family: &str) -> Vec<(f64, f64)> {
    let name = format!("{family}_bucket");
    let mut by_le: Vec<(f64, f64)> = Vec::new();
    for s in samples.iter().filter(|s| s.name == name) {
        let Some(le) = s.label("le").and_then(|v| match v {
            "+Inf" => Some(f64::INFINITY),
            v => v.parse().ok(),
        }) else {
            continue;
        };
        match by_le.iter_mut().find(|(l, _)| *l == le) {
            Some(b) => b.1 += s.value,
            None => by_le.push((le, s.value)),
        }
    }
    by_le.sort_by(|a, b| a.0.total_cmp(&b.0));
    by_le
}

/// The q-quantile of cumulative buckets, interpolated within a bucket as
/// Prometheus's `histogram_quantile` does. None without observations.
///
/// ```
/// use strata_bench::promtext::quantile;
/// let b = [(0.1, 50.0), (0.2, 100.0), (f64::INFINITY, 100.0)];
/// assert!((quantile(&b, 0.75).unwrap() - 0.15).abs() < 1e-9);
/// ```
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(prev.0);
            }
            let in_bucket = count - prev.1;
            let frac = if in_bucket > 0.0 {
                (rank - prev.1) / in_bucket
            } else {
                1.0
            };
            return Some(prev.0 + (le - prev.0) * frac);
        }
        prev = (le, count);
    }
    Some(prev.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_with_commas_braces_and_escapes() {
        let s = parse("a{route=\"/v1/cache/{ns}/{*key}\",method=\"GET\",status=\"200\"} 7\n");
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].label("route"), Some("/v1/cache/{ns}/{*key}"));
        assert_eq!(s[0].label("status"), Some("200"));
        assert_eq!(s[0].value, 7.0);
        assert!(parse("garbage {{{ \nb{x=1} 2\n").is_empty());
    }

    #[test]
    fn buckets_sum_over_series() {
        let s = parse(
            "h_bucket{r=\"a\",le=\"0.1\"} 1\nh_bucket{r=\"b\",le=\"0.1\"} 2\n\
             h_bucket{r=\"a\",le=\"+Inf\"} 3\nh_bucket{r=\"b\",le=\"+Inf\"} 4\n",
        );
        assert_eq!(buckets(&s, "h"), vec![(0.1, 3.0), (f64::INFINITY, 7.0)]);
        assert_eq!(quantile(&[], 0.5), None);
    }
}
