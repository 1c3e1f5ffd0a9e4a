//! A span per SQL statement, with OpenTelemetry's database conventions: `db.system` =
//! `postgresql`, `db.operation` (`SELECT`, `INSERT`, …) and `db.statement`, the statement's
//! text as prepared, with `$n` placeholders. Every value travels as a parameter, so the text
//! never holds a tenant's data; parameter values are never recorded.
//!
//! Stores wrap each statement: `client.query(sql, params).instrument(sql_trace::span(sql))`.
//! The spans are `debug`: they reach traces (see [`crate::telemetry`]) without adding a line
//! of context to every `info` log.

use tracing::Span;

/// The span of one statement; its operation is the statement's first keyword.
pub fn span(sql: &str) -> Span {
    span_named(operation(sql), sql)
}

/// The span of one statement whose first keyword is not its operation, e.g. a batch that
/// opens with `BEGIN`.
pub fn span_named(operation: &'static str, sql: &str) -> Span {
    tracing::debug_span!(
        "sql",
        otel.name = operation,
        otel.kind = "client",
        db.system = "postgresql",
        db.operation = operation,
        db.statement = sql,
    )
}

/// The statement's first keyword, upper case; `OTHER` when it is none we expect.
pub fn operation(sql: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "CREATE", "DROP", "ALTER", "BEGIN",
        "COMMIT", "ROLLBACK",
    ];
    let first = sql
        .trim_start_matches(|c: char| c.is_whitespace() || c == '(')
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or_default();
    KNOWN
        .iter()
        .find(|keyword| keyword.eq_ignore_ascii_case(first))
        .copied()
        .unwrap_or("OTHER")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operation_is_the_first_keyword_in_upper_case() {
        assert_eq!(operation("SELECT 1"), "SELECT");
        assert_eq!(operation("\n   insert into t values ($1)"), "INSERT");
        assert_eq!(operation("(SELECT 1) UNION (SELECT 2)"), "SELECT");
        assert_eq!(operation("UPDATE t SET a = $1"), "UPDATE");
        assert_eq!(operation("delete from t"), "DELETE");
        assert_eq!(operation("VACUUM"), "OTHER");
        assert_eq!(operation(""), "OTHER");
    }
}
