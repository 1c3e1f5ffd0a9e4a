//! Latency of ListSignIns with `$filter` on a large sign-in table: the product document's three
//! queries and "newest 50 of one user", each timed through gRPC (a client calling
//! query-service, started in-process on port 0 with its real middleware, auth included) and as
//! the very same SQL statement run directly with tokio-postgres, interleaved call by call so
//! both see the same machine. Prints p50 and p99 of each, and the p50 ratio. The baseline runs
//! the statement as query-service does: a read that walks an index in time order
//! (`ListStatement::reads_in_time_order`, all four here) prepared once, on a connection with the
//! service's settings for such reads, and executed each time (so PostgreSQL reuses its plan);
//! any other as an unnamed statement. The same SQL is also timed as an unnamed statement
//! (`Client::query_typed`, one round trip) on a connection with default settings, which
//! PostgreSQL plans afresh every time, to show what planning a read of every daily partition
//! costs.
//!
//! Not a test: it needs a database loaded by `scripts/benchmarks/prepare-database`, and
//! `scripts/benchmarks/filter-bench` runs the whole thing:
//!
//! ```sh
//! BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/signins_bench \
//!   cargo bench -p query-service --bench filter
//! ```
//!
//! `BENCH_ITERATIONS` (default 2,000) sets the measured calls per query and path.

use query_service::Config;
use query_service::domain::filter;
use query_service::domain::sign_in::{Order, ReadScope};
use query_service::store::{ListQuery, ListStatement, TIME_ORDERED_READ_SETTINGS, list_statement};
use signins_common::auth::{Role, TokenMinter};
use signins_proto::query::v1 as pb;
use signins_proto::query::v1::sign_in_service_client::SignInServiceClient;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

/// The largest tenant of `scripts/benchmarks/load-sign-ins`; its user 0 is user@contoso.com.
const TENANT: &str = "0c6c1a3b-5d2e-4f1a-9b8c-7d6e5f4a3b2c";
const SECRET: &str = "bench-secret";
const WARM_UP: usize = 200;

struct Case {
    name: &'static str,
    filter: String,
    top: Option<i32>,
}

/// What one path answered in one call, and how long it took.
struct Sample {
    elapsed: Duration,
    rows: usize,
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    // Nearest rank: the smallest value with at least `fraction` of the samples at or below it.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((fraction * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn millis(duration: Duration) -> String {
    format!("{:.3}", duration.as_secs_f64() * 1_000.0)
}

async fn run() -> Result<(), String> {
    let database_url = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/signins_bench".into());
    let iterations: usize = match std::env::var("BENCH_ITERATIONS") {
        Ok(text) => text.parse().map_err(|e| format!("BENCH_ITERATIONS: {e}"))?,
        Err(_) => 2_000,
    };
    let tenant = Uuid::parse_str(TENANT).map_err(|e| e.to_string())?;

    // query-service as deployed, minus the network: the real Application on port 0. Nothing
    // here calls flag-service.
    let mut config = Config::new(&database_url, "http://127.0.0.1:9", SECRET);
    config.listen = "127.0.0.1:0".into();
    let app = query_service::Application::build(config)
        .await
        .map_err(|e| format!("query-service does not start against {database_url}: {e}"))?;
    let address = app.local_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));

    let token = TokenMinter::hs256(SECRET, "signins", "signins")
        .mint(
            "bench",
            Some(tenant),
            &[Role::GlobalReader],
            Duration::from_secs(3_600),
        )
        .map_err(|e| e.to_string())?;
    let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {token}")
        .parse()
        .map_err(|e| format!("token: {e}"))?;
    let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("connect to query-service: {e}"))?;
    let mut grpc =
        SignInServiceClient::with_interceptor(channel, move |mut request: tonic::Request<()>| {
            request
                .metadata_mut()
                .insert("authorization", bearer.clone());
            Ok(request)
        });

    let (direct, connection) = tokio_postgres::connect(&database_url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("connect to {database_url}: {e}"))?;
    tokio::spawn(connection);
    // One connection set up as the service's time-ordered pool sets up its own.
    let ordered = signins_common::db::pool(&database_url, 1, None, TIME_ORDERED_READ_SETTINGS)
        .map_err(|e| e.to_string())?
        .get()
        .await
        .map_err(|e| format!("connect to {database_url}: {e}"))?;
    let rows: i64 = direct
        .query_one("SELECT count(*) FROM query.sign_ins", &[])
        .await
        .map_err(|e| e.to_string())?
        .get(0);
    let user: Uuid = direct
        .query_one("SELECT md5($1 || ':0')::uuid", &[&TENANT])
        .await
        .map_err(|e| e.to_string())?
        .get(0);

    let cases = [
        Case { name: "flaggedforReview eq true", filter: "flaggedforReview eq true".into(), top: None },
        Case {
            name: "… and userPrincipalname eq 'user@contoso.com'",
            filter: "flaggedforReview eq true and userPrincipalname eq 'user@contoso.com'".into(),
            top: None,
        },
        Case {
            name: "… and createdDateTime ge 2021-10-01 and userPrincipalname eq …",
            filter: "flaggedforReview eq true and createdDateTime ge 2021-10-01 and userPrincipalname eq 'user@contoso.com'".into(),
            top: None,
        },
        Case { name: "newest 50 of one user (userId eq …, top 50)", filter: format!("userId eq {user}"), top: Some(50) },
        // No row matches: what a call costs apart from the rows it carries.
        Case { name: "(no match: createdDateTime lt 2000-01-01)", filter: "createdDateTime lt 2000-01-01".into(), top: None },
    ];

    println!(
        "query-service $filter: {rows} sign-ins, {iterations} calls per query and path (after {WARM_UP} to warm up)"
    );
    println!();
    println!(
        "| query | rows | gRPC p50 ms | gRPC p99 ms | SQL p50 ms | SQL p99 ms | p50 gRPC/SQL | SQL planned each call p50 ms | p99 ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for case in &cases {
        let expr = filter::parse(&case.filter).map_err(|e| e.to_string())?;
        let top = case.top.unwrap_or(100);
        // Exactly what the service runs for the first page: one row more than the page.
        let query = ListQuery {
            scope: ReadScope::Tenant(tenant),
            filter: expr.as_ref(),
            order: Order::NewestFirst,
            after: None,
            limit: i64::from(top) + 1,
        };
        let ListStatement {
            sql,
            params,
            reads_in_time_order,
        } = list_statement(&query);
        let typed: Vec<(&(dyn ToSql + Sync), Type)> = params
            .iter()
            .map(|p| (p as &(dyn ToSql + Sync), p.sql_type()))
            .collect();
        let types: Vec<Type> = typed.iter().map(|(_, t)| t.clone()).collect();
        let prepared = if reads_in_time_order {
            Some(
                ordered
                    .prepare_typed(&sql, &types)
                    .await
                    .map_err(|e| format!("{sql}: {e}"))?,
            )
        } else {
            None
        };
        let params: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let request = pb::ListSignInsRequest {
            filter: case.filter.clone(),
            top: case.top,
            ..Default::default()
        };

        let mut through_grpc = Vec::with_capacity(iterations);
        let mut through_sql = Vec::with_capacity(iterations);
        let mut through_typed = Vec::with_capacity(iterations);
        for i in 0..WARM_UP + iterations {
            let started = Instant::now();
            let page = grpc
                .list_sign_ins(request.clone())
                .await
                .map_err(|status| format!("{}: {status}", case.filter))?
                .into_inner();
            let grpc_sample = Sample {
                elapsed: started.elapsed(),
                rows: page.sign_ins.len(),
            };

            let started = Instant::now();
            let found = match &prepared {
                Some(statement) => ordered.query(statement, &params).await,
                None => direct.query_typed(&sql, &typed).await,
            }
            .map_err(|e| format!("{sql}: {e}"))?;
            let sql_sample = Sample {
                elapsed: started.elapsed(),
                rows: found.len().min(top as usize),
            };

            let started = Instant::now();
            let found = direct
                .query_typed(&sql, &typed)
                .await
                .map_err(|e| format!("{sql}: {e}"))?;
            let typed_sample = Sample {
                elapsed: started.elapsed(),
                rows: found.len().min(top as usize),
            };

            if grpc_sample.rows != sql_sample.rows || typed_sample.rows != sql_sample.rows {
                return Err(format!(
                    "{}: gRPC returned {} rows, SQL {}",
                    case.filter, grpc_sample.rows, sql_sample.rows
                ));
            }
            if i >= WARM_UP {
                through_grpc.push(grpc_sample);
                through_sql.push(sql_sample);
                through_typed.push(typed_sample);
            }
        }
        let summarise = |samples: &[Sample]| {
            let mut times: Vec<Duration> = samples.iter().map(|s| s.elapsed).collect();
            times.sort_unstable();
            (percentile(&times, 0.50), percentile(&times, 0.99))
        };
        let (grpc_p50, grpc_p99) = summarise(&through_grpc);
        let (sql_p50, sql_p99) = summarise(&through_sql);
        let (typed_p50, typed_p99) = summarise(&through_typed);
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.2} | {} | {} |",
            case.name,
            through_grpc.first().map_or(0, |s| s.rows),
            millis(grpc_p50),
            millis(grpc_p99),
            millis(sql_p50),
            millis(sql_p99),
            grpc_p50.as_secs_f64() / sql_p50.as_secs_f64(),
            millis(typed_p50),
            millis(typed_p99),
        );
    }

    let _ = stop.send(());
    server
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("filter bench: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("filter bench: {error}");
            ExitCode::FAILURE
        }
    }
}
