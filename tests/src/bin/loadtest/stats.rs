//! Latency histograms (HDR, microseconds) and how they travel between processes.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// One hour, in microseconds: anything slower is recorded as one hour.
const MAX_US: u64 = 3_600_000_000;

/// A histogram of microseconds, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

/// Records `us`, clamped into the histogram's range.
pub fn record(h: &mut Histogram<u64>, us: u64) {
    h.saturating_record(us.clamp(1, MAX_US));
}

/// A histogram as `[value, count]` pairs, for JSON between worker and coordinator.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Pairs(pub Vec<(u64, u64)>);

impl Pairs {
    pub fn of(h: &Histogram<u64>) -> Self {
        Pairs(h.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect())
    }

    pub fn add_to(&self, h: &mut Histogram<u64>) {
        for (value, count) in &self.0 {
            let _ = h.record_n((*value).clamp(1, MAX_US), *count);
        }
    }
}

/// The percentiles a report shows, in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip_keeps_percentiles() {
        let mut h = histogram();
        for us in 1..=10_000u64 {
            record(&mut h, us * 3);
        }
        let mut back = histogram();
        Pairs::of(&h).add_to(&mut back);
        assert_eq!(back.len(), h.len());
        assert_eq!(back.value_at_quantile(0.99), h.value_at_quantile(0.99));
        assert_eq!(back.max(), h.max());
    }
}
