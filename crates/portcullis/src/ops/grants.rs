//! Grants: list, create (the token is returned once), rotate, revoke — the store calls
//! `portcullis grant` makes, with the expiry parsed by the CLI's own parser.

use super::{Kind, OpError, OpResult, Ops};
use crate::admin::parse_when;
use portcullis_gateway::relay::system_clock;
use portcullis_store::{Grant, GrantError, GrantStore, Token};
use std::sync::Arc;

/// What creating or rotating a grant answers: the grant, its token (shown this once), and why
/// its policy will deny every call, if it will.
pub struct Issued {
    /// The grant.
    pub grant: Grant,
    /// The token (only its digest is kept).
    pub token: Token,
    /// Set when every call through the grant will be denied.
    pub warning: Option<String>,
}

impl Ops {
    fn grant_store(&self) -> OpResult<&Arc<dyn GrantStore>> {
        self.gw.grants().ok_or_else(|| {
            OpError::new(
                Kind::Unavailable,
                "no_grant_store",
                "this gateway runs without a grant store",
            )
        })
    }

    /// Grants, of one server or all; never tokens.
    pub fn grants(&self, server: Option<&str>) -> OpResult<Vec<Grant>> {
        self.grant_store()?.list(server).map_err(grant_error)
    }

    /// Creates a grant of `server` labelled `label`; `expires` is a duration from now (`30d`)
    /// or a UTC date/time, as `portcullis grant create --expires` takes.
    pub fn create_grant(
        &self,
        server: &str,
        label: &str,
        policy: Option<&str>,
        expires: Option<&str>,
    ) -> OpResult<Issued> {
        let store = self.grant_store()?;
        self.server_known(server)?;
        let now = system_clock();
        let invalid = |m: String| OpError::new(Kind::Invalid, "invalid_grant", m);
        let expires_at = expires
            .map(|e| parse_when(e, now, true, "expires"))
            .transpose()
            .map_err(invalid)?;
        if expires_at.is_some_and(|t| t <= now) {
            return Err(invalid(
                "expires is in the past; give a duration (30d) or a future date".into(),
            ));
        }
        let (grant, token) = store
            .create(server, label, policy, expires_at, now)
            .map_err(grant_error)?;
        let warning = self.policy_warning(grant.policy.as_deref());
        Ok(Issued {
            grant,
            token,
            warning,
        })
    }

    /// A new token for grant `id` (or the label naming one grant); the old one is refused from
    /// the next request on.
    pub fn rotate_grant(&self, id: &str) -> OpResult<Issued> {
        let store = self.grant_store()?;
        let (grant, token) = store
            .get(id, None)
            .and_then(|g| store.rotate(&g.id, system_clock()))
            .map_err(grant_error)?;
        Ok(Issued {
            grant,
            token,
            warning: None,
        })
    }

    /// Revokes grant `id` (or the label naming one grant); answers the revoked grant.
    pub fn revoke_grant(&self, id: &str) -> OpResult<Grant> {
        let store = self.grant_store()?;
        store
            .get(id, None)
            .and_then(|g| store.revoke(&g.id, system_clock()))
            .map_err(grant_error)
    }

    /// Why a grant's policy will deny every call, if it will.
    fn policy_warning(&self, policy: Option<&str>) -> Option<String> {
        match policy {
            None => Some(
                "this grant carries no policy, so every call through it is denied with rule \
                 \"(no policy)\""
                    .into(),
            ),
            Some(p) if !self.gw.policies().contains_key(p) => Some(format!(
                "no policy named {p:?} is configured, so every call through this grant is \
                 denied until one is"
            )),
            Some(_) => None,
        }
    }
}

/// A grant store error as an operation error.
pub fn grant_error(e: GrantError) -> OpError {
    let (kind, code) = match &e {
        GrantError::NotFound(_) => (Kind::NotFound, "grant_not_found"),
        GrantError::Ambiguous { .. } => (Kind::Conflict, "grant_ambiguous"),
        GrantError::Duplicate { .. } => (Kind::Conflict, "grant_duplicate"),
        GrantError::Revoked(_) => (Kind::Conflict, "grant_revoked"),
        GrantError::Invalid(_) => (Kind::Invalid, "invalid_grant"),
        GrantError::Store(_) => (Kind::Internal, "store_error"),
    };
    OpError::new(kind, code, e.to_string())
}
