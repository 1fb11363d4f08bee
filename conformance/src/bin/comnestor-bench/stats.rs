//! A log-linear latency histogram in the manner of HdrHistogram, and the summary it reports.
//!
//! Values below 128 get a bucket each; above, every power of two is split into 64 buckets, so a
//! reported percentile is within 1/64 (1.6 %) of the true value. The whole `u64` range fits in
//! 3,776 counters, and recording is an index computation and an increment.

use serde::Serialize;

/// Values below this are recorded exactly.
const EXACT: u64 = 128;
/// Buckets per power of two above [`EXACT`].
const SUB_BUCKETS: u64 = 64;
const BUCKETS: usize = (EXACT + 57 * SUB_BUCKETS) as usize;

/// Counts of recorded values, in microseconds by convention.
#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    min: u64,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    pub fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
        }
    }

    pub fn record(&mut self, value: u64) {
        self.counts[index(value)] += 1;
        self.total += 1;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.sum += u128::from(value);
    }

    #[cfg(test)]
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The value at quantile `q` (0.0 to 1.0): the highest value of the bucket holding that
    /// rank, never above the largest value recorded. 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return highest_in_bucket(i).clamp(self.min, self.max);
            }
        }
        self.max
    }

    pub fn summary(&self) -> Summary {
        let mean = if self.total == 0 {
            0.0
        } else {
            self.sum as f64 / self.total as f64
        };
        Summary {
            count: self.total,
            min_us: if self.total == 0 { 0 } else { self.min },
            mean_us: mean.round() as u64,
            p50_us: self.quantile(0.50),
            p90_us: self.quantile(0.90),
            p99_us: self.quantile(0.99),
            p999_us: self.quantile(0.999),
            max_us: self.max,
        }
    }
}

/// The bucket `value` falls in.
fn index(value: u64) -> usize {
    if value < EXACT {
        return value as usize;
    }
    // The shift that brings `value` into [64, 128).
    let shift = 63 - u64::from(value.leading_zeros()) - 6;
    (EXACT + (shift - 1) * SUB_BUCKETS + ((value >> shift) - SUB_BUCKETS)) as usize
}

/// The largest value that lands in bucket `i`.
fn highest_in_bucket(i: usize) -> u64 {
    let i = i as u64;
    if i < EXACT {
        return i;
    }
    let shift = (i - EXACT) / SUB_BUCKETS + 1;
    let mantissa = (i - EXACT) % SUB_BUCKETS + SUB_BUCKETS;
    let top = (u128::from(mantissa + 1) << shift) - 1;
    u64::try_from(top).unwrap_or(u64::MAX)
}

/// Percentiles of a histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub count: u64,
    pub min_us: u64,
    pub mean_us: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Summary {
    /// `p50 / p90 / p99 / max` in milliseconds, for the table.
    pub fn display_ms(&self) -> String {
        if self.count == 0 {
            return "no samples".to_owned();
        }
        format!(
            "{} / {} / {} / {} ms (n={})",
            ms(self.p50_us),
            ms(self.p90_us),
            ms(self.p99_us),
            ms(self.max_us),
            self.count
        )
    }
}

/// Microseconds as milliseconds with a precision that suits the size.
pub fn ms(us: u64) -> String {
    let ms = us as f64 / 1000.0;
    if ms < 10.0 {
        format!("{ms:.2}")
    } else if ms < 100.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

/// A bit per sequence number: whether it arrived, and whether it arrived twice.
#[derive(Debug, Default, Clone)]
pub struct SeenSet {
    words: Vec<u64>,
}

impl SeenSet {
    /// Marks `seq`; returns `false` when it was already marked (a duplicate).
    pub fn insert(&mut self, seq: u64) -> bool {
        let word = (seq / 64) as usize;
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        let bit = 1u64 << (seq % 64);
        let fresh = self.words[word] & bit == 0;
        self.words[word] |= bit;
        fresh
    }

    pub fn contains(&self, seq: u64) -> bool {
        self.words
            .get((seq / 64) as usize)
            .is_some_and(|w| w & (1 << (seq % 64)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for value in (0..2_000_000u64).step_by(7).chain([u64::MAX / 2, u64::MAX]) {
            let i = index(value);
            assert!(i >= last, "index fell at {value}");
            assert!(i < BUCKETS);
            last = i;
            let high = highest_in_bucket(i);
            assert!(high >= value, "{value} above its bucket's top {high}");
            assert!(
                (high - value) as f64 <= value as f64 / 64.0 + 1.0,
                "bucket of {value} too wide: {high}"
            );
        }
    }

    #[test]
    fn percentiles_of_a_uniform_range() {
        let mut h = Histogram::new();
        for v in 1..=10_000 {
            h.record(v);
        }
        let s = h.summary();
        assert_eq!(s.count, 10_000);
        assert_eq!(s.min_us, 1);
        assert_eq!(s.max_us, 10_000);
        for (got, want) in [
            (s.p50_us, 5_000.0),
            (s.p90_us, 9_000.0),
            (s.p99_us, 9_900.0),
        ] {
            assert!((got as f64 - want).abs() / want < 0.02, "{got} vs {want}");
        }
        assert_eq!(h.quantile(1.0), 10_000);
        assert_eq!(h.quantile(0.0), 1);
    }

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::new();
        for v in [3, 3, 5, 100] {
            h.record(v);
        }
        assert_eq!(h.quantile(0.5), 3);
        assert_eq!(h.quantile(0.75), 5);
        assert_eq!(h.quantile(0.99), 100);
    }

    #[test]
    fn merge_adds_counts() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        a.record(10);
        b.record(1_000_000);
        a.merge(&b);
        assert_eq!(a.count(), 2);
        assert_eq!(a.summary().max_us, 1_000_000);
        assert_eq!(a.summary().min_us, 10);
        assert_eq!(Histogram::new().summary(), Summary::default());
    }

    #[test]
    fn seen_set_reports_duplicates() {
        let mut seen = SeenSet::default();
        assert!(seen.insert(0));
        assert!(seen.insert(1000));
        assert!(!seen.insert(1000));
        assert!(seen.contains(0) && seen.contains(1000) && !seen.contains(999));
    }
}
