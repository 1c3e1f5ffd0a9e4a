//! What the benchmark (`benches/flag_rpc.rs`) and the load generator
//! (`examples/flag_load.rs`) share: a throwaway database, flag sessions written straight into
//! it in bulk, flag keys that can be rebuilt from a number, authenticated clients, the echo
//! baseline, and percentiles.
//!
//! Tools, not services: a setup step that fails panics with a sentence saying what is missing.

#![allow(dead_code, unreachable_pub)] // Each of the two targets uses its own part.

use chrono::{DateTime, Utc};
use signins_common::auth::{Role, TokenMinter};
use signins_proto::flag::v1 as pb;
use signins_proto::flag::v1::flag_service_client::FlagServiceClient;
use std::net::SocketAddr;
use std::time::Duration;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use uuid::Uuid;

/// The HS256 secret of the flag-service under test.
pub const SECRET: &str = "bench-secret-not-for-production";

/// Sessions enabled 0..40 minutes before "now" with the default 20 minute TTL: about half of
/// them active and half expired, so lookups find both kinds (a stress case: every session is
/// recent).
pub const RECENT_SPREAD_MINUTES: i64 = 40;

/// The admin connection, from `BENCH_DATABASE_URL` or `TEST_DATABASE_URL`.
pub fn admin_url() -> String {
    std::env::var("BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("TEST_DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|error| panic!("PostgreSQL is needed at {url}: {error}"));
    tokio::spawn(connection);
    client
}

/// A database made for one run and dropped by [`BenchDatabase::drop_database`].
#[derive(Debug)]
pub struct BenchDatabase {
    pub name: String,
    pub url: String,
}

impl BenchDatabase {
    pub async fn create() -> BenchDatabase {
        let admin = admin_url();
        let name = format!("flag_bench_{}", Uuid::new_v4().simple());
        connect(&admin)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the bench database");
        let (base, _) = admin.rsplit_once('/').expect("a database URL with a path");
        BenchDatabase {
            url: format!("{base}/{name}"),
            name,
        }
    }

    pub async fn drop_database(self) {
        let _ = connect(&admin_url())
            .await
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await;
    }

    /// Writes `count` sessions, numbered 0..count, enabled 0..`spread_minutes` before `now`
    /// (the schema must exist: start flag-service first, it migrates). Plain SQL in chunks:
    /// far faster than the RPC.
    pub async fn fill(&self, count: u64, now: DateTime<Utc>, spread_minutes: i64) {
        let client = connect(&self.url).await;
        let chunk = 100_000_u64;
        let mut first = 0_u64;
        while first < count {
            let last = (first + chunk).min(count) - 1;
            let (first_n, last_n) = (first as i64, last as i64);
            client
                .execute(
                    "INSERT INTO flag.flag_sessions (tenant_id, id, user_id, device_id, browser_id,
                         user_principal_name, enabled_at, expires_at, enabled_by, trigger_error_code)
                     SELECT ('aaaaaaaa-0000-4000-8000-' || lpad(to_hex(n % 64), 12, '0'))::uuid,
                         gen_random_uuid(),
                         ('bbbbbbbb-0000-4000-8000-' || lpad(to_hex(n), 12, '0'))::uuid,
                         'device-' || n, 'browser-' || n, 'user' || n || '@contoso.com',
                         $1::timestamptz - make_interval(mins => (n % $4)::int),
                         $1::timestamptz - make_interval(mins => (n % $4)::int)
                             + interval '20 minutes',
                         'bench', 50126
                     FROM generate_series($2::bigint, $3::bigint) AS n",
                    &[&now, &first_n, &last_n, &spread_minutes],
                )
                .await
                .expect("fill flag sessions");
            first = last + 1;
        }
        // What autovacuum does soon after a bulk insert; without it the visibility map is
        // empty and no lookup can be index-only, which is not how a live table looks.
        client
            .batch_execute("VACUUM ANALYZE flag.flag_sessions")
            .await
            .expect("vacuum");
    }
}

/// The flag key of session number `n`, as [`BenchDatabase::fill`] wrote it.
pub fn key(n: u64) -> (Uuid, Uuid, String, String) {
    (
        Uuid::from_u128(0xaaaa_aaaa_0000_4000_8000_0000_0000_0000 | u128::from(n % 64)),
        Uuid::from_u128(0xbbbb_bbbb_0000_4000_8000_0000_0000_0000 | u128::from(n)),
        format!("device-{n}"),
        format!("browser-{n}"),
    )
}

fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// Spreads numbers over twice the filled range: half of the keys asked about have no session.
fn spread(seed: u64, index: u64, sessions: u64) -> u64 {
    (seed.wrapping_mul(1_000_003) + index.wrapping_mul(7_919)) % (2 * sessions)
}

/// A CheckFlags request of `size` checks at `at`; `seed` picks which keys.
pub fn check_request(
    seed: u64,
    size: u64,
    sessions: u64,
    at: DateTime<Utc>,
) -> pb::CheckFlagsRequest {
    pb::CheckFlagsRequest {
        checks: (0..size)
            .map(|index| {
                let (tenant, user, device, browser) = key(spread(seed, index, sessions));
                pb::FlagCheck {
                    tenant_id: tenant.to_string(),
                    user_id: user.to_string(),
                    client: Some(pb::Client {
                        device_id: device,
                        browser_id: browser,
                    }),
                    at: Some(timestamp(at)),
                }
            })
            .collect(),
    }
}

/// A GetFlagStatus request; `seed` picks the key.
pub fn status_request(seed: u64, sessions: u64) -> pb::GetFlagStatusRequest {
    let (tenant, user, device, browser) = key(spread(seed, 0, sessions));
    pb::GetFlagStatusRequest {
        tenant_id: tenant.to_string(),
        user_id: user.to_string(),
        client: Some(pb::Client {
            device_id: device,
            browser_id: browser,
        }),
    }
}

/// Adds the bearer token to every call.
#[derive(Debug, Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

pub type Client = FlagServiceClient<InterceptedService<Channel, Bearer>>;

/// A client of `addr` on one HTTP/2 connection, with a token allowed to check and read
/// status (the echo baseline ignores it).
pub async fn client(addr: SocketAddr) -> Client {
    let token = TokenMinter::hs256(SECRET, "signins", "signins")
        .mint(
            "bench",
            None,
            &[Role::FlaggingCheck, Role::FlaggingWrite],
            Duration::from_secs(24 * 3600),
        )
        .expect("mint a token");
    let bearer = Bearer(
        format!("Bearer {token}")
            .parse()
            .expect("a token is a header value"),
    );
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("an address is a URL")
        .connect()
        .await
        .expect("connect to the server under test");
    FlagServiceClient::with_interceptor(channel, bearer).max_decoding_message_size(32 * 1024 * 1024)
}

/// The baseline: a bare tonic server of the same service and messages, no auth, no database.
/// CheckFlags answers one result per check, a quarter of them flagged (about what the filled
/// data gives), so responses are the size flag-service's are; GetFlagStatus answers a full
/// active session.
#[derive(Debug, Clone)]
pub struct Echo {
    session_id: String,
}

impl Default for Echo {
    fn default() -> Self {
        Echo {
            session_id: Uuid::now_v7().to_string(),
        }
    }
}

#[tonic::async_trait]
impl pb::flag_service_server::FlagService for Echo {
    async fn enable_flagging(
        &self,
        _: Request<pb::EnableFlaggingRequest>,
    ) -> Result<Response<pb::EnableFlaggingResponse>, Status> {
        Err(Status::unimplemented(
            "echo answers CheckFlags and GetFlagStatus",
        ))
    }

    async fn disable_flagging(
        &self,
        _: Request<pb::DisableFlaggingRequest>,
    ) -> Result<Response<pb::DisableFlaggingResponse>, Status> {
        Err(Status::unimplemented(
            "echo answers CheckFlags and GetFlagStatus",
        ))
    }

    async fn get_flag_status(
        &self,
        request: Request<pb::GetFlagStatusRequest>,
    ) -> Result<Response<pb::GetFlagStatusResponse>, Status> {
        let request = request.into_inner();
        let now = Utc::now();
        Ok(Response::new(pb::GetFlagStatusResponse {
            flagged: Some(true),
            session: Some(pb::FlagSession {
                id: self.session_id.clone(),
                tenant_id: request.tenant_id,
                user_id: request.user_id,
                client: request.client,
                user_principal_name: "user1@contoso.com".into(),
                trigger: Some(pb::Trigger {
                    error_code: 50126,
                    ..Default::default()
                }),
                enabled_date_time: Some(timestamp(now)),
                expires_date_time: Some(timestamp(now + chrono::Duration::minutes(20))),
                disabled_date_time: None,
                state: pb::FlagSessionState::Active.into(),
                enabled_by: "bench".into(),
                disabled_by: String::new(),
            }),
            remaining: Some(prost_types::Duration {
                seconds: 1_200,
                nanos: 0,
            }),
        }))
    }

    async fn check_flags(
        &self,
        request: Request<pb::CheckFlagsRequest>,
    ) -> Result<Response<pb::CheckFlagsResponse>, Status> {
        let results = request
            .into_inner()
            .checks
            .iter()
            .enumerate()
            .map(|(index, _)| {
                let flagged = index % 4 == 0;
                pb::FlagCheckResult {
                    flagged,
                    flag_session_id: if flagged {
                        self.session_id.clone()
                    } else {
                        String::new()
                    },
                }
            })
            .collect();
        Ok(Response::new(pb::CheckFlagsResponse { results }))
    }

    async fn list_flag_sessions(
        &self,
        _: Request<pb::ListFlagSessionsRequest>,
    ) -> Result<Response<pb::ListFlagSessionsResponse>, Status> {
        Err(Status::unimplemented(
            "echo answers CheckFlags and GetFlagStatus",
        ))
    }
}

/// Latencies sorted, then read at a few quantiles.
#[derive(Debug)]
pub struct Percentiles {
    sorted: Vec<Duration>,
}

impl Percentiles {
    pub fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        Self { sorted: samples }
    }

    /// The latency at quantile `q` (0..=1), nearest rank.
    pub fn at(&self, q: f64) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = (q * self.sorted.len() as f64).ceil() as usize;
        self.sorted[rank.clamp(1, self.sorted.len()) - 1]
    }

    pub fn summary(&self) -> String {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        format!(
            "n={} p50={:.0}µs p90={:.0}µs p99={:.0}µs p99.9={:.0}µs max={:.0}µs",
            self.sorted.len(),
            us(self.at(0.50)),
            us(self.at(0.90)),
            us(self.at(0.99)),
            us(self.at(0.999)),
            us(self.at(1.0)),
        )
    }
}
