//! Prints, for each `$filter` read from stdin (one per line), the psql command that makes
//! PostgreSQL show the plan ListSignIns gets for it, one command per line: what
//! `scripts/explain-plans` runs.
//!
//! The service runs a statement in one of two ways (`store.rs`), and the command reproduces
//! each:
//! - a read that walks an index in time order is prepared on a connection with
//!   `TIME_ORDERED_READ_SETTINGS` and its plan reused, a generic plan made once for any
//!   values: the command applies those settings, prepares the statement and `EXPLAIN`s an
//!   `EXECUTE` under `plan_cache_mode = force_generic_plan`;
//! - any other read is an unnamed statement, planned knowing the values: the command
//!   `EXPLAIN`s the statement with its parameters written in as typed literals.
//!
//! ```sh
//! printf '%s\n' "flaggedForReview eq true" | \
//!   cargo run -q -p query-service --example list_sql -- <tenant-id> [top] [orderBy] [after]
//! ```
//!
//! `after` is a page position, `<createdDateTime>/<id>` (RFC 3339 and GUID), as a page token
//! carries it: the statement is then the one for the page after that sign-in.

use chrono::{DateTime, SecondsFormat, Utc};
use query_service::domain::filter::{self, SqlValue};
use query_service::domain::sign_in::{Order, ReadScope};
use query_service::store::{ListQuery, ListStatement, TIME_ORDERED_READ_SETTINGS, list_statement};
use std::io::BufRead;
use std::process::ExitCode;
use uuid::Uuid;

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn literal(value: &SqlValue) -> String {
    let list = |items: Vec<String>, ty: &str| format!("ARRAY[{}]::{ty}[]", items.join(", "));
    match value {
        SqlValue::Text(text) => format!("{}::text", quote(text)),
        SqlValue::Int(int) => format!("({int})::integer"),
        SqlValue::Bool(b) => b.to_string(),
        SqlValue::Uuid(id) => format!("'{id}'::uuid"),
        SqlValue::Time(time) => format!(
            "'{}'::timestamptz",
            time.to_rfc3339_opts(SecondsFormat::Micros, true)
        ),
        SqlValue::TextArray(items) => list(items.iter().map(|t| quote(t)).collect(), "text"),
        SqlValue::UuidArray(items) => {
            list(items.iter().map(|id| format!("'{id}'")).collect(), "uuid")
        }
        SqlValue::IntArray(items) => list(items.iter().map(i32::to_string).collect(), "integer"),
    }
}

/// Replaces `$n` placeholders with `params[n - 1]`, longest numbers first by construction.
fn inline(sql: &str, params: &[SqlValue]) -> Result<String, String> {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let digits: String = rest[dollar + 1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let value = digits
            .parse::<usize>()
            .ok()
            .and_then(|n| params.get(n.checked_sub(1)?))
            .ok_or_else(|| format!("placeholder ${digits} has no parameter"))?;
        out.push_str(&literal(value));
        rest = &rest[dollar + 1 + digits.len()..];
    }
    out.push_str(rest);
    Ok(out)
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let tenant = args
        .next()
        .ok_or("usage: list_sql <tenant-id> [top] [orderBy] [after] < filters")?;
    let tenant = Uuid::parse_str(&tenant).map_err(|e| format!("tenant id: {e}"))?;
    let top: i64 = match args.next() {
        Some(top) => top.parse().map_err(|e| format!("top: {e}"))?,
        None => 100,
    };
    let order = Order::parse(&args.next().unwrap_or_default()).ok_or("orderBy: unknown")?;
    let after = match args.next() {
        None => None,
        Some(position) => {
            let (time, id) = position
                .split_once('/')
                .ok_or("after: expected <createdDateTime>/<id>")?;
            let time = DateTime::parse_from_rfc3339(time)
                .map_err(|e| format!("after: {e}"))?
                .with_timezone(&Utc);
            let id = Uuid::parse_str(id).map_err(|e| format!("after: {e}"))?;
            Some((time, id))
        }
    };
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| format!("stdin: {e}"))?;
        let expr = filter::parse(&line).map_err(|e| format!("{line}: {e}"))?;
        let query = ListQuery {
            scope: ReadScope::Tenant(tenant),
            filter: expr.as_ref(),
            order,
            after,
            // As the service: one more than the page, to learn whether another page follows.
            limit: top + 1,
        };
        let ListStatement {
            sql,
            params,
            reads_in_time_order,
        } = list_statement(&query);
        if reads_in_time_order {
            let settings: String = TIME_ORDERED_READ_SETTINGS
                .iter()
                .map(|(name, value)| format!("SET {name} = {value}; "))
                .collect();
            let types: Vec<String> = params
                .iter()
                .map(|p| p.sql_type().name().to_owned())
                .collect();
            let values: Vec<String> = params.iter().map(literal).collect();
            println!(
                "{settings}SET plan_cache_mode = force_generic_plan; PREPARE read({}) AS {sql}; \
                 EXPLAIN (ANALYZE, BUFFERS) EXECUTE read({})",
                types.join(", "),
                values.join(", ")
            );
        } else {
            println!("EXPLAIN (ANALYZE, BUFFERS) {}", inline(&sql, &params)?);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("list_sql: {error}");
            ExitCode::FAILURE
        }
    }
}
