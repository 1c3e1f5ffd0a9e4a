//! Ingest benchmark: end-to-end RecordSignIns with enrichment (batches of 500, 4 concurrent
//! clients, query-service as its own release process, flag-service answering CheckFlags), and in
//! the same run the baseline: a binary COPY of the very rows it stored into the same (emptied,
//! indexed) table. Prints both rates, their ratio, and query-service's peak resident memory.
//!
//! `cargo bench -p query-service --bench ingest` (PostgreSQL at `TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`; `INGEST_EVENTS` sets the number of events).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::Utc;
use futures::{SinkExt, StreamExt};
use signins_common::auth::{Role, TokenMinter};
use signins_proto::flag::v1 as flag;
use signins_proto::query::v1 as query;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use uuid::Uuid;

const SECRET: &str = "bench-secret";
const BATCH: usize = 500;
const CLIENTS: usize = 4;

struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

fn bearer(token: &str) -> tonic::metadata::MetadataValue<tonic::metadata::Ascii> {
    format!("Bearer {token}").parse().unwrap()
}

const AGENTS: [&str; 4] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
];
const CODES: [i32; 6] = [0, 0, 0, 50126, 50074, 53003];

/// A realistic event: one in a hundred from the flagged key.
fn event(tenant: Uuid, users: &[Uuid], flagged_user: Uuid, n: usize) -> query::SignIn {
    let flagged = n % 100 == 0;
    let user = if flagged {
        flagged_user
    } else {
        users[n % users.len()]
    };
    query::SignIn {
        id: Uuid::new_v4().to_string(),
        created_date_time: Some(prost_types::Timestamp {
            seconds: Utc::now().timestamp(),
            nanos: 0,
        }),
        tenant_id: tenant.to_string(),
        user_id: user.to_string(),
        user_principal_name: Some(format!("user{}@contoso.com", n % users.len())),
        user_display_name: Some("Bench User".into()),
        user_type: Some("member".into()),
        app_id: Some("c44b4083-3bb0-49c1-b47d-974e53cbdf3c".into()),
        app_display_name: Some("Azure Portal".into()),
        resource_id: Some("797f4846-ba00-4fd7-ba43-dac1f8f63013".into()),
        resource_display_name: Some("Windows Azure Service Management API".into()),
        ip_address: Some(format!("203.0.113.{}", n % 250)),
        user_agent: Some(AGENTS[n % AGENTS.len()].into()),
        client_app_used: Some("Browser".into()),
        correlation_id: Some(Uuid::new_v4().to_string()),
        is_interactive: Some(true),
        conditional_access_status: Some("notApplied".into()),
        status: Some(query::SignInStatus {
            error_code: CODES[n % CODES.len()],
            ..Default::default()
        }),
        device_detail: Some(query::DeviceDetail {
            device_id: Some(if flagged {
                "flagged-device".into()
            } else {
                format!("device-{}", n % 500)
            }),
            browser_id: Some(if flagged {
                "flagged-browser".into()
            } else {
                format!("browser-{}", n % 700)
            }),
            ..Default::default()
        }),
        location: Some(query::SignInLocation {
            city: Some("Redmond".into()),
            state: Some("Washington".into()),
            country_or_region: Some("US".into()),
        }),
        risk_level_during_sign_in: Some("none".into()),
        risk_state: Some("none".into()),
        ..Default::default()
    }
}

#[tokio::main]
async fn main() {
    let total: usize = std::env::var("INGEST_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000);
    let admin = admin_url();
    let (admin_client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL");
    tokio::spawn(connection);
    let database = format!("signins_bench_{}", Uuid::new_v4().simple());
    admin_client
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .await
        .unwrap();
    let database_url = format!("{}/{database}", admin.rsplit_once('/').unwrap().0);

    // flag-service in this process; query-service as its own process so its memory is its own.
    let mut flag_config = flag_service::Config::new(&database_url, SECRET);
    flag_config.listen = "127.0.0.1:0".into();
    let flag_app = flag_service::Application::build(flag_config).await.unwrap();
    let flag_addr = flag_app.local_addr();
    tokio::spawn(flag_app.run_until_stopped(std::future::pending()));

    let query_port = free_port();
    let query_addr = format!("127.0.0.1:{query_port}");
    let child = Command::new(env!("CARGO_BIN_EXE_query-service"))
        .env("DATABASE_URL", &database_url)
        .env("AUTH_JWT_SECRET", SECRET)
        .env("QUERY_SERVICE_LISTEN", &query_addr)
        .env("FLAG_SERVICE_URL", format!("http://{flag_addr}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start query-service");
    let service = Service(child);
    let pid = service.0.id();

    let channel = loop {
        if let Ok(channel) = Channel::from_shared(format!("http://{query_addr}"))
            .unwrap()
            .connect()
            .await
        {
            break channel;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let minter = TokenMinter::hs256(SECRET, "signins", "signins");
    let gateway = minter
        .mint(
            "bench-gateway",
            None,
            &[Role::SignInLogsWrite, Role::FlaggingWrite],
            Duration::from_secs(3600),
        )
        .unwrap();

    let tenant = Uuid::new_v4();
    let users: Vec<Uuid> = (0..1_000).map(|_| Uuid::new_v4()).collect();
    let flagged_user = Uuid::new_v4();
    let mut flags = flag::flag_service_client::FlagServiceClient::new(
        Channel::from_shared(format!("http://{flag_addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let mut enable = tonic::Request::new(flag::EnableFlaggingRequest {
        tenant_id: tenant.to_string(),
        user_id: flagged_user.to_string(),
        client: Some(flag::Client {
            device_id: "flagged-device".into(),
            browser_id: "flagged-browser".into(),
        }),
        ..Default::default()
    });
    enable
        .metadata_mut()
        .insert("authorization", bearer(&gateway));
    flags.enable_flagging(enable).await.unwrap();

    let batches: Vec<Vec<query::SignIn>> = (0..total)
        .map(|n| event(tenant, &users, flagged_user, n))
        .collect::<Vec<_>>()
        .chunks(BATCH)
        .map(<[query::SignIn]>::to_vec)
        .collect();
    let batches = Arc::new(batches);
    let next = Arc::new(AtomicUsize::new(0));
    let rss_before = peak_rss_kib(pid);

    let started = Instant::now();
    let clients = (0..CLIENTS).map(|_| {
        let batches = batches.clone();
        let next = next.clone();
        let channel = channel.clone();
        let token = gateway.clone();
        tokio::spawn(async move {
            let mut client = query::sign_in_service_client::SignInServiceClient::new(channel);
            let mut recorded = 0;
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(batch) = batches.get(index) else {
                    break;
                };
                let mut request = tonic::Request::new(query::RecordSignInsRequest {
                    sign_ins: batch.clone(),
                });
                request
                    .metadata_mut()
                    .insert("authorization", bearer(&token));
                recorded += client
                    .record_sign_ins(request)
                    .await
                    .unwrap()
                    .into_inner()
                    .recorded;
            }
            recorded
        })
    });
    let recorded: i64 = futures::future::join_all(clients)
        .await
        .into_iter()
        .map(Result::unwrap)
        .sum();
    let ingest = started.elapsed();
    let peak_rss = peak_rss_kib(pid);
    assert_eq!(recorded as usize, total);

    let db = tokio_postgres::connect(&database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(db.1);
    let db = db.0;
    let flagged: i64 = db
        .query_one(
            "SELECT count(*) FROM query.sign_ins WHERE flagged_for_review",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let pending: i64 = db
        .query_one(
            "SELECT count(*) FROM query.sign_ins WHERE flag_check_pending",
            &[],
        )
        .await
        .unwrap()
        .get(0);

    // The baseline: the stored rows, copied out in binary and back into the emptied table.
    let mut dump = Vec::new();
    let copy_out = db
        .copy_out("COPY query.sign_ins TO STDOUT (FORMAT binary)")
        .await
        .unwrap();
    futures::pin_mut!(copy_out);
    while let Some(chunk) = copy_out.next().await {
        dump.extend_from_slice(&chunk.unwrap());
    }
    db.batch_execute("TRUNCATE query.sign_ins").await.unwrap();
    let started = Instant::now();
    let sink = db
        .copy_in::<_, bytes::Bytes>("COPY query.sign_ins FROM STDIN (FORMAT binary)")
        .await
        .unwrap();
    futures::pin_mut!(sink);
    for chunk in dump.chunks(1 << 20) {
        sink.send(bytes::Bytes::copy_from_slice(chunk))
            .await
            .unwrap();
    }
    let copied = sink.finish().await.unwrap();
    let copy = started.elapsed();
    assert_eq!(copied as usize, total);

    let ingest_rate = total as f64 / ingest.as_secs_f64();
    let copy_rate = total as f64 / copy.as_secs_f64();
    println!("events: {total} in batches of {BATCH}, {CLIENTS} concurrent clients");
    println!(
        "RecordSignIns end to end (enrichment + CheckFlags + insert): {:>9.0} rows/s ({:.2} s)",
        ingest_rate,
        ingest.as_secs_f64()
    );
    println!(
        "binary COPY of the same rows into the same table:           {:>9.0} rows/s ({:.2} s)",
        copy_rate,
        copy.as_secs_f64()
    );
    println!("ratio ingest / COPY: {:.2}", ingest_rate / copy_rate);
    println!("flagged: {flagged}, pending: {pending}");
    println!(
        "query-service peak RSS: {:.1} MiB (after start-up: {:.1} MiB)",
        peak_rss as f64 / 1024.0,
        rss_before as f64 / 1024.0
    );

    drop(service);
    admin_client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .await
        .unwrap();
}
