//! The run's own scheduling lag: a ticker on the run's runtime, due every
//! [`LAG_PERIOD_MS`] ms, records how late it woke. A loaded machine (a build beside the run,
//! a shared CI runner) shows here first, and the suite judges its timing criteria against
//! what it saw in each scenario's window ([`crate::report::LAG_RULE`]).

use std::sync::{Arc, Mutex};

use tokio::time::{Duration, Instant};

use crate::report::{LAG_MIN_WINDOW_MS, LAG_PERIOD_MS, Lag};

/// The ticker and what it saw; stopped when dropped.
pub struct LagMonitor {
    samples: Arc<Mutex<Vec<(Instant, f32)>>>,
    ticker: tokio::task::JoinHandle<()>,
}

impl LagMonitor {
    /// Starts the ticker on the current runtime, due every [`LAG_PERIOD_MS`] ms.
    pub fn start() -> Self {
        Self::every(Duration::from_millis(LAG_PERIOD_MS))
    }

    /// Starts a ticker due every `period` (a test judging one short bound ticks faster).
    pub fn every(period: Duration) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&samples);
        let ticker = tokio::spawn(async move {
            let mut due = Instant::now() + period;
            loop {
                tokio::time::sleep_until(due).await;
                let now = Instant::now();
                let late = now.saturating_duration_since(due).as_secs_f32() * 1000.0;
                seen.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((now, late));
                // From now, not from `due`: a late tick is one sample, not a burst.
                due = now + period;
            }
        });
        LagMonitor { samples, ticker }
    }

    /// The lag seen from `from` to `to`.
    /// A window shorter than [`LAG_MIN_WINDOW_MS`] is widened to that span before `to`.
    pub fn window(&self, from: Instant, to: Instant) -> Lag {
        let span = Duration::from_millis(LAG_MIN_WINDOW_MS);
        let from = to.checked_sub(span).map_or(from, |early| from.min(early));
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let mut late: Vec<f64> = samples
            .iter()
            .filter(|(t, _)| *t >= from && *t <= to)
            .map(|(_, l)| f64::from(*l))
            .collect();
        drop(samples);
        summarize(&mut late)
    }

    /// The largest lag seen since the ticker started: what a wall-clock bound of a test is
    /// widened by, so that a loaded machine does not turn its own slowness into a failure.
    pub fn worst(&self) -> Duration {
        Duration::from_secs_f64(self.whole().max_ms / 1000.0)
    }

    /// The lag seen since the ticker started.
    pub fn whole(&self) -> Lag {
        let mut late: Vec<f64> = self
            .samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(_, l)| f64::from(*l))
            .collect();
        summarize(&mut late)
    }
}

impl Drop for LagMonitor {
    fn drop(&mut self) {
        self.ticker.abort();
    }
}

fn summarize(late: &mut [f64]) -> Lag {
    late.sort_by(f64::total_cmp);
    let at = |p: f64| crate::measure::percentile(late, p).unwrap_or(0.0);
    Lag {
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: late.last().copied().unwrap_or(0.0),
        samples: late.len() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_blocked_runtime_shows_as_lag_in_its_window() {
        let monitor = LagMonitor::start();
        let from = Instant::now();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let quiet = monitor.window(from, Instant::now());
        assert!(quiet.samples >= 15, "{quiet:?}");
        assert!(quiet.max_ms < 1.0, "paused time has no lag: {quiet:?}");
        // The ticker is due in 5 ms; holding the only worker for 50 ms makes it 45 ms late.
        let busy_from = Instant::now();
        tokio::time::advance(Duration::from_millis(50)).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let busy = monitor.window(busy_from, Instant::now());
        assert!(busy.max_ms >= 40.0, "{busy:?}");
        // A window of a few milliseconds is read over the 2 s before its end: the stall
        // 20 ms earlier is in it.
        let end = Instant::now();
        let short = monitor.window(end - Duration::from_millis(2), end);
        assert!(short.max_ms >= 40.0, "{short:?}");
        assert!(monitor.whole().samples > quiet.samples);
    }
}
