//! API tokens (by the hash of their text), the dashboard's sessions exchanged for them, and
//! the audit log, on PostgreSQL.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::PostgresStore;
use crate::model::Role;
use crate::store::{
    AuditEntry, AuditRecord, SessionCreate, StoreError, StoreResult, TokenCreate, TokenInfo,
};

impl PostgresStore {
    pub(super) async fn create_token(&self, params: TokenCreate) -> StoreResult<TokenInfo> {
        let created: Option<DateTime<Utc>> = sqlx::query_scalar(
            "INSERT INTO sluice_tokens (name, role, hash) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING RETURNING created_at",
        )
        .bind(&params.name)
        .bind(params.role.as_str())
        .bind(&params.hash)
        .fetch_optional(&self.pool)
        .await?;
        match created {
            Some(created_at) => Ok(TokenInfo {
                name: params.name,
                role: params.role,
                created_at,
            }),
            None => Err(StoreError::Invalid(format!(
                "a token named `{}` exists; revoke it first or choose another name",
                params.name
            ))),
        }
    }

    pub(super) async fn find_token(&self, hash: &str) -> StoreResult<Option<TokenInfo>> {
        let row = sqlx::query("SELECT name, role, created_at FROM sluice_tokens WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| token_from_row(&row)).transpose()
    }

    pub(super) async fn list_tokens(&self) -> StoreResult<Vec<TokenInfo>> {
        let rows = sqlx::query("SELECT name, role, created_at FROM sluice_tokens ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(token_from_row).collect()
    }

    pub(super) async fn revoke_token(&self, name: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM sluice_tokens WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub(super) async fn any_token(&self) -> StoreResult<bool> {
        Ok(
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM sluice_tokens)")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    pub(super) async fn record_audit(&self, params: AuditRecord) -> StoreResult<()> {
        sqlx::query("INSERT INTO sluice_audit (actor, action, target) VALUES ($1, $2, $3)")
            .bind(&params.actor)
            .bind(&params.action)
            .bind(&params.target)
            .execute(&self.pool)
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
             WHERE id < COALESCE($1, 9223372036854775807) ORDER BY id DESC LIMIT $2",
        )
        .bind(before_id)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    id: row.try_get("id")?,
                    at: row.try_get("at")?,
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    target: row.try_get("target")?,
                })
            })
            .collect()
    }

    pub(super) async fn create_session(&self, params: SessionCreate) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sluice_sessions (hash, token_hash, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(&params.hash)
        .bind(&params.token_hash)
        .bind(params.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn find_session(&self, hash: &str) -> StoreResult<Option<TokenInfo>> {
        let row = sqlx::query(
            "SELECT t.name, t.role, t.created_at
             FROM sluice_sessions AS s JOIN sluice_tokens AS t ON t.hash = s.token_hash
             WHERE s.hash = $1 AND s.expires_at > now()",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| token_from_row(&row)).transpose()
    }

    pub(super) async fn end_session(&self, hash: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM sluice_sessions WHERE hash = $1")
            .bind(hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub(super) async fn prune_sessions(&self) -> StoreResult<u64> {
        // A session whose token was revoked goes too: nothing can use it again.
        let done = sqlx::query(
            "DELETE FROM sluice_sessions AS s WHERE s.expires_at <= now()
             OR NOT EXISTS (SELECT 1 FROM sluice_tokens AS t WHERE t.hash = s.token_hash)",
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

fn token_from_row(row: &sqlx::postgres::PgRow) -> StoreResult<TokenInfo> {
    let role: String = row.try_get("role")?;
    Ok(TokenInfo {
        name: row.try_get("name")?,
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::Database(format!("unknown role `{role}` stored")))?,
        created_at: row.try_get("created_at")?,
    })
}
