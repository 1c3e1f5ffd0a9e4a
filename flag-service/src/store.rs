//! SQL over `flag.flag_sessions`: one function per statement, every value a parameter, each
//! statement in its own span ([`sql_trace`]).

use crate::domain::{FlagCheck, FlagKey, FlagSession, SessionQuery, SessionWindow, Trigger};
use crate::error::FlagError;
use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Pool};
use futures::TryStreamExt;
use signins_common::db::Migration;
use signins_common::sql_trace;
use std::sync::LazyLock;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use tracing::Instrument;
use uuid::Uuid;

/// The schema flag-service owns; its migration history lives there too.
pub const SCHEMA: &str = "flag";

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "flag_sessions",
        sql: include_str!("../migrations/0001_flag_sessions.sql"),
    },
    Migration {
        version: 2,
        name: "flag_sessions_by_key_covering",
        sql: include_str!("../migrations/0002_flag_sessions_by_key_covering.sql"),
    },
    Migration {
        version: 3,
        name: "flag_sessions_change_stamp",
        sql: include_str!("../migrations/0003_flag_sessions_change_stamp.sql"),
    },
];

const COLUMNS: &str = "id, tenant_id, user_id, device_id, browser_id, user_principal_name, enabled_at, \
     expires_at, disabled_at, enabled_by, disabled_by, trigger_error_code, trigger_request_id, \
     trigger_correlation_id, trigger_app_id, trigger_app_display_name, trigger_ip_address, \
     trigger_occurred_at";

/// Where a session stops flagging: expiry, or the disable if that came first.
const ENDS_AT: &str = "LEAST(expires_at, COALESCE(disabled_at, expires_at))";

/// The session of the key $1..$4 in force at $5.
///
/// The sessions of one key that are not empty never overlap (the exclusion constraint), so the
/// only one that can be in force at $5 is the latest non-empty one enabled at or before $5: the
/// inner query stops at the first index entry instead of walking the key's whole history, and
/// the outer one checks that it has not ended. Empty sessions (disabled in the microsecond they
/// were enabled) are skipped because one may share its start with a real session.
static IN_FORCE_AT_5: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {COLUMNS} FROM (
             SELECT {COLUMNS} FROM flag.flag_sessions
             WHERE tenant_id = $1 AND user_id = $2 AND device_id = $3 AND browser_id = $4
               AND enabled_at <= $5 AND {ENDS_AT} > enabled_at
             ORDER BY enabled_at DESC LIMIT 1
         ) latest
         WHERE $5 < {ENDS_AT}"
    )
});

/// Ends the session of the key $1..$4 in force at $5. The in-force condition is repeated on
/// the row itself so that of two concurrent disables the second, re-checked against the
/// row the first one updated, changes nothing.
static DISABLE_AT_5: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE flag.flag_sessions
         SET disabled_at = $5, disabled_by = $6, changed_in = pg_current_xact_id()
         WHERE tenant_id = $1 AND id = (SELECT id FROM ({in_force}) in_force)
           AND enabled_at <= $5 AND $5 < {ENDS_AT}
         RETURNING {COLUMNS}",
        in_force = *IN_FORCE_AT_5
    )
});

/// The last session of the key $1..$4 enabled at or before $5.
static LAST_AT_5: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {COLUMNS} FROM flag.flag_sessions
         WHERE tenant_id = $1 AND user_id = $2 AND device_id = $3 AND browser_id = $4
           AND enabled_at <= $5
         ORDER BY enabled_at DESC LIMIT 1"
    )
});

/// The key $1..$4's session that has not ended by $5, whenever it started (after an insert
/// lost to another replica whose clock runs a little ahead).
static NOT_ENDED_AT_5: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {COLUMNS} FROM flag.flag_sessions
         WHERE tenant_id = $1 AND user_id = $2 AND device_id = $3 AND browser_id = $4
           AND {ENDS_AT} > $5
         ORDER BY enabled_at DESC LIMIT 1"
    )
});

static INSERT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO flag.flag_sessions ({COLUMNS}) VALUES
         ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9, NULL, $10, $11, $12, $13, $14, $15, $16)
         ON CONFLICT DO NOTHING RETURNING {COLUMNS}"
    )
});

/// For each check ($1..$5 as parallel arrays) the session in force at its time: the same
/// "latest non-empty session enabled at or before `at`" lookup as [`IN_FORCE_AT_5`], one index
/// probe per check, for the whole batch in one statement. `ord` places each answer, so the
/// rows need no sort.
static CHECK_BATCH: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT c.ord, CASE WHEN c.at < s.ends_at THEN s.id END
         FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[])
              WITH ORDINALITY AS c(tenant_id, user_id, device_id, browser_id, at, ord)
         LEFT JOIN LATERAL (
             SELECT f.id, {ENDS_AT} AS ends_at FROM flag.flag_sessions f
             WHERE f.tenant_id = c.tenant_id AND f.user_id = c.user_id
               AND f.device_id = c.device_id AND f.browser_id = c.browser_id
               AND f.enabled_at <= c.at AND {ENDS_AT} > f.enabled_at
             ORDER BY f.enabled_at DESC LIMIT 1
         ) s ON true"
    )
});

/// The snapshot this statement reads in, and the windows of the sessions that end after $1,
/// the $2 that end last. The snapshot comes back even when no session matches (the outer
/// join), so the next [`CHANGED_SINCE_1`] knows where to start.
static RECENT_WINDOWS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT snapshot::text, f.id, f.tenant_id, f.user_id, f.device_id, f.browser_id,
                f.enabled_at, f.ends_at
         FROM (SELECT pg_current_snapshot() AS snapshot) now
         LEFT JOIN LATERAL (
             SELECT id, tenant_id, user_id, device_id, browser_id, enabled_at, {ENDS_AT} AS ends_at
             FROM flag.flag_sessions
             WHERE expires_at > $1 AND {ENDS_AT} > $1
             ORDER BY {ENDS_AT} DESC LIMIT $2
         ) f ON true"
    )
});

/// The snapshot this statement reads in, and the windows of every session row written by a
/// transaction that the snapshot $1 did not see (each row version carries its writer's id in
/// `changed_in`, migration 0003). Everything below $1's xmin was visible to $1, hence the index range.
static CHANGED_SINCE_1: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT snapshot::text, f.id, f.tenant_id, f.user_id, f.device_id, f.browser_id,
                f.enabled_at, {ENDS_AT} AS ends_at
         FROM (SELECT pg_current_snapshot() AS snapshot) now
         LEFT JOIN flag.flag_sessions f
           ON f.changed_in >= pg_snapshot_xmin($1::text::pg_snapshot)
          AND NOT pg_visible_in_snapshot(f.changed_in, $1::text::pg_snapshot)"
    )
});

static LIST: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {COLUMNS} FROM flag.flag_sessions
         WHERE tenant_id = $1
           AND ($2::uuid IS NULL OR user_id = $2)
           AND (NOT $3 OR (enabled_at <= $4 AND $4 < {ENDS_AT}))
           AND ($5::timestamptz IS NULL OR (enabled_at, id) < ($5, $6::uuid))
         ORDER BY enabled_at DESC, id DESC
         LIMIT $7"
    )
});

/// Runs [`RECENT_WINDOWS`] or [`CHANGED_SINCE_1`], hands each session window to `each` as its
/// row arrives (nothing of the result is held, however many rows), and returns the snapshot
/// the statement read in.
async fn read_windows(
    client: &deadpool_postgres::Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    each: &mut impl FnMut(SessionWindow<'_>),
) -> Result<String, FlagError> {
    let rows = async {
        let statement = client.prepare_cached(sql).await?;
        client
            .query_raw(&statement, params.iter().map(|param| *param as &dyn ToSql))
            .await
    }
    .instrument(sql_trace::span(sql))
    .await?;
    futures::pin_mut!(rows);
    let mut snapshot = None;
    while let Some(row) = rows.try_next().await? {
        if snapshot.is_none() {
            snapshot = Some(row.try_get::<_, String>(0)?);
        }
        // The outer join's row when nothing matched.
        let Some(id) = row.try_get::<_, Option<Uuid>>(1)? else {
            continue;
        };
        each(SessionWindow {
            id,
            tenant_id: row.try_get(2)?,
            user_id: row.try_get(3)?,
            device_id: row.try_get(4)?,
            browser_id: row.try_get(5)?,
            enabled_at: row.try_get(6)?,
            ends_at: row.try_get(7)?,
        });
    }
    snapshot.ok_or(FlagError::Unexpected(
        "the snapshot statement returned no row",
    ))
}

fn session_from_row(row: &Row) -> Result<FlagSession, tokio_postgres::Error> {
    Ok(FlagSession {
        id: row.try_get("id")?,
        key: FlagKey {
            tenant_id: row.try_get("tenant_id")?,
            user_id: row.try_get("user_id")?,
            device_id: row.try_get("device_id")?,
            browser_id: row.try_get("browser_id")?,
        },
        user_principal_name: row.try_get("user_principal_name")?,
        trigger: Trigger {
            error_code: row.try_get("trigger_error_code")?,
            request_id: row.try_get("trigger_request_id")?,
            correlation_id: row.try_get("trigger_correlation_id")?,
            app_id: row.try_get("trigger_app_id")?,
            app_display_name: row.try_get("trigger_app_display_name")?,
            ip_address: row.try_get("trigger_ip_address")?,
            occurred_at: row.try_get("trigger_occurred_at")?,
        },
        enabled_at: row.try_get("enabled_at")?,
        expires_at: row.try_get("expires_at")?,
        disabled_at: row.try_get("disabled_at")?,
        enabled_by: row.try_get("enabled_by")?,
        disabled_by: row.try_get("disabled_by")?,
    })
}

/// The outcome of [`Store::enable`].
#[derive(Debug)]
pub enum EnableOutcome {
    Created(FlagSession),
    AlreadyActive(FlagSession),
    /// Over the per-user limit; these are the enable times inside the last hour, oldest first.
    OverLimit(Vec<DateTime<Utc>>),
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
}

impl Store {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The session of `key` in force at `at`, if any.
    pub async fn in_force(
        &self,
        key: &FlagKey,
        at: DateTime<Utc>,
    ) -> Result<Option<FlagSession>, FlagError> {
        let client = self.pool.get().await?;
        in_force(&client, key, at).await
    }

    /// Starts a session unless one is in force, in one transaction serialised per user, so the
    /// rate limit holds and concurrent enables of one key return one session.
    pub async fn enable(
        &self,
        session: &FlagSession,
        max_per_hour: u32,
    ) -> Result<EnableOutcome, FlagError> {
        let now = session.enabled_at;
        let key = &session.key;
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        // Per user, not per key: the rate limit counts all of a user's sessions. The lock is
        // the database's, so it serialises enables across every replica.
        let lock = format!("flag-enable:{}:{}", key.tenant_id, key.user_id);
        let sql = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))";
        async {
            let statement = transaction.prepare_cached(sql).await?;
            transaction.execute(&statement, &[&lock]).await
        }
        .instrument(sql_trace::span(sql))
        .await?;
        if let Some(active) = in_force(&transaction, key, now).await? {
            transaction.commit().await?;
            return Ok(EnableOutcome::AlreadyActive(active));
        }
        let window_start = now - chrono::Duration::hours(1);
        let sql = "SELECT enabled_at FROM flag.flag_sessions
                   WHERE tenant_id = $1 AND user_id = $2 AND enabled_at > $3
                   ORDER BY enabled_at";
        let recent: Vec<DateTime<Utc>> = async {
            let statement = transaction.prepare_cached(sql).await?;
            transaction
                .query(&statement, &[&key.tenant_id, &key.user_id, &window_start])
                .await
        }
        .instrument(sql_trace::span(sql))
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
        if recent.len() >= max_per_hour as usize {
            transaction.commit().await?;
            return Ok(EnableOutcome::OverLimit(recent));
        }
        let trigger = &session.trigger;
        let inserted = async {
            let statement = transaction.prepare_cached(&INSERT).await?;
            transaction
                .query_opt(
                    &statement,
                    &[
                        &session.id,
                        &key.tenant_id,
                        &key.user_id,
                        &key.device_id,
                        &key.browser_id,
                        &session.user_principal_name,
                        &session.enabled_at,
                        &session.expires_at,
                        &session.enabled_by,
                        &trigger.error_code,
                        &trigger.request_id,
                        &trigger.correlation_id,
                        &trigger.app_id,
                        &trigger.app_display_name,
                        &trigger.ip_address,
                        &trigger.occurred_at,
                    ],
                )
                .await
        }
        .instrument(sql_trace::span(&INSERT))
        .await?;
        let outcome = match inserted {
            Some(row) => EnableOutcome::Created(session_from_row(&row)?),
            // The exclusion constraint refused an overlap: another replica whose clock runs a
            // little ahead started this key's session. Return that one.
            None => {
                let row = async {
                    let statement = transaction.prepare_cached(&NOT_ENDED_AT_5).await?;
                    transaction
                        .query_one(
                            &statement,
                            &[
                                &key.tenant_id,
                                &key.user_id,
                                &key.device_id,
                                &key.browser_id,
                                &now,
                            ],
                        )
                        .await
                }
                .instrument(sql_trace::span(&NOT_ENDED_AT_5))
                .await?;
                EnableOutcome::AlreadyActive(session_from_row(&row)?)
            }
        };
        transaction.commit().await?;
        Ok(outcome)
    }

    /// Ends the session of `key` in force at `now`; returns it, or else the key's last session.
    pub async fn disable(
        &self,
        key: &FlagKey,
        now: DateTime<Utc>,
        disabled_by: &str,
    ) -> Result<Option<FlagSession>, FlagError> {
        let client = self.pool.get().await?;
        let ended = async {
            let statement = client.prepare_cached(&DISABLE_AT_5).await?;
            client
                .query_opt(
                    &statement,
                    &[
                        &key.tenant_id,
                        &key.user_id,
                        &key.device_id,
                        &key.browser_id,
                        &now,
                        &disabled_by,
                    ],
                )
                .await
        }
        .instrument(sql_trace::span(&DISABLE_AT_5))
        .await?;
        if let Some(row) = ended {
            return Ok(Some(session_from_row(&row)?));
        }
        let last = async {
            let statement = client.prepare_cached(&LAST_AT_5).await?;
            client
                .query_opt(
                    &statement,
                    &[
                        &key.tenant_id,
                        &key.user_id,
                        &key.device_id,
                        &key.browser_id,
                        &now,
                    ],
                )
                .await
        }
        .instrument(sql_trace::span(&LAST_AT_5))
        .await?;
        last.map(|row| session_from_row(&row))
            .transpose()
            .map_err(FlagError::from)
    }

    /// For each check, the id of the session in force at its time: one statement for the
    /// batch, so one round trip to the database however many checks it carries.
    pub async fn check(&self, checks: &[FlagCheck]) -> Result<Vec<Option<Uuid>>, FlagError> {
        if checks.is_empty() {
            return Ok(Vec::new());
        }
        let mut tenants = Vec::with_capacity(checks.len());
        let mut users = Vec::with_capacity(checks.len());
        let mut devices = Vec::with_capacity(checks.len());
        let mut browsers = Vec::with_capacity(checks.len());
        let mut times = Vec::with_capacity(checks.len());
        for check in checks {
            tenants.push(check.key.tenant_id);
            users.push(check.key.user_id);
            devices.push(check.key.device_id.as_str());
            browsers.push(check.key.browser_id.as_str());
            times.push(check.at);
        }
        let client = self.pool.get().await?;
        let rows = async {
            let statement = client.prepare_cached(&CHECK_BATCH).await?;
            client
                .query(&statement, &[&tenants, &users, &devices, &browsers, &times])
                .await
        }
        .instrument(sql_trace::span(&CHECK_BATCH))
        .await?;
        let mut results = vec![None; checks.len()];
        for row in rows {
            let ordinal: i64 = row.try_get(0)?;
            let index = usize::try_from(ordinal - 1).unwrap_or(usize::MAX);
            if let Some(slot) = results.get_mut(index) {
                *slot = row.try_get(1)?;
            }
        }
        Ok(results)
    }

    /// Hands `each` the windows of the `limit` sessions that end last among those ending after
    /// `ended_after`; returns the snapshot they were read in: the mirror's full load.
    pub async fn recent_windows(
        &self,
        ended_after: DateTime<Utc>,
        limit: i64,
        each: &mut impl FnMut(SessionWindow<'_>),
    ) -> Result<String, FlagError> {
        let client = self.pool.get().await?;
        read_windows(&client, &RECENT_WINDOWS, &[&ended_after, &limit], each).await
    }

    /// Hands `each` the windows of the session rows written since `snapshot` was taken;
    /// returns the snapshot they were read in: the mirror's catch-up, one round trip.
    pub async fn windows_changed_since(
        &self,
        snapshot: &str,
        each: &mut impl FnMut(SessionWindow<'_>),
    ) -> Result<String, FlagError> {
        let client = self.pool.get().await?;
        read_windows(&client, &CHANGED_SINCE_1, &[&snapshot], each).await
    }

    /// A page of a tenant's sessions, newest first, one more than asked so the caller knows
    /// whether another page follows.
    pub async fn list(
        &self,
        query: &SessionQuery,
        now: DateTime<Utc>,
    ) -> Result<Vec<FlagSession>, FlagError> {
        let client = self.pool.get().await?;
        let (after_time, after_id) = match query.after {
            Some((time, id)) => (Some(time), Some(id)),
            None => (None, None),
        };
        let limit = i64::from(query.page_size) + 1;
        let rows = async {
            let statement = client.prepare_cached(&LIST).await?;
            client
                .query(
                    &statement,
                    &[
                        &query.tenant_id,
                        &query.user_id,
                        &query.active_only,
                        &now,
                        &after_time,
                        &after_id,
                        &limit,
                    ],
                )
                .await
        }
        .instrument(sql_trace::span(&LIST))
        .await?;
        rows.iter()
            .map(session_from_row)
            .collect::<Result<_, _>>()
            .map_err(FlagError::from)
    }

    /// Deletes up to `batch` sessions that expired before `cutoff`; returns how many.
    ///
    /// One short statement per batch, each its own transaction, so retention never holds many
    /// row locks for long; `SKIP LOCKED` lets replicas running retention at the same time
    /// share the work instead of waiting on each other. A session disabled early is kept
    /// until its expiry passes the cutoff (at most the flag TTL longer), which lets the
    /// statement use the index on `expires_at`.
    pub async fn delete_expired_before(
        &self,
        cutoff: DateTime<Utc>,
        batch: i64,
    ) -> Result<u64, FlagError> {
        let client = self.pool.get().await?;
        let sql = "DELETE FROM flag.flag_sessions WHERE (tenant_id, id) IN (
                   SELECT tenant_id, id FROM flag.flag_sessions WHERE expires_at < $1
                   LIMIT $2 FOR UPDATE SKIP LOCKED
               )";
        let deleted = async {
            let statement = client.prepare_cached(sql).await?;
            client.execute(&statement, &[&cutoff, &batch]).await
        }
        .instrument(sql_trace::span(sql))
        .await?;
        Ok(deleted)
    }

    /// How many sessions are in force at `now`, across tenants (for the metrics).
    pub async fn count_active(&self, now: DateTime<Utc>) -> Result<u64, FlagError> {
        let client = self.pool.get().await?;
        // `expires_at > $1` first: the expiry index narrows the scan to recent sessions.
        let sql = "SELECT count(*) FROM flag.flag_sessions
             WHERE expires_at > $1 AND enabled_at <= $1
               AND (disabled_at IS NULL OR disabled_at > $1)";
        let row = client
            .query_one(sql, &[&now])
            .instrument(sql_trace::span(sql))
            .await?;
        let count: i64 = row.try_get(0)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}

async fn in_force<C: GenericClient>(
    client: &C,
    key: &FlagKey,
    at: DateTime<Utc>,
) -> Result<Option<FlagSession>, FlagError> {
    let row = async {
        let statement = client.prepare_cached(&IN_FORCE_AT_5).await?;
        client
            .query_opt(
                &statement,
                &[
                    &key.tenant_id,
                    &key.user_id,
                    &key.device_id,
                    &key.browser_id,
                    &at,
                ],
            )
            .await
    }
    .instrument(sql_trace::span(&IN_FORCE_AT_5))
    .await?;
    row.map(|row| session_from_row(&row))
        .transpose()
        .map_err(FlagError::from)
}
