//! The checks of every setting but the URL: each problem with its fix, all reported together.

use super::{PoolConfig, value};
use crate::error::ConfigProblem;

impl PoolConfig {
    pub(super) fn check_settings(&self, problems: &mut Vec<ConfigProblem>) {
        let mut problem =
            |field: &str, message: String| problems.push(ConfigProblem::new(field, message));
        if self.max_size == 0 {
            problem(
                "max_size",
                "is 0: a pool needs at least one connection; set max_size to 1 or more".into(),
            );
        }
        if self.min_size > self.max_size {
            problem(
                "min_size",
                format!(
                    "min_size ({}) > max_size ({}): lower min_size or raise max_size",
                    self.min_size, self.max_size
                ),
            );
        }
        for (field, value) in [
            ("acquire_timeout", self.acquire_timeout),
            ("query_timeout", self.query_timeout),
            ("connect_timeout", self.connect_timeout),
            ("validation_timeout", self.validation_timeout),
            ("probe_interval", self.probe_interval),
            ("probe_timeout", self.probe_timeout),
            ("outage_probe_interval", self.outage_probe_interval),
            ("reconnect_backoff_base", self.reconnect_backoff_base),
        ] {
            if value.is_zero() {
                problem(field, format!("is 0: {field} must be positive, e.g. 1s"));
            }
        }
        let durations = [
            ("acquire_timeout", Some(self.acquire_timeout)),
            ("query_timeout", Some(self.query_timeout)),
            ("connect_timeout", Some(self.connect_timeout)),
            ("validation_timeout", Some(self.validation_timeout)),
            ("validation_bypass", Some(self.validation_bypass)),
            ("idle_timeout", self.idle_timeout),
            ("max_lifetime", self.max_lifetime),
            ("leak_detection_threshold", self.leak_detection_threshold),
            ("probe_interval", Some(self.probe_interval)),
            ("probe_timeout", Some(self.probe_timeout)),
            ("outage_probe_interval", Some(self.outage_probe_interval)),
            ("reconnect_backoff_base", Some(self.reconnect_backoff_base)),
            ("reconnect_backoff_max", Some(self.reconnect_backoff_max)),
            ("tcp_keepalive_idle", Some(self.tcp_keepalive_idle)),
            ("tcp_keepalive_interval", Some(self.tcp_keepalive_interval)),
            ("tcp_user_timeout", Some(self.tcp_user_timeout)),
        ];
        for (field, value) in durations {
            if let Some(d) = value.filter(|d| *d > value::MAX_DURATION) {
                problem(
                    field,
                    format!(
                        "({d:?}) is longer than 10 years, past which a deadline overflows; use a shorter duration, or null where the option allows it"
                    ),
                );
            }
        }
        if self.reconnect_backoff_max < self.reconnect_backoff_base {
            problem(
                "reconnect_backoff_max",
                format!(
                    "({:?}) < reconnect_backoff_base ({:?}): raise reconnect_backoff_max",
                    self.reconnect_backoff_max, self.reconnect_backoff_base
                ),
            );
        }
        if !self.acquire_timeout.is_zero() && self.validation_timeout > self.acquire_timeout {
            problem(
                "validation_timeout",
                format!(
                    "({:?}) > acquire_timeout ({:?}): a validation could never finish inside an acquire; lower validation_timeout",
                    self.validation_timeout, self.acquire_timeout
                ),
            );
        }
        if self.max_uses == Some(0) {
            problem(
                "max_uses",
                "is 0: every connection would be retired before use; set it to 1 or more, or null"
                    .into(),
            );
        }
        if matches!(self.max_lifetime, Some(d) if d.is_zero()) {
            problem(
                "max_lifetime",
                "is 0: use null to disable, or a positive duration".into(),
            );
        }
    }
}
