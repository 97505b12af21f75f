//! `POST /populate`: proxies created or replaced in bulk, all or nothing.

use super::config::ProxyConfig;
use super::error::ProxyError;
use super::instance::Proxy;
use super::proxies::Proxies;
use super::toxic::Toxic;

/// A proxy a populate replaced, as it was: restored if the populate fails.
struct Replaced {
    /// Its configuration, with the address it was bound to.
    config: ProxyConfig,
    toxics: Vec<Toxic>,
}

/// One thing a populate did: created the proxy `.0`, in place of `.1` if any.
type Step = (String, Option<Replaced>);

impl Proxies {
    /// Creates or replaces proxies in bulk, all or nothing: an identical proxy keeps its
    /// toxics, a changed one is replaced, a new one is created. When one cannot be made (its
    /// address cannot be bound), everything this call did is undone: the proxies it created
    /// are removed and the ones it replaced are restored, toxics included, on the address they
    /// were bound to.
    pub fn populate(&self, configs: Vec<ProxyConfig>) -> Result<Vec<Proxy>, ProxyError> {
        let mut names = std::collections::BTreeSet::new();
        if let Some(dup) = configs.iter().find(|c| !names.insert(c.name.as_str())) {
            return Err(ProxyError::BadRequest(format!(
                "proxy `{}` appears twice in the list",
                dup.name
            )));
        }
        let mut done = Vec::new();
        // What to undo, newest last: a proxy created, with what it replaced (its
        // configuration, bound address resolved, and its toxics, as they were before).
        let mut undo: Vec<Step> = Vec::new();
        for config in configs {
            let replaced = match self.get(&config.name) {
                Ok(existing) if existing.same_as(&config) => {
                    done.push(existing);
                    continue;
                }
                Ok(existing) => {
                    let before = Replaced {
                        config: existing.config(),
                        toxics: existing.toxics(),
                    };
                    let _ = self.remove(&config.name);
                    Some(before)
                }
                Err(_) => None,
            };
            let name = config.name.clone();
            match self.create(config) {
                Ok(proxy) => {
                    done.push(proxy);
                    undo.push((name, replaced));
                }
                Err(e) => {
                    undo.push((name, replaced));
                    self.undo(undo);
                    return Err(e);
                }
            }
        }
        Ok(done)
    }

    /// Reverts a populate: removes what it created, restores what it replaced.
    fn undo(&self, undo: Vec<Step>) {
        for (name, replaced) in undo.into_iter().rev() {
            let _ = self.remove(&name);
            let Some(Replaced { config, toxics }) = replaced else {
                continue;
            };
            match self.create(config) {
                Ok(restored) => {
                    for toxic in toxics {
                        let _ = restored.add_toxic(toxic);
                    }
                }
                Err(e) => {
                    tracing::warn!(proxy = %name, error = %e, "a proxy replaced by a failed populate could not be restored")
                }
            }
        }
    }
}
