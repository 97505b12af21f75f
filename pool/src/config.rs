//! [`PoolConfig`]: every option, its default, and validation that reports all problems at once.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::error::{ConfigError, ConfigProblem};

/// How the pool connects and behaves. The serde form is the source of truth; every field has
/// a default, so `{"url": "postgres://app@db/app"}` is a complete configuration.
///
/// | field | default | meaning |
/// | --- | --- | --- |
/// | `url` | (required) | `postgres://user:pass@host:port/db?...` or `host=... user=...` key/value |
/// | `min_size` | 2 | connections kept open, even when idle |
/// | `max_size` | 10 | connections open at most (idle + checked out) |
/// | `acquire_timeout` | 5 s | the one deadline for [`Pool::acquire`](crate::Pool::acquire): waiting, connecting and validating all count against it |
/// | `connect_timeout` | 2 s | bound on one connection attempt (TCP + TLS + startup) |
/// | `validation_timeout` | 1 s | bound on the round trip that checks an idle connection |
/// | `validation_bypass` | 500 ms | a connection idle for less than this is handed out without a round trip (as HikariCP) |
/// | `idle_timeout` | 60 s | idle connections above `min_size` are closed after this (`null` = never) |
/// | `max_lifetime` | 1 h | connections are retired after this, minus up to 2.5 % jitter (`null` = never) |
/// | `max_uses` | 50 000 | connections are retired after this many checkouts (`null` = never) |
/// | `leak_detection_threshold` | 30 s | a connection held longer is reported as a suspected leak (`null` = off) |
/// | `probe_interval` | 500 ms | how often the background probe checks the database while it is up |
/// | `probe_timeout` | 1 s | bound on one probe round trip |
/// | `outage_probe_interval` | 100 ms | how often a cheap TCP probe looks for the database's return during an outage |
/// | `reconnect_backoff_base` | 100 ms | first backoff between connection attempts during an outage |
/// | `reconnect_backoff_max` | 2 s | cap of the exponential backoff (full jitter) |
/// | `tcp_keepalive_idle` | 10 s | TCP keepalive idle time, so dead peers are noticed on held connections |
/// | `tcp_keepalive_interval` | 2 s | TCP keepalive probe interval |
/// | `tcp_keepalive_retries` | 3 | TCP keepalive probes before the socket is declared dead |
/// | `tcp_user_timeout` | 15 s | unacknowledged data older than this kills the socket (Linux) |
/// | `statement_cache_capacity` | 256 | prepared statements kept per connection by `prepare_cached` |
/// | `application_name` | `pool` | `application_name` of every connection, unless the URL sets one |
/// | `jitter_seed` | random | seed of the backoff and lifetime jitter: set it to make a test repeatable |
///
/// Durations deserialize from a number of milliseconds or a string with a unit
/// (`"250ms"`, `"5s"`, `"2m"`, `"1h"`).
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
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    #[serde(alias = "database_url")]
    pub(crate) url: String,
    pub(crate) min_size: usize,
    pub(crate) max_size: usize,
    #[serde(deserialize_with = "de_duration")]
    pub(crate) acquire_timeout: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub(crate) connect_timeout: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub(crate) validation_timeout: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub(crate) validation_bypass: Duration,
    #[serde(deserialize_with = "de_opt_duration")]
    pub(crate) idle_timeout: Option<Duration>,
    #[serde(deserialize_with = "de_opt_duration")]
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) max_uses: Option<u64>,
    #[serde(deserialize_with = "de_opt_duration")]
    pub(crate) leak_detection_threshold: Option<Duration>,
    #[serde(deserialize_with = "de_duration")]
    pub(crate) probe_interval: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub(crate) probe_timeout: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub(crate) outage_probe_interval: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub(crate) reconnect_backoff_base: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub(crate) reconnect_backoff_max: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub(crate) tcp_keepalive_idle: Duration,
    #[serde(deserialize_with = "de_duration")]
    pub(crate) tcp_keepalive_interval: Duration,
    pub(crate) tcp_keepalive_retries: u32,
    #[serde(deserialize_with = "de_duration")]
    pub(crate) tcp_user_timeout: Duration,
    pub(crate) statement_cache_capacity: usize,
    pub(crate) application_name: String,
    pub(crate) jitter_seed: Option<u64>,
    pub(crate) idle_order: IdleOrder,
}

/// Which idle connection an acquire gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdleOrder {
    /// The most recently returned (the default): load concentrates on few connections, so
    /// the rest stay idle long enough for `idle_timeout` to retire them, and the hot ones keep
    /// warm caches. An acquire that had to queue for a slot (the pool is saturated, nothing
    /// will retire) gets the longest idle one instead, whose backend has finished the work it
    /// does after answering.
    #[default]
    Lifo,
    /// The least recently returned: load rotates over every open connection, as deadpool's
    /// default does. It can be faster when the server shares cores with the application (in
    /// the `ratios` benchmark, with both on the same two cores, one sequential caller ran
    /// about 10 % more `SELECT 1`s per second; with the server on its own core, no more), but
    /// no connection stays idle, so the pool does not shrink under light load, and a
    /// connection idle past `validation_bypass` between turns is validated before each use.
    Fifo,
}

impl FromStr for IdleOrder {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "lifo" => Ok(IdleOrder::Lifo),
            "fifo" => Ok(IdleOrder::Fifo),
            other => Err(format!("`{other}` is not an idle order; use lifo or fifo")),
        }
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            min_size: 2,
            max_size: 10,
            acquire_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            validation_timeout: Duration::from_secs(1),
            validation_bypass: Duration::from_millis(500),
            idle_timeout: Some(Duration::from_secs(60)),
            max_lifetime: Some(Duration::from_secs(3600)),
            max_uses: Some(50_000),
            leak_detection_threshold: Some(Duration::from_secs(30)),
            probe_interval: Duration::from_millis(500),
            probe_timeout: Duration::from_secs(1),
            outage_probe_interval: Duration::from_millis(100),
            reconnect_backoff_base: Duration::from_millis(100),
            reconnect_backoff_max: Duration::from_secs(2),
            tcp_keepalive_idle: Duration::from_secs(10),
            tcp_keepalive_interval: Duration::from_secs(2),
            tcp_keepalive_retries: 3,
            tcp_user_timeout: Duration::from_secs(15),
            statement_cache_capacity: 256,
            application_name: "pool".to_string(),
            jitter_seed: None,
            idle_order: IdleOrder::Lifo,
        }
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty = $example:expr),* $(,)?) => {
        $(
            $(#[$doc])*
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
    };
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
                problems.push(ConfigProblem::new(key.clone(), message));
            }
        }
        if !have_url {
            problems.push(ConfigProblem::new(
                "DATABASE_URL",
                "is not set: set it to postgres://user:password@host:port/database",
            ));
        }
        if problems.is_empty() {
            config.validate()?;
            Ok(config)
        } else {
            Err(ConfigError { problems })
        }
    }

    fn set_field(&mut self, field: &str, value: &str) -> Result<(), String> {
        fn num<T: FromStr>(v: &str) -> Result<T, String> {
            v.trim()
                .parse()
                .map_err(|_| format!("`{v}` is not a whole number"))
        }
        fn opt<T>(v: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<Option<T>, String> {
            match v.trim().to_ascii_lowercase().as_str() {
                "" | "none" | "off" | "null" | "never" => Ok(None),
                _ => parse(v).map(Some),
            }
        }
        match field {
            "min_size" => self.min_size = num(value)?,
            "max_size" => self.max_size = num(value)?,
            "acquire_timeout" => self.acquire_timeout = parse_duration(value)?,
            "connect_timeout" => self.connect_timeout = parse_duration(value)?,
            "validation_timeout" => self.validation_timeout = parse_duration(value)?,
            "validation_bypass" => self.validation_bypass = parse_duration(value)?,
            "idle_timeout" => self.idle_timeout = opt(value, parse_duration)?,
            "max_lifetime" => self.max_lifetime = opt(value, parse_duration)?,
            "max_uses" => self.max_uses = opt(value, num)?,
            "leak_detection_threshold" => {
                self.leak_detection_threshold = opt(value, parse_duration)?
            }
            "probe_interval" => self.probe_interval = parse_duration(value)?,
            "probe_timeout" => self.probe_timeout = parse_duration(value)?,
            "outage_probe_interval" => self.outage_probe_interval = parse_duration(value)?,
            "reconnect_backoff_base" => self.reconnect_backoff_base = parse_duration(value)?,
            "reconnect_backoff_max" => self.reconnect_backoff_max = parse_duration(value)?,
            "tcp_keepalive_idle" => self.tcp_keepalive_idle = parse_duration(value)?,
            "idle_order" => self.idle_order = value.parse()?,
            "tcp_keepalive_interval" => self.tcp_keepalive_interval = parse_duration(value)?,
            "tcp_keepalive_retries" => self.tcp_keepalive_retries = num(value)?,
            "tcp_user_timeout" => self.tcp_user_timeout = parse_duration(value)?,
            "statement_cache_capacity" => self.statement_cache_capacity = num(value)?,
            "application_name" => self.application_name = value.to_string(),
            "jitter_seed" => self.jitter_seed = opt(value, num)?,
            _ => return Err("is not a pool setting (see PoolConfig's documentation)".into()),
        }
        Ok(())
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

    fn check_settings(&self, problems: &mut Vec<ConfigProblem>) {
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

    /// The parsed connection settings, with the pool's TCP and application settings applied.
    pub(crate) fn pg_config(&self) -> Result<tokio_postgres::Config, ConfigProblem> {
        if self.url.trim().is_empty() {
            return Err(ConfigProblem::new(
                "url",
                "is empty: set it to postgres://user:password@host:port/database",
            ));
        }
        let mut pg = tokio_postgres::Config::from_str(&self.url).map_err(|e| {
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
        if pg.get_application_name().is_none() {
            pg.application_name(&self.application_name);
        }
        pg.connect_timeout(self.connect_timeout)
            .keepalives(true)
            .keepalives_idle(self.tcp_keepalive_idle)
            .keepalives_interval(self.tcp_keepalive_interval)
            .keepalives_retries(self.tcp_keepalive_retries)
            .tcp_user_timeout(self.tcp_user_timeout);
        Ok(pg)
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

    setters! {
        /// Connections kept open even when idle (default 2).
        min_size: usize = 3,
        /// Connections open at most (default 10).
        max_size: usize = 20,
        /// The one deadline of an acquire (default 5 s).
        acquire_timeout: Duration = Duration::from_secs(2),
        /// Bound on one connection attempt (default 2 s).
        connect_timeout: Duration = Duration::from_secs(1),
        /// Bound on a validation round trip (default 1 s).
        validation_timeout: Duration = Duration::from_millis(500),
        /// Connections idle less than this are handed out without validation (default 500 ms).
        validation_bypass: Duration = Duration::from_millis(250),
        /// Idle connections above `min_size` close after this (default 60 s; `None` = never).
        idle_timeout: Option<Duration> = Some(Duration::from_secs(300)),
        /// Connections are retired after this, minus up to 2.5 % jitter (default 1 h).
        max_lifetime: Option<Duration> = Some(Duration::from_secs(1800)),
        /// Connections are retired after this many checkouts (default 50 000).
        max_uses: Option<u64> = Some(10_000),
        /// Hold time after which a leak is suspected and logged (default 30 s; `None` = off).
        leak_detection_threshold: Option<Duration> = Some(Duration::from_secs(10)),
        /// Interval of the background probe while the database is up (default 500 ms).
        probe_interval: Duration = Duration::from_secs(1),
        /// Bound on one probe (default 1 s).
        probe_timeout: Duration = Duration::from_millis(500),
        /// Interval of the TCP probe during an outage (default 100 ms).
        outage_probe_interval: Duration = Duration::from_millis(200),
        /// First reconnection backoff during an outage (default 100 ms).
        reconnect_backoff_base: Duration = Duration::from_millis(50),
        /// Cap of the reconnection backoff (default 2 s).
        reconnect_backoff_max: Duration = Duration::from_secs(5),
        /// TCP keepalive idle time (default 10 s).
        tcp_keepalive_idle: Duration = Duration::from_secs(30),
        /// TCP keepalive probe interval (default 2 s).
        tcp_keepalive_interval: Duration = Duration::from_secs(5),
        /// TCP keepalive probes before the socket is dead (default 3).
        tcp_keepalive_retries: u32 = 5,
        /// TCP user timeout (default 15 s).
        tcp_user_timeout: Duration = Duration::from_secs(20),
        /// Prepared statements cached per connection (default 256).
        statement_cache_capacity: usize = 64,
        /// `application_name` of the connections, unless the URL sets one (default `pool`).
        application_name: String = "billing".to_string(),
        /// Seed of the backoff and lifetime jitter (default random): makes a test repeatable.
        jitter_seed: Option<u64> = Some(42),
        /// Which idle connection an acquire gets (default [`IdleOrder::Lifo`]).
        idle_order: IdleOrder = pool::IdleOrder::Fifo,
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

impl fmt::Debug for PoolConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolConfig")
            .field("url", &self.redacted_url())
            .field("min_size", &self.min_size)
            .field("max_size", &self.max_size)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("validation_timeout", &self.validation_timeout)
            .field("validation_bypass", &self.validation_bypass)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_lifetime", &self.max_lifetime)
            .field("max_uses", &self.max_uses)
            .field("leak_detection_threshold", &self.leak_detection_threshold)
            .field("probe_interval", &self.probe_interval)
            .field("probe_timeout", &self.probe_timeout)
            .field("application_name", &self.application_name)
            .field("idle_order", &self.idle_order)
            .finish_non_exhaustive()
    }
}

/// Parses `250ms`, `5s`, `2m`, `1h`, `1500us`, or a bare number of milliseconds.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// assert_eq!(pool::parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert_eq!(pool::parse_duration("2m"), Ok(Duration::from_secs(120)));
/// assert!(pool::parse_duration("soon").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration; write e.g. 500ms, 5s, 2m or 1h"))?;
    let seconds = match unit.trim() {
        "" | "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "`{text}` has an unknown unit `{other}`; use us, ms, s, m or h"
            ));
        }
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("`{text}` is not a valid duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawDuration {
    Millis(u64),
    Text(String),
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    match RawDuration::deserialize(d)? {
        RawDuration::Millis(ms) => Ok(Duration::from_millis(ms)),
        RawDuration::Text(text) => parse_duration(&text).map_err(serde::de::Error::custom),
    }
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    match Option::<RawDuration>::deserialize(d)? {
        None => Ok(None),
        Some(RawDuration::Millis(ms)) => Ok(Some(Duration::from_millis(ms))),
        Some(RawDuration::Text(text)) => parse_duration(&text)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
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
}
