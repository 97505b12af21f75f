//! What every validation scenario shares: its blank report and the validation script's pool.



use crate::report::ScenarioReport;
use pool::PoolConfig;

pub(super) fn blank(name: &str, description: &str) -> ScenarioReport {
    ScenarioReport::new(name, "pool", true, description)
}

/// The validation script's pool (min 2, max 10, defaults otherwise), its jitter seeded from
/// the run's seed.
pub(super) fn config(seed: u64, url: &str, app: &str) -> PoolConfig {
    PoolConfig::from_url(url)
        .expect("valid url")
        .application_name(app.to_string())
        .min_size(2)
        .max_size(10)
        .jitter_seed(Some(crate::rng::seed_for(seed, app)))
}

pub(super) fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    crate::measure::percentile(&v, p).unwrap_or(0.0)
}

pub(super) fn rss_mib() -> f64 {
    crate::measure::rss_mib().unwrap_or(0.0)
}
