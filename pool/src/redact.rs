//! Passwords never reach a log line, an error or a `Debug` output.
//!
//! The redaction reads a connection string the way tokio-postgres does (it is the parser the
//! pool hands the string to), and wherever libpq would read a password differently, it takes
//! that reading too: a string that tokio-postgres rejects still reaches an error message, and
//! whatever its author meant as a password must not be in it. Only the password's characters
//! are replaced; the rest of the string stays as written, so the error still shows what is
//! wrong with it.

/// What a password is replaced with.
const MASK: &str = "***";

/// Replaces every password in a `postgres://user:password@host/db` URL (in the user info or
/// a `password=` parameter) or in a `key=value` string (quoted, escaped or plain) with `***`.
///
/// # Examples
/// ```
/// assert_eq!(
///     pool::redact_url("postgres://app:s3cret@db:5432/app"),
///     "postgres://app:***@db:5432/app"
/// );
/// assert_eq!(
///     pool::redact_url("host=db password='a b' dbname=app"),
///     "host=db password=*** dbname=app"
/// );
/// ```
pub fn redact_url(url: &str) -> String {
    if is_url(url) {
        let (spans, keep) = url_password_spans(url);
        replace_spans(url, spans, &keep)
    } else {
        replace_spans(url, key_value_password_spans(url), &[])
    }
}

/// A URL is what has `://` before its first `=` or whitespace: tokio-postgres takes only
/// `postgres://` and `postgresql://`, but a mistyped scheme is still a URL to its author.
pub(crate) fn is_url(s: &str) -> bool {
    let head_end = s
        .find(|c: char| c == '=' || c.is_whitespace())
        .unwrap_or(s.len());
    s[..head_end].contains("://")
}

/// Whether a parameter of this name holds a secret (`password`, and libpq's `sslpassword`).
fn is_password_key(key: &str) -> bool {
    key.to_ascii_lowercase().contains("password")
}

/// Byte ranges of the passwords in a URL, and the separators inside them to keep:
/// tokio-postgres's user info runs up to the first `@`, its password after the first `:`,
/// its parameters after the first `?` that follows.
fn url_password_spans(url: &str) -> (Vec<(usize, usize)>, Vec<usize>) {
    let start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[start..];
    let mut spans = Vec::new();
    let mut keep = Vec::new();
    let host_start = match rest.find('@') {
        Some(at) => {
            keep.extend(rest[..at].find(':').map(|i| start + i));
            keep.push(start + at);
            start + at + 1
        }
        None => start,
    };
    keep.extend(url[host_start..].find('?').map(|i| host_start + i));
    // The user info ends at the first `@` for tokio-postgres, and at the last `@` before the
    // host's end for libpq; the password runs from the first `:` to whichever is later.
    if let Some(first_at) = rest.find('@') {
        let host_end = rest[first_at..]
            .find(['/', '?'])
            .map_or(rest.len(), |i| first_at + i);
        let last_at = rest[..host_end].rfind('@').unwrap_or(first_at);
        if let Some(colon) = rest[..first_at].find(':') {
            spans.push((start + colon + 1, start + last_at));
        }
    }
    // Query parameters: a list starts at the first `?` after the user info for
    // tokio-postgres, at the first `?` of all for libpq; every `?` or `&` is taken as a start,
    // and a value runs to the next `&`, as both read it.
    for (i, _) in rest.match_indices(['?', '&']) {
        let key_start = start + i + 1;
        let Some(eq) = url[key_start..].find('=') else {
            break;
        };
        let key = &url[key_start..key_start + eq];
        if key.contains('&') || !is_password_key(&percent_decode(key)) {
            continue;
        }
        let value_start = key_start + eq + 1;
        let value_end = url[value_start..]
            .find('&')
            .map_or(url.len(), |j| value_start + j);
        spans.push((value_start, value_end));
    }
    (spans, keep)
}

/// Byte ranges of the passwords' values in a `key=value` string, read as tokio-postgres
/// reads it: whitespace around `=`, values plain or in single quotes, `\` escaping the next
/// character. A password keyword missing its `=` still has its next word taken as the value,
/// and an unterminated quote runs to the end.
fn key_value_password_spans(s: &str) -> Vec<(usize, usize)> {
    let bytes = s.as_bytes();
    let mut spans = Vec::new();
    let mut i = skip_ws(s, 0);
    while i < s.len() {
        if bytes[i] == b'=' {
            // A `=` where a keyword should start: tokio-postgres stops reading here and
            // ignores the rest, whatever its author meant by it; none of it is shown.
            spans.push((i, s.len()));
            break;
        }
        let key_start = i;
        while i < s.len() && bytes[i] != b'=' && !starts_ws(s, i) {
            i = next_char(s, i);
        }
        let key = &s[key_start..i];
        i = skip_ws(s, i);
        let has_eq = i < s.len() && bytes[i] == b'=';
        if has_eq {
            i = skip_ws(s, i + 1);
        } else if !is_password_key(key) {
            // Not `key=value`: tokio-postgres refuses it; go on with the next word.
            continue;
        }
        let value_start = i;
        i = value_end(s, i);
        if is_password_key(key) && i > value_start {
            spans.push((value_start, i));
        }
        i = skip_ws(s, i);
    }
    spans
}

/// Where the value starting at `i` ends: at the first whitespace outside quotes. A quote
/// opens where the value starts; whatever is glued to a closing quote (another quoted part,
/// or a plain one) is redacted with it: it is the same word to a reader, and the mask stays
/// one word, so redacting twice changes nothing more.
fn value_end(s: &str, mut i: usize) -> usize {
    let bytes = s.as_bytes();
    let mut quoted = false;
    let mut may_open = true;
    let mut closed = false;
    while i < s.len() {
        match bytes[i] {
            // After a closing quote, a `=` ends the value: tokio-postgres reads no further.
            b'=' if closed && !quoted => return i,
            b'\\' => {
                i = next_char(s, i);
                if i < s.len() {
                    i = next_char(s, i);
                }
                may_open = false;
                continue;
            }
            b'\'' if quoted => {
                quoted = false;
                closed = true;
                i += 1;
                may_open = true;
                continue;
            }
            b'\'' if may_open => quoted = true,
            _ if !quoted && starts_ws(s, i) => return i,
            _ => {}
        }
        may_open = false;
        i = next_char(s, i);
    }
    i
}

fn starts_ws(s: &str, i: usize) -> bool {
    s[i..].chars().next().is_some_and(char::is_whitespace)
}

fn skip_ws(s: &str, mut i: usize) -> usize {
    while i < s.len() && starts_ws(s, i) {
        i = next_char(s, i);
    }
    i
}

fn next_char(s: &str, i: usize) -> usize {
    i + s[i..].chars().next().map_or(1, char::len_utf8)
}

/// `%XX` decoded, as tokio-postgres decodes URL parameter names (invalid UTF-8 replaced).
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `s` with each span (merged where they overlap) replaced by the mask. The bytes at `keep`
/// stay where a span covers them: they are the `:` and `@` around a URL's password and the
/// `?` before its parameters as tokio-postgres reads them, and a mask swallowing them would leave a string it reads without
/// any password.
fn replace_spans(s: &str, mut spans: Vec<(usize, usize)>, keep: &[usize]) -> String {
    spans.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (start, end) in spans {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    let mut out = String::with_capacity(s.len());
    let mut copied = 0;
    for (start, end) in merged {
        out.push_str(&s[copied..start]);
        let mut from = start;
        for &k in keep.iter().filter(|k| (start..end).contains(k)) {
            if k > from {
                out.push_str(MASK);
            }
            out.push_str(&s[k..k + 1]);
            from = k + 1;
        }
        if from < end || from == start {
            out.push_str(MASK);
        }
        copied = end;
    }
    out.push_str(&s[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_every_form() {
        let cases = [
            (
                "postgres://app:s3cret@db:5432/app?sslmode=disable",
                "postgres://app:***@db:5432/app?sslmode=disable",
            ),
            ("postgres://app@db/app", "postgres://app@db/app"),
            (
                "postgres://db/app?user=app&password=s3cret",
                "postgres://db/app?user=app&password=***",
            ),
            (
                "host=db user=app password=s3cret dbname=app",
                "host=db user=app password=*** dbname=app",
            ),
            // The known leak: a quoted value with a space in it.
            (
                "host=db password='a b' dbname=app",
                "host=db password=*** dbname=app",
            ),
            ("password = s3cret host=db", "password = *** host=db"),
            (r"password=a\ b host=db", "password=*** host=db"),
            (r"password='it\'s here' host=db", "password=*** host=db"),
            ("host=db password='never closed", "host=db password=***"),
            ("host=db password s3cret", "host=db password ***"),
            ("sslpassword=s3cret host=db", "sslpassword=*** host=db"),
            // tokio-postgres ends the user info at the first `@`, libpq at the last.
            ("postgres://app:p/ss@db/app", "postgres://app:***@db/app"),
            // (tokio-postgres's `@` is kept, so its reading still finds a password: ***.)
            (
                "postgres://app:p@ss@db/app",
                "postgres://app:***@***@db/app",
            ),
            (
                "postgres://db/app?pass%77ord=s3cret&user=app",
                "postgres://db/app?pass%77ord=***&user=app",
            ),
            ("POSTGRES://app:s3cret@db/app", "POSTGRES://app:***@db/app"),
            ("password ''A host=db", "password *** host=db"),
            // tokio-postgres stops at a `=` where a keyword should start.
            ("host=db password='x'=rest more=1", "host=db password=***"),
            ("host=db =oops password=s3cret", "host=db ***"),
            ("=", "***"),
            // Both readings masked, tokio-postgres's `:` `@` `?` kept (found by fuzzing).
            (
                "postgres://dbstgr,e?pass%77ord=x:tbs@tc=h",
                "postgres://dbstgr,e?pass%77ord=***:***@***",
            ),
            (
                "postgres://app:pa?ss@db/app?password=x",
                "postgres://app:***@db/app?password=***",
            ),
            // A quote inside a plain value opens nothing, as for tokio-postgres.
            ("password=ab'c host=db", "password=*** host=db"),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(redact_url(input), expected, "redacting {input:?}");
        }
    }

    #[test]
    fn leaves_strings_without_a_password_as_they_are() {
        for s in [
            "host=db user=app",
            "postgres://app@db:5432/app?sslmode=require",
            "  host = db  ",
            "nonsense",
            "'",
        ] {
            assert_eq!(redact_url(s), s);
        }
    }

    /// Exact outputs where only the password's characters may change: a redaction that masks
    /// more than the password (a separator, the host, a neighbouring value) is as wrong as one
    /// that masks less, and the properties only check the second.
    #[test]
    fn only_the_password_is_masked_exactly() {
        let cases = [
            (
                "postgres://user:secret@host/db",
                "postgres://user:***@host/db",
            ),
            // A `?` in the user info: tokio-postgres's parameters start after the `@`.
            (
                "postgres://u?a:p@h/db?password=x",
                "postgres://u?a:***@h/db?password=***",
            ),
            // Two `@`: libpq's password runs to the last; the `@` itself stays.
            ("postgres://u:a@b@h/db", "postgres://u:***@***@h/db"),
            ("postgres://u:@b@h/db", "postgres://u:@***@h/db"),
            // A kept `@` that ends the password: nothing of it follows to mask.
            ("postgres://u:a@@h/db", "postgres://u:***@@h/db"),
            (
                "postgres://u:p@h/db?sslmode=require&password=x&a=b",
                "postgres://u:***@h/db?sslmode=require&password=***&a=b",
            ),
            ("postgres://h/db?password=x", "postgres://h/db?password=***"),
            ("password=a=b host=h", "password=*** host=h"),
            // After a closing quote, a `=` ends what tokio-postgres reads: the rest is masked.
            ("password='s'=x host=db", "password=***"),
            ("password='a b' host=db", "password=*** host=db"),
            (
                "host=db   password=s   user=u",
                "host=db   password=***   user=u",
            ),
            ("password=p\\ q host=db", "password=*** host=db"),
            ("password=pä host=dé", "password=*** host=dé"),
        ];
        for (input, expected) in cases {
            assert_eq!(redact_url(input), expected, "{input}");
        }
    }
}
