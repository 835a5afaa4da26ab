//! Latency samples (whole microseconds) and their percentiles. The runs are
//! short, so every sample is kept and sorted once: exact, and no histogram
//! crate needed.

use std::time::Duration;

#[derive(Clone, Debug, Default)]
pub struct Latencies {
    micros: Vec<u32>,
    sorted: bool,
}

impl Latencies {
    pub fn record(&mut self, latency: Duration) {
        self.micros
            .push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
        self.sorted = false;
    }

    pub fn merge(&mut self, other: Latencies) {
        self.micros.extend(other.micros);
        self.sorted = false;
    }

    pub fn len(&self) -> usize {
        self.micros.len()
    }

    pub fn is_empty(&self) -> bool {
        self.micros.is_empty()
    }

    /// The nearest-rank percentile (`p` in 0–100); `None` without samples.
    pub fn percentile(&mut self, p: f64) -> Option<Duration> {
        if self.micros.is_empty() {
            return None;
        }
        if !self.sorted {
            self.micros.sort_unstable();
            self.sorted = true;
        }
        let rank = ((p / 100.0) * self.micros.len() as f64).ceil() as usize;
        let index = rank.clamp(1, self.micros.len()) - 1;
        Some(Duration::from_micros(u64::from(self.micros[index])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut latencies = Latencies::default();
        for micros in (1..=100).rev() {
            latencies.record(Duration::from_micros(micros));
        }
        assert_eq!(latencies.percentile(50.0), Some(Duration::from_micros(50)));
        assert_eq!(latencies.percentile(99.0), Some(Duration::from_micros(99)));
        assert_eq!(
            latencies.percentile(100.0),
            Some(Duration::from_micros(100))
        );
        assert_eq!(latencies.percentile(0.0), Some(Duration::from_micros(1)));
        assert_eq!(Latencies::default().percentile(50.0), None);
    }
}
