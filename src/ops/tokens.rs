//! API tokens: made from 32 random bytes, shown once, stored as their SHA-256; and the
//! audit log every action but enqueueing writes to.

use sha2::{Digest, Sha256};

use crate::model::Role;
use crate::store::{AuditRecord, SessionCreate, Store, TokenCreate, TokenInfo};

use super::{OpError, OpResult};

/// What every token's text starts with, so a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "sluice_";

/// The actor of commands run against the database directly.
pub const CLI_ACTOR: &str = "cli";

/// A new token named `name`: returns its text (shown once, never stored) and what is stored.
pub async fn create_token(
    store: &dyn Store,
    name: &str,
    role: Role,
    actor: &str,
) -> OpResult<(String, TokenInfo)> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(OpError::Invalid(format!(
            "`{name}` is not a token name: use 1 to 64 letters, digits, `_`, `-` and `.`"
        )));
    }
    let text = format!("{TOKEN_PREFIX}{}", random_hex()?);
    let info = store
        .token_create(TokenCreate {
            name: name.to_string(),
            role,
            hash: token_hash(&text),
        })
        .await?;
    record_action(store, actor, "token.create", &format!("{name} ({role})")).await;
    Ok((text, info))
}

/// Deletes a token; its holder is refused from the next request on.
pub async fn revoke_token(store: &dyn Store, name: &str, actor: &str) -> OpResult<()> {
    if !store.token_revoke(name).await? {
        return Err(OpError::TokenNotFound(name.to_string()));
    }
    record_action(store, actor, "token.revoke", name).await;
    Ok(())
}

/// The token a caller presented, if it is one.
pub async fn authenticate(store: &dyn Store, text: &str) -> OpResult<Option<TokenInfo>> {
    if !text.starts_with(TOKEN_PREFIX) {
        return Ok(None);
    }
    Ok(store.token_by_hash(&token_hash(text)).await?)
}

/// What a dashboard session's text (its cookie) starts with.
pub const SESSION_PREFIX: &str = "sluice_session_";

/// How long a dashboard session lasts before its holder signs in again.
pub const SESSION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

/// A dashboard session, exchanged for a token: its text goes in an HttpOnly cookie, so the
/// page's scripts never hold the token, and revoking the token ends the session.
#[derive(Debug, Clone)]
pub struct Session {
    pub text: String,
    pub token: TokenInfo,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// A session for the token whose text is `token_text`, or `None` when it is no token.
pub async fn sign_in(store: &dyn Store, token_text: &str) -> OpResult<Option<Session>> {
    let Some(token) = authenticate(store, token_text).await? else {
        return Ok(None);
    };
    let text = format!("{SESSION_PREFIX}{}", random_hex()?);
    let expires_at = chrono::Utc::now()
        + chrono::Duration::from_std(SESSION_LIFETIME).expect("twelve hours fit");
    store
        .session_create(SessionCreate {
            hash: token_hash(&text),
            token_hash: token_hash(token_text),
            expires_at,
        })
        .await?;
    record_action(store, &token.name, "session.start", &token.name).await;
    Ok(Some(Session {
        text,
        token,
        expires_at,
    }))
}

/// The token behind a session's text, while both last.
pub async fn session_token(store: &dyn Store, text: &str) -> OpResult<Option<TokenInfo>> {
    if !text.starts_with(SESSION_PREFIX) {
        return Ok(None);
    }
    Ok(store.session_token(&token_hash(text)).await?)
}

/// Ends a session (signing out).
pub async fn sign_out(store: &dyn Store, text: &str) -> OpResult<()> {
    Ok(store.session_end(&token_hash(text)).await?)
}

/// The value a session's page sends in a header with every action: a cross-site form can
/// carry the cookie but cannot know this, nor set a header.
pub fn csrf_token(session_text: &str) -> String {
    hex::encode(Sha256::digest(format!("csrf:{session_text}").as_bytes()))
}

fn random_hex() -> OpResult<String> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret)
        .map_err(|e| OpError::Invalid(format!("the system has no randomness to give: {e}")))?;
    Ok(hex::encode(secret))
}

/// Records that `actor` did `action` to `target`. The action has happened by then, so a log
/// that cannot be written is reported, not turned into the action's failure.
pub(super) async fn record_action(store: &dyn Store, actor: &str, action: &str, target: &str) {
    let record = AuditRecord {
        actor: actor.to_string(),
        action: action.to_string(),
        target: target.to_string(),
    };
    if let Err(error) = store.audit_record(record).await {
        tracing::error!(%error, actor, action, target, "cannot record an action in the audit log");
    }
}

fn token_hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}
