//! SQL over `query.sign_ins`: one function per statement, every value a parameter. The
//! `$filter` arrives already translated into a condition with its own parameters.
//!
//! Each statement runs in its own span ([`sql_trace`]), so a trace shows every round trip.
//!
//! The table is partitioned by UTC day. Partitions are created ahead of time by a background
//! task and on demand for the days a batch touches; retention drops whole partitions.

use crate::domain::filter::{self, Expr, SqlValue};
use crate::domain::sign_in::{FlagCheck, Order, ReadScope, SignIn, SignInRef};
use crate::error::QueryError;
use chrono::NaiveDate;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use futures::TryStreamExt;
use postgres_types::{FromSql, ToSql};
use signins_common::db::Migration;
use signins_common::sql_trace;
use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex};
use tokio_postgres::types::Type;
use tokio_postgres::{Row, RowStream};
use tracing::Instrument;
use uuid::Uuid;

/// The schema query-service owns; its migration history lives there too.
pub const SCHEMA: &str = "query";

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "sign_ins",
        sql: include_str!("../migrations/0001_sign_ins.sql"),
    },
    Migration {
        version: 2,
        name: "filter_indexes",
        sql: include_str!("../migrations/0002_filter_indexes.sql"),
    },
];

/// Every stored column with its SQL type, in the order inserts send them.
const COLUMNS: &[(&str, &str)] = &[
    ("tenant_id", "uuid"),
    ("id", "uuid"),
    ("created_at", "timestamptz"),
    ("user_id", "uuid"),
    ("user_principal_name", "text"),
    ("user_display_name", "text"),
    ("user_type", "text"),
    ("app_id", "text"),
    ("app_display_name", "text"),
    ("resource_id", "text"),
    ("resource_display_name", "text"),
    ("ip_address", "text"),
    ("user_agent", "text"),
    ("client_app_used", "text"),
    ("correlation_id", "text"),
    ("is_interactive", "boolean"),
    ("conditional_access_status", "text"),
    ("error_code", "integer"),
    ("failure_reason", "text"),
    ("additional_details", "text"),
    ("device_id", "text"),
    ("browser_id", "text"),
    ("device_display_name", "text"),
    ("operating_system", "text"),
    ("browser", "text"),
    ("is_compliant", "boolean"),
    ("is_managed", "boolean"),
    ("trust_type", "text"),
    ("city", "text"),
    ("state", "text"),
    ("country_or_region", "text"),
    ("risk_level_during_sign_in", "text"),
    ("risk_state", "text"),
    ("flagged_for_review", "boolean"),
    ("flag_session_id", "uuid"),
    ("flag_check_pending", "boolean"),
];

static COLUMN_LIST: LazyLock<String> = LazyLock::new(|| {
    COLUMNS
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
});

/// One multi-row insert for a whole batch: each column travels as one array parameter. It
/// answers how many rows were new, and how many of those were flagged (for the metrics).
static INSERT: LazyLock<String> = LazyLock::new(|| {
    let arrays = COLUMNS
        .iter()
        .enumerate()
        .map(|(index, (_, sql_type))| format!("${}::{sql_type}[]", index + 1))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "WITH stored AS (
             INSERT INTO query.sign_ins ({}) SELECT * FROM unnest({arrays})
             ON CONFLICT (tenant_id, created_at, id) DO NOTHING RETURNING flagged_for_review
         )
         SELECT count(*), count(*) FILTER (WHERE flagged_for_review) FROM stored",
        *COLUMN_LIST
    )
});

/// The position of `name` in [`COLUMNS`], the order every SELECT here lists the columns in.
/// Evaluated at compile time (a misspelt name does not compile); reading by position spares
/// each of a page's thousands of values a search of the row's column names.
const fn column(name: &str) -> usize {
    let mut index = 0;
    while index < COLUMNS.len() {
        if same(COLUMNS[index].0.as_bytes(), name.as_bytes()) {
            return index;
        }
        index += 1;
    }
    panic!("not a column of query.sign_ins");
}

const fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Reads the named column of a row selected with [`COLUMN_LIST`].
macro_rules! get {
    ($row:expr, $name:literal) => {
        $row.try_get(const { column($name) })
    };
}

/// A sign-in read with [`COLUMN_LIST`], its texts owned (`String`) or borrowed from the row
/// (`&str`).
fn sign_in_from_row<'a, S: FromSql<'a>>(row: &'a Row) -> Result<SignIn<S>, tokio_postgres::Error> {
    let flagged: bool = get!(row, "flagged_for_review")?;
    let pending: bool = get!(row, "flag_check_pending")?;
    let session: Option<Uuid> = get!(row, "flag_session_id")?;
    let flag = match (pending, flagged, session) {
        (true, _, _) => FlagCheck::Pending,
        (false, true, Some(session)) => FlagCheck::Flagged(session),
        _ => FlagCheck::NotFlagged,
    };
    Ok(SignIn {
        id: get!(row, "id")?,
        created_at: get!(row, "created_at")?,
        tenant_id: get!(row, "tenant_id")?,
        user_id: get!(row, "user_id")?,
        user_principal_name: get!(row, "user_principal_name")?,
        user_display_name: get!(row, "user_display_name")?,
        user_type: get!(row, "user_type")?,
        app_id: get!(row, "app_id")?,
        app_display_name: get!(row, "app_display_name")?,
        resource_id: get!(row, "resource_id")?,
        resource_display_name: get!(row, "resource_display_name")?,
        ip_address: get!(row, "ip_address")?,
        user_agent: get!(row, "user_agent")?,
        client_app_used: get!(row, "client_app_used")?,
        correlation_id: get!(row, "correlation_id")?,
        is_interactive: get!(row, "is_interactive")?,
        conditional_access_status: get!(row, "conditional_access_status")?,
        error_code: get!(row, "error_code")?,
        failure_reason: get!(row, "failure_reason")?,
        additional_details: get!(row, "additional_details")?,
        device_id: get!(row, "device_id")?,
        browser_id: get!(row, "browser_id")?,
        device_display_name: get!(row, "device_display_name")?,
        operating_system: get!(row, "operating_system")?,
        browser: get!(row, "browser")?,
        is_compliant: get!(row, "is_compliant")?,
        is_managed: get!(row, "is_managed")?,
        trust_type: get!(row, "trust_type")?,
        city: get!(row, "city")?,
        state: get!(row, "state")?,
        country_or_region: get!(row, "country_or_region")?,
        risk_level_during_sign_in: get!(row, "risk_level_during_sign_in")?,
        risk_state: get!(row, "risk_state")?,
        flag,
    })
}

/// What one ListSignIns page reads.
#[derive(Debug, Clone)]
pub struct ListQuery<'a> {
    pub scope: ReadScope,
    pub filter: Option<&'a Expr>,
    pub order: Order,
    /// Continue after this (created_at, id).
    pub after: Option<(DateTime<Utc>, Uuid)>,
    pub limit: i64,
}

/// The statement [`Store::list_each`] runs for a [`ListQuery`].
#[derive(Debug, Clone, PartialEq)]
pub struct ListStatement {
    pub sql: String,
    pub params: Vec<SqlValue>,
    /// Whether the read is served by walking an index in the page order, whatever its values
    /// ([`filter::Translated::reads_in_time_order`]): the scope adds only the tenant, the
    /// flagged partial index or one user, all of which such an index leads with.
    pub reads_in_time_order: bool,
}

/// Settings of the connections that run [`ListStatement::reads_in_time_order`] reads.
///
/// Those statements are prepared, so PostgreSQL plans them once for any values (a generic
/// plan) after its first few runs, and a generic plan cannot see that one user signs in a
/// hundred times a day and another once a month: it estimates a row or two per daily
/// partition and so prefers reading all of a user's matching rows from every partition and
/// sorting them, which for a busy user (a service account) reads thousands of rows to return
/// fifty. Without sorts the plan reads the partitions newest first along their time-ordered
/// index and stops at the page size, which is what a time-ordered read needs for every user.
/// (Sorting is still possible; it is only priced out.) Other reads keep the normal settings,
/// on the other pool: there the planner must be free to look a value up and sort the few rows.
pub const TIME_ORDERED_READ_SETTINGS: &[(&str, &str)] = &[("enable_sort", "off")];

/// Rows a write changed, and how many of them are flagged for review.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stored {
    pub rows: u64,
    pub flagged: u64,
}

impl Stored {
    fn from_counts(row: &Row) -> Result<Self, tokio_postgres::Error> {
        let count = |index: usize| -> Result<u64, tokio_postgres::Error> {
            let value: i64 = row.try_get(index)?;
            Ok(u64::try_from(value).unwrap_or(0))
        };
        Ok(Self {
            rows: count(0)?,
            flagged: count(1)?,
        })
    }
}

/// The flag found for a sign-in whose check was pending; `session` is `None` when not flagged.
#[derive(Debug, Clone, Copy)]
pub struct ResolvedFlag {
    pub tenant_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
    pub session: Option<Uuid>,
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
    /// Connections with [`TIME_ORDERED_READ_SETTINGS`], for the reads that walk an index in
    /// time order; each keeps those statements prepared.
    time_ordered_reads: Pool,
    /// Days whose partition this process knows to exist; a miss costs one DDL statement.
    partitions: Arc<Mutex<HashSet<NaiveDate>>>,
}

impl Store {
    pub fn new(pool: Pool, time_ordered_reads: Pool) -> Self {
        Self {
            pool,
            time_ordered_reads,
            partitions: Arc::default(),
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Stores the sign-ins not stored before, in one statement and so one transaction;
    /// returns how many were new, and how many of those flagged.
    pub async fn insert(&self, sign_ins: &[SignIn]) -> Result<Stored, QueryError> {
        if sign_ins.is_empty() {
            return Ok(Stored::default());
        }
        let days: HashSet<NaiveDate> = sign_ins
            .iter()
            .map(|sign_in| sign_in.created_at.date_naive())
            .collect();
        self.ensure_partitions(days.iter().copied()).await?;
        let columns = Columns::from(sign_ins);
        let client = self.pool.get().await?;
        let insert = || {
            async {
                let statement = client.prepare_cached(&INSERT).await?;
                client.query_one(&statement, &columns.params()).await
            }
            .instrument(sql_trace::span_named("INSERT", &INSERT))
        };
        match insert().await {
            Ok(row) => Ok(Stored::from_counts(&row)?),
            // Another replica's retention dropped a partition this process still had cached.
            Err(error) if is_missing_partition(&error) => {
                self.forget_partitions();
                self.ensure_partitions(days).await?;
                Ok(Stored::from_counts(&insert().await?)?)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Creates the partitions of these days unless they exist.
    pub async fn ensure_partitions(
        &self,
        days: impl IntoIterator<Item = NaiveDate>,
    ) -> Result<(), QueryError> {
        let missing: Vec<NaiveDate> = {
            let known = self
                .partitions
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            days.into_iter()
                .filter(|day| !known.contains(day))
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let client = self.pool.get().await?;
        for day in missing {
            let Some(next) = day.succ_opt() else { continue };
            // DDL takes no parameters; the name and bounds are formatted from a date, never from
            // request text. The advisory lock keeps replicas from racing on the same partition.
            let sql = format!(
                "BEGIN;
                 SELECT pg_advisory_xact_lock(hashtextextended('query.sign_ins partitions', 0));
                 CREATE TABLE IF NOT EXISTS query.{} PARTITION OF query.sign_ins
                     FOR VALUES FROM ('{day} 00:00:00+00') TO ('{next} 00:00:00+00');
                 COMMIT;",
                partition_name(day)
            );
            client
                .batch_execute(&sql)
                .instrument(sql_trace::span_named("CREATE", &sql))
                .await?;
            self.partitions
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(day);
        }
        Ok(())
    }

    fn forget_partitions(&self) {
        self.partitions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }

    /// Drops the partitions that hold only sign-ins created before `cutoff`; returns their days.
    pub async fn drop_partitions_before(
        &self,
        cutoff: DateTime<Utc>,
    ) -> Result<Vec<NaiveDate>, QueryError> {
        let client = self.pool.get().await?;
        let sql = "SELECT c.relname FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid
             JOIN pg_class p ON p.oid = i.inhparent
             JOIN pg_namespace n ON n.oid = p.relnamespace
             WHERE n.nspname = 'query' AND p.relname = 'sign_ins'";
        let rows = client
            .query(sql, &[])
            .instrument(sql_trace::span(sql))
            .await?;
        let cutoff_day = cutoff.date_naive();
        let mut dropped = Vec::new();
        for row in rows {
            let name: String = row.try_get(0)?;
            let Some(day) = partition_day(&name) else {
                continue;
            };
            // A partition covers [day, day + 1); it goes when all of it is older than the cutoff.
            if day.succ_opt().is_some_and(|next| next <= cutoff_day) {
                let sql = format!("DROP TABLE IF EXISTS query.{}", partition_name(day));
                client
                    .batch_execute(&sql)
                    .instrument(sql_trace::span(&sql))
                    .await?;
                dropped.push(day);
            }
        }
        if !dropped.is_empty() {
            let mut known = self
                .partitions
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for day in &dropped {
                known.remove(day);
            }
        }
        Ok(dropped)
    }

    /// Reads the sign-ins of `query` in its order, handing each to `each` as its row arrives,
    /// while PostgreSQL is still sending the rest: the page is being written while it is read,
    /// and its texts are borrowed from the rows, never copied. Answers how many were read.
    pub async fn list_each<F>(
        &self,
        query: &ListQuery<'_>,
        mut each: F,
    ) -> Result<usize, QueryError>
    where
        F: FnMut(&SignInRef<'_>) + Send,
    {
        let ListStatement {
            sql,
            params,
            reads_in_time_order,
        } = list_statement(query);
        // The statement's span starts once a connection is in hand, as for every statement.
        if reads_in_time_order {
            let client = self.time_ordered_reads.get().await?;
            async {
                let statement = prepare_read(&client, &sql, &params).await?;
                let rows = client.query_raw(&statement, values(&params)).await?;
                each_row(rows, &mut each).await
            }
            .instrument(sql_trace::span(&sql))
            .await
        } else {
            // Unnamed, so planned for these values every time.
            let client = self.pool.get().await?;
            async {
                let rows = client.query_typed_raw(&sql, typed_params(&params)).await?;
                each_row(rows, &mut each).await
            }
            .instrument(sql_trace::span(&sql))
            .await
        }
    }

    pub async fn get(&self, scope: ReadScope, id: Uuid) -> Result<Option<SignIn>, QueryError> {
        let mut params: Vec<SqlValue> = Vec::new();
        let mut conditions = scope_conditions(scope, &mut params);
        params.push(SqlValue::Uuid(id));
        conditions.push(format!("id = ${}", params.len()));
        // One id may be stored at two times (the key holds createdDateTime, see migration 0001):
        // the earliest answers.
        let sql = format!(
            "SELECT {} FROM query.sign_ins WHERE {} ORDER BY created_at, recorded_at LIMIT 1",
            *COLUMN_LIST,
            conditions.join(" AND ")
        );
        let client = self.pool.get().await?;
        let row = async {
            let statement = prepare_read(&client, &sql, &params).await?;
            client.query_opt(&statement, &values(&params)).await
        }
        .instrument(sql_trace::span(&sql))
        .await?;
        row.map(|row| sign_in_from_row(&row))
            .transpose()
            .map_err(QueryError::from)
    }

    /// The oldest sign-ins still waiting for a flag check, across tenants.
    pub async fn pending_flag_checks(&self, limit: i64) -> Result<Vec<SignIn>, QueryError> {
        let client = self.pool.get().await?;
        let sql = format!(
            "SELECT {} FROM query.sign_ins WHERE flag_check_pending ORDER BY recorded_at LIMIT $1",
            *COLUMN_LIST
        );
        let rows = client
            .query(&sql, &[&limit])
            .instrument(sql_trace::span(&sql))
            .await?;
        rows.iter()
            .map(sign_in_from_row)
            .collect::<Result<_, _>>()
            .map_err(QueryError::from)
    }

    /// How many sign-ins wait for a flag check now, across tenants (for the metrics).
    pub async fn count_pending_flag_checks(&self) -> Result<u64, QueryError> {
        let client = self.pool.get().await?;
        let sql = "SELECT count(*) FROM query.sign_ins WHERE flag_check_pending";
        let row = client
            .query_one(sql, &[])
            .instrument(sql_trace::span(sql))
            .await?;
        let count: i64 = row.try_get(0)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Sets the flag of sign-ins that were pending; a sign-in no longer pending is left as it
    /// is, so each event gets its flag exactly once. Returns how many were updated, and how
    /// many of those were flagged.
    pub async fn resolve_flag_checks(
        &self,
        resolved: &[ResolvedFlag],
    ) -> Result<Stored, QueryError> {
        if resolved.is_empty() {
            return Ok(Stored::default());
        }
        let tenants: Vec<Uuid> = resolved.iter().map(|flag| flag.tenant_id).collect();
        let times: Vec<DateTime<Utc>> = resolved.iter().map(|flag| flag.created_at).collect();
        let ids: Vec<Uuid> = resolved.iter().map(|flag| flag.id).collect();
        let sessions: Vec<Option<Uuid>> = resolved.iter().map(|flag| flag.session).collect();
        let client = self.pool.get().await?;
        let sql = "WITH updated AS (
                 UPDATE query.sign_ins s
                 SET flagged_for_review = v.session_id IS NOT NULL, flag_session_id = v.session_id,
                     flag_check_pending = false
                 FROM unnest($1::uuid[], $2::timestamptz[], $3::uuid[], $4::uuid[])
                      AS v(tenant_id, created_at, id, session_id)
                 WHERE s.tenant_id = v.tenant_id AND s.created_at = v.created_at AND s.id = v.id
                   AND s.flag_check_pending
                 RETURNING s.flagged_for_review
             )
             SELECT count(*), count(*) FILTER (WHERE flagged_for_review) FROM updated";
        let row = client
            .query_one(sql, &[&tenants, &times, &ids, &sessions])
            .instrument(sql_trace::span_named("UPDATE", sql))
            .await?;
        Ok(Stored::from_counts(&row)?)
    }
}

/// The statement [`Store::list_each`] runs and its parameters: public so that the query-plan
/// script and the benchmark run exactly what the service runs.
pub fn list_statement(query: &ListQuery<'_>) -> ListStatement {
    let mut params: Vec<SqlValue> = Vec::new();
    let mut conditions = scope_conditions(query.scope, &mut params);
    let mut reads_in_time_order = true;
    if let Some(expr) = query.filter {
        let translated = filter::translate(expr, &mut params);
        conditions.push(translated.sql);
        reads_in_time_order = translated.reads_in_time_order;
    }
    let (comparison, direction) = match query.order {
        Order::NewestFirst => ("<", "DESC"),
        Order::OldestFirst => (">", "ASC"),
    };
    if let Some((time, id)) = query.after {
        params.push(SqlValue::Time(time));
        params.push(SqlValue::Uuid(id));
        conditions.push(format!(
            "(created_at, id) {comparison} (${}, ${})",
            params.len() - 1,
            params.len()
        ));
    }
    let sql = format!(
        "SELECT {} FROM query.sign_ins WHERE {} ORDER BY created_at {direction}, id {direction} LIMIT {}",
        *COLUMN_LIST,
        conditions.join(" AND "),
        query.limit
    );
    ListStatement {
        sql,
        params,
        reads_in_time_order,
    }
}

fn scope_conditions(scope: ReadScope, params: &mut Vec<SqlValue>) -> Vec<String> {
    params.push(SqlValue::Uuid(scope.tenant_id()));
    let mut conditions = vec![format!("tenant_id = ${}", params.len())];
    match scope {
        ReadScope::Tenant(_) => {}
        ReadScope::FlaggedOnly(_) => conditions.push("flagged_for_review".into()),
        ReadScope::OwnUser { user_id, .. } => {
            params.push(SqlValue::Uuid(user_id));
            conditions.push(format!("user_id = ${}", params.len()));
        }
    }
    conditions
}

/// Most statements one pooled connection keeps prepared.
///
/// Time-ordered reads and `GetSignIn` are prepared, one statement per shape (every value is a
/// parameter, so one shape serves all values), so that PostgreSQL reuses the plan: planning a
/// read of the 30-odd daily partitions, each with its indexes, takes 2-3 ms where running it
/// takes well under one (BENCHMARKS.md). After five runs of a statement PostgreSQL keeps one
/// generic plan when it costs no more than planning for the values each time. A generic plan
/// over every partition holds about 0.5 MiB of the server's memory per connection, hence the
/// bound: past it the connection's cache is emptied and what is still in use is prepared
/// again (the time-ordered shapes are few; only a stream of new ones pays the extra round
/// trip).
const STATEMENTS_PER_CONNECTION: usize = 16;

/// The read `sql` prepared on this connection (from its cache when it has it).
async fn prepare_read(
    client: &deadpool_postgres::Client,
    sql: &str,
    params: &[SqlValue],
) -> Result<tokio_postgres::Statement, tokio_postgres::Error> {
    if client.statement_cache.size() > STATEMENTS_PER_CONNECTION {
        client.statement_cache.clear();
    }
    let types: Vec<Type> = params.iter().map(SqlValue::sql_type).collect();
    client.prepare_typed_cached(sql, &types).await
}

/// Hands each row of `rows` to `each` as a sign-in borrowed from it; answers how many.
async fn each_row<F>(rows: RowStream, each: &mut F) -> Result<usize, QueryError>
where
    F: FnMut(&SignInRef<'_>) + Send,
{
    let mut rows = std::pin::pin!(rows);
    let mut read = 0;
    while let Some(row) = rows.try_next().await? {
        each(&sign_in_from_row::<&str>(&row)?);
        read += 1;
    }
    Ok(read)
}

/// Parameters with their types, for `query_typed`: the statement is parsed, bound and run in
/// one round trip, and, being unnamed, planned with the values in hand.
fn typed_params(params: &[SqlValue]) -> Vec<(&(dyn ToSql + Sync), Type)> {
    params
        .iter()
        .map(|param| (param as &(dyn ToSql + Sync), param.sql_type()))
        .collect()
}

fn values(params: &[SqlValue]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|param| param as &(dyn ToSql + Sync))
        .collect()
}

/// A batch of sign-ins turned column-wise, one vector per column of [`COLUMNS`].
struct Columns {
    uuids: [Vec<Uuid>; 3],
    created_at: Vec<DateTime<Utc>>,
    texts: Vec<Vec<Option<String>>>,
    bools: Vec<Vec<Option<bool>>>,
    error_code: Vec<i32>,
    flagged: Vec<bool>,
    session: Vec<Option<Uuid>>,
    pending: Vec<bool>,
}

/// Text columns in [`COLUMNS`] order, read from a sign-in.
const TEXT_FIELDS: [fn(&SignIn) -> &Option<String>; 25] = [
    |s| &s.user_principal_name,
    |s| &s.user_display_name,
    |s| &s.user_type,
    |s| &s.app_id,
    |s| &s.app_display_name,
    |s| &s.resource_id,
    |s| &s.resource_display_name,
    |s| &s.ip_address,
    |s| &s.user_agent,
    |s| &s.client_app_used,
    |s| &s.correlation_id,
    |s| &s.conditional_access_status,
    |s| &s.failure_reason,
    |s| &s.additional_details,
    |s| &s.device_id,
    |s| &s.browser_id,
    |s| &s.device_display_name,
    |s| &s.operating_system,
    |s| &s.browser,
    |s| &s.trust_type,
    |s| &s.city,
    |s| &s.state,
    |s| &s.country_or_region,
    |s| &s.risk_level_during_sign_in,
    |s| &s.risk_state,
];

impl From<&[SignIn]> for Columns {
    fn from(sign_ins: &[SignIn]) -> Self {
        let mut columns = Columns {
            uuids: [Vec::new(), Vec::new(), Vec::new()],
            created_at: Vec::with_capacity(sign_ins.len()),
            texts: (0..TEXT_FIELDS.len())
                .map(|_| Vec::with_capacity(sign_ins.len()))
                .collect(),
            bools: (0..3).map(|_| Vec::with_capacity(sign_ins.len())).collect(),
            error_code: Vec::with_capacity(sign_ins.len()),
            flagged: Vec::with_capacity(sign_ins.len()),
            session: Vec::with_capacity(sign_ins.len()),
            pending: Vec::with_capacity(sign_ins.len()),
        };
        for sign_in in sign_ins {
            columns.uuids[0].push(sign_in.tenant_id);
            columns.uuids[1].push(sign_in.id);
            columns.uuids[2].push(sign_in.user_id);
            columns.created_at.push(sign_in.created_at);
            for (column, field) in columns.texts.iter_mut().zip(TEXT_FIELDS) {
                column.push(field(sign_in).clone());
            }
            columns.bools[0].push(sign_in.is_interactive);
            columns.bools[1].push(sign_in.is_compliant);
            columns.bools[2].push(sign_in.is_managed);
            columns.error_code.push(sign_in.error_code);
            let (flagged, session, pending) = match sign_in.flag {
                FlagCheck::NotFlagged => (false, None, false),
                FlagCheck::Flagged(session) => (true, Some(session), false),
                FlagCheck::Pending => (false, None, true),
            };
            columns.flagged.push(flagged);
            columns.session.push(session);
            columns.pending.push(pending);
        }
        columns
    }
}

impl Columns {
    /// The parameters in [`COLUMNS`] order.
    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let text = |index: usize| &self.texts[index] as &(dyn ToSql + Sync);
        vec![
            &self.uuids[0],
            &self.uuids[1],
            &self.created_at,
            &self.uuids[2],
            text(0),  // user_principal_name
            text(1),  // user_display_name
            text(2),  // user_type
            text(3),  // app_id
            text(4),  // app_display_name
            text(5),  // resource_id
            text(6),  // resource_display_name
            text(7),  // ip_address
            text(8),  // user_agent
            text(9),  // client_app_used
            text(10), // correlation_id
            &self.bools[0],
            text(11), // conditional_access_status
            &self.error_code,
            text(12), // failure_reason
            text(13), // additional_details
            text(14), // device_id
            text(15), // browser_id
            text(16), // device_display_name
            text(17), // operating_system
            text(18), // browser
            &self.bools[1],
            &self.bools[2],
            text(19), // trust_type
            text(20), // city
            text(21), // state
            text(22), // country_or_region
            text(23), // risk_level_during_sign_in
            text(24), // risk_state
            &self.flagged,
            &self.session,
            &self.pending,
        ]
    }
}

fn partition_name(day: NaiveDate) -> String {
    format!("sign_ins_p{}", day.format("%Y%m%d"))
}

fn partition_day(name: &str) -> Option<NaiveDate> {
    let digits = name.strip_prefix("sign_ins_p")?;
    NaiveDate::parse_from_str(digits, "%Y%m%d").ok()
}

/// PostgreSQL's "no partition of relation … found for row".
fn is_missing_partition(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION)
        && error
            .as_db_error()
            .is_some_and(|db| db.message().starts_with("no partition"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_round_trip_and_other_tables_are_ignored() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 3).unwrap();
        assert_eq!(partition_name(day), "sign_ins_p20261203");
        assert_eq!(partition_day("sign_ins_p20261203"), Some(day));
        assert_eq!(partition_day("sign_ins_default"), None);
    }
}
