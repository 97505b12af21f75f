//! Captures the pool's lifecycle log events during a run, so SC-010 (clear, actionable log
//! messages) is checked, not assumed.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer};

/// One captured event: level, message and fields.
#[derive(Debug, Clone)]
pub struct Captured {
    /// `INFO`, `WARN`, ...
    pub level: String,
    /// The event's message.
    pub message: String,
    /// `name=value` of its fields.
    pub fields: Vec<String>,
}

static EVENTS: Mutex<Vec<Captured>> = Mutex::new(Vec::new());
static CAPTURING: AtomicBool = AtomicBool::new(false);

/// A tracing layer keeping the `pool` crate's events at INFO and above (at most 10,000),
/// once [`start`] has been called. Off by default: a soak must not measure its own log
/// buffer growing.
pub struct CaptureLayer;

/// Starts capturing (the suite does, for SC-010).
pub fn start() {
    CAPTURING.store(true, Relaxed);
}

struct Fields(String, Vec<String>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        } else {
            self.1.push(format!("{}={value:?}", field.name()));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        } else {
            self.1.push(format!("{}={value}", field.name()));
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for CaptureLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        if !CAPTURING.load(Relaxed)
            || !meta.target().starts_with("pool")
            || *meta.level() > tracing::Level::INFO
        {
            return;
        }
        let mut f = Fields(String::new(), Vec::new());
        event.record(&mut f);
        let mut events = EVENTS.lock().unwrap_or_else(|e| e.into_inner());
        if events.len() < 10_000 {
            events.push(Captured {
                level: meta.level().to_string(),
                message: f.0,
                fields: f.1,
            });
        }
    }
}

/// Everything captured so far.
pub fn captured() -> Vec<Captured> {
    EVENTS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}
