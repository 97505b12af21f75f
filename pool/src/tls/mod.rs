//! TLS as libpq configures it: `sslmode`, `sslrootcert`, `sslcert` and `sslkey` read from the
//! URL or `key=value` string, on the pool's own sockets (so keepalives, `tcp_user_timeout` and
//! session tracking apply to TLS connections as to plain ones).
//!
//! tokio-postgres knows `sslmode` disable / prefer / require and none of the certificate
//! settings, so the pool takes those keys out of the string before tokio-postgres reads it and
//! does the verification itself with rustls (feature `rustls`, on by default):
//!
//! | `sslmode` | encrypted | the certificate's chain | the host name |
//! | --- | --- | --- | --- |
//! | `disable` | never | - | - |
//! | `allow`, `prefer` (default) | when the server offers it | as `require` | - |
//! | `require` | always | checked only when a root certificate is there (as libpq does) | - |
//! | `verify-ca` | always | checked | - |
//! | `verify-full` | always | checked | checked |
//!
//! `sslrootcert` is a PEM file of CA certificates, or `system` for the public CAs (Mozilla's
//! list, built in: no OS store is read); without it, `~/.postgresql/root.crt` is used when it
//! exists, as libpq does. `sslcert` and `sslkey` are a PEM client certificate and its key.
//! Unix-domain sockets are never encrypted (as libpq).

use std::path::PathBuf;

/// How much TLS a connection needs: libpq's `sslmode`.
///
/// # Examples
/// ```
/// let config = pool::PoolConfig::from_url("postgres://app@db/app?sslmode=verify-full")?;
/// assert_eq!(config.tls_options()?.mode, pool::SslMode::VerifyFull);
/// # Ok::<(), pool::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SslMode {
    /// Plain connections only.
    Disable,
    /// TLS when the server offers it, plain otherwise (libpq's default; `allow` reads as this).
    #[default]
    Prefer,
    /// TLS or nothing; the certificate is checked only against a root certificate given.
    Require,
    /// TLS with a certificate signed by a trusted CA, for any host name.
    VerifyCa,
    /// TLS with a certificate signed by a trusted CA and naming the host.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "disable" => Self::Disable,
            "allow" | "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }

    /// The setting's name, as in the URL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// The nearest of tokio-postgres's three modes (the verification is the pool's own).
    pub(crate) fn for_tokio_postgres(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Pg;
        match self {
            Self::Disable => Pg::Disable,
            Self::Prefer => Pg::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => Pg::Require,
        }
    }

    #[cfg_attr(not(feature = "rustls"), allow(dead_code))]
    fn verifies(self) -> bool {
        matches!(self, Self::VerifyCa | Self::VerifyFull)
    }
}

/// Where the CA certificates that a server's certificate must chain to come from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RootCert {
    /// A PEM file of CA certificates.
    File(PathBuf),
    /// The public CAs (`sslrootcert=system`): Mozilla's list, built into the binary.
    System,
}

/// The TLS settings of a connection string.
///
/// # Examples
/// ```
/// let config = pool::PoolConfig::from_url(
///     "host=db user=app sslmode=verify-ca sslrootcert=/etc/ssl/db-ca.pem",
/// )?;
/// let tls = config.tls_options()?;
/// assert_eq!(tls.mode, pool::SslMode::VerifyCa);
/// assert_eq!(tls.root_cert, Some(pool::RootCert::File("/etc/ssl/db-ca.pem".into())));
/// # Ok::<(), pool::ConfigError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsOptions {
    /// `sslmode`.
    pub mode: SslMode,
    /// `sslrootcert`.
    pub root_cert: Option<RootCert>,
    /// `sslcert`: the client certificate (PEM).
    pub client_cert: Option<PathBuf>,
    /// `sslkey`: the client certificate's private key (PEM).
    pub client_key: Option<PathBuf>,
}

/// The keys the pool reads itself: TLS (tokio-postgres knows three of libpq's six `sslmode`s)
/// and `target_session_attrs` (it knows three of six there too).
const KEYS: [&str; 5] = [
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "target_session_attrs",
];

/// `url` without the keys the pool reads itself, and what they said. A string that does not
/// parse is returned whole, for tokio-postgres to say what is wrong with it.
pub(crate) fn split(url: &str) -> Result<(String, TlsOptions, crate::SessionAttrs), String> {
    // The same reading as redaction's: `host=a://b password=x` is a key=value string.
    let (rest, pairs) = if crate::redact::is_url(url) {
        split_url(url)
    } else {
        split_key_value(url)
    };
    let mut options = TlsOptions::default();
    let mut mode = None;
    let mut attrs = crate::SessionAttrs::Any;
    for (key, value) in pairs {
        match key.as_str() {
            "target_session_attrs" => {
                attrs = crate::SessionAttrs::parse(&value).ok_or_else(|| {
                    format!(
                        "target_session_attrs `{value}` is not one of any, read-write, read-only, primary, standby, prefer-standby"
                    )
                })?
            }
            "sslmode" => {
                mode = Some(SslMode::parse(&value).ok_or_else(|| {
                    format!(
                        "sslmode `{value}` is not one of disable, allow, prefer, require, verify-ca, verify-full"
                    )
                })?)
            }
            "sslrootcert" if value == "system" => options.root_cert = Some(RootCert::System),
            "sslrootcert" => options.root_cert = Some(RootCert::File(value.into())),
            "sslcert" => options.client_cert = Some(value.into()),
            _ => options.client_key = Some(value.into()),
        }
    }
    // As libpq: the public CAs make sense only with the host name checked.
    options.mode = match (mode, &options.root_cert) {
        (None, Some(RootCert::System)) => SslMode::VerifyFull,
        (Some(m), Some(RootCert::System)) if m != SslMode::VerifyFull => {
            return Err(format!(
                "sslrootcert=system trusts every public CA, so it needs sslmode=verify-full (not {}): anyone with a public certificate could pose as the server otherwise",
                m.as_str()
            ));
        }
        (m, _) => m.unwrap_or_default(),
    };
    if options.client_cert.is_some() != options.client_key.is_some() {
        return Err(
            "sslcert and sslkey go together: give both the client certificate and its key".into(),
        );
    }
    if !cfg!(feature = "rustls") && options.mode >= SslMode::Require {
        return Err(format!(
            "sslmode={} needs TLS, and this build of the pool has none: enable its `rustls` feature (on by default)",
            options.mode.as_str()
        ));
    }
    Ok((rest, options, attrs))
}

impl PartialOrd for SslMode {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SslMode {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (*self as u8).cmp(&(*other as u8))
    }
}

/// The TLS keys of a URL's query, and the URL without them.
fn split_url(url: &str) -> (String, Vec<(String, String)>) {
    let start = url.find("://").map_or(0, |i| i + 3);
    let host_start = url[start..].find('@').map_or(start, |i| start + i + 1);
    let Some(q) = url[host_start..].find('?').map(|i| host_start + i) else {
        return (url.to_string(), Vec::new());
    };
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    for param in url[q + 1..].split('&') {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        let key = crate::redact::percent_decode(key);
        if KEYS.contains(&key.as_str()) {
            taken.push((key, crate::redact::percent_decode(value)));
        } else {
            kept.push(param);
        }
    }
    let mut rest = url[..q].to_string();
    if !kept.is_empty() {
        rest.push('?');
        rest.push_str(&kept.join("&"));
    }
    (rest, taken)
}

/// The TLS keys of a `key=value` string (tokio-postgres's grammar: spaces around `=`, values
/// plain or single-quoted, `\` escaping), and the string without them.
fn split_key_value(s: &str) -> (String, Vec<(String, String)>) {
    let b = s.as_bytes();
    let mut rest = String::new();
    let mut taken = Vec::new();
    let mut i = 0;
    let skip_ws = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    loop {
        let start = i;
        i = skip_ws(i);
        if i >= b.len() {
            rest.push_str(&s[start..]);
            break;
        }
        let key_start = i;
        while i < b.len() && b[i] != b'=' && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &s[key_start..i];
        i = skip_ws(i);
        if i >= b.len() || b[i] != b'=' {
            // Not key=value: tokio-postgres will say so; leave the rest as it is.
            rest.push_str(&s[start..]);
            break;
        }
        i = skip_ws(i + 1);
        let mut value = String::new();
        let quoted = i < b.len() && b[i] == b'\'';
        if quoted {
            i += 1;
        }
        while i < b.len() {
            match b[i] {
                b'\\' if i + 1 < b.len() => {
                    let c = s[i + 1..].chars().next().expect("a character");
                    value.push(c);
                    i += 1 + c.len_utf8();
                    continue;
                }
                b'\'' if quoted => {
                    i += 1;
                    break;
                }
                c if !quoted && c.is_ascii_whitespace() => break,
                _ => {}
            }
            let c = s[i..].chars().next().expect("a character");
            value.push(c);
            i += c.len_utf8();
        }
        if KEYS.contains(&key) {
            taken.push((key.to_string(), value));
        } else {
            rest.push_str(&s[start..i]);
        }
    }
    (rest.trim().to_string(), taken)
}

#[cfg_attr(not(feature = "rustls"), allow(dead_code))]
/// libpq's default root certificate file, when it exists.
fn default_root_cert() -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os("HOME")?).join(".postgresql/root.crt");
    path.is_file().then_some(path)
}

#[cfg(feature = "rustls")]
pub(crate) use with_rustls::{Setup, TrackedTls, failure_message};

/// Without TLS built in there is no setup to make: [`split`] refuses the modes that need one.
#[cfg(not(feature = "rustls"))]
#[derive(Clone)]
pub(crate) enum Setup {}

#[cfg(not(feature = "rustls"))]
impl Setup {
    pub fn new(_: &TlsOptions) -> Result<Option<Self>, String> {
        Ok(None)
    }

    pub fn unchecked(_: SslMode) -> Option<Self> {
        None
    }
}

#[cfg(feature = "rustls")]
mod with_rustls;

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(mode: SslMode) -> TlsOptions {
        TlsOptions {
            mode,
            ..TlsOptions::default()
        }
    }

    #[test]
    fn the_tls_keys_are_taken_out_of_a_url_and_the_rest_is_kept() {
        let (rest, tls, _) = split(
            "postgres://u:p%3F@db:5432/app?application_name=a&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgres://u:p%3F@db:5432/app?application_name=a&connect_timeout=3"
        );
        assert_eq!(tls.mode, SslMode::VerifyFull);
        assert_eq!(tls.root_cert, Some(RootCert::File("/etc/ca.pem".into())));
        let (rest, tls, _) = split("postgres://db/app?sslmode=disable").unwrap();
        assert_eq!(
            (rest.as_str(), tls),
            ("postgres://db/app", opts(SslMode::Disable))
        );
        let (rest, tls, _) = split("postgres://db/app").unwrap();
        assert_eq!(
            (rest.as_str(), tls),
            ("postgres://db/app", opts(SslMode::Prefer))
        );
    }

    #[test]
    fn the_tls_keys_are_taken_out_of_a_key_value_string_with_its_quoting() {
        let (rest, tls, _) = split(
            "host=db sslmode = require sslcert='/a b/c.pem' sslkey=/k\\ ey.pem password='x y' dbname=app",
        )
        .unwrap();
        assert_eq!(rest, "host=db password='x y' dbname=app");
        assert_eq!(tls.mode, SslMode::Require);
        assert_eq!(tls.client_cert, Some("/a b/c.pem".into()));
        assert_eq!(tls.client_key, Some("/k ey.pem".into()));
        // Not key=value: left whole for tokio-postgres to refuse.
        assert_eq!(split("host=db oops").unwrap().0, "host=db oops");
        assert_eq!(
            split("allow=1 sslmode=allow").unwrap().1.mode,
            SslMode::Prefer
        );
    }

    #[test]
    fn settings_that_do_not_go_together_are_refused_with_the_fix() {
        // `://` inside a value does not make a key=value string a URL (whose query would
        // swallow the password into a quoted sslmode).
        let (rest, tls, _) = split("host=db://x password=s3cret sslmode=disable").unwrap();
        assert_eq!(
            (rest.as_str(), tls.mode),
            ("host=db://x password=s3cret", SslMode::Disable)
        );
        let err = split("host=db sslmode=verify-everything").unwrap_err();
        assert!(err.contains("not one of disable, allow, prefer"), "{err}");
        let err = split("host=db sslmode=require sslrootcert=system").unwrap_err();
        assert!(
            err.contains("needs sslmode=verify-full (not require)"),
            "{err}"
        );
        assert_eq!(
            split("host=db sslrootcert=system").unwrap().1.mode,
            SslMode::VerifyFull
        );
        let err = split("host=db sslcert=/c.pem").unwrap_err();
        assert!(err.contains("sslcert and sslkey go together"), "{err}");
        assert!(SslMode::Disable < SslMode::Prefer && SslMode::Require < SslMode::VerifyCa);
    }

    #[cfg(feature = "rustls")]
    #[test]
    fn certificate_files_are_read_when_the_connector_is_made_and_named_when_bad() {
        let dir = std::env::temp_dir().join(format!("pool-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let with = |root: RootCert| TlsOptions {
            mode: SslMode::VerifyCa,
            root_cert: Some(root),
            ..TlsOptions::default()
        };
        let err = Setup::new(&with(RootCert::File(empty.clone())))
            .err()
            .unwrap();
        assert!(err.contains("holds no CA certificate in PEM form"), "{err}");
        let err = Setup::new(&with(RootCert::File(dir.join("missing.pem"))))
            .err()
            .unwrap();
        assert!(err.contains("missing.pem` could not be read"), "{err}");
        assert!(Setup::new(&with(RootCert::System)).unwrap().is_some());
        assert!(Setup::new(&opts(SslMode::Disable)).unwrap().is_none());
        assert!(Setup::unchecked(SslMode::VerifyFull).is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
