//! What each operation does: the mix of operations, keys, value sizes, presets.

use rand::Rng;

use crate::dist::KeyDist;

/// Kinds of operation against a cache-like target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    /// Read one key.
    Get,
    /// Write one key.
    Set,
    /// Delete one key.
    Delete,
    /// Read a batch of keys.
    Mget,
}

/// Weights over operation kinds, e.g. `get=80,set=15,delete=5`, or a read ratio
/// (`0.9` = 90% get, 10% set).
///
/// ```
/// use strata_bench::workload::{Mix, OpKind};
/// let m: Mix = "get=3,set=1".parse().unwrap();
/// assert_eq!(m.share(OpKind::Get), 0.75);
/// assert_eq!("0.9".parse::<Mix>().unwrap().share(OpKind::Set), 0.09999999999999998);
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Mix {
    weights: Vec<(OpKind, f64)>,
    total: f64,
}

impl Mix {
    /// Only reads.
    pub fn reads() -> Self {
        Mix::new(vec![(OpKind::Get, 1.0)]).expect("valid")
    }

    /// From weights (at least one positive).
    pub fn new(weights: Vec<(OpKind, f64)>) -> Result<Self, String> {
        let weights: Vec<_> = weights.into_iter().filter(|(_, w)| *w > 0.0).collect();
        let total: f64 = weights.iter().map(|(_, w)| w).sum();
        if !(total > 0.0 && total.is_finite()) {
            return Err("the operation mix needs a positive weight".into());
        }
        Ok(Mix { weights, total })
    }

    /// Fraction of operations of a kind.
    pub fn share(&self, kind: OpKind) -> f64 {
        self.weights
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, w)| w / self.total)
            .sum()
    }

    /// Draws an operation kind.
    pub fn pick<R: Rng + ?Sized>(&self, rng: &mut R) -> OpKind {
        let mut x = rng.random::<f64>() * self.total;
        for (k, w) in &self.weights {
            if x < *w {
                return *k;
            }
            x -= w;
        }
        self.weights.last().map_or(OpKind::Get, |(k, _)| *k)
    }
}

impl std::str::FromStr for Mix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(r) = s.parse::<f64>() {
            if !(0.0..=1.0).contains(&r) {
                return Err("a read ratio is between 0 and 1".into());
            }
            return Mix::new(vec![(OpKind::Get, r), (OpKind::Set, 1.0 - r)]);
        }
        let mut w = Vec::new();
        for part in s.split(',') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: write OP=WEIGHT, e.g. get=80"))?;
            let kind = match k.trim() {
                "get" => OpKind::Get,
                "set" => OpKind::Set,
                "delete" => OpKind::Delete,
                "mget" => OpKind::Mget,
                o => return Err(format!("unknown operation `{o}` (get, set, delete, mget)")),
            };
            let v: f64 = v
                .trim()
                .parse()
                .ok()
                .filter(|v: &f64| *v >= 0.0 && v.is_finite())
                .ok_or_else(|| format!("`{part}`: the weight must be a number ≥ 0"))?;
            w.push((kind, v));
        }
        Mix::new(w)
    }
}

/// Value sizes: `100` (fixed), `100-1000` (uniform range), `100:80,10000:20`
/// (weighted list).
///
/// ```
/// use strata_bench::workload::ValueSize;
/// assert_eq!("64".parse::<ValueSize>().unwrap(), ValueSize::Fixed(64));
/// assert_eq!("10-20".parse::<ValueSize>().unwrap(), ValueSize::Range(10, 20));
/// assert!("20-10".parse::<ValueSize>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum ValueSize {
    /// Always this many bytes.
    Fixed(usize),
    /// Uniform in `lo..=hi`.
    Range(usize, usize),
    /// (size, weight) pairs.
    Weighted(Vec<(usize, f64)>),
}

impl ValueSize {
    /// Draws a size.
    pub fn pick<R: Rng + ?Sized>(&self, rng: &mut R) -> usize {
        match self {
            ValueSize::Fixed(n) => *n,
            ValueSize::Range(lo, hi) => rng.random_range(*lo..=*hi),
            ValueSize::Weighted(w) => {
                let total: f64 = w.iter().map(|(_, x)| x).sum();
                let mut x = rng.random::<f64>() * total;
                for (n, wt) in w {
                    if x < *wt {
                        return *n;
                    }
                    x -= wt;
                }
                w.last().map_or(0, |(n, _)| *n)
            }
        }
    }

    /// The largest size it can draw.
    pub fn max(&self) -> usize {
        match self {
            ValueSize::Fixed(n) => *n,
            ValueSize::Range(_, hi) => *hi,
            ValueSize::Weighted(w) => w.iter().map(|(n, _)| *n).max().unwrap_or(0),
        }
    }
}

impl std::str::FromStr for ValueSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        const MAX: usize = 64 << 20;
        let size = |v: &str| {
            v.trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n <= MAX)
                .ok_or_else(|| format!("`{v}` is not a size in bytes up to 64 MiB"))
        };
        if s.contains(':') {
            let mut w = Vec::new();
            for part in s.split(',') {
                let (n, wt) = part
                    .split_once(':')
                    .ok_or_else(|| format!("`{part}`: write SIZE:WEIGHT"))?;
                let wt: f64 = wt
                    .trim()
                    .parse()
                    .ok()
                    .filter(|v: &f64| *v >= 0.0 && v.is_finite())
                    .ok_or_else(|| format!("`{part}`: the weight must be a number ≥ 0"))?;
                w.push((size(n)?, wt));
            }
            if w.iter().map(|(_, x)| x).sum::<f64>() <= 0.0 {
                return Err("value sizes need a positive weight".into());
            }
            return Ok(ValueSize::Weighted(w));
        }
        if let Some((lo, hi)) = s.split_once('-') {
            let (lo, hi) = (size(lo)?, size(hi)?);
            if lo > hi {
                return Err(format!("`{s}`: the range is empty"));
            }
            return Ok(ValueSize::Range(lo, hi));
        }
        Ok(ValueSize::Fixed(size(s)?))
    }
}

/// A YCSB core workload, as a mix and a key distribution. Inserts and updates are
/// sets; a scan (E) is an `mget` of `batch` consecutive keys; read-modify-write (F)
/// is counted as a get followed by a set (mix weights split accordingly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ycsb {
    /// 50% read, 50% update, zipfian.
    A,
    /// 95% read, 5% update, zipfian.
    B,
    /// 100% read, zipfian.
    C,
    /// 95% read, 5% insert, latest.
    D,
    /// 95% scan, 5% insert, zipfian.
    E,
    /// 50% read, 50% read-modify-write, zipfian.
    F,
}

impl Ycsb {
    /// (mix, key distribution) of the preset.
    pub fn workload(self) -> (Mix, KeyDist) {
        use OpKind::*;
        let (w, d): (Vec<(OpKind, f64)>, KeyDist) = match self {
            Ycsb::A => (vec![(Get, 50.0), (Set, 50.0)], KeyDist::YcsbZipfian),
            Ycsb::B => (vec![(Get, 95.0), (Set, 5.0)], KeyDist::YcsbZipfian),
            Ycsb::C => (vec![(Get, 100.0)], KeyDist::YcsbZipfian),
            Ycsb::D => (vec![(Get, 95.0), (Set, 5.0)], KeyDist::Latest),
            Ycsb::E => (vec![(Mget, 95.0), (Set, 5.0)], KeyDist::YcsbZipfian),
            // A read-modify-write is a read and a write: 50 reads + 50 × (read, write).
            Ycsb::F => (vec![(Get, 100.0), (Set, 50.0)], KeyDist::YcsbZipfian),
        };
        (Mix::new(w).expect("static weights"), d)
    }
}

impl std::str::FromStr for Ycsb {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().trim_start_matches("ycsb-") {
            "a" => Ok(Ycsb::A),
            "b" => Ok(Ycsb::B),
            "c" => Ok(Ycsb::C),
            "d" => Ok(Ycsb::D),
            "e" => Ok(Ycsb::E),
            "f" => Ok(Ycsb::F),
            _ => Err(format!("unknown YCSB workload `{s}` (a-f)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn mix_draws_follow_weights() {
        let m: Mix = "get=80,set=15,delete=5".parse().unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let n = 100_000;
        let gets = (0..n).filter(|_| m.pick(&mut rng) == OpKind::Get).count();
        assert!((gets as f64 / n as f64 - 0.8).abs() < 0.01);
        assert!("get=0".parse::<Mix>().is_err());
        assert!("read=5".parse::<Mix>().is_err());
        assert!("1.5".parse::<Mix>().is_err());
    }

    #[test]
    fn weighted_sizes() {
        let v: ValueSize = "100:1,1000:3".parse().unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let big = (0..10_000).filter(|_| v.pick(&mut rng) == 1000).count();
        assert!((big as f64 / 10_000.0 - 0.75).abs() < 0.02);
        assert_eq!(v.max(), 1000);
        assert!("100:0".parse::<ValueSize>().is_err());
    }

    #[test]
    fn ycsb_presets() {
        let (m, d) = "ycsb-b".parse::<Ycsb>().unwrap().workload();
        assert_eq!(m.share(OpKind::Get), 0.95);
        assert_eq!(d, KeyDist::YcsbZipfian);
        assert_eq!(Ycsb::D.workload().1, KeyDist::Latest);
    }
}
