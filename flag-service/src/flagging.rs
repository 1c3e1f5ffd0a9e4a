//! The rules of flagging, between the transport and the store: sessions start now and last
//! the flag TTL, enabling is idempotent while a session is in force and rate-limited per user,
//! state is computed from the clock at read time, and callers stay inside their tenant.

use crate::domain::{FlagCheck, FlagKey, FlagSession, SessionQuery, Trigger};
use crate::error::FlagError;
use crate::metrics::CheckCounters;
use crate::mirror::FlagSessionMirror;
use crate::store::{EnableOutcome, Store};
use chrono::{DateTime, Utc};
use signins_common::auth::Principal;
use signins_common::clock::Clock;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Sessions deleted per retention statement: small enough that each statement is short.
const RETENTION_BATCH: i64 = 1_000;

#[derive(Debug, Clone)]
pub struct FlaggingSettings {
    pub flag_ttl: Duration,
    pub max_enables_per_hour: u32,
}

#[derive(Debug, Clone)]
pub struct Flagging {
    store: Store,
    clock: Arc<dyn Clock>,
    settings: FlaggingSettings,
    /// Answers CheckFlags for recent times without a probe per check; `None` when off.
    mirror: Option<Arc<FlagSessionMirror>>,
    checks_answered: CheckCounters,
}

/// What EnableFlagging answers.
#[derive(Debug)]
pub struct Enabled {
    pub session: FlagSession,
    pub created: bool,
}

/// What GetFlagStatus answers.
#[derive(Debug)]
pub struct FlagStatus {
    pub session: Option<FlagSession>,
    pub remaining: Option<Duration>,
}

impl Flagging {
    pub fn new(store: Store, clock: Arc<dyn Clock>, settings: FlaggingSettings) -> Self {
        Self {
            store,
            clock,
            settings,
            mirror: None,
            checks_answered: CheckCounters::default(),
        }
    }

    /// Loads the mirror, if there is one, so the first CheckFlags call does not wait for it.
    pub async fn load_mirror(&self) -> Result<(), FlagError> {
        match &self.mirror {
            Some(mirror) => mirror.load().await,
            None => Ok(()),
        }
    }

    /// Counts checks by where they were answered in `counters`.
    pub fn with_check_counters(mut self, counters: CheckCounters) -> Self {
        self.checks_answered = counters;
        self
    }

    /// Answers checks from `mirror` where it covers them.
    pub fn with_mirror(mut self, mirror: FlagSessionMirror) -> Self {
        self.mirror = Some(Arc::new(mirror));
        self
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub async fn enable(
        &self,
        caller: &Principal,
        key: FlagKey,
        user_principal_name: Option<String>,
        trigger: Trigger,
    ) -> Result<Enabled, FlagError> {
        ensure_tenant(caller, key.tenant_id)?;
        let now = self.clock.now();
        let ttl = chrono::Duration::from_std(self.settings.flag_ttl)
            .map_err(|_| FlagError::invalid("flagTtl", "out of range"))?;
        let candidate = FlagSession {
            id: Uuid::now_v7(),
            key,
            user_principal_name,
            trigger,
            enabled_at: now,
            expires_at: now + ttl,
            disabled_at: None,
            enabled_by: caller.audit_name(),
            disabled_by: None,
        };
        match self
            .store
            .enable(&candidate, self.settings.max_enables_per_hour)
            .await?
        {
            EnableOutcome::Created(session) => {
                tracing::info!(session = %session.id, tenant = %session.key.tenant_id, user = %session.key.user_id, "flag session enabled");
                Ok(Enabled {
                    session,
                    created: true,
                })
            }
            EnableOutcome::AlreadyActive(session) => Ok(Enabled {
                session,
                created: false,
            }),
            EnableOutcome::OverLimit(recent) => {
                let limit = self.settings.max_enables_per_hour;
                // The call succeeds once enough of the last hour's sessions leave the window.
                let excess = recent.len().saturating_sub(limit as usize);
                let leaving = recent.get(excess).copied().unwrap_or(now);
                let retry_at = leaving + chrono::Duration::hours(1);
                // Rounded up: a client that waits exactly this long is not refused again.
                let wait = retry_at - now;
                let whole = wait.num_seconds();
                let retry_after_seconds = if wait > chrono::Duration::seconds(whole) {
                    whole + 1
                } else {
                    whole
                }
                .max(1);
                Err(FlagError::RateLimited {
                    limit,
                    retry_at,
                    retry_after_seconds,
                })
            }
        }
    }

    pub async fn disable(
        &self,
        caller: &Principal,
        key: FlagKey,
    ) -> Result<Option<FlagSession>, FlagError> {
        ensure_tenant(caller, key.tenant_id)?;
        let session = self
            .store
            .disable(&key, self.clock.now(), &caller.audit_name())
            .await?;
        Ok(session)
    }

    pub async fn status(&self, caller: &Principal, key: FlagKey) -> Result<FlagStatus, FlagError> {
        ensure_tenant(caller, key.tenant_id)?;
        let now = self.clock.now();
        let session = self.store.in_force(&key, now).await?;
        let remaining = session
            .as_ref()
            .and_then(|session| (session.ends_at() - now).to_std().ok());
        Ok(FlagStatus { session, remaining })
    }

    /// The session in force at each check's own time, in request order: from the mirror
    /// when it covers every check's time, else from the database in one statement.
    pub async fn check(&self, checks: &[FlagCheck]) -> Result<Vec<Option<Uuid>>, FlagError> {
        if checks.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(mirror) = &self.mirror
            && let Some(answers) = mirror.check(checks).await?
        {
            self.checks_answered.answered_from_mirror(checks.len());
            return Ok(answers);
        }
        let answers = self.store.check(checks).await?;
        self.checks_answered.answered_from_database(checks.len());
        Ok(answers)
    }

    /// As [`Flagging::check`] for a caller: one whose token names a tenant may ask only about
    /// that tenant's keys (query-service's own credential names none and asks for all).
    pub async fn check_for(
        &self,
        caller: &Principal,
        checks: &[FlagCheck],
    ) -> Result<Vec<Option<Uuid>>, FlagError> {
        for (index, check) in checks.iter().enumerate() {
            ensure_tenant(caller, check.key.tenant_id).map_err(|_| {
                FlagError::PermissionDenied(format!(
                    "checks[{index}].tenantId: not the caller's tenant"
                ))
            })?;
        }
        self.check(checks).await
    }

    /// A page of sessions newest first, and the cursor of the next page if there is one.
    pub async fn list(
        &self,
        caller: &Principal,
        query: SessionQuery,
    ) -> Result<(Vec<FlagSession>, Option<(DateTime<Utc>, Uuid)>), FlagError> {
        let Some(own_tenant) = caller.tenant_id else {
            return Err(FlagError::PermissionDenied(
                "listing flag sessions needs a token of the tenant ('tid')".into(),
            ));
        };
        if own_tenant != query.tenant_id {
            return Err(FlagError::PermissionDenied(
                "tenantId: not the caller's tenant".into(),
            ));
        }
        let mut sessions = self.store.list(&query, self.clock.now()).await?;
        let next = if sessions.len() > query.page_size as usize {
            sessions.truncate(query.page_size as usize);
            sessions.last().map(|last| (last.enabled_at, last.id))
        } else {
            None
        };
        Ok((sessions, next))
    }

    /// Deletes sessions that ended more than `retention` ago, in small batches so no statement
    /// holds locks for long.
    pub async fn apply_retention(&self, retention: Duration) -> Result<u64, FlagError> {
        let Ok(retention) = chrono::Duration::from_std(retention) else {
            return Ok(0);
        };
        let cutoff = self.clock.now() - retention;
        let mut total = 0;
        loop {
            let deleted = self
                .store
                .delete_expired_before(cutoff, RETENTION_BATCH)
                .await?;
            total += deleted;
            if deleted < RETENTION_BATCH.unsigned_abs() {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }
}

/// A caller whose token names a tenant acts only inside it; the gateway's platform identity
/// (no `tid`) acts for users of any tenant.
fn ensure_tenant(caller: &Principal, tenant_id: Uuid) -> Result<(), FlagError> {
    match caller.tenant_id {
        Some(own) if own != tenant_id => Err(FlagError::PermissionDenied(
            "tenantId: not the caller's tenant".into(),
        )),
        _ => Ok(()),
    }
}
