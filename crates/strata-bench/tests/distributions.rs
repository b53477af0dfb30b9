//! Key distributions: YCSB's generators draw for draw, and the shapes of all of them
//! within statistical tolerances.

use rand::rngs::StdRng;
use rand::SeedableRng;
use strata_bench::dist::{fnvhash64, KeyDist, KeyGen, YcsbScrambled, YcsbZipfian};

/// (u, ZipfianGenerator(0, 999), ZipfianGenerator(0, 10^10, ζ=ZETAN),
/// ScrambledZipfianGenerator(0, 999)), from tests/ycsb_reference.py, an independent
/// implementation of YCSB's published algorithm.
const YCSB: &[(f64, i64, i64, i64)] = &[
    (0.0001, 0, 0, 211),
    (0.01, 0, 0, 211),
    (0.02, 0, 0, 211),
    (0.05, 0, 1, 620),
    (0.1, 0, 6, 587),
    (0.25, 3, 296, 614),
    (0.3333, 6, 2373, 245),
    (0.5, 22, 134552, 260),
    (0.75, 151, 42924421, 439),
    (0.9, 471, 1170869537, 670),
    (0.99, 927, 8086205587, 521),
    (0.999999, 999, 9999787803, 89),
];

const FNV: &[(i64, i64)] = &[
    (0, 6284781860667377211),
    (1, 8517097267634966620),
    (2, 1820151046732198393),
    (255, 8064062821143829734),
    (256, 2056600594528442646),
    (123456789, 2350796791908741607),
    (9999999999, 3605131173811637474),
];

#[test]
fn ycsb_generators_match_the_reference_draw_for_draw() {
    let z = YcsbZipfian::new(0, 999, 0.99, None);
    let s = YcsbScrambled::new(0, 999);
    for &(u, zipf, inner, scrambled) in YCSB {
        assert_eq!(z.next(u), zipf, "ZipfianGenerator(0,999) at u={u}");
        assert_eq!(s.inner().next(u), inner, "10^10-item generator at u={u}");
        assert_eq!(
            s.next(u),
            scrambled,
            "ScrambledZipfianGenerator(0,999) at u={u}"
        );
    }
    for &(v, h) in FNV {
        assert_eq!(fnvhash64(v), h, "fnvhash64({v})");
    }
}

fn histogram(dist: KeyDist, n: u64, draws: usize) -> Vec<u64> {
    let g = KeyGen::new(dist, n).unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let mut counts = vec![0u64; n as usize];
    for _ in 0..draws {
        counts[g.next(&mut rng) as usize] += 1;
    }
    counts
}

/// Share of draws that went to the `k` most drawn keys.
fn top_share(counts: &[u64], k: usize) -> f64 {
    let mut c = counts.to_vec();
    c.sort_unstable_by(|a, b| b.cmp(a));
    c[..k].iter().sum::<u64>() as f64 / counts.iter().sum::<u64>() as f64
}

#[test]
fn uniform_passes_chi_square() {
    let n = 100;
    let draws = 200_000;
    let counts = histogram(KeyDist::Uniform, n, draws);
    let expected = draws as f64 / n as f64;
    let chi2: f64 = counts
        .iter()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum();
    // 99 degrees of freedom: the 0.999 quantile is 148.2.
    assert!(chi2 < 148.2, "chi-square {chi2}");
}

#[test]
fn zipfian_top_keys_take_their_theoretical_share() {
    let n = 10_000u64;
    let theta = 0.99;
    let counts = histogram(KeyDist::Zipfian { theta }, n, 500_000);
    let h = |k: u64| (1..=k).map(|i| 1.0 / (i as f64).powf(theta)).sum::<f64>();
    for k in [1usize, 10, 100] {
        let want = h(k as u64) / h(n);
        let got = top_share(&counts, k);
        assert!((got - want).abs() < 0.01, "top {k}: {got} vs {want}");
    }
    // The most popular key is key 0: true Zipf ranks keys by index.
    assert_eq!(
        counts
            .iter()
            .enumerate()
            .max_by_key(|(_, c)| **c)
            .unwrap()
            .0,
        0
    );
}

#[test]
fn ycsb_zipfian_is_skewed_but_scattered() {
    let n = 10_000u64;
    let counts = histogram(KeyDist::YcsbZipfian, n, 500_000);
    // Skewed, though less than the zipfian it hashes down from 10^10 items: the top
    // 1% of keys takes well over 1% of draws.
    assert!(
        top_share(&counts, 100) > 0.15,
        "{}",
        top_share(&counts, 100)
    );
    // Scattered: the hottest key is where FNV puts item 0, with at least item 0's
    // probability, 1/ζ(10^10, 0.99).
    let (hottest, &c) = counts.iter().enumerate().max_by_key(|(_, c)| **c).unwrap();
    assert_eq!(hottest as i64, fnvhash64(0) % n as i64);
    assert!(
        c as f64 / 500_000.0 > 1.0 / YcsbScrambled::ZETAN * 0.95,
        "{c}"
    );
}

#[test]
fn hotspot_sends_the_hot_share_to_the_hot_set() {
    let n = 1000;
    let counts = histogram(
        KeyDist::Hotspot {
            hot_set: 0.1,
            hot_ops: 0.9,
        },
        n,
        200_000,
    );
    let hot: u64 = counts[..100].iter().sum();
    let share = hot as f64 / 200_000.0;
    assert!((share - 0.9).abs() < 0.01, "{share}");
}

#[test]
fn sequential_walks_and_wraps() {
    let g = KeyGen::new(KeyDist::Sequential, 3).unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let got: Vec<u64> = (0..7).map(|_| g.next(&mut rng)).collect();
    assert_eq!(got, vec![0, 1, 2, 0, 1, 2, 0]);
}

#[test]
fn latest_favours_recent_writes() {
    let n = 10_000;
    let g = KeyGen::new(KeyDist::Latest, n).unwrap();
    g.wrote(5000);
    let mut rng = StdRng::seed_from_u64(3);
    let near = (0..100_000)
        .map(|_| g.next(&mut rng))
        .filter(|k| (4900..=5000).contains(k))
        .count();
    assert!(
        near > 50_000,
        "{near} of 100000 within 100 keys of the newest"
    );
}

#[test]
fn every_generator_stays_in_range() {
    for d in [
        "uniform",
        "zipfian",
        "zipfian:1.5",
        "ycsb-zipfian",
        "hotspot",
        "sequential",
        "latest",
    ] {
        let g = KeyGen::new(d.parse().unwrap(), 7).unwrap();
        let mut rng = StdRng::seed_from_u64(9);
        for _ in 0..10_000 {
            assert!(g.next(&mut rng) < 7, "{d}");
        }
    }
    assert!(KeyGen::new(KeyDist::Uniform, 0).is_err());
}
