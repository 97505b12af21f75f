//! The types an option can have, how each reads from the environment and from serde, and
//! the duration syntax.

use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A type an option can have: how it reads from an environment variable and from serde.
pub(crate) trait OptionValue: Sized {
    /// From the text of an environment variable.
    fn from_text(text: &str) -> Result<Self, String>;
    /// From serde (durations also as a number of milliseconds or a string with a unit).
    fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error>;
}

macro_rules! whole_numbers {
    ($($t:ty),*) => {$(
        impl OptionValue for $t {
            fn from_text(text: &str) -> Result<Self, String> {
                text.trim()
                    .parse()
                    .map_err(|_| format!("`{text}` is not a whole number"))
            }
            fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                <$t as Deserialize>::deserialize(d)
            }
        }
    )*};
}
whole_numbers!(usize, u32, u64);

impl OptionValue for bool {
    fn from_text(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "on" | "yes" | "1" => Ok(true),
            "false" | "off" | "no" | "0" => Ok(false),
            _ => Err(format!("`{text}` is not true or false")),
        }
    }
    fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <bool as Deserialize>::deserialize(d)
    }
}

impl OptionValue for String {
    fn from_text(text: &str) -> Result<Self, String> {
        Ok(text.to_string())
    }
    fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <String as Deserialize>::deserialize(d)
    }
}

impl OptionValue for Duration {
    fn from_text(text: &str) -> Result<Self, String> {
        parse_duration(text)
    }
    fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Millis(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Millis(ms) => Ok(Duration::from_millis(ms)),
            Raw::Text(text) => parse_duration(&text).map_err(serde::de::Error::custom),
        }
    }
}

macro_rules! parsed_enums {
    ($($t:ty),*) => {$(
        impl OptionValue for $t {
            fn from_text(text: &str) -> Result<Self, String> {
                text.parse()
            }
            fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                <$t as Deserialize>::deserialize(d)
            }
        }
    )*};
}
parsed_enums!(IdleOrder, SessionReset);

/// What a returned session's state is reset with before the next user gets it.
///
/// Whatever it is, a transaction left open is rolled back and a request left in flight is
/// cancelled first (see [`PooledConnection`](crate::PooledConnection)); this is about the
/// state a session keeps across transactions.
///
/// # Examples
/// ```
/// let config = pool::PoolConfig::default().session_reset(pool::SessionReset::Clean);
/// assert!(format!("{config:?}").contains("session_reset: Clean"));
/// assert_eq!("discard".parse::<pool::SessionReset>(), Ok(pool::SessionReset::Discard));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionReset {
    /// Nothing (the default): a returned session keeps its `SET`s, temporary tables,
    /// `LISTEN`s, advisory locks and prepared statements; a clean return costs no round trip.
    #[default]
    Off,
    /// One round trip on every return, as deadpool's `RecyclingMethod::Clean`: `CLOSE ALL;
    /// SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; SELECT
    /// pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES`. Prepared statements (and
    /// so the statement cache) are kept.
    Clean,
    /// One round trip on every return, as PgBouncer's default `server_reset_query`:
    /// `DISCARD ALL`, which also deallocates prepared statements; the connection's statement
    /// cache is emptied with it.
    Discard,
}

impl SessionReset {
    /// The statements that reset a session this way (empty for `Off`).
    pub fn sql(self) -> &'static str {
        match self {
            SessionReset::Off => "",
            SessionReset::Clean => {
                "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES"
            }
            SessionReset::Discard => "DISCARD ALL",
        }
    }
}

impl FromStr for SessionReset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "none" => Ok(SessionReset::Off),
            "clean" => Ok(SessionReset::Clean),
            "discard" => Ok(SessionReset::Discard),
            other => Err(format!(
                "`{other}` is not a session reset; use off, clean or discard"
            )),
        }
    }
}

/// `None` is written `null` in serde and `none`, `off`, `null`, `never` or empty in a variable.
impl<T: OptionValue> OptionValue for Option<T> {
    fn from_text(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "none" | "off" | "null" | "never" => Ok(None),
            _ => T::from_text(text).map(Some),
        }
    }
    fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Wrap<T>(T);
        impl<'de, T: OptionValue> Deserialize<'de> for Wrap<T> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                T::deserialize(d).map(Wrap)
            }
        }
        Ok(Option::<Wrap<T>>::deserialize(d)?.map(|w| w.0))
    }
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
    // Found by the `config` fuzz target: `from_secs_f64` panics past u64::MAX seconds.
    match Duration::try_from_secs_f64(seconds) {
        Ok(d) if d <= MAX_DURATION => Ok(d),
        _ => Err(format!(
            "`{text}` is longer than the longest setting the pool takes (10 years); use a shorter one, or none where the option allows it"
        )),
    }
}

/// The longest duration any option takes. Deadlines are instants plus a duration, and an
/// instant overflows (a panic) long before `Duration::MAX`; ten years is past any timeout.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
