//! The leak verdict: a robust fitted slope per series, compared with a stated allowance.
//!
//! A leak is a resource that grows for as long as the workload runs; noise (a burst that fills
//! the pool, a fault that cuts every connection, the allocator settling) moves a series up
//! and down without a trend. So the slope is the Theil–Sen estimator (the median of the slopes
//! between every pair of samples), which a spike or a dip cannot pull the way it pulls least
//! squares. Long runs are first reduced to at most [`MAX_POINTS`] bucket medians, which keeps
//! the fit cheap and smooths sampling noise.
//!
//! A series fails when its fitted growth over the measured window (slope times window length)
//! exceeds its allowance: a fixed floor (the range the series may wander within a healthy run)
//! plus, for memory only, a rate per hour. A one-connection-per-minute leak grows by 60 an
//! hour and is caught; a pool that grows from `min_size` to `max_size` is not a leak.

use serde::{Deserialize, Serialize};

use crate::report::Verdict;

/// Most points a fit uses; longer series are reduced to bucket medians first.
pub const MAX_POINTS: usize = 240;

/// The fewest points a verdict needs; with fewer the verdict is `unknown`.
pub const MIN_POINTS: usize = 8;

/// How much a series may grow over the measured window and still count as flat.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Allowance {
    /// Growth allowed over any window, in the series' unit.
    pub floor: f64,
    /// Further growth allowed per hour of window (memory's slow settling), in the unit.
    pub per_hour: f64,
}

impl Allowance {
    /// What is allowed over a window of `seconds`.
    pub fn over(&self, seconds: f64) -> f64 {
        self.floor + self.per_hour * seconds / 3600.0
    }
}

/// The allowances of the leak-checked series for a pool of `max_size` connections. A healthy
/// pool moves anywhere between no connection and `max_size` (a burst fills it, a fault
/// empties it), and a fit over a short window can read such a step as growth; so the
/// connection series may grow by `max_size`, and descriptors and tasks by what that many
/// connections cost (three descriptors each: the pool's socket and the proxy's two; two
/// tasks: the driver and the proxied connection) plus a margin. A leak outgrows that: one
/// connection a minute is 60 an hour.
pub fn allowances(max_size: usize) -> Vec<(&'static str, &'static str, Allowance)> {
    let range = max_size.max(2) as f64;
    vec![
        (
            "rss_mib",
            "MiB",
            Allowance {
                floor: 16.0,
                per_hour: 1.0,
            },
        ),
        (
            "fds",
            "fds",
            Allowance {
                floor: 3.0 * range + 8.0,
                per_hour: 0.0,
            },
        ),
        (
            "tasks",
            "tasks",
            Allowance {
                floor: 2.0 * range + 16.0,
                per_hour: 0.0,
            },
        ),
        (
            "server_connections",
            "connections",
            Allowance {
                floor: range,
                per_hour: 0.0,
            },
        ),
    ]
}

/// The fitted trend of one series and its verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trend {
    /// Series name (`rss_mib`, `fds`, `tasks`, `server_connections`).
    pub series: String,
    /// Unit of the values.
    pub unit: String,
    /// Points in the fit (after reduction).
    pub points: usize,
    /// Start of the measured window, seconds since the soak began.
    pub window_start_s: f64,
    /// Measured window, seconds (after warm-up).
    pub window_s: f64,
    /// The fitted line's value at the window's start (the Theil–Sen intercept).
    pub fitted_start: f64,
    /// Median of the first tenth of the window.
    pub start: f64,
    /// Median of the last tenth of the window.
    pub end: f64,
    /// Fitted slope, unit per hour.
    pub slope_per_hour: f64,
    /// Fitted growth over the window (slope times window).
    pub growth: f64,
    /// Growth allowed over this window.
    pub allowed: f64,
    /// `pass` when growth <= allowed, `unknown` with too few points.
    pub verdict: Verdict,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Reduces `points` (sorted by time) to at most `max` bucket medians.
pub fn reduce(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max {
        return points.to_vec();
    }
    let per = points.len().div_ceil(max);
    points
        .chunks(per)
        .map(|c| {
            let mut t: Vec<f64> = c.iter().map(|p| p.0).collect();
            let mut v: Vec<f64> = c.iter().map(|p| p.1).collect();
            (median(&mut t), median(&mut v))
        })
        .collect()
}

/// The Theil–Sen slope of `points` (value per time unit), or `None` with fewer than two
/// distinct times.
pub fn theil_sen(points: &[(f64, f64)]) -> Option<f64> {
    let mut slopes = Vec::with_capacity(points.len() * points.len() / 2);
    for (i, a) in points.iter().enumerate() {
        for b in &points[i + 1..] {
            let dt = b.0 - a.0;
            if dt > 0.0 {
                slopes.push((b.1 - a.1) / dt);
            }
        }
    }
    (!slopes.is_empty()).then(|| median(&mut slopes))
}

/// Fits `points` (seconds, value), all inside the measured window, against `allowance`.
pub fn fit(series: &str, unit: &str, points: &[(f64, f64)], allowance: Allowance) -> Trend {
    let reduced = reduce(points, MAX_POINTS);
    let (window_start_s, window_s) = match (points.first(), points.last()) {
        (Some(a), Some(b)) => (a.0, b.0 - a.0),
        _ => (0.0, 0.0),
    };
    let tenth = (reduced.len() / 10).max(1);
    let edge = |slice: &[(f64, f64)]| median(&mut slice.iter().map(|p| p.1).collect::<Vec<_>>());
    let slope = theil_sen(&reduced);
    let allowed = allowance.over(window_s);
    let (slope_per_hour, growth, verdict) = match slope {
        Some(s) if reduced.len() >= MIN_POINTS => {
            let growth = s * window_s;
            let v = if growth <= allowed {
                Verdict::Pass
            } else {
                Verdict::Fail
            };
            (s * 3600.0, growth, v)
        }
        _ => (0.0, 0.0, Verdict::Unknown),
    };
    // No points (a checkpoint during the warm-up): zeros, so the JSON has no NaN.
    let fitted_start = if reduced.is_empty() {
        0.0
    } else {
        median(
            &mut reduced
                .iter()
                .map(|p| p.1 - slope.unwrap_or(0.0) * (p.0 - window_start_s))
                .collect::<Vec<_>>(),
        )
    };
    Trend {
        series: series.into(),
        unit: unit.into(),
        points: reduced.len(),
        window_start_s,
        window_s,
        fitted_start,
        start: if reduced.is_empty() {
            0.0
        } else {
            edge(&reduced[..tenth])
        },
        end: if reduced.is_empty() {
            0.0
        } else {
            edge(&reduced[reduced.len() - tenth..])
        },
        slope_per_hour,
        growth,
        allowed,
        verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAT: Allowance = Allowance {
        floor: 5.0,
        per_hour: 0.0,
    };

    fn series(n: usize, f: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
        (0..n).map(|i| (i as f64, f(i as f64))).collect()
    }

    #[test]
    fn a_steady_leak_fails_and_a_flat_series_passes() {
        let leak = fit("c", "n", &series(60, |t| 10.0 + t / 5.0), FLAT);
        assert_eq!(leak.verdict, Verdict::Fail);
        assert!((leak.slope_per_hour - 720.0).abs() < 1e-6, "{leak:?}");
        let flat = fit("c", "n", &series(60, |t| 10.0 + (t % 7.0)), FLAT);
        assert_eq!(flat.verdict, Verdict::Pass, "{flat:?}");
    }

    #[test]
    fn spikes_and_dips_do_not_make_a_trend() {
        // A burst fills the pool for a few samples; a fault empties it: no leak.
        let noisy = series(120, |t| match t as usize {
            30..=34 => 40.0,
            80..=85 => 0.0,
            _ => 10.0,
        });
        let t = fit("c", "n", &noisy, FLAT);
        assert_eq!(t.verdict, Verdict::Pass, "{t:?}");
        assert_eq!(t.growth, 0.0);
    }

    #[test]
    fn a_step_up_in_the_middle_is_within_the_floor() {
        // The pool grows from min_size to max_size halfway: bounded, not a leak.
        let step = series(100, |t| if t < 50.0 { 2.0 } else { 6.0 });
        let t = fit("c", "n", &step, FLAT);
        assert_eq!(t.verdict, Verdict::Pass, "{t:?}");
    }

    #[test]
    fn too_few_points_is_unknown() {
        let t = fit("c", "n", &series(3, |t| t * 100.0), FLAT);
        assert_eq!(t.verdict, Verdict::Unknown);
        let none = fit("c", "n", &[], FLAT);
        assert_eq!(none.verdict, Verdict::Unknown);
        assert!(
            serde_json::to_string(&none)
                .unwrap()
                .contains("\"start\":0.0")
        );
    }

    #[test]
    fn long_series_are_reduced_and_keep_their_slope() {
        let long = series(20_000, |t| t * 0.001);
        let r = reduce(&long, MAX_POINTS);
        assert!(r.len() <= MAX_POINTS);
        let t = fit("c", "n", &long, FLAT);
        assert!((t.slope_per_hour - 3.6).abs() < 1e-6, "{t:?}");
        assert!((t.growth - 19.999).abs() < 0.01);
        assert_eq!(t.verdict, Verdict::Fail);
    }

    #[test]
    fn memory_is_allowed_to_settle_slowly() {
        let a = Allowance {
            floor: 16.0,
            per_hour: 1.0,
        };
        assert_eq!(a.over(0.0), 16.0);
        assert_eq!(a.over(24.0 * 3600.0), 40.0);
    }
}
