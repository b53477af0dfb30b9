//! Load shapes over time: `--stages 30s:50,5m:50,30s:0` ramps linearly from the
//! previous level to each stage's target over the stage's duration, as k6 does.

use std::time::Duration;

/// One stage: reach `target` (users or requests/s) at the end of `duration`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    /// How long the stage lasts.
    pub duration: Duration,
    /// Level at its end.
    pub target: f64,
}

/// Stages in order, starting from level `start`.
///
/// ```
/// use std::time::Duration;
/// use strata_bench::stages::Stages;
/// let s: Stages = "10s:100,10s:100,10s:0".parse().unwrap();
/// assert_eq!(s.total(), Duration::from_secs(30));
/// assert_eq!(s.level_at(Duration::from_secs(5)), 50.0);   // ramping up
/// assert_eq!(s.level_at(Duration::from_secs(15)), 100.0); // steady
/// assert_eq!(s.level_at(Duration::from_secs(25)), 50.0);  // ramping down
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Stages {
    /// Level before the first stage.
    pub start: f64,
    /// The stages.
    pub stages: Vec<Stage>,
}

impl Stages {
    /// A constant level for `duration`.
    pub fn constant(level: f64, duration: Duration) -> Self {
        Stages {
            start: level,
            stages: vec![Stage {
                duration,
                target: level,
            }],
        }
    }

    /// Total duration.
    pub fn total(&self) -> Duration {
        self.stages.iter().map(|s| s.duration).sum()
    }

    /// The level at `t` from the start (the last target after the end).
    pub fn level_at(&self, t: Duration) -> f64 {
        let mut from = self.start;
        let mut elapsed = Duration::ZERO;
        for s in &self.stages {
            if t < elapsed + s.duration {
                let frac = (t - elapsed).as_secs_f64() / s.duration.as_secs_f64();
                return from + (s.target - from) * frac;
            }
            elapsed += s.duration;
            from = s.target;
        }
        from
    }

    /// The highest level reached.
    pub fn peak(&self) -> f64 {
        self.stages
            .iter()
            .map(|s| s.target)
            .fold(self.start, f64::max)
    }
}

impl std::str::FromStr for Stages {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut stages = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (d, t) = part
                .split_once(':')
                .ok_or_else(|| format!("stage `{part}`: write DURATION:TARGET, e.g. 30s:50"))?;
            let duration = humantime::parse_duration(d)
                .map_err(|e| format!("stage `{part}`: duration: {e}"))?;
            let target: f64 = t
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| format!("stage `{part}`: target must be a number ≥ 0"))?;
            if duration.is_zero() {
                return Err(format!("stage `{part}`: duration must be longer than 0"));
            }
            stages.push(Stage { duration, target });
        }
        if stages.is_empty() {
            return Err("no stages given".into());
        }
        Ok(Stages { start: 0.0, stages })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_stages_are_refused() {
        for bad in ["", "30s", "30s:x", "soon:5", "0s:5", "10s:-1"] {
            assert!(bad.parse::<Stages>().is_err(), "{bad}");
        }
    }

    #[test]
    fn levels_after_the_end_hold_the_last_target() {
        let s: Stages = "1s:10".parse().unwrap();
        assert_eq!(s.level_at(Duration::from_secs(5)), 10.0);
        assert_eq!(s.peak(), 10.0);
    }
}
