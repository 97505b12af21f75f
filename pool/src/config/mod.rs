//! [`PoolConfig`]: every option, its default, and validation that reports all problems at once.
//!
//! Every option is declared once, in the `options!` table below: its type, default, the row of
//! the documentation table, the setter, the `POOL_<NAME>` variable, the serde field and the
//! `Debug` line are all made from that one entry, so an option cannot be half added.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::error::{ConfigError, ConfigProblem};

mod check;
mod value;
use value::OptionValue;
pub use value::{IdleOrder, SessionReset, parse_duration};

/// serde's entry for every option field: the field's type picks the parser.
fn de_option<'de, D: Deserializer<'de>, T: OptionValue>(d: D) -> Result<T, D::Error> {
    T::deserialize(d)
}

/// Declares every option once. Each entry: the setter's doc, `name: Type = default`, then
/// the default as the documentation shows it, what it means (one table row), and the value
/// the setter's example uses.
macro_rules! options {
    (
        $(#[$doc:meta])*
        pub struct $Config:ident {
            $(#[$url_attr:meta])* url
        }
        $(#[$after:meta])*
        ;
        $(
            $(#[$setter_doc:meta])*
            $name:ident: $ty:ty = $default:expr, $shown:literal, $meaning:literal, e.g. $example:expr;
        )*
    ) => {
        $(#[$doc])*
        ///
        /// | field | default | meaning |
        /// | --- | --- | --- |
        /// | `url` | (required) | `postgres://user:pass@host:port/db?...` or `host=... user=...` key/value |
        $(#[doc = concat!("| `", stringify!($name), "` | ", $shown, " | ", $meaning, " |")])*
        ///
        $(#[$after])*
        #[derive(Clone, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $Config {
            $(#[$url_attr])*
            pub(crate) url: String,
            $(
                #[serde(deserialize_with = "de_option")]
                pub(crate) $name: $ty,
            )*
        }

        impl Default for $Config {
            fn default() -> Self {
                Self {
                    url: String::new(),
                    $($name: $default,)*
                }
            }
        }

        impl $Config {
            /// Every option's name, as in serde and (upper-cased, after `POOL_`) the environment.
            pub const OPTIONS: &'static [&'static str] = &[$(stringify!($name)),*];

            $(
                $(#[$setter_doc])*
                #[doc = concat!("\n\n`", stringify!($name), "`: ", $meaning, " (default ", $shown, ").")]
                ///
                /// # Examples
                #[doc = concat!(
                    "```\n# use std::time::Duration;\nlet config = pool::PoolConfig::from_url(\"postgres://app@db/app\").unwrap().",
                    stringify!($name), "(", stringify!($example), ");\n",
                    "assert!(config.validate().is_ok());\n```"
                )]
                #[must_use]
                pub fn $name(mut self, value: $ty) -> Self {
                    self.$name = value;
                    self
                }
            )*

            /// Sets the option `field` from the text of an environment variable.
            fn set_field(&mut self, field: &str, value: &str) -> Result<(), String> {
                match field {
                    $(stringify!($name) => self.$name = <$ty as OptionValue>::from_text(value)?,)*
                    _ => return Err("is not a pool setting (see PoolConfig's documentation)".into()),
                }
                Ok(())
            }
        }

        impl fmt::Debug for $Config {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($Config))
                    .field("url", &self.redacted_url())
                    $(.field(stringify!($name), &self.$name))*
                    .finish()
            }
        }
    };
}

options! {
    /// How the pool connects and behaves. The serde form is the source of truth; every field
    /// has a default, so `{"url": "postgres://app@db/app"}` is a complete configuration.
    pub struct PoolConfig {
        #[serde(alias = "database_url")]
        url
    }
    /// Durations deserialize from a number of milliseconds or a string with a unit
    /// (`"250ms"`, `"5s"`, `"2m"`, `"1h"`); in the environment, `POOL_<FIELD>` takes the same
    /// text, and `none` for an optional one.
    ///
    /// `Debug` never shows the password.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let config = pool::PoolConfig::from_url("postgres://app:secret@db:5432/app")?
    ///     .min_size(2)
    ///     .max_size(10)
    ///     .acquire_timeout(Duration::from_secs(5));
    /// assert!(!format!("{config:?}").contains("secret"));
    /// # Ok::<(), pool::ConfigError>(())
    /// ```
    ;
    /// Connections kept open even when idle.
    min_size: usize = 2, "2", "connections kept open, even when idle", e.g. 3;
    /// Connections open at most.
    max_size: usize = 10, "10", "connections open at most (idle + checked out)", e.g. 20;
    /// The one deadline of an acquire.
    acquire_timeout: Duration = Duration::from_secs(5), "5 s",
        "the one deadline for [`Pool::acquire`](crate::Pool::acquire): waiting, connecting and validating all count against it",
        e.g. Duration::from_secs(2);
    /// The one deadline of a statement run through [`Pool::query`](crate::Pool::query) and its
    /// siblings.
    query_timeout: Duration = Duration::from_secs(30), "30 s",
        "the one deadline of [`Pool::query`](crate::Pool::query) and its siblings: getting a shared session (within `acquire_timeout` too) and running the statement",
        e.g. Duration::from_secs(5);
    /// Bound on one connection attempt.
    connect_timeout: Duration = Duration::from_secs(2), "2 s",
        "bound on one connection attempt (TCP + TLS + startup)", e.g. Duration::from_secs(1);
    /// Bound on a validation round trip.
    validation_timeout: Duration = Duration::from_secs(1), "1 s",
        "bound on the round trip that checks an idle connection", e.g. Duration::from_millis(500);
    /// Connections idle less than this are handed out without validation.
    validation_bypass: Duration = Duration::from_millis(500), "500 ms",
        "a connection idle for less than this is handed out without a round trip (as HikariCP)",
        e.g. Duration::from_millis(250);
    /// Idle connections above `min_size` close after this (`None` = never).
    idle_timeout: Option<Duration> = Some(Duration::from_secs(60)), "60 s",
        "idle connections above `min_size` are closed after this (`null` = never)",
        e.g. Some(Duration::from_secs(300));
    /// Connections are retired after this, minus up to 2.5 % jitter (`None` = never).
    max_lifetime: Option<Duration> = Some(Duration::from_secs(3600)), "1 h",
        "connections are retired after this, minus up to 2.5 % jitter (`null` = never)",
        e.g. Some(Duration::from_secs(1800));
    /// Connections are retired after this many checkouts (`None` = never).
    max_uses: Option<u64> = Some(50_000), "50 000",
        "connections are retired after this many checkouts (`null` = never)", e.g. Some(10_000);
    /// Hold time after which a leak is suspected and logged (`None` = off).
    leak_detection_threshold: Option<Duration> = Some(Duration::from_secs(30)), "30 s",
        "a connection held longer is reported as a suspected leak (`null` = off)",
        e.g. Some(Duration::from_secs(10));
    /// Interval of the background probe while the database is up.
    probe_interval: Duration = Duration::from_millis(500), "500 ms",
        "how often the background probe checks the database while it is up", e.g. Duration::from_secs(1);
    /// Bound on one probe.
    probe_timeout: Duration = Duration::from_secs(1), "1 s", "bound on one probe round trip",
        e.g. Duration::from_millis(500);
    /// Interval of the TCP probe during an outage.
    outage_probe_interval: Duration = Duration::from_millis(100), "100 ms",
        "how often a cheap TCP probe looks for the database's return during an outage",
        e.g. Duration::from_millis(200);
    /// First reconnection backoff during an outage.
    reconnect_backoff_base: Duration = Duration::from_millis(100), "100 ms",
        "first backoff between connection attempts during an outage", e.g. Duration::from_millis(50);
    /// Cap of the reconnection backoff.
    reconnect_backoff_max: Duration = Duration::from_secs(2), "2 s",
        "cap of the exponential backoff (full jitter)", e.g. Duration::from_secs(5);
    /// TCP keepalive idle time.
    tcp_keepalive_idle: Duration = Duration::from_secs(10), "10 s",
        "TCP keepalive idle time, so dead peers are noticed on held connections",
        e.g. Duration::from_secs(30);
    /// TCP keepalive probe interval.
    tcp_keepalive_interval: Duration = Duration::from_secs(2), "2 s", "TCP keepalive probe interval",
        e.g. Duration::from_secs(5);
    /// TCP keepalive probes before the socket is dead.
    tcp_keepalive_retries: u32 = 3, "3", "TCP keepalive probes before the socket is declared dead", e.g. 5;
    /// TCP user timeout.
    tcp_user_timeout: Duration = Duration::from_secs(15), "15 s",
        "unacknowledged data older than this kills the socket (Linux)", e.g. Duration::from_secs(20);
    /// Prepared statements cached per connection.
    statement_cache_capacity: usize = 256, "256",
        "prepared statements kept per connection by `prepare_cached`; when full, the least recently used is closed", e.g. 64;
    /// A middlebox that pools by transaction (PgBouncer `pool_mode = transaction`) is in the path.
    transaction_pooling: bool = false, "`false`",
        "a middlebox that pools by transaction (PgBouncer `pool_mode = transaction`) is between the pool and the server: the shared path sends statements unnamed (parameter types learned once per SQL text, inside a transaction) and `prepare_cached` caches nothing, since a statement prepared by name is gone at the next transaction", e.g. true;
    /// `application_name` of the connections, unless the URL sets one.
    application_name: String = "pool".to_string(), "`pool`",
        "`application_name` of every connection, unless the URL sets one", e.g. "billing".to_string();
    /// Seed of the backoff and lifetime jitter: makes a test repeatable.
    jitter_seed: Option<u64> = None, "random",
        "seed of the backoff and lifetime jitter: set it to make a test repeatable", e.g. Some(42);
    /// Which idle connection an acquire gets.
    idle_order: IdleOrder = IdleOrder::Lifo, "`lifo`",
        "which idle connection an acquire gets: [`IdleOrder::Lifo`] or [`IdleOrder::Fifo`]",
        e.g. pool::IdleOrder::Fifo;
    /// What a returned session's state is reset with before reuse.
    session_reset: SessionReset = SessionReset::Off, "`off`",
        "what a returned session's state is reset with: [`SessionReset::Off`], `Clean` or `Discard` (each a round trip on every return)",
        e.g. pool::SessionReset::Clean;
}

impl PoolConfig {
    /// A configuration for the server at `url` (a `postgres://` URL or `key=value` pairs),
    /// with every other option at its default.
    ///
    /// # Errors
    /// [`ConfigError`] when the URL does not parse or names no host.
    ///
    /// # Examples
    /// ```
    /// let config = pool::PoolConfig::from_url("host=db user=app dbname=app")?;
    /// assert_eq!(config.get_max_size(), 10);
    /// assert!(pool::PoolConfig::from_url("postgres://[::1").is_err());
    /// # Ok::<(), pool::ConfigError>(())
    /// ```
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        let config = PoolConfig {
            url: url.to_string(),
            ..PoolConfig::default()
        };
        config.pg_config().map_err(ConfigError::single)?;
        Ok(config)
    }

    /// A configuration from the environment: `DATABASE_URL`, plus `POOL_<FIELD>` for any field
    /// (`POOL_MAX_SIZE=20`, `POOL_ACQUIRE_TIMEOUT=3s`, `POOL_IDLE_TIMEOUT=none`). Every bad
    /// variable is reported, not just the first.
    ///
    /// # Examples
    /// ```no_run
    /// // DATABASE_URL=postgres://app@db/app POOL_MAX_SIZE=20
    /// let config = pool::PoolConfig::from_env()?;
    /// assert_eq!(config.get_max_size(), 20);
    /// # Ok::<(), pool::ConfigError>(())
    /// ```
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Like [`from_env`](Self::from_env), from an explicit list of variables.
    ///
    /// # Examples
    /// ```
    /// let vars = [("DATABASE_URL", "postgres://app@db:5432/app"), ("POOL_MAX_SIZE", "20")];
    /// let config =
    ///     pool::PoolConfig::from_vars(vars.map(|(k, v)| (k.to_string(), v.to_string())))?;
    /// assert_eq!(config.get_max_size(), 20);
    /// # Ok::<(), pool::ConfigError>(())
    /// ```
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut config = PoolConfig::default();
        let mut problems = Vec::new();
        let mut have_url = false;
        for (key, value) in vars {
            if key == "DATABASE_URL" {
                config.url = value;
                have_url = true;
                continue;
            }
            let Some(field) = key.strip_prefix("POOL_") else {
                continue;
            };
            let field = field.to_ascii_lowercase();
            if let Err(message) = config.set_field(&field, &value) {
                // The message quotes the bad value, which may hold a pasted connection string
                // (found by the config fuzz target): it is redacted like one.
                problems.push(ConfigProblem::new(
                    key.clone(),
                    crate::redact::redact_url(&message),
                ));
            }
        }
        // Every problem at once: the variables that did not parse, then what validation finds
        // in the rest (a bad variable keeps its default, so it is not reported twice).
        // Each named by its variable, since that is what the user set.
        let mut found = Vec::new();
        if have_url {
            if let Err(p) = config.pg_config() {
                found.push(p);
            }
        } else {
            problems.push(ConfigProblem::new(
                "DATABASE_URL",
                "is not set: set it to postgres://user:password@host:port/database",
            ));
        }
        config.check_settings(&mut found);
        problems.extend(found.into_iter().map(|p| ConfigProblem {
            field: match p.field.as_str() {
                "url" => "DATABASE_URL".to_string(),
                field => format!("POOL_{}", field.to_ascii_uppercase()),
            },
            message: p.message,
        }));
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Checks every option and returns all problems together, each with its fix.
    ///
    /// # Examples
    /// ```
    /// let err = pool::PoolConfig::from_url("postgres://app@db/app")?
    ///     .min_size(5)
    ///     .max_size(2)
    ///     .validate()
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("min_size (5) > max_size (2): lower min_size or raise max_size"));
    /// # Ok::<(), pool::ConfigError>(())
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if let Err(p) = self.pg_config() {
            problems.push(p);
        }
        self.check_settings(&mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Every setting but the URL (a custom connector brings its own target).
    pub(crate) fn validate_settings(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        self.check_settings(&mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    /// The parsed connection settings, with the pool's TCP and application settings applied.
    pub(crate) fn pg_config(&self) -> Result<tokio_postgres::Config, ConfigProblem> {
        self.connection().map(|(pg, _, _)| pg)
    }

    /// The URL read once: the connection settings (as [`pg_config`](Self::pg_config)) and its
    /// TLS settings.
    pub(crate) fn connection(
        &self,
    ) -> Result<
        (
            tokio_postgres::Config,
            crate::TlsOptions,
            crate::SessionAttrs,
        ),
        ConfigProblem,
    > {
        if self.url.trim().is_empty() {
            return Err(ConfigProblem::new(
                "url",
                "is empty: set it to postgres://user:password@host:port/database",
            ));
        }
        let (url, tls, attrs) =
            crate::tls::split(&self.url).map_err(|e| ConfigProblem::new("url", e))?;
        let mut pg = tokio_postgres::Config::from_str(&url).map_err(|e| {
            ConfigProblem::new(
                "url",
                format!(
                    "`{}` is not a valid PostgreSQL URL or key=value string ({e}); expected postgres://user:password@host:port/database",
                    crate::redact::redact_url(&self.url)
                ),
            )
        })?;
        if pg.get_hosts().is_empty() {
            return Err(ConfigProblem::new(
                "url",
                format!(
                    "`{}` names no host: add one, e.g. postgres://user@localhost:5432/database",
                    crate::redact::redact_url(&self.url)
                ),
            ));
        }
        pg.ssl_mode(tls.mode.for_tokio_postgres());
        if pg.get_application_name().is_none() {
            pg.application_name(&self.application_name);
        }
        pg.connect_timeout(self.connect_timeout)
            .keepalives(true)
            .keepalives_idle(self.tcp_keepalive_idle)
            .keepalives_interval(self.tcp_keepalive_interval)
            .keepalives_retries(self.tcp_keepalive_retries)
            .tcp_user_timeout(self.tcp_user_timeout);
        Ok((pg, tls, attrs))
    }

    /// The TLS settings of the URL: `sslmode`, `sslrootcert`, `sslcert`, `sslkey` (see
    /// [`SslMode`](crate::SslMode)). Certificate files are read when the pool connects.
    ///
    /// # Errors
    /// [`ConfigError`] when the URL does not parse or its TLS settings do not go together.
    ///
    /// # Examples
    /// ```
    /// let config = pool::PoolConfig::from_url("postgres://app@db/app?sslmode=require")?;
    /// assert_eq!(config.tls_options()?.mode, pool::SslMode::Require);
    /// // libpq's default: TLS when the server offers it.
    /// let plain = pool::PoolConfig::from_url("postgres://app@db/app")?;
    /// assert_eq!(plain.tls_options()?.mode, pool::SslMode::Prefer);
    /// # Ok::<(), pool::ConfigError>(())
    /// ```
    pub fn tls_options(&self) -> Result<crate::TlsOptions, ConfigError> {
        self.connection()
            .map(|(_, tls, _)| tls)
            .map_err(ConfigError::single)
    }

    /// The URL's `target_session_attrs` (libpq's six; see [`SessionAttrs`](crate::SessionAttrs)).
    ///
    /// # Errors
    /// [`ConfigError`] when the URL does not parse or names another mode.
    ///
    /// # Examples
    /// ```
    /// let config = pool::PoolConfig::from_url("host=a,b port=5432,5433 user=app target_session_attrs=read-write")?;
    /// assert_eq!(config.session_attrs()?, pool::SessionAttrs::ReadWrite);
    /// let bad = pool::PoolConfig::from_url("postgres://app@a/app?target_session_attrs=master");
    /// assert!(bad.unwrap_err().to_string().contains("not one of any, read-write"));
    /// # Ok::<(), pool::ConfigError>(())
    /// ```
    pub fn session_attrs(&self) -> Result<crate::SessionAttrs, ConfigError> {
        self.connection()
            .map(|(_, _, attrs)| attrs)
            .map_err(ConfigError::single)
    }

    /// The URL with its password replaced by `***`.
    ///
    /// # Examples
    /// ```
    /// let config = pool::PoolConfig::from_url("postgres://app:s3cret@db/app")?;
    /// assert!(!config.redacted_url().contains("s3cret"));
    /// # Ok::<(), pool::ConfigError>(())
    /// ```
    pub fn redacted_url(&self) -> String {
        crate::redact::redact_url(&self.url)
    }

    /// `min_size`.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(pool::PoolConfig::default().min_size(3).get_min_size(), 3);
    /// ```
    pub fn get_min_size(&self) -> usize {
        self.min_size
    }

    /// `max_size`.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(pool::PoolConfig::default().max_size(20).get_max_size(), 20);
    /// ```
    pub fn get_max_size(&self) -> usize {
        self.max_size
    }

    /// `acquire_timeout`.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let config = pool::PoolConfig::default().acquire_timeout(Duration::from_secs(2));
    /// assert_eq!(config.get_acquire_timeout(), Duration::from_secs(2));
    /// ```
    pub fn get_acquire_timeout(&self) -> Duration {
        self.acquire_timeout
    }

    /// The effective `application_name` (the URL's, or the configured one).
    ///
    /// # Examples
    /// ```
    /// let config = pool::PoolConfig::from_url("postgres://db/app?application_name=billing")?;
    /// assert_eq!(config.get_application_name(), "billing");
    /// # Ok::<(), pool::ConfigError>(())
    /// ```
    pub fn get_application_name(&self) -> String {
        self.pg_config()
            .ok()
            .and_then(|pg| pg.get_application_name().map(str::to_string))
            .unwrap_or_else(|| self.application_name.clone())
    }
}

#[cfg(test)]
mod tests;
