//! Key distributions: which key each operation touches.
//!
//! All generators map a source of uniform doubles in [0, 1) to key indices in
//! `0..n`. Taking the uniform source as a parameter lets tests feed the exact draws
//! YCSB's reference implementation would see.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rand::Rng;
use rand_distr::Distribution;

/// A key distribution, parsed from `uniform`, `zipfian[:θ]`, `ycsb-zipfian`,
/// `hotspot[:hot_set:hot_ops]`, `sequential` or `latest`.
///
/// ```
/// use strata_bench::dist::KeyDist;
/// assert_eq!("zipfian".parse::<KeyDist>().unwrap(), KeyDist::Zipfian { theta: 0.99 });
/// assert_eq!("hotspot:0.2:0.8".parse::<KeyDist>().unwrap(),
///            KeyDist::Hotspot { hot_set: 0.2, hot_ops: 0.8 });
/// assert!("gaussian".parse::<KeyDist>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeyDist {
    /// Every key equally likely.
    Uniform,
    /// True Zipf over key ranks: P(k) ∝ 1/k^θ, key 0 the most popular
    /// (rejection-inversion sampling, exact for any θ > 0).
    Zipfian {
        /// Skew; 0.99 is YCSB's default.
        theta: f64,
    },
    /// YCSB's scrambled zipfian (θ = 0.99 over 10^10 items, FNV-hashed onto the key
    /// space), ported exactly: the popular keys are scattered, not clustered at 0.
    YcsbZipfian,
    /// A fraction `hot_set` of the keys receives a fraction `hot_ops` of operations.
    Hotspot {
        /// Share of keys that are hot (0-1).
        hot_set: f64,
        /// Share of operations on hot keys (0-1).
        hot_ops: f64,
    },
    /// 0, 1, 2, … wrapping around.
    Sequential,
    /// Recently written keys are the most popular (YCSB workload D): zipfian over
    /// how long ago a key was written.
    Latest,
}

impl std::str::FromStr for KeyDist {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split(':');
        let name = parts.next().unwrap_or_default();
        let nums: Vec<f64> = parts
            .map(|p| {
                p.parse::<f64>()
                    .map_err(|_| format!("`{p}` is not a number in `{s}`"))
            })
            .collect::<Result<_, _>>()?;
        let frac = |v: f64, what: &str| {
            if (0.0..=1.0).contains(&v) {
                Ok(v)
            } else {
                Err(format!("{what} must be between 0 and 1 in `{s}`"))
            }
        };
        let d = match (name, nums.as_slice()) {
            ("uniform", []) => KeyDist::Uniform,
            ("zipfian" | "zipf", []) => KeyDist::Zipfian { theta: 0.99 },
            ("zipfian" | "zipf", [t]) if *t > 0.0 && t.is_finite() => {
                KeyDist::Zipfian { theta: *t }
            }
            ("ycsb-zipfian", []) => KeyDist::YcsbZipfian,
            ("hotspot", []) => KeyDist::Hotspot {
                hot_set: 0.2,
                hot_ops: 0.8,
            },
            ("hotspot", [a, b]) => KeyDist::Hotspot {
                hot_set: frac(*a, "the hot set")?,
                hot_ops: frac(*b, "the hot operation share")?,
            },
            ("sequential", []) => KeyDist::Sequential,
            ("latest", []) => KeyDist::Latest,
            _ => {
                return Err(format!(
                    "unknown key distribution `{s}`: use uniform, zipfian[:θ], ycsb-zipfian, \
                     hotspot[:hot_set:hot_ops], sequential or latest"
                ))
            }
        };
        Ok(d)
    }
}

/// A ready-to-sample generator over `0..n`, shared by all workers.
#[derive(Debug, Clone)]
pub struct KeyGen {
    n: u64,
    kind: Gen,
    /// Sequential position, or for `latest` the newest key written.
    counter: Arc<AtomicU64>,
}

#[derive(Debug, Clone)]
enum Gen {
    Uniform,
    Zipf(rand_distr::Zipf<f64>),
    Ycsb(YcsbScrambled),
    Hotspot { hot: u64, hot_ops: f64 },
    Sequential,
    Latest(YcsbZipfian),
}

impl KeyGen {
    /// A generator over `0..n` (n ≥ 1).
    pub fn new(dist: KeyDist, n: u64) -> Result<Self, String> {
        if n == 0 || n > i64::MAX as u64 {
            return Err("the key space must hold between 1 and 2^63-1 keys".into());
        }
        let max = (n - 1) as i64;
        let kind = match dist {
            KeyDist::Uniform => Gen::Uniform,
            KeyDist::Zipfian { theta } => Gen::Zipf(
                rand_distr::Zipf::new(n as f64, theta).map_err(|e| format!("zipfian: {e}"))?,
            ),
            KeyDist::YcsbZipfian => Gen::Ycsb(YcsbScrambled::new(0, max)),
            KeyDist::Hotspot { hot_set, hot_ops } => Gen::Hotspot {
                hot: ((n as f64 * hot_set) as u64).clamp(1, n),
                hot_ops,
            },
            KeyDist::Sequential => Gen::Sequential,
            KeyDist::Latest => Gen::Latest(YcsbZipfian::new(0, max, 0.99, None)),
        };
        Ok(KeyGen {
            n,
            kind,
            // `latest` starts as if every key had been written in order.
            counter: Arc::new(AtomicU64::new(if matches!(dist, KeyDist::Latest) {
                n - 1
            } else {
                0
            })),
        })
    }

    /// Size of the key space.
    pub fn len(&self) -> u64 {
        self.n
    }

    /// Whether the key space is empty (never: `new` refuses 0).
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The next key index to read or update.
    pub fn next<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        let k = match &self.kind {
            Gen::Uniform => rng.random_range(0..self.n),
            Gen::Zipf(z) => z.sample(rng) as u64 - 1,
            Gen::Ycsb(g) => g.next(rng.random::<f64>()) as u64,
            Gen::Hotspot { hot, hot_ops } => {
                if rng.random::<f64>() < *hot_ops || *hot == self.n {
                    rng.random_range(0..*hot)
                } else {
                    hot + rng.random_range(0..self.n - hot)
                }
            }
            Gen::Sequential => self.counter.fetch_add(1, Ordering::Relaxed) % self.n,
            Gen::Latest(z) => {
                let newest = self.counter.load(Ordering::Relaxed);
                let back = z.next(rng.random::<f64>()).max(0) as u64;
                newest.wrapping_sub(back) % self.n
            }
        };
        k.min(self.n - 1)
    }

    /// Records that key `k` was just written (for `latest`).
    pub fn wrote(&self, k: u64) {
        if let Gen::Latest(_) = self.kind {
            self.counter.store(k % self.n, Ordering::Relaxed);
        }
    }
}

/// YCSB's `ZipfianGenerator` (Gray et al., SIGMOD 1994), with YCSB's constants and
/// integer conversions, so its output matches YCSB draw for draw.
#[derive(Debug, Clone)]
pub struct YcsbZipfian {
    items: i64,
    base: i64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
}

impl YcsbZipfian {
    /// Items `min..=max` with skew `theta`; `zetan` when precomputed (as YCSB does
    /// for its 10^10-item scrambled generator), else computed (O(items)).
    pub fn new(min: i64, max: i64, theta: f64, zetan: Option<f64>) -> Self {
        let items = max - min + 1;
        let zeta2theta = zeta(2, theta);
        let zetan = zetan.unwrap_or_else(|| zeta(items, theta));
        YcsbZipfian {
            items,
            base: min,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zetan,
            eta: (1.0 - (2.0 / items as f64).powf(1.0 - theta)) / (1.0 - zeta2theta / zetan),
        }
    }

    /// The value YCSB's `nextLong(items)` returns for the uniform draw `u`.
    pub fn next(&self, u: f64) -> i64 {
        let uz = u * self.zetan;
        if uz < 1.0 {
            return self.base;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return self.base + 1;
        }
        // Java's (long) cast of a double truncates toward zero, as `as i64` does.
        self.base + (self.items as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as i64
    }
}

fn zeta(n: i64, theta: f64) -> f64 {
    (0..n).map(|i| 1.0 / ((i + 1) as f64).powf(theta)).sum()
}

/// YCSB's `ScrambledZipfianGenerator`.
#[derive(Debug, Clone)]
pub struct YcsbScrambled {
    min: i64,
    itemcount: i64,
    gen: YcsbZipfian,
}

impl YcsbScrambled {
    /// YCSB's ζ(10^10, 0.99).
    pub const ZETAN: f64 = 26.469_028_201_783_02;
    /// YCSB's item count of the underlying generator.
    pub const ITEM_COUNT: i64 = 10_000_000_000;

    /// Items `min..=max`.
    pub fn new(min: i64, max: i64) -> Self {
        YcsbScrambled {
            min,
            itemcount: max - min + 1,
            gen: YcsbZipfian::new(0, Self::ITEM_COUNT, 0.99, Some(Self::ZETAN)),
        }
    }

    /// The value YCSB's `nextValue()` returns for the uniform draw `u`.
    pub fn next(&self, u: f64) -> i64 {
        let r = self.gen.next(u);
        // Java's % keeps the sign of the dividend, as Rust's does.
        self.min + fnvhash64(r) % self.itemcount
    }

    /// The unscrambled generator.
    pub fn inner(&self) -> &YcsbZipfian {
        &self.gen
    }
}

/// YCSB's `Utils.fnvhash64`: FNV-1a over the value's 8 low-order bytes, then
/// `Math.abs` (which leaves `i64::MIN` as is).
pub fn fnvhash64(mut val: i64) -> i64 {
    let mut h: i64 = 0xCBF2_9CE4_8422_2325_u64 as i64;
    for _ in 0..8 {
        let octet = val & 0xff;
        val >>= 8;
        h ^= octet;
        h = h.wrapping_mul(1_099_511_628_211);
    }
    h.wrapping_abs()
}
