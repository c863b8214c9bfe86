//! API tokens and who a request acts for.
//!
//! A token is `stw_` and 64 hex digits of OS randomness, shown once when it
//! is created; the store keeps only its sha256. A request names its token in
//! `Authorization: Bearer …`; the [`Caller`] extractor looks it up (through
//! a short-lived cache, so that a busy client does not cost a query per
//! request) and every handler then checks the caller's role and tenants.
//!
//! A token revoked through this process is refused at once; one revoked
//! through another process sharing the database is refused within
//! [`CACHE_TTL`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

use super::ApiState;
use super::problem::ApiError;
use steward_store::{Role, Scope, Store, TenantId, User};

/// How long a looked-up token is trusted without asking the store again.
pub const CACHE_TTL: Duration = Duration::from_secs(5);

/// A new random token.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("stw_{}", hex::encode(bytes))
}

/// What the store keeps of a token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Tokens recently looked up, by hash.
#[derive(Debug, Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, (Instant, Caller)>>,
}

impl TokenCache {
    pub(crate) async fn lookup(
        &self,
        store: &Store,
        token: &str,
    ) -> Result<Option<Caller>, ApiError> {
        let hash = hash_token(token);
        if let Some((at, caller)) = self.entries.lock().expect("cache lock").get(&hash)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(Some(caller.clone()));
        }
        let found = store.token_user(&hash).await?;
        let mut entries = self.entries.lock().expect("cache lock");
        match found {
            Some((token, user)) => {
                let caller = Caller {
                    scope: user.scope(),
                    token_id: token.id,
                    user,
                };
                if entries.len() > 10_000 {
                    entries.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
                }
                entries.insert(hash, (Instant::now(), caller.clone()));
                Ok(Some(caller))
            }
            None => {
                entries.remove(&hash);
                Ok(None)
            }
        }
    }

    /// Forgets a token (after revoking it).
    pub fn forget_token_id(&self, token_id: &str) {
        self.entries
            .lock()
            .expect("cache lock")
            .retain(|_, (_, c)| c.token_id != token_id);
    }
}

/// The user a request acts for.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user.
    pub user: User,
    /// The token used.
    pub token_id: String,
    /// The tenants the user may see.
    pub scope: Scope,
}

impl Caller {
    /// Refuses unless the caller's role is at least `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.user.role.at_least(role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this needs the `{role}` role or higher; `{}` has `{}`",
                self.user.name, self.user.role
            )))
        }
    }

    /// Refuses unless the caller sees every tenant (MSP-wide changes).
    pub fn require_all_tenants(&self) -> Result<(), ApiError> {
        if self.scope == Scope::All {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "this changes every tenant; the caller is limited to some",
            ))
        }
    }

    /// Whether the caller sees `tenant` (`None`: an MSP-wide object).
    pub fn sees(&self, tenant: Option<&TenantId>) -> bool {
        self.scope.sees(tenant)
    }

    /// The actor recorded in audit events.
    pub fn actor(&self) -> String {
        format!("user:{}", self.user.name)
    }
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let unauthenticated = |detail: &str| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                detail.to_owned(),
            )
        };
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| unauthenticated("send `Authorization: Bearer <token>`"))?;
        // The scheme is case-insensitive (RFC 9110 §11.1).
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| unauthenticated("send `Authorization: Bearer <token>`"))?;
        state
            .inner
            .tokens
            .lookup(state.store(), token)
            .await?
            .ok_or_else(|| unauthenticated("the token is unknown or revoked"))
    }
}
