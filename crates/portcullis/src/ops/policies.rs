//! Policies: the ones in force, validating a document (every error at its locator), the
//! starter documents (`portcullis init`'s presets) for a server, and writing a policy's file
//! atomically followed by a reload, so that the next request follows it.

use super::{write_atomic, Kind, Located, OpError, OpResult, Ops};
use portcullis_classify::{classify_all, starter_policy, Preset};
use portcullis_gateway::config::Config;
use serde_json::Value;
use std::path::PathBuf;

/// A policy in force.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PolicyInForce {
    /// Its name (a server's own policy is named after the server).
    pub name: String,
    /// Its version hash.
    pub hash: String,
    /// The document as the gateway holds it.
    pub document: Value,
}

/// The presets of `portcullis init`, in the order a person reads them.
pub const PRESETS: [Preset; 3] = [Preset::Recommended, Preset::Strict, Preset::Permissive];

impl Ops {
    /// `(name, hash)` of every policy in force, sorted by name.
    pub fn policies(&self) -> Vec<(String, String)> {
        let p = self.gw.policies();
        let mut list: Vec<(String, String)> =
            p.iter().map(|(n, (_, h))| (n.clone(), h.clone())).collect();
        list.sort();
        list
    }

    /// Policy `name` as in force.
    pub fn policy(&self, name: &str) -> OpResult<PolicyInForce> {
        match self.gw.policies().get(name) {
            Some((engine, hash)) => Ok(PolicyInForce {
                name: name.to_owned(),
                hash: hash.clone(),
                document: serde_json::to_value(engine.doc()).unwrap_or(Value::Null),
            }),
            None => Err(unknown_policy(name)),
        }
    }

    /// The starter policy of each preset for server `name`, from its classified tools.
    pub async fn recommendations(&self, name: &str) -> OpResult<Vec<(Preset, Value)>> {
        let listed = self.tools(name, false).await?;
        let tools: Vec<Value> = listed["tools"].as_array().cloned().unwrap_or_default();
        let classes = classify_all(&tools, name);
        Ok(PRESETS
            .iter()
            .map(|p| (*p, starter_policy(&classes, *p)))
            .collect())
    }

    /// Validates `text` as a policy document, writes it over policy `name`'s file atomically
    /// and reloads the gateway. Answers `(name, hash)` of the policy now in force. An invalid
    /// document changes nothing (`Kind::Invalid` with every error at its locator); a reload
    /// that fails for another reason puts the old file back.
    pub async fn put_policy(&self, name: &str, text: &str) -> OpResult<(String, String)> {
        let _write = self.policy_write.lock().await;
        // The current config says which file holds the policy.
        let cfg = Config::load(&self.config_path).map_err(|e| {
            OpError::new(
                Kind::Conflict,
                "config_invalid",
                format!("the config file cannot be read now, so nothing was written: {e}"),
            )
        })?;
        let path = policy_file(&cfg, name).ok_or_else(|| unknown_policy(name))?;
        let errors = validate(text);
        if !errors.is_empty() {
            return Err(OpError {
                kind: Kind::Invalid,
                code: "invalid_policy",
                message: format!(
                    "{} error{} — nothing was written; the policy in force is unchanged",
                    errors.len(),
                    if errors.len() == 1 { "" } else { "s" }
                ),
                errors,
            });
        }
        let previous = std::fs::read(&path).ok();
        write_atomic(&path, text.as_bytes()).map_err(|e| {
            OpError::new(
                Kind::Internal,
                "write_failed",
                format!("cannot write {}: {e}", path.display()),
            )
        })?;
        if let Err(e) = self.gw.reload_from(&self.config_path).await {
            // Something else in the configuration is invalid: put the file back as it was.
            if let Some(old) = previous {
                let _ = write_atomic(&path, &old);
            }
            return Err(OpError::new(
                Kind::Conflict,
                "reload_failed",
                format!(
                    "the new policy is valid but the configuration could not be reloaded, so \
                     the file was restored: {e}"
                ),
            ));
        }
        match self.gw.policies().get(name) {
            Some((_, hash)) => Ok((name.to_owned(), hash.clone())),
            None => Err(OpError::new(
                Kind::Conflict,
                "reload_failed",
                format!("the policy {name:?} was written but is not in force after the reload"),
            )),
        }
    }
}

/// Every validation error of `text` as a policy document (empty: valid).
pub fn validate(text: &str) -> Vec<Located> {
    match portcullis_policy::doc::parse(text) {
        Ok(_) => Vec::new(),
        Err(errors) => errors
            .into_iter()
            .map(|e| Located {
                locator: e.locator,
                message: e.message,
            })
            .collect(),
    }
}

/// The file of policy `name` in `cfg`: `[policies]` first (it wins in the gateway too), then
/// a server's own `policy`.
fn policy_file(cfg: &Config, name: &str) -> Option<PathBuf> {
    cfg.policies
        .get(name)
        .or_else(|| {
            cfg.servers
                .iter()
                .find(|s| s.name == name)
                .and_then(|s| s.policy.as_ref())
        })
        .map(|p| cfg.resolve(p))
}

fn unknown_policy(name: &str) -> OpError {
    OpError::new(
        Kind::NotFound,
        "unknown_policy",
        format!(
            "no policy named {name:?} is configured; a policy is added in the config file \
             ([policies] or a server's policy = \"…\"), then edited here"
        ),
    )
}
