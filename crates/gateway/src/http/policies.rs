//! The policy table: every named policy of the config, compiled, swapped whole on reload.

use crate::config::Config;
use crate::relay::Caller;
use portcullis_policy::Engine;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Named policies: compiled engine and version hash.
pub type Policies = HashMap<String, (Arc<Engine>, String)>;

/// The compiled policies by name. Swapped whole on reload.
pub(super) struct PolicyTable(RwLock<Arc<Policies>>);

impl PolicyTable {
    pub(super) fn new(policies: Policies) -> PolicyTable {
        PolicyTable(RwLock::new(Arc::new(policies)))
    }

    /// The policies in force now.
    pub(super) fn now(&self) -> Arc<Policies> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts `policies` in force for the next request.
    pub(super) fn swap(&self, policies: Policies) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policies);
    }

    /// A session's caller with the policy as it stands now (hot reload applies to the next
    /// request of an open session too).
    pub(super) fn current(&self, c: &Caller) -> Caller {
        let mut c = c.clone();
        if let Some((name, _)) = &c.policy {
            match self.now().get(name) {
                Some((e, h)) => {
                    c.engine = Some(e.clone());
                    c.policy = Some((name.clone(), h.clone()));
                }
                None => c.engine = None,
            }
        }
        c
    }

    /// Every named policy of a config (each server's own under its name, then `[policies]`),
    /// compiled; the first invalid one is an error with the validator's messages.
    pub(super) fn load(cfg: &Config) -> Result<Policies, String> {
        let mut policies = HashMap::new();
        let named = cfg
            .servers
            .iter()
            .filter_map(|s| s.policy.as_ref().map(|p| (s.name.clone(), p.clone())))
            .chain(cfg.policies.iter().map(|(n, p)| (n.clone(), p.clone())));
        for (name, p) in named {
            let path = cfg.resolve(&p);
            policies.insert(name.clone(), load_policy_file(&name, &path)?);
        }
        Ok(policies)
    }
}

/// Reads and compiles one policy file; its version hash is the SHA-256 of its bytes.
fn load_policy_file(name: &str, path: &std::path::Path) -> Result<(Arc<Engine>, String), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("policy {name:?}: cannot read {}: {e}", path.display()))?;
    let engine = Engine::from_json(&text).map_err(|errs| {
        let list: Vec<String> = errs
            .iter()
            .map(|e| format!("  {}: {e}", path.display()))
            .collect();
        format!("policy {name:?} is invalid:\n{}", list.join("\n"))
    })?;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    let hash: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    Ok((Arc::new(engine), hash))
}
