//! A plan as written and as checked: its faults ([`PlannedFault`], [`What`]), how its TOML is
//! read, and the errors that say which fault, on which line, is wrong and why.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::fault::{self, Fault, HaFault};
use crate::kernel::KernelFault;
use crate::postgres::{HaOptions, HaRoute};
use crate::proxy::toxics::TYPES;
use crate::proxy::{Stream, Toxic, ToxicKind};

/// A parsed, checked plan: every fault with its repeats expanded, in start order.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The faults, one per window.
    pub faults: Vec<PlannedFault>,
    /// The HA cluster the plan asks for instead of the single throwaway server (`[cluster]`).
    pub cluster: Option<ClusterSpec>,
}

/// A plan's `[cluster]`: the real HA stack instead of one server.
///
/// ```toml
/// [cluster]
/// kind = "patroni"   # the only kind
/// nodes = 3          # 2 to 9 (default 3)
/// sync = true        # synchronous_mode (default true)
/// route = "url"      # or "haproxy": what DATABASE_URL names (default "url")
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    /// The Patroni nodes.
    pub nodes: usize,
    /// `synchronous_mode`.
    pub sync: bool,
    /// What the command is given as `DATABASE_URL`: the multi-host URL, or HAProxy.
    pub route: HaRoute,
}

impl ClusterSpec {
    /// The cluster's options (Patroni's documented minimums otherwise).
    pub fn options(&self) -> HaOptions {
        HaOptions {
            nodes: self.nodes,
            synchronous: self.sync,
            route: self.route,
            ..HaOptions::default()
        }
    }
}

/// One fault window of a plan.
#[derive(Debug, Clone)]
pub struct PlannedFault {
    /// When it starts, from the start of the command or run.
    pub at: Duration,
    /// How long it lasts.
    pub duration: Duration,
    /// What it is.
    pub what: What,
    /// The line of its `[[fault]]` in the plan.
    pub line: usize,
}

/// What a planned fault does.
#[derive(Debug, Clone)]
pub enum What {
    /// A toxic on the proxy, attributes as given.
    Toxic(Toxic),
    /// A fault of the suite's matrix.
    Matrix(&'static Fault),
    /// `kernel_loss` with its own percentage (the matrix has 10 %).
    KernelLoss(u8),
    /// A fault of the HA cluster (`ha_kill_leader`, ...), with a `[cluster]`.
    Ha(HaFault),
}

impl What {
    /// The name shown on timelines and in reports.
    pub fn label(&self) -> String {
        match self {
            What::Toxic(t) => format!("{} {}", t.kind.type_name(), t.stream.as_str()),
            What::Matrix(f) => f.label.to_string(),
            What::KernelLoss(p) => format!("kernel {p} % loss"),
            What::Ha(f) => f.label().to_string(),
        }
    }

    /// What it conflicts with when windows overlap: two faults with the same key cannot
    /// coexist (one toxic name per proxy, one switch, one kernel table, one server).
    fn conflict_key(&self) -> String {
        match self {
            What::Toxic(t) => format!("the toxic {}", t.name),
            What::KernelLoss(_) => "the kernel's rules".into(),
            // One fault of the cluster at a time: each is undone by restoring all of it.
            What::Ha(_) => "the HA cluster".into(),
            What::Matrix(f) => match f.kind {
                fault::Kind::Down | fault::Kind::Flapping => "the proxy's switch".into(),
                fault::Kind::Kernel(_) => "the kernel's rules".into(),
                fault::Kind::ServerRestart => "the server".into(),
                fault::Kind::Toxic(spec) => format!("the toxic {}", spec.toxic().name),
                fault::Kind::TerminateBackends | fault::Kind::Bouncer(_) => {
                    format!("the fault {}", f.name)
                }
            },
        }
    }

    /// Whether it needs root and nft.
    pub fn is_kernel(&self) -> bool {
        matches!(self, What::KernelLoss(_))
            || matches!(self, What::Matrix(f) if matches!(f.kind, fault::Kind::Kernel(_)))
    }
}

/// Why a plan was refused: every problem, each with its line (0 when the file as a whole is
/// at fault).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    /// `(line, message)`, in line order.
    pub problems: Vec<(usize, String)>,
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the fault plan has {} problem(s):", self.problems.len())?;
        for (line, message) in &self.problems {
            if *line == 0 {
                write!(f, "\n  - {message}")?;
            } else {
                write!(f, "\n  - line {line}: {message}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for PlanError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    #[serde(default)]
    fault: Vec<toml::Spanned<RawFault>>,
    cluster: Option<toml::Spanned<RawCluster>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    kind: Option<String>,
    nodes: Option<i64>,
    sync: Option<bool>,
    route: Option<String>,
}

/// The `[cluster]` checked.
fn cluster(raw: &RawCluster) -> Result<ClusterSpec, Vec<String>> {
    let mut problems = Vec::new();
    match raw.kind.as_deref() {
        Some("patroni") => {}
        None => problems.push("kind is missing: kind = \"patroni\" (the only kind)".into()),
        Some(other) => problems.push(format!(
            "kind = \"{other}\": the only kind is \"patroni\" (Patroni + etcd, each node a host of its own)"
        )),
    }
    let nodes = raw.nodes.unwrap_or(3);
    if !(2..=9).contains(&nodes) {
        problems.push(format!("nodes = {nodes}: give 2 to 9"));
    }
    let route = match raw.route.as_deref() {
        None | Some("url") => HaRoute::Url,
        Some("haproxy") => HaRoute::Haproxy,
        Some(other) => {
            problems.push(format!(
                "route = \"{other}\": expected \"url\" (the multi-host URL) or \"haproxy\""
            ));
            HaRoute::Url
        }
    };
    if problems.is_empty() {
        Ok(ClusterSpec {
            nodes: nodes as usize,
            sync: raw.sync.unwrap_or(true),
            route,
        })
    } else {
        Err(problems)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    // Times are read as any value so that `at = 5` gets the form wanted, not serde's
    // "invalid type: integer 5, expected a string"; a missing field is named the same way.
    at: Option<toml::Value>,
    duration: Option<toml::Value>,
    kind: Option<String>,
    stream: Option<String>,
    toxicity: Option<f64>,
    attributes: Option<toml::Table>,
    every: Option<toml::Value>,
    count: Option<u32>,
}

/// What each time field means, for the messages that ask for it.
const AT_WANTED: &str = "when the fault starts, from the plan's start: at = \"5s\"";
const DURATION_WANTED: &str = "how long the fault lasts: duration = \"2s\" (for server_restart, how long the server stays stopped; see README's plan table)";
const EVERY_WANTED: &str = "the time from one start to the next: every = \"10s\"";

/// A time field: a string with its unit (`"5s"`, `"500ms"`, `"1m"`).
fn time_field(field: &str, value: &toml::Value, wanted: &str) -> Result<Duration, String> {
    match value {
        toml::Value::String(text) => {
            pool::parse_duration(text).map_err(|e| format!("{field} = \"{text}\": {e}; {wanted}"))
        }
        other => Err(format!(
            "{field} = {other}: a time is a string with its unit ({wanted}, or \"500ms\", \"1m\")"
        )),
    }
}

/// At most this many windows from one `[[fault]]` with `every`/`count`.
const MAX_REPEATS: u32 = 10_000;

impl Plan {
    /// Reads and checks a plan file.
    ///
    /// # Errors
    /// [`PlanError`] with the file's problems (or why it could not be read).
    pub fn from_file(path: &std::path::Path) -> Result<Self, PlanError> {
        let text = std::fs::read_to_string(path).map_err(|e| PlanError {
            problems: vec![(0, format!("could not read {}: {e}", path.display()))],
        })?;
        Self::parse(&text)
    }

    /// Parses and checks a plan.
    ///
    /// # Errors
    /// [`PlanError`] with every problem found, each with its line.
    ///
    /// # Examples
    /// ```
    /// let plan = chaos::plan::Plan::parse(r#"
    /// [[fault]]
    /// at = "1s"
    /// duration = "2s"
    /// kind = "down"
    /// "#)?;
    /// assert_eq!(plan.faults.len(), 1);
    /// let err = chaos::plan::Plan::parse("[[fault]]\nat = \"soon\"\nduration = \"1s\"\nkind = \"lava\"\n").unwrap_err();
    /// assert_eq!(err.problems.len(), 2);
    /// # Ok::<(), chaos::plan::PlanError>(())
    /// ```
    pub fn parse(text: &str) -> Result<Self, PlanError> {
        let raw: RawPlan = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(0, |s| line_of(text, s.start));
            PlanError {
                problems: vec![(line, e.message().trim().to_string())],
            }
        })?;
        let mut problems = Vec::new();
        let mut faults = Vec::new();
        for spanned in &raw.fault {
            let line = line_of(text, spanned.span().start);
            match check(spanned.get_ref()) {
                Ok(windows) => {
                    faults.extend(
                        windows
                            .into_iter()
                            .map(|(at, duration, what)| PlannedFault {
                                at,
                                duration,
                                what,
                                line,
                            }),
                    )
                }
                Err(mut found) => problems.extend(found.drain(..).map(|m| (line, m))),
            }
        }
        if raw.fault.is_empty() {
            problems.push((0, "the plan has no [[fault]]: add at least one".into()));
        }
        let cluster = match &raw.cluster {
            None => None,
            Some(c) => {
                let line = line_of(text, c.span().start);
                match cluster(c.get_ref()) {
                    Ok(c) => Some(c),
                    Err(found) => {
                        problems.extend(found.into_iter().map(|m| (line, m)));
                        None
                    }
                }
            }
        };
        // The HA faults act on the cluster; the proxy's and the kernel's need the single
        // server behind the proxy, which a plan with a cluster does not have.
        for f in &faults {
            match (&f.what, raw.cluster.is_some()) {
                (What::Ha(h), false) => problems.push((
                    f.line,
                    format!(
                        "kind = \"{}\" needs the HA cluster: add [cluster] with kind = \"patroni\"",
                        h.name()
                    ),
                )),
                (What::Ha(_), true) => {}
                (other, true) => problems.push((
                    f.line,
                    format!(
                        "{} is a fault of the proxy or the kernel, and a plan with [cluster] gives the command the cluster itself: use the ha_* faults ({})",
                        other.label(),
                        ha_faults()
                    ),
                )),
                (_, false) => {}
            }
        }
        faults.sort_by_key(|f| (f.at, f.line));
        for (i, a) in faults.iter().enumerate() {
            for b in &faults[i + 1..] {
                if b.at >= a.at + a.duration {
                    break;
                }
                if a.what.conflict_key() == b.what.conflict_key() {
                    problems.push((
                        b.line,
                        format!(
                            "overlaps the fault of line {} ({:?}..{:?}) on {}: the two cannot coexist; move one or shorten the first",
                            a.line,
                            a.at,
                            a.at + a.duration,
                            a.what.conflict_key()
                        ),
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(Self { faults, cluster })
        } else {
            problems.sort();
            problems.dedup();
            Err(PlanError { problems })
        }
    }

    /// Whether this machine can make the plan's kernel faults (always, when it has none).
    ///
    /// # Errors
    /// [`KernelError::Unavailable`](crate::kernel::KernelError::Unavailable) with the reason.
    pub fn kernel_ready(&self) -> Result<(), crate::kernel::KernelError> {
        if self.faults.iter().any(|f| f.what.is_kernel()) {
            crate::kernel::KernelFaults::available()?;
        }
        Ok(())
    }

    /// When the last fault ends.
    pub fn end(&self) -> Duration {
        self.faults
            .iter()
            .map(|f| f.at + f.duration)
            .max()
            .unwrap_or_default()
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

type Windows = Vec<(Duration, Duration, What)>;

/// One `[[fault]]` checked: its windows, or every problem it has.
fn check(raw: &RawFault) -> Result<Windows, Vec<String>> {
    let mut problems = Vec::new();
    let mut time = |field: &str, value: Option<&toml::Value>, wanted: &str| match value {
        None => {
            problems.push(format!("{field} is missing: {wanted}"));
            None
        }
        Some(v) => time_field(field, v, wanted)
            .map_err(|e| problems.push(e))
            .ok(),
    };
    let at = time("at", raw.at.as_ref(), AT_WANTED);
    let duration = time("duration", raw.duration.as_ref(), DURATION_WANTED);
    let every = raw
        .every
        .as_ref()
        .and_then(|e| time("every", Some(e), EVERY_WANTED));
    if duration.is_some_and(|d| d.is_zero()) {
        problems.push("duration must be more than 0".into());
    }
    let count = raw.count.unwrap_or(if raw.every.is_some() { 0 } else { 1 });
    match (raw.every.is_some(), raw.count) {
        (true, None) => problems.push("every needs a count: how many times to repeat".into()),
        (false, Some(c)) if c > 1 => problems.push(format!(
            "count = {c} needs every: the time from one start to the next"
        )),
        _ => {}
    }
    if count == 0 && raw.every.is_none() || raw.count == Some(0) {
        problems.push("count must be at least 1".into());
    }
    if count > MAX_REPEATS {
        problems.push(format!("count = {count} is more than {MAX_REPEATS}"));
    }
    if let (Some(every), Some(duration)) = (every, duration)
        && count > 1
        && every < duration
    {
        problems.push(format!(
            "every = {every:?} is shorter than duration = {duration:?}: each repeat would overlap the one before"
        ));
    }
    let what = what(raw).map_err(|e| problems.push(e)).ok();
    let (Some(at), Some(duration), Some(what)) = (at, duration, what) else {
        return Err(problems);
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    let every = every.unwrap_or_default();
    Ok((0..count)
        .map(|i| (at + every * i, duration, what.clone()))
        .collect())
}

fn suite_faults() -> String {
    fault::MATRIX
        .iter()
        .map(|f| f.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The HA faults a plan takes (the asynchronous kill is `ha_kill_leader` with `sync = false`).
fn ha_faults() -> String {
    HaFault::ALL
        .iter()
        .filter(|f| f.synchronous())
        .map(|f| f.name())
        .collect::<Vec<_>>()
        .join(", ")
}

fn what(raw: &RawFault) -> Result<What, String> {
    let Some(kind) = raw.kind.as_deref() else {
        return Err(format!(
            "kind is missing: a toxic type ({}), a fault of the suite ({}) or, with [cluster], of the HA cluster ({})",
            TYPES.join(", "),
            suite_faults(),
            ha_faults()
        ));
    };
    if let Some(f) = HaFault::by_name(kind) {
        if !f.synchronous() {
            return Err(format!(
                "kind = \"{kind}\": in a plan the replication mode is the cluster's: use ha_kill_leader with sync = false in [cluster]"
            ));
        }
        if raw.attributes.is_some() || raw.stream.is_some() || raw.toxicity.is_some() {
            return Err(format!(
                "kind = \"{kind}\" is a fault of the HA cluster and takes no attributes, stream or toxicity"
            ));
        }
        return Ok(What::Ha(f));
    }
    let attributes: Map<String, Value> = match &raw.attributes {
        Some(t) => match serde_json::to_value(t) {
            Ok(Value::Object(m)) => m,
            _ => return Err("attributes must be a table of numbers".into()),
        },
        None => Map::new(),
    };
    let stream = match raw.stream.as_deref() {
        None | Some("downstream") => Stream::Downstream,
        Some("upstream") => Stream::Upstream,
        Some(other) => {
            return Err(format!(
                "stream = \"{other}\": expected upstream or downstream"
            ));
        }
    };
    let toxicity = raw.toxicity.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&toxicity) {
        return Err(format!("toxicity = {toxicity}: expected 0 to 1"));
    }
    if TYPES.contains(&kind) {
        let name = format!("plan_{kind}_{}", stream.as_str());
        let kind =
            ToxicKind::parse(kind, &attributes).map_err(|e| format!("kind = \"{kind}\": {e}"))?;
        return Ok(What::Toxic(Toxic {
            name,
            kind,
            stream,
            toxicity: toxicity as f32,
        }));
    }
    let Some(fault) = fault::MATRIX.iter().find(|f| f.name == kind) else {
        return Err(format!(
            "kind = \"{kind}\" is neither a toxic type ({}) nor a fault of the suite ({}) nor of the HA cluster ({})",
            TYPES.join(", "),
            suite_faults(),
            ha_faults()
        ));
    };
    if let fault::Kind::Kernel(KernelFault::Loss { .. }) = fault.kind {
        let percent = match attributes.get("percent") {
            None => 10,
            Some(v) => match v.as_u64() {
                Some(p @ 1..=100) => p as u8,
                _ => return Err(format!("kernel_loss percent = {v}: expected 1 to 100")),
            },
        };
        if attributes.keys().any(|k| k != "percent") {
            return Err("kernel_loss takes only attributes.percent".into());
        }
        return Ok(What::KernelLoss(percent));
    }
    if !attributes.is_empty() || raw.stream.is_some() || raw.toxicity.is_some() {
        return Err(format!(
            "kind = \"{kind}\" is a fault of the suite and takes no attributes, stream or toxicity"
        ));
    }
    Ok(What::Matrix(fault))
}
