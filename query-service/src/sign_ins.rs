//! The rules of the sign-in log, between the transport and the store: enrich and record
//! batches idempotently (asking flag-service once per batch, at each event's own time, and
//! falling back to "pending" when it cannot be asked), re-check pending events in the
//! background, and read the log inside the caller's scope.

use crate::convert::TimeBounds;
use crate::domain::filter::{self, Expr};
use crate::domain::sign_in::{FlagCheck, Order, ReadScope, SignIn, SignInRef};
use crate::enrich;
use crate::error::QueryError;
use crate::flag_client::FlagChecker;
use crate::metrics::LogMetrics;
use crate::page_token::PageTokenKey;
use crate::store::{ListQuery, ResolvedFlag, Store};
use chrono::{DateTime, Utc};
use signins_common::auth::{Principal, Role};
use signins_common::clock::Clock;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;
use uuid::Uuid;

pub const DEFAULT_TOP: i32 = 100;
pub const MAX_TOP: i32 = 1_000;
/// Pending events re-checked per round.
const RECHECK_BATCH: i64 = 1_000;

#[derive(Debug, Clone)]
pub struct SignInLogSettings {
    pub max_clock_skew: chrono::Duration,
    pub retention: chrono::Duration,
}

/// Days of partitions kept ready ahead of today (and one behind, for events a little late).
const PARTITIONS_AHEAD: i64 = 3;

#[derive(Debug, Clone)]
pub struct SignInLog {
    store: Store,
    flags: FlagChecker,
    clock: Arc<dyn Clock>,
    page_tokens: PageTokenKey,
    settings: SignInLogSettings,
    metrics: LogMetrics,
}

/// The counts a RecordSignIns call answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recorded {
    pub recorded: i64,
    pub duplicates: i64,
}

impl std::ops::AddAssign for Recorded {
    fn add_assign(&mut self, other: Self) {
        self.recorded += other.recorded;
        self.duplicates += other.duplicates;
    }
}

impl SignInLog {
    pub fn new(
        store: Store,
        flags: FlagChecker,
        clock: Arc<dyn Clock>,
        page_tokens: PageTokenKey,
        settings: SignInLogSettings,
        metrics: LogMetrics,
    ) -> Self {
        Self {
            store,
            flags,
            clock,
            page_tokens,
            settings,
            metrics,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// What createdDateTime may be now: within retention, and not beyond the clock skew.
    pub fn time_bounds(&self) -> TimeBounds {
        let now = self.clock.now();
        TimeBounds {
            earliest: now - self.settings.retention,
            latest: now + self.settings.max_clock_skew,
        }
    }

    /// Creates the partitions of yesterday to a few days ahead, and drops those past retention.
    pub async fn maintain_partitions(&self) -> Result<Vec<chrono::NaiveDate>, QueryError> {
        let today = self.clock.now().date_naive();
        let days = (-1..=PARTITIONS_AHEAD)
            .filter_map(|offset| today.checked_add_signed(chrono::Duration::days(offset)));
        self.store.ensure_partitions(days).await?;
        self.store
            .drop_partitions_before(self.clock.now() - self.settings.retention)
            .await
    }

    /// Enriches and stores a validated batch; acknowledged means committed.
    pub async fn record(
        &self,
        caller: &Principal,
        mut sign_ins: Vec<SignIn>,
        first_index: usize,
    ) -> Result<Recorded, QueryError> {
        if let Some(own) = caller.tenant_id {
            if let Some(offset) = sign_ins.iter().position(|sign_in| sign_in.tenant_id != own) {
                return Err(QueryError::PermissionDenied(format!(
                    "signIns[{}].tenantId: not the caller's tenant",
                    first_index + offset
                )));
            }
        }
        for sign_in in &mut sign_ins {
            enrich::describe(sign_in);
        }
        let flags = match self.flags.check(&sign_ins).await {
            Ok(flags) => flags,
            Err(error) => {
                tracing::warn!(%error, events = sign_ins.len(), "flag check failed: recording as pending");
                vec![FlagCheck::Pending; sign_ins.len()]
            }
        };
        for (sign_in, flag) in sign_ins.iter_mut().zip(flags) {
            sign_in.flag = flag;
        }
        // Grouped by tenant, so on a tenant-distributed database a batch is one write per shard.
        sign_ins.sort_by_key(|sign_in| sign_in.tenant_id);
        let total = i64::try_from(sign_ins.len()).unwrap_or(i64::MAX);
        let stored = self.store.insert(&sign_ins).await?;
        let recorded = i64::try_from(stored.rows).unwrap_or(i64::MAX);
        self.metrics
            .recorded(stored, u64::try_from(total - recorded).unwrap_or(0));
        Ok(Recorded {
            recorded,
            duplicates: total - recorded,
        })
    }

    /// One page of the log inside the caller's scope: hands each of its sign-ins to `each`, in
    /// order, and answers the token of the next page (`None` on the last).
    pub async fn list<F>(
        &self,
        caller: &Principal,
        filter_text: &str,
        top: Option<i32>,
        order_by: &str,
        page_token: &str,
        mut each: F,
    ) -> Result<Option<String>, QueryError>
    where
        F: FnMut(&SignInRef<'_>) + Send,
    {
        let scope = read_scope(caller)?;
        let filter = filter::parse(filter_text)
            .map_err(|error| QueryError::InvalidFilter(error.to_string()))?;
        let top = match top {
            None => DEFAULT_TOP,
            Some(top) if (1..=MAX_TOP).contains(&top) => top,
            Some(_) => {
                return Err(QueryError::invalid(
                    "top",
                    format!("must be between 1 and {MAX_TOP}"),
                ));
            }
        };
        let order = Order::parse(order_by).ok_or_else(|| {
            QueryError::invalid(
                "orderBy",
                "must be 'createdDateTime desc' or 'createdDateTime asc'",
            )
        })?;
        let binding = binding(scope, filter.as_ref(), order);
        let after = if page_token.is_empty() {
            None
        } else {
            Some(
                self.page_tokens
                    .open(&binding, page_token)
                    .map_err(|error| QueryError::invalid("pageToken", error.to_string()))?,
            )
        };
        // One row more than the page says whether another page follows.
        let page_size = usize::try_from(top).unwrap_or(0);
        let mut written = 0;
        let mut last = None;
        let read = self
            .store
            .list_each(
                &ListQuery {
                    scope,
                    filter: filter.as_ref(),
                    order,
                    after,
                    limit: i64::from(top) + 1,
                },
                |sign_in| {
                    if written < page_size {
                        each(sign_in);
                        written += 1;
                        last = Some((sign_in.created_at, sign_in.id));
                    }
                },
            )
            .await?;
        Ok(if read > page_size {
            last.map(|after| self.page_tokens.issue(&binding, after))
        } else {
            None
        })
    }

    pub async fn get(&self, caller: &Principal, id: Uuid) -> Result<SignIn, QueryError> {
        let scope = read_scope(caller)?;
        self.store
            .get(scope, id)
            .await?
            .ok_or_else(|| QueryError::NotFound(id.to_string()))
    }

    /// Re-checks the oldest pending events once; returns how many got their flag.
    pub async fn recheck_pending(&self) -> Result<u64, RecheckError> {
        // This poll runs every few seconds and almost always finds nothing: untraced, or it
        // would be a trace of its own each time. A round that finds work is traced.
        let pending =
            signins_common::telemetry::untraced(self.store.pending_flag_checks(RECHECK_BATCH))
                .await
                .map_err(RecheckError::Store)?;
        if pending.is_empty() {
            return Ok(0);
        }
        let span = tracing::info_span!("flag_checks.recheck", pending = pending.len());
        self.resolve_pending(pending).instrument(span).await
    }

    async fn resolve_pending(&self, pending: Vec<SignIn>) -> Result<u64, RecheckError> {
        let flags = self
            .flags
            .check(&pending)
            .await
            .map_err(|error| RecheckError::FlagService(error.to_string()))?;
        let resolved: Vec<ResolvedFlag> = pending
            .iter()
            .zip(flags)
            .filter_map(|(sign_in, flag)| {
                let session = match flag {
                    FlagCheck::NotFlagged => None,
                    FlagCheck::Flagged(session) => Some(session),
                    FlagCheck::Pending => return None,
                };
                Some(ResolvedFlag {
                    tenant_id: sign_in.tenant_id,
                    created_at: sign_in.created_at,
                    id: sign_in.id,
                    session,
                })
            })
            .collect();
        let stored = self
            .store
            .resolve_flag_checks(&resolved)
            .await
            .map_err(RecheckError::Store)?;
        self.metrics.resolved(stored);
        Ok(stored.rows)
    }

    /// Runs [`SignInLog::recheck_pending`] forever, backing off while flag-service is away.
    pub async fn run_rechecks(self) {
        const IDLE: Duration = Duration::from_secs(2);
        const MAX_BACKOFF: Duration = Duration::from_secs(30);
        let mut backoff = IDLE;
        loop {
            match self.recheck_pending().await {
                Ok(0) => backoff = IDLE,
                Ok(resolved) => {
                    tracing::info!(resolved, "pending flag checks resolved");
                    backoff = IDLE;
                    // More may be waiting: go again at once.
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "re-check of pending flag checks failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
            tokio::time::sleep(backoff).await;
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecheckError {
    #[error("store: {0}")]
    Store(QueryError),
    #[error("flag-service: {0}")]
    FlagService(String),
}

/// What the caller may read: reader roles the tenant, help desk its flagged sign-ins, a plain
/// user their own. The tenant always comes from the token, never from the request.
pub fn read_scope(caller: &Principal) -> Result<ReadScope, QueryError> {
    let tenant = caller.tenant_id.ok_or_else(|| {
        QueryError::PermissionDenied("reading sign-ins needs a token of the tenant ('tid')".into())
    })?;
    if caller.has_any(Role::READERS) {
        Ok(ReadScope::Tenant(tenant))
    } else if caller.has(Role::HelpdeskAdministrator) {
        Ok(ReadScope::FlaggedOnly(tenant))
    } else if caller.is_plain_user() {
        let user_id = Uuid::parse_str(&caller.subject).map_err(|_| {
            QueryError::PermissionDenied("a user token's 'sub' must be the user's object id".into())
        })?;
        Ok(ReadScope::OwnUser {
            tenant_id: tenant,
            user_id,
        })
    } else {
        Err(QueryError::PermissionDenied(
            "no role that may read sign-ins".into(),
        ))
    }
}

/// What a page token is bound to.
fn binding(scope: ReadScope, filter: Option<&Expr>, order: Order) -> String {
    format!("{scope:?}|{filter:?}|{}", order.as_str())
}
