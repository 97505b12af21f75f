//! Timed toxics: a toxic that removes itself after a duration (`"duration_ms"` in the API's
//! create request, an extension Toxiproxy has been asked for, Shopify/toxiproxy#404). A
//! client that does not know the field never sends it and never sees it: it is left out of
//! the JSON of toxics without one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::error::ProxyError;
use super::instance::Proxy;
use super::toxic::Toxic;
use super::toxic::ToxicJson;
use super::toxics::MAX_ATTRIBUTE;

impl Proxy {
    /// Adds `toxic` for `duration`, after which it is removed as by
    /// [`remove_toxic`](Self::remove_toxic) (unless it was removed, or removed and added again,
    /// before: only this addition expires).
    ///
    /// # Examples
    /// ```no_run
    /// # async fn f(proxy: chaos::proxy::Proxy, toxic: chaos::proxy::Toxic) -> Result<(), chaos::proxy::ProxyError> {
    /// proxy.add_toxic_for(toxic, std::time::Duration::from_secs(5))?; // gone 5 s from now
    /// # Ok(()) }
    /// ```
    pub fn add_toxic_for(&self, toxic: Toxic, duration: Duration) -> Result<Toxic, ProxyError> {
        let ms = duration.as_millis().min(u128::from(MAX_ATTRIBUTE)) as u64;
        let (id, added) = self.add_entry(toxic, Some((ms, Instant::now() + duration)))?;
        let inner = Arc::downgrade(&self.inner);
        let expire = move || {
            // A proxy deleted meanwhile takes its toxics with it.
            if let Some(inner) = inner.upgrade() {
                Proxy { inner }.expire(id);
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    tokio::time::sleep(duration).await;
                    expire();
                });
            }
            Err(_) => {
                std::thread::spawn(move || {
                    std::thread::sleep(duration);
                    expire();
                });
            }
        }
        Ok(added)
    }

    fn expire(&self, id: u64) {
        let mut name = None;
        let _ = self.modify(|toxics| {
            name = toxics
                .iter()
                .find(|e| e.id == id)
                .map(|e| e.toxic.name.clone());
            toxics.retain(|e| e.id != id);
            Ok(())
        });
        if let Some(name) = name {
            tracing::info!(proxy = %self.inner.name, toxic = %name, "timed toxic expired and was removed");
        }
    }

    /// The toxics in the API's JSON form, timed ones with their `duration_ms`.
    pub fn toxics_json(&self) -> Vec<ToxicJson> {
        self.inner
            .toxics
            .borrow()
            .toxics
            .iter()
            .map(|e| ToxicJson {
                duration_ms: e.expires.map(|(ms, _)| ms),
                ..e.toxic.to_json()
            })
            .collect()
    }

    /// One toxic in the API's JSON form.
    pub fn toxic_json(&self, name: &str) -> Option<ToxicJson> {
        self.toxics_json().into_iter().find(|t| t.name == name)
    }

    /// How long until the timed toxic `name` removes itself (`None`: not timed, or no such
    /// toxic).
    pub fn toxic_expires_in(&self, name: &str) -> Option<Duration> {
        self.inner
            .toxics
            .borrow()
            .toxics
            .iter()
            .find(|e| e.toxic.name == name)
            .and_then(|e| e.expires)
            .map(|(_, at)| at.saturating_duration_since(Instant::now()))
    }
}

/// The `duration_ms` of a create request: absent, or a whole number of milliseconds from 1 to
/// ten years.
pub fn requested_duration(body: &Value) -> Result<Option<Duration>, String> {
    match body.get("duration_ms") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(ms) if (1..=MAX_ATTRIBUTE).contains(&ms) => Ok(Some(Duration::from_millis(ms))),
            _ => Err(format!(
                "`duration_ms` is {v}: it must be a whole number of milliseconds from 1 to {MAX_ATTRIBUTE} (ten years), after which the toxic removes itself"
            )),
        },
    }
}
