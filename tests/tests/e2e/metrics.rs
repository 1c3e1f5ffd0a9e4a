//! The Prometheus endpoint (`--metrics-listen`): scraped over plain HTTP as Prometheus would,
//! after a flagged sign-in has been recorded.

use signins_common::auth::{Role, TokenMinter};
use signins_tests::{Key, SECRET, TestDatabase, flag_client, query_client};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET /metrics` over HTTP/1.1; returns the status line and the body.
async fn scrape(addr: SocketAddr) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

/// Both services on a fresh database, each with its metrics endpoint on a port of its own.
struct Served {
    /// Dropped (and with it the database) after the services are stopped.
    _database: TestDatabase,
    flag_addr: SocketAddr,
    flag_metrics: SocketAddr,
    query_addr: SocketAddr,
    query_metrics: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Served {
    async fn start() -> Served {
        let database = TestDatabase::create().await;
        let mut flag_config = flag_service::Config::new(&database.url, SECRET);
        flag_config.metrics_listen = Some("127.0.0.1:0".into());
        let flag = flag_service::Application::build(flag_config).await.unwrap();
        let (flag_addr, flag_metrics) = (flag.local_addr(), flag.metrics_addr().unwrap());
        let mut query_config =
            query_service::Config::new(&database.url, &format!("http://{flag_addr}"), SECRET);
        query_config.metrics_listen = Some("127.0.0.1:0".into());
        let query = query_service::Application::build(query_config)
            .await
            .unwrap();
        let (query_addr, query_metrics) = (query.local_addr(), query.metrics_addr().unwrap());
        let tasks = vec![
            tokio::spawn(async move {
                flag.run_until_stopped(std::future::pending())
                    .await
                    .unwrap();
            }),
            tokio::spawn(async move {
                query
                    .run_until_stopped(std::future::pending())
                    .await
                    .unwrap();
            }),
        ];
        Served {
            _database: database,
            flag_addr,
            flag_metrics,
            query_addr,
            query_metrics,
            tasks,
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[tokio::test]
async fn the_metrics_endpoints_count_calls_sign_ins_flags_and_the_pool() {
    let served = Served::start().await;
    let gateway = TokenMinter::hs256(SECRET, "signins", "signins")
        .mint(
            "gateway",
            None,
            &[Role::SignInLogsWrite, Role::FlaggingWrite],
            std::time::Duration::from_secs(600),
        )
        .unwrap();
    let key = Key::random();
    flag_client(served.flag_addr, &gateway)
        .await
        .enable_flagging(key.enable())
        .await
        .unwrap();
    let mut recorder = query_client(served.query_addr, &gateway).await;
    let batch = signins_tests::query::RecordSignInsRequest {
        sign_ins: vec![
            key.sign_in_at(chrono::Utc::now(), "user@contoso.com", 50126),
            Key::random().sign_in_at(chrono::Utc::now(), "other@contoso.com", 0),
        ],
    };
    recorder.record_sign_ins(batch.clone()).await.unwrap();
    recorder.record_sign_ins(batch).await.unwrap();

    let (query_status, query) = scrape(served.query_metrics).await;
    let (flag_status, flag) = scrape(served.flag_metrics).await;

    assert_eq!(query_status, "HTTP/1.1 200 OK");
    assert_eq!(flag_status, "HTTP/1.1 200 OK");
    for line in [
        "signins_rpc_requests_total{service=\"signins.query.v1.SignInService\",method=\"RecordSignIns\",code=\"OK\"} 2",
        "signins_rpc_duration_seconds_count{service=\"signins.query.v1.SignInService\",method=\"RecordSignIns\",code=\"OK\"} 2",
        "signins_sign_ins_recorded_total 2",
        "signins_sign_ins_duplicates_total 2",
        "signins_sign_ins_flagged_total 1",
        "signins_flag_checks_pending 0",
        "signins_db_pool_waiting 0",
        "signins_db_pool_max_connections 16",
    ] {
        assert!(query.contains(line), "{line} missing from\n{query}");
    }
    assert!(
        query.contains("signins_db_pool_connections_in_use "),
        "{query}"
    );
    for line in [
        "signins_rpc_requests_total{service=\"signins.flag.v1.FlagService\",method=\"CheckFlags\",code=\"OK\"} 2",
        "signins_rpc_requests_total{service=\"signins.flag.v1.FlagService\",method=\"EnableFlagging\",code=\"OK\"} 1",
        "signins_flag_sessions_active 1",
        // Sign-ins of now: the mirror answers them.
        "signins_flag_checks_total{answered_from=\"mirror\"} 4",
    ] {
        assert!(flag.contains(line), "{line} missing from\n{flag}");
    }
}
