//! The configuration's unit tests.

use super::*;

#[test]
fn all_problems_are_reported_together_with_their_fix() {
    let err = PoolConfig::from_url("postgres://app@db/app")
        .unwrap()
        .min_size(5)
        .max_size(2)
        .acquire_timeout(Duration::ZERO)
        .validate()
        .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.problems.len(), 2, "{text}");
    assert!(text.contains("min_size (5) > max_size (2): lower min_size or raise max_size"));
    assert!(text.contains("acquire_timeout"));
}

#[test]
fn bad_urls_are_config_errors_without_the_password() {
    let err = PoolConfig::from_url("postgres://app:hunter2@db:notaport/app").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("url"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(PoolConfig::from_url("").is_err());
}

#[test]
fn debug_hides_the_password() {
    let config = PoolConfig::from_url("postgres://app:hunter2@db/app").unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("app:***@db"), "{debug}");
}

#[test]
fn every_option_reads_from_its_variable_and_shows_in_debug() {
    let defaults = PoolConfig::default();
    let debug = format!("{defaults:?}");
    for name in PoolConfig::OPTIONS {
        assert!(
            debug.contains(&format!("{name}:")),
            "{name} missing from Debug: {debug}"
        );
        let text = match *name {
            "application_name" => "x",
            "idle_order" => "fifo",
            "session_reset" => "clean",
            "jitter_seed"
            | "max_uses"
            | "min_size"
            | "max_size"
            | "tcp_keepalive_retries"
            | "statement_cache_capacity" => "3",
            "acquire_timeout" | "reconnect_backoff_max" => "3s",
            _ => "50ms",
        };
        let vars = [
            (
                "DATABASE_URL".to_string(),
                "postgres://app@db/app".to_string(),
            ),
            (
                format!("POOL_{}", name.to_ascii_uppercase()),
                text.to_string(),
            ),
        ];
        let config = PoolConfig::from_vars(vars).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_ne!(
            format!("{config:?}"),
            debug,
            "POOL_{} changed nothing",
            name.to_ascii_uppercase()
        );
    }
}

#[test]
fn durations_parse_with_units() {
    assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
    assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    assert_eq!(parse_duration("1500").unwrap(), Duration::from_millis(1500));
    assert!(parse_duration("5 parsecs").is_err());
    assert!(parse_duration("-1s").is_err());
}

#[test]
fn deserializes_from_json_with_defaults() {
    let config: PoolConfig = serde_json::from_str(
        r#"{"url": "postgres://app@db/app", "max_size": 20, "acquire_timeout": "3s", "idle_timeout": null, "probe_interval": 250}"#,
    )
    .unwrap();
    assert_eq!(config.max_size, 20);
    assert_eq!(config.min_size, 2);
    assert_eq!(config.acquire_timeout, Duration::from_secs(3));
    assert_eq!(config.idle_timeout, None);
    assert_eq!(config.probe_interval, Duration::from_millis(250));
    assert!(serde_json::from_str::<PoolConfig>(r#"{"max_sise": 3}"#).is_err());
}

#[test]
fn from_vars_reads_every_variable_and_reports_every_problem() {
    let vars = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    };
    let config = PoolConfig::from_vars(vars(&[
        ("DATABASE_URL", "postgres://app@db/app"),
        ("POOL_MAX_SIZE", "20"),
        ("POOL_IDLE_TIMEOUT", "none"),
        ("POOL_ACQUIRE_TIMEOUT", "3s"),
        ("HOME", "/root"),
    ]))
    .unwrap();
    assert_eq!(config.max_size, 20);
    assert_eq!(config.idle_timeout, None);
    assert_eq!(config.acquire_timeout, Duration::from_secs(3));

    let err = PoolConfig::from_vars(vars(&[("POOL_MAX_SIZE", "ten"), ("POOL_COLOUR", "blue")]))
        .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.problems.len(), 3, "{text}");
    assert!(
        text.contains("POOL_MAX_SIZE")
            && text.contains("POOL_COLOUR")
            && text.contains("DATABASE_URL")
    );
}

/// A bad variable used to end the reading before validation: the other problems were only
/// reported on the next try.
#[test]
fn from_vars_reports_bad_variables_and_invalid_settings_together() {
    let vars = [
        ("DATABASE_URL", "postgres://app@db/app"),
        ("POOL_MAX_SIZE", "ten"),
        ("POOL_MIN_SIZE", "50"),
        ("POOL_ACQUIRE_TIMEOUT", "0s"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let err = PoolConfig::from_vars(vars).unwrap_err();
    let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        ["POOL_MAX_SIZE", "POOL_MIN_SIZE", "POOL_ACQUIRE_TIMEOUT"],
        "{err}"
    );

    let vars = [("DATABASE_URL", "nonsense"), ("POOL_MAX_SIZE", "0")]
        .map(|(k, v)| (k.to_string(), v.to_string()));
    let err = PoolConfig::from_vars(vars).unwrap_err();
    let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
    // min_size keeps its default (2), which a max_size of 0 makes wrong too.
    assert_eq!(
        fields,
        ["DATABASE_URL", "POOL_MAX_SIZE", "POOL_MIN_SIZE"],
        "{err}"
    );
}

/// Found by the `config` fuzz target: a huge duration panicked in `Duration::from_secs_f64`,
/// and one set through the builder would overflow the first deadline made from it.
#[test]
fn durations_past_ten_years_are_refused_not_a_panic() {
    let err = parse_duration("99999999999999999999999h").unwrap_err();
    assert!(err.contains("longer than"), "{err}");
    assert!(parse_duration("87600h").is_ok());
    let err = PoolConfig::from_url("postgres://app@db/app")
        .unwrap()
        .acquire_timeout(Duration::MAX)
        .idle_timeout(Some(Duration::MAX))
        .validate()
        .unwrap_err();
    let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
    assert!(
        fields.contains(&"acquire_timeout") && fields.contains(&"idle_timeout"),
        "{err}"
    );
}
