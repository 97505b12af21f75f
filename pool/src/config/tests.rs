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
            "transaction_pooling" => "true",
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

/// Each unit, and the bounds, exactly (the doc examples say the same, but the unit tests are
/// what the mutation testing runs).
#[test]
fn durations_parse_exactly_in_every_unit() {
    let ms = Duration::from_millis;
    for (text, want) in [
        ("1500us", Duration::from_micros(1500)),
        ("1500µs", Duration::from_micros(1500)),
        ("250ms", ms(250)),
        ("250", ms(250)),
        ("0.5s", ms(500)),
        ("2m", Duration::from_secs(120)),
        ("2min", Duration::from_secs(120)),
        ("3h", Duration::from_secs(3 * 3600)),
        ("87600h", super::value::MAX_DURATION),
    ] {
        assert_eq!(parse_duration(text), Ok(want), "{text}");
    }
    let err = parse_duration("87601h").unwrap_err();
    assert!(err.contains("longer than"), "{err}");
    let huge = format!("{}s", "9".repeat(400));
    let err = parse_duration(&huge).unwrap_err();
    assert!(err.contains("is not a valid duration"), "{err}");
}

#[test]
fn text_options_read_exactly_what_was_written() {
    let from = |pairs: &[(&str, &str)]| {
        let mut vars = vec![(
            "DATABASE_URL".to_string(),
            "postgres://app@db/app".to_string(),
        )];
        vars.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        PoolConfig::from_vars(vars).unwrap()
    };
    let c = from(&[
        ("POOL_APPLICATION_NAME", "billing"),
        ("POOL_SESSION_RESET", "Discard"),
        ("POOL_IDLE_ORDER", "FIFO"),
        ("POOL_IDLE_TIMEOUT", "30s"),
    ]);
    assert_eq!(c.get_application_name(), "billing");
    assert_eq!(c.session_reset, crate::SessionReset::Discard);
    assert_eq!(c.idle_order, crate::IdleOrder::Fifo);
    assert_eq!(c.idle_timeout, Some(Duration::from_secs(30)));
    let c = from(&[("POOL_SESSION_RESET", "clean"), ("POOL_IDLE_ORDER", "lifo")]);
    assert_eq!(c.session_reset, crate::SessionReset::Clean);
    assert_eq!(c.idle_order, crate::IdleOrder::Lifo);
    assert_eq!(
        from(&[("POOL_SESSION_RESET", "none")]).session_reset,
        crate::SessionReset::Off
    );
    assert!("sometimes".parse::<crate::SessionReset>().is_err());
    assert!("random".parse::<crate::IdleOrder>().is_err());
    let c: PoolConfig =
        serde_json::from_str(r#"{"url": "postgres://app@db/app", "application_name": "reports"}"#)
            .unwrap();
    assert_eq!(c.get_application_name(), "reports");
}

#[test]
fn each_reset_says_its_statements() {
    use crate::SessionReset;
    assert_eq!(SessionReset::Off.sql(), "");
    assert_eq!(SessionReset::Discard.sql(), "DISCARD ALL");
    let clean = SessionReset::Clean.sql();
    for part in [
        "RESET ALL",
        "UNLISTEN *",
        "pg_advisory_unlock_all()",
        "DISCARD TEMP",
    ] {
        assert!(clean.contains(part), "{clean}");
    }
    assert!(
        !clean.contains("DISCARD ALL"),
        "clean keeps prepared statements"
    );
}

#[test]
fn a_duration_of_exactly_ten_years_is_the_longest_accepted() {
    let ok = PoolConfig::from_url("postgres://app@db/app")
        .unwrap()
        .acquire_timeout(super::value::MAX_DURATION)
        .validate();
    assert!(ok.is_ok(), "{ok:?}");
    let config = PoolConfig::from_url("postgres://app@db/app")
        .unwrap()
        .reconnect_backoff_base(Duration::from_secs(2))
        .reconnect_backoff_max(Duration::from_secs(2));
    assert!(config.validate().is_ok(), "a cap equal to the base is fine");
    let err = config
        .reconnect_backoff_max(Duration::from_secs(1))
        .validate()
        .unwrap_err();
    assert_eq!(err.problems[0].field, "reconnect_backoff_max");
}
