//! API tokens (by the hash of their text), the dashboard's sessions exchanged for them, and
//! the audit log, on SQLite (times in microseconds).

use sqlx::Row;

use super::{SqliteStore, from_micros, micros, now_micros};
use crate::model::Role;
use crate::store::{
    AuditEntry, AuditRecord, SessionCreate, StoreError, StoreResult, TokenCreate, TokenInfo,
};

impl SqliteStore {
    pub(super) async fn create_token(&self, params: TokenCreate) -> StoreResult<TokenInfo> {
        let created: Option<i64> = sqlx::query_scalar(
            "INSERT INTO sluice_tokens (name, role, hash, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO NOTHING RETURNING created_at",
        )
        .bind(&params.name)
        .bind(params.role.as_str())
        .bind(&params.hash)
        .bind(now_micros())
        .fetch_optional(&self.writer)
        .await?;
        match created {
            Some(created_at) => Ok(TokenInfo {
                name: params.name,
                role: params.role,
                created_at: from_micros(created_at),
            }),
            None => Err(StoreError::Invalid(format!(
                "a token named `{}` exists; revoke it first or choose another name",
                params.name
            ))),
        }
    }

    pub(super) async fn find_token(&self, hash: &str) -> StoreResult<Option<TokenInfo>> {
        let row = sqlx::query("SELECT name, role, created_at FROM sluice_tokens WHERE hash = ?1")
            .bind(hash)
            .fetch_optional(&self.readers)
            .await?;
        row.map(|row| token_from_row(&row)).transpose()
    }

    pub(super) async fn list_tokens(&self) -> StoreResult<Vec<TokenInfo>> {
        let rows = sqlx::query("SELECT name, role, created_at FROM sluice_tokens ORDER BY name")
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(token_from_row).collect()
    }

    pub(super) async fn revoke_token(&self, name: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM sluice_tokens WHERE name = ?1")
            .bind(name)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub(super) async fn any_token(&self) -> StoreResult<bool> {
        Ok(
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM sluice_tokens)")
                .fetch_one(&self.readers)
                .await?,
        )
    }

    pub(super) async fn record_audit(&self, params: AuditRecord) -> StoreResult<()> {
        sqlx::query("INSERT INTO sluice_audit (at, actor, action, target) VALUES (?1, ?2, ?3, ?4)")
            .bind(now_micros())
            .bind(&params.actor)
            .bind(&params.action)
            .bind(&params.target)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub(super) async fn list_audit(
        &self,
        limit: u32,
        before_id: Option<i64>,
    ) -> StoreResult<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, target FROM sluice_audit
             WHERE id < COALESCE(?1, 9223372036854775807) ORDER BY id DESC LIMIT ?2",
        )
        .bind(before_id)
        .bind(limit as i64)
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    id: row.try_get("id")?,
                    at: from_micros(row.try_get("at")?),
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    target: row.try_get("target")?,
                })
            })
            .collect()
    }

    pub(super) async fn create_session(&self, params: SessionCreate) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sluice_sessions (hash, token_hash, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(&params.hash)
        .bind(&params.token_hash)
        .bind(now_micros())
        .bind(micros(params.expires_at))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    pub(super) async fn find_session(&self, hash: &str) -> StoreResult<Option<TokenInfo>> {
        let row = sqlx::query(
            "SELECT t.name, t.role, t.created_at
             FROM sluice_sessions AS s JOIN sluice_tokens AS t ON t.hash = s.token_hash
             WHERE s.hash = ?1 AND s.expires_at > ?2",
        )
        .bind(hash)
        .bind(now_micros())
        .fetch_optional(&self.readers)
        .await?;
        row.map(|row| token_from_row(&row)).transpose()
    }

    pub(super) async fn end_session(&self, hash: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM sluice_sessions WHERE hash = ?1")
            .bind(hash)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub(super) async fn prune_sessions(&self) -> StoreResult<u64> {
        // A session whose token was revoked goes too: nothing can use it again.
        let done = sqlx::query(
            "DELETE FROM sluice_sessions WHERE expires_at <= ?1
             OR NOT EXISTS (SELECT 1 FROM sluice_tokens AS t WHERE t.hash = sluice_sessions.token_hash)",
        )
        .bind(now_micros())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }
}

fn token_from_row(row: &sqlx::sqlite::SqliteRow) -> StoreResult<TokenInfo> {
    let role: String = row.try_get("role")?;
    Ok(TokenInfo {
        name: row.try_get("name")?,
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::Database(format!("unknown role `{role}` stored")))?,
        created_at: from_micros(row.try_get("created_at")?),
    })
}
