//! Passwords never reach a log line, an error or a `Debug` output.

/// Replaces the password of a `postgres://user:password@host/db` URL (or a `password=...`
/// key/value pair) with `***`.
///
/// # Examples
/// ```
/// assert_eq!(
///     pool::redact_url("postgres://app:s3cret@db:5432/app"),
///     "postgres://app:***@db:5432/app"
/// );
/// ```
pub fn redact_url(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let mut out = match rest[..authority_end].rfind('@') {
            Some(at) => match rest[..at].find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &rest[..colon],
                    &rest[at..]
                ),
                None => url.to_string(),
            },
            None => url.to_string(),
        };
        // A password may also come as a query parameter.
        if let Some(q) = out.find('?') {
            let (head, query) = out.split_at(q + 1);
            let query = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect::<Vec<_>>()
                .join("&");
            out = format!("{head}{query}");
        }
        out
    } else {
        url.split_whitespace()
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_every_form() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/app?sslmode=disable"),
            "postgres://app:***@db:5432/app?sslmode=disable"
        );
        assert_eq!(redact_url("postgres://app@db/app"), "postgres://app@db/app");
        assert_eq!(
            redact_url("postgres://db/app?user=app&password=s3cret"),
            "postgres://db/app?user=app&password=***"
        );
        assert_eq!(
            redact_url("host=db user=app password=s3cret dbname=app"),
            "host=db user=app password=*** dbname=app"
        );
    }
}
