//! PostgreSQL: the connection pool, the versioned-migration runner each service uses at
//! start-up and in tests, and the classification of database errors into "the database is
//! unavailable" versus everything else.
//!
//! Each service keeps its tables and its migration history in its own schema, so the two can
//! share one database. Migrations run under a transaction-scoped advisory lock keyed by the
//! schema, so replicas that start at once apply each version exactly once.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::time::Duration;
use tokio_postgres::NoTls;

/// One versioned migration: a file under the service's `migrations/` folder.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database URL could not be parsed.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    /// The pool could not be built.
    #[error("could not build the connection pool: {0}")]
    Pool(String),
    /// A connection could not be had (database down, unreachable, or pool exhausted).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A statement failed.
    #[error("database statement failed: {0}")]
    Statement(#[from] tokio_postgres::Error),
}

impl From<deadpool_postgres::PoolError> for DbError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        DbError::Unavailable(error.to_string())
    }
}

impl DbError {
    /// True when the failure says nothing about the request: the database could not be
    /// reached, the connection broke, or the server is shutting down.
    pub fn is_unavailable(&self) -> bool {
        match self {
            DbError::Unavailable(_) => true,
            DbError::Statement(error) => is_connection_error(error),
            DbError::InvalidUrl(_) | DbError::Pool(_) => false,
        }
    }
}

/// Connection-level failures (closed socket, admin shutdown, too many connections), as opposed
/// to a statement the server refused.
pub fn is_connection_error(error: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    if error.is_closed() {
        return true;
    }
    match error.code() {
        Some(code) => {
            code.code().starts_with("08")
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
                || *code == SqlState::TOO_MANY_CONNECTIONS
        }
        // No SQLSTATE: the error came from the client side. Only I/O means the server is out of
        // reach; a row count, a value that does not convert or a malformed message is a bug here.
        None => std::error::Error::source(error).is_some_and(|cause| cause.is::<std::io::Error>()),
    }
}

/// Builds a pool; connections are made lazily, so a service can start while the database is
/// still coming up (health reports NOT_SERVING until it answers). `statement_timeout` caps
/// every statement on the pool's connections, so no query runs unbounded; `settings` are
/// further server settings (name, value) every connection of the pool starts with.
pub fn pool(
    database_url: &str,
    max_size: usize,
    statement_timeout: Option<Duration>,
    settings: &[(&str, &str)],
) -> Result<Pool, DbError> {
    let mut config: tokio_postgres::Config = database_url
        .parse()
        .map_err(|error: tokio_postgres::Error| DbError::InvalidUrl(error.to_string()))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    // Server NOTICEs ("schema already exists, skipping") are not worth a log line each.
    let mut options = config.get_options().map(str::to_owned).unwrap_or_default();
    options.push_str(" -c client_min_messages=warning");
    if let Some(timeout) = statement_timeout {
        options.push_str(&format!(" -c statement_timeout={}", timeout.as_millis()));
    }
    for (name, value) in settings {
        options.push_str(&format!(" -c {name}={value}"));
    }
    config.options(options.trim());
    if config.get_application_name().is_none() {
        config.application_name("flagged-sign-ins");
    }
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(5)))
        .build()
        .map_err(|error| DbError::Pool(error.to_string()))
}

/// Applies the migrations that `schema`'s history does not yet hold, in version order, each in
/// its own transaction together with its history row.
pub async fn migrate(
    pool: &Pool,
    schema: &str,
    migrations: &[Migration],
) -> Result<Vec<i32>, DbError> {
    let mut client = pool.get().await?;
    let lock_key = advisory_key(schema);
    let mut applied = Vec::new();
    for migration in migrations {
        let transaction = client.transaction().await?;
        // Serialises concurrent start-ups of replicas (and of a second service sharing the
        // database, which uses another key) for the duration of this transaction.
        transaction
            .execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key])
            .await?;
        // Identifiers cannot be parameters; `schema` comes from the service's code, never input.
        transaction
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema};
                 CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
                     version integer PRIMARY KEY,
                     name text NOT NULL,
                     applied_at timestamptz NOT NULL DEFAULT now()
                 );"
            ))
            .await?;
        let done = transaction
            .query_opt(
                &format!("SELECT 1 FROM {schema}.schema_migrations WHERE version = $1"),
                &[&migration.version],
            )
            .await?;
        if done.is_some() {
            transaction.commit().await?;
            continue;
        }
        transaction.batch_execute(migration.sql).await?;
        transaction
            .execute(
                &format!("INSERT INTO {schema}.schema_migrations (version, name) VALUES ($1, $2)"),
                &[&migration.version, &migration.name],
            )
            .await?;
        transaction.commit().await?;
        tracing::info!(
            schema,
            version = migration.version,
            name = migration.name,
            "applied migration"
        );
        applied.push(migration.version);
    }
    Ok(applied)
}

/// A stable 64-bit key for the advisory lock of one schema (FNV-1a of its name).
fn advisory_key(schema: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in schema.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// Answers whether the database takes a trivial statement now (for health).
pub async fn ping(pool: &Pool) -> bool {
    match pool.get().await {
        Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    }
}
