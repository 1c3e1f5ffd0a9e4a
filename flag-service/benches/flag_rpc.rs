//! flag-service through gRPC, next to a bare tonic echo of the same messages as the baseline.
//!
//! One run starts, in this process and on one tokio runtime, a real flag-service on a fresh
//! PostgreSQL database filled with `BENCH_SESSIONS` sessions (default 100,000; about half
//! active) and an echo server of the same service, then measures:
//! - `check_flags/{flag-service,echo}/in_flight=N`: CheckFlags with 1,000 checks per call
//!   (throughput in checks), N calls in flight on one connection;
//! - `get_flag_status/{flag-service,echo}`: one call at a time.
//!
//! Afterwards it prints latency percentiles of single calls (criterion reports means).
//!
//! Run: `cargo bench -p flag-service --bench flag_rpc` (PostgreSQL at `BENCH_DATABASE_URL`,
//! `TEST_DATABASE_URL` or postgres://postgres@127.0.0.1:5432/postgres). BENCHMARKS.md has
//! the figures of this machine.

#![allow(clippy::unwrap_used)] // A benchmark fails loudly.

mod support;

use chrono::Utc;
use criterion::{BenchmarkId, Criterion, Throughput};
use futures::StreamExt;
use signins_proto::flag::v1 as pb;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::{BenchDatabase, Client, Echo, Percentiles};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tonic::transport::server::TcpIncoming;

const BATCH: u64 = 1_000;
/// Distinct CheckFlags requests rotated through, so the database is not asked the same
/// 1,000 keys every time.
const REQUEST_VARIANTS: u64 = 16;
const PERCENTILE_CALLS: usize = 20_000;

struct Servers {
    database: BenchDatabase,
    sessions: u64,
    flag: SocketAddr,
    echo: SocketAddr,
    stops: Vec<oneshot::Sender<()>>,
}

async fn start() -> Servers {
    let sessions = std::env::var("BENCH_SESSIONS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(100_000);
    let database = BenchDatabase::create().await;
    let mut stops = Vec::new();

    let config = flag_service::Config::new(&database.url, support::SECRET);
    let application = flag_service::Application::build(config).await.unwrap();
    let flag = application.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    stops.push(stop);
    tokio::spawn(application.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    database
        .fill(sessions, Utc::now(), support::RECENT_SPREAD_MINUTES)
        .await;

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    stops.push(stop);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(
                pb::flag_service_server::FlagServiceServer::new(Echo::default())
                    .max_decoding_message_size(24 * 1024 * 1024),
            )
            // As flag-service's own serving does: no Nagle delay on the tail of responses.
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                async move {
                    let _ = stopped.await;
                },
            ),
    );
    Servers {
        database,
        sessions,
        flag,
        echo,
        stops,
    }
}

/// Runs `calls` CheckFlags calls with `in_flight` of them outstanding at a time.
async fn check_calls(
    client: &Client,
    requests: &[pb::CheckFlagsRequest],
    calls: u64,
    in_flight: usize,
) -> Duration {
    let started = Instant::now();
    futures::stream::iter(0..calls)
        .map(|call| {
            let mut client = client.clone();
            let request = requests[(call % REQUEST_VARIANTS) as usize].clone();
            async move {
                let results = client.check_flags(request).await.unwrap().into_inner();
                assert_eq!(results.results.len() as u64, BATCH);
            }
        })
        .buffer_unordered(in_flight)
        .collect::<()>()
        .await;
    started.elapsed()
}

fn bench_check_flags(
    criterion: &mut Criterion,
    runtime: &Runtime,
    servers: &Servers,
    clients: &[(&str, Client)],
) {
    let now = Utc::now();
    let requests: Vec<_> = (0..REQUEST_VARIANTS)
        .map(|seed| support::check_request(seed, BATCH, servers.sessions, now))
        .collect();
    let mut group = criterion.benchmark_group("check_flags");
    group.throughput(Throughput::Elements(BATCH));
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(8));
    for in_flight in [1_usize, 4] {
        for (name, client) in clients {
            group.bench_with_input(
                BenchmarkId::new(*name, format!("in_flight={in_flight}")),
                &in_flight,
                |bencher, &in_flight| {
                    bencher.iter_custom(|calls| {
                        runtime.block_on(check_calls(client, &requests, calls, in_flight))
                    });
                },
            );
        }
    }
    group.finish();
}

fn bench_status(
    criterion: &mut Criterion,
    runtime: &Runtime,
    servers: &Servers,
    clients: &[(&str, Client)],
) {
    let requests: Vec<_> = (0..1_024)
        .map(|seed| support::status_request(seed, servers.sessions))
        .collect();
    let mut group = criterion.benchmark_group("get_flag_status");
    group.measurement_time(Duration::from_secs(5));
    for (name, client) in clients {
        group.bench_function(*name, |bencher| {
            bencher.iter_custom(|calls| {
                runtime.block_on(async {
                    let mut client = client.clone();
                    let started = Instant::now();
                    for call in 0..calls {
                        let request = requests[(call % 1_024) as usize].clone();
                        client.get_flag_status(request).await.unwrap();
                    }
                    started.elapsed()
                })
            });
        });
    }
    group.finish();
}

/// Single calls one after another, each timed: criterion's means hide the tail.
async fn percentiles(servers: &Servers, clients: &[(&str, Client)]) {
    let now = Utc::now();
    let status: Vec<_> = (0..1_024)
        .map(|seed| support::status_request(seed, servers.sessions))
        .collect();
    let checks: Vec<_> = (0..REQUEST_VARIANTS)
        .map(|seed| support::check_request(seed, BATCH, servers.sessions, now))
        .collect();
    println!(
        "\nlatency of single calls, one in flight ({PERCENTILE_CALLS} calls after 2,000 warm-up):"
    );
    for (name, client) in clients {
        let mut client = client.clone();
        let mut samples = Vec::with_capacity(PERCENTILE_CALLS);
        for call in 0..(PERCENTILE_CALLS + 2_000) {
            let request = status[call % status.len()].clone();
            let started = Instant::now();
            client.get_flag_status(request).await.unwrap();
            if call >= 2_000 {
                samples.push(started.elapsed());
            }
        }
        println!(
            "  get_flag_status/{name}: {}",
            Percentiles::new(samples).summary()
        );
        let mut samples = Vec::with_capacity(2_000);
        for call in 0..2_200 {
            let request = checks[call % checks.len()].clone();
            let started = Instant::now();
            client.check_flags(request).await.unwrap();
            if call >= 200 {
                samples.push(started.elapsed());
            }
        }
        println!(
            "  check_flags(1,000)/{name}: {}",
            Percentiles::new(samples).summary()
        );
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let servers = runtime.block_on(start());
    let clients = runtime.block_on(async {
        vec![
            ("flag-service", support::client(servers.flag).await),
            ("echo", support::client(servers.echo).await),
        ]
    });
    let mut criterion = Criterion::default().configure_from_args();
    bench_check_flags(&mut criterion, &runtime, &servers, &clients);
    bench_status(&mut criterion, &runtime, &servers, &clients);
    criterion.final_summary();
    runtime.block_on(percentiles(&servers, &clients));
    drop(clients);
    for stop in servers.stops {
        let _ = stop.send(());
    }
    runtime.block_on(servers.database.drop_database());
}
