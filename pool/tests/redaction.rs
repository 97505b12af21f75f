//! No password, in any form tokio-postgres accepts, survives `redact_url`: passwords of any
//! characters, written in every encoding (quoted, backslash-escaped, percent-encoded, in the
//! user info or as a parameter), among other parameters and spacing.

use pool::redact_url;
use pool::testing::oracles;
use proptest::prelude::*;

/// Passwords with the characters that break naive parsers, behind a marker no other part of
/// the string contains.
fn password() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just(' '),
            Just('\''),
            Just('\\'),
            Just('@'),
            Just(':'),
            Just('/'),
            Just('?'),
            Just('&'),
            Just('='),
            Just('%'),
            Just('\t'),
            Just('é'),
            proptest::char::range('a', 'z'),
        ],
        0..12,
    )
    .prop_map(|chars| format!("ZQX{}", chars.into_iter().collect::<String>()))
}

fn quoted(p: &str) -> String {
    let mut out = String::from("'");
    for c in p.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

fn escaped(p: &str) -> String {
    let mut out = String::new();
    for (i, c) in p.chars().enumerate() {
        if c.is_whitespace() || c == '\\' || (i == 0 && c == '\'') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn percent(p: &str) -> String {
    p.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A connection string carrying `p`, in the form `form` picks.
fn written(p: &str, form: u8, space: &str) -> String {
    match form % 5 {
        0 => format!(
            "host=db user=app password{space}={space}{} dbname=app",
            quoted(p)
        ),
        1 => format!("password{space}={space}{} host=db", escaped(p)),
        2 => format!("postgres://app:{}@db:5432/app?sslmode=disable", percent(p)),
        3 => format!(
            "postgres://db/app?user=app&password={}&connect_timeout=3",
            percent(p)
        ),
        _ => format!("postgresql://app:{}@db/app", percent(p)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn no_password_survives(p in password(), form in 0u8..5, space in prop_oneof![Just(""), Just(" "), Just("  ")]) {
        let s = written(&p, form, space);
        // The string is what tokio-postgres reads as this password...
        let parsed: tokio_postgres::Config = s.parse().unwrap();
        prop_assert_eq!(parsed.get_password(), Some(p.as_bytes()), "{}", s);
        // ...and its redaction shows none of it.
        let redacted = redact_url(&s);
        prop_assert!(!redacted.contains("ZQX"), "{} -> {}", s, redacted);
        oracles::redaction(&s);
    }

    #[test]
    fn arbitrary_strings_keep_the_properties(s in "\\PC{0,40}|(password|postgres://)[ -~]{0,30}") {
        oracles::redaction(&s);
        oracles::config_bytes(format!("\0{s}").as_bytes());
    }
}

/// Strings tokio-postgres refuses still reach error messages: a password its author wrote
/// must not be in them.
#[test]
fn what_the_parser_refuses_is_redacted_too() {
    for s in [
        "host=db password='ZQX never closed",
        "host=db password ZQXsecret",
        "host=db password = ZQXsecret bogus",
        "POSTGRES://app:ZQXsecret@db/app",
        "postgres://app:ZQX@s/ecret@db/app",
    ] {
        let redacted = redact_url(s);
        assert!(!redacted.contains("ZQX"), "{s:?} -> {redacted:?}");
        let err = pool::PoolConfig::from_url(s)
            .and_then(|c| c.validate().map(|()| c))
            .map(|c| format!("{c:?}"))
            .unwrap_or_else(|e| format!("{e} {e:?}"));
        assert!(!err.contains("ZQX"), "{s:?} -> {err}");
    }
}
