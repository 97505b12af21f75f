//! Properties of the pool's parsers that must hold for any input: checked by the fuzz
//! targets in `fuzz/` (see TESTING.md), by proptest, and by the tests that replay the
//! committed seed corpus on stable. Each function panics, saying what broke, on a violation.

use std::str::FromStr;

use crate::{PoolConfig, redact_url};

/// The password tokio-postgres reads from `s`, if it reads one that is long enough to search
/// for (a one-letter password is found in any text).
fn password_in(s: &str) -> Option<String> {
    let config = tokio_postgres::Config::from_str(s).ok()?;
    let password = String::from_utf8_lossy(config.get_password()?).into_owned();
    // Nor one that the pool's own words spell (` "post` is in `url: "postgres://`).
    (password.len() >= 6 && !own_words().contains(&password)).then_some(password)
}

/// What the pool writes around any URL: its `Debug` lines and error messages.
fn own_words() -> &'static str {
    static WORDS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    WORDS.get_or_init(|| {
        let with_url = PoolConfig::from_url("postgres://u@h/d").map(|c| c.max_size(0));
        let mut words = format!("{:?} {with_url:?}", PoolConfig::default());
        for url in ["nonsense", "postgres://", "postgres://u@h/d?x=y", " "] {
            if let Err(e) = PoolConfig::from_url(url).and_then(|c| c.max_size(0).validate()) {
                words.push_str(&format!(" {e} {e:?}"));
            }
        }
        if let Err(e) = PoolConfig::from_vars(Vec::new()) {
            words.push_str(&format!(" {e} {e:?}"));
        }
        words.replace("nonsense", "")
    })
}

/// Redaction: never panics, a key=value string's is idempotent, and whatever tokio-postgres would read as the
/// password is gone, the rest still parsing the same way: the redacted string parses, and
/// its password is the mask.
pub fn redaction(input: &str) {
    let redacted = redact_url(input);
    // A key=value string's mask is one plain word, so a second pass changes nothing. (Not
    // so for URLs: masking both readings of one can make a new user info appear.)
    if !input.contains("://") {
        assert_eq!(
            redact_url(&redacted),
            redacted,
            "redacting twice differs for {input:?}"
        );
    }
    let Ok(config) = tokio_postgres::Config::from_str(input) else {
        return;
    };
    if config.get_password().is_none_or(<[u8]>::is_empty) {
        return;
    }
    // Where tokio-postgres and libpq read a URL differently, the redaction masks both
    // readings, and the result may no longer parse (a mask spanning from the user info to
    // the end of a query parameter); then the password itself must be gone.
    match tokio_postgres::Config::from_str(&redacted) {
        Ok(again) => assert_eq!(
            again.get_password(),
            Some(&b"***"[..]),
            "the password of {input:?} is not masked in {redacted:?}"
        ),
        Err(_) => {
            let password = String::from_utf8_lossy(config.get_password().unwrap_or_default());
            assert!(
                password.len() < 4
                    || input.matches(&*password).count() > 1
                    || !redacted.contains(&*password),
                "the password {password:?} of {input:?} is still in {redacted:?}"
            );
        }
    }
}

/// Pool configuration from fuzzer bytes. The first byte picks the form: a URL or key=value
/// string (`PoolConfig::from_url`), environment variables (`from_vars`, one `KEY=value` a
/// line) or JSON (serde); the rest is the input. None of them panics, and no error, `Debug`
/// output or redacted URL shows a password the input carried.
pub fn config_bytes(data: &[u8]) {
    let Some((&form, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    // What the input says outside its URLs: an error may quote a bad value of another
    // variable, and a password typed there too is the user's text, not a leak of the URL.
    let mut elsewhere = String::new();
    let (result, urls): (Result<PoolConfig, String>, Vec<String>) = match form % 3 {
        0 => (
            PoolConfig::from_url(&text).map_err(|e| format!("{e} {e:?}")),
            vec![text.to_string()],
        ),
        1 => {
            let vars: Vec<(String, String)> = text
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let urls = vars
                .iter()
                .filter(|(k, _)| k == "DATABASE_URL")
                .map(|(_, v)| v.clone())
                .collect();
            for (k, v) in vars.iter().filter(|(k, _)| k != "DATABASE_URL") {
                elsewhere.push_str(&format!("{k}={v}\n"));
            }
            (
                PoolConfig::from_vars(vars).map_err(|e| format!("{e} {e:?}")),
                urls,
            )
        }
        _ => {
            let url = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("url")?.as_str().map(str::to_string));
            // serde's own errors may quote any value of the input; only what the pool
            // writes is checked, the validation of what serde read.
            let checked = match serde_json::from_str::<PoolConfig>(&text) {
                Ok(config) => config
                    .validate()
                    .map(|()| config)
                    .map_err(|e| format!("{e} {e:?}")),
                Err(_) => Err(String::new()),
            };
            (checked, url.into_iter().collect())
        }
    };
    let shown = match &result {
        Ok(config) => format!("{config:?} {}", config.redacted_url()),
        Err(e) => e.clone(),
    };
    for url in urls {
        let Some(password) = password_in(&url) else {
            continue;
        };
        // A password that the redacted URL still spells by chance (`host` in host=db
        // password=host) cannot be told apart; redaction() checks those.
        // Nor one the `Debug` escaping spells: `ss\` in the password, `ss<newline>` later in
        // the URL, shown as `ss\n`.
        let redacted = redact_url(&url);
        if redacted.contains(&password)
            || format!("{redacted:?}").contains(&password)
            || elsewhere.contains(&password)
        {
            continue;
        }
        assert!(
            !shown.contains(&password),
            "the password of {url:?} shows in {shown:?}"
        );
    }
}
