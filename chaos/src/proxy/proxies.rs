//! The set of proxies a process runs ([`Proxies`]), by name, with one seed for all of them.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::config::ProxyConfig;
use super::error::ProxyError;
use super::instance::{Proxy, lock};
use crate::rng::Rng;

/// A set of named proxies: Toxiproxy's server state.
pub struct Proxies {
    map: Mutex<BTreeMap<String, Proxy>>,
    rng: Mutex<Rng>,
}

impl std::fmt::Debug for Proxies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(lock(&self.map).keys()).finish()
    }
}

impl Proxies {
    /// An empty set; `seed` makes every random choice of every proxy replayable.
    pub fn new(seed: u64) -> Self {
        Self {
            map: Mutex::new(BTreeMap::new()),
            rng: Mutex::new(Rng::new(seed)),
        }
    }

    /// Creates and starts a proxy.
    pub fn create(&self, config: ProxyConfig) -> Result<Proxy, ProxyError> {
        let mut map = lock(&self.map);
        if map.contains_key(&config.name) {
            return Err(ProxyError::ProxyExists);
        }
        let seed = lock(&self.rng).next_u64();
        let proxy = Proxy::start(config, seed)?;
        map.insert(proxy.name().to_string(), proxy.clone());
        Ok(proxy)
    }

    /// A proxy by name.
    pub fn get(&self, name: &str) -> Result<Proxy, ProxyError> {
        lock(&self.map)
            .get(name)
            .cloned()
            .ok_or(ProxyError::ProxyNotFound)
    }

    /// Every proxy, by name.
    pub fn list(&self) -> Vec<Proxy> {
        lock(&self.map).values().cloned().collect()
    }

    /// Stops and removes a proxy.
    pub fn remove(&self, name: &str) -> Result<(), ProxyError> {
        let proxy = lock(&self.map)
            .remove(name)
            .ok_or(ProxyError::ProxyNotFound)?;
        proxy.disable();
        Ok(())
    }

    /// Enables every proxy and removes every toxic (Toxiproxy's `POST /reset`).
    pub fn reset(&self) -> Result<(), ProxyError> {
        for proxy in self.list() {
            proxy.remove_all_toxics();
            proxy.enable()?;
        }
        Ok(())
    }
}
