//! The end-to-end harness: a fresh PostgreSQL database per test, both services started
//! in-process on port 0 against it, and typed gRPC clients that carry a bearer token, exactly
//! as a gateway or a dashboard would call them.
//!
//! Tests that need other settings (JWKS keys, TLS) start the same services through
//! [`TestSystem::start_custom`], editing each service's `Config` before it is built.
//!
//! PostgreSQL is found at `TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); a test that cannot reach it fails with a
//! sentence saying so, it never skips.

use chrono::{DateTime, Utc};
use signins_common::auth::{Claims, Role, TokenMinter};
use signins_common::clock::{Clock, ManualClock, SystemClock};
use signins_proto::flag::v1::flag_service_client::FlagServiceClient;
use signins_proto::query::v1::sign_in_service_client::SignInServiceClient;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use uuid::Uuid;

pub use signins_proto::flag::v1 as flag;
pub use signins_proto::query::v1 as query;

/// The HS256 secret every test system uses.
pub const SECRET: &str = "test-secret-not-for-production";

/// The admin connection used to create and drop test databases.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database that exists for one test and is dropped when this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create() -> TestDatabase {
        let admin = admin_url();
        let name = format!("signins_test_{}", Uuid::new_v4().simple());
        let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.unwrap_or_else(|error| {
            panic!("PostgreSQL is needed for these tests and is not reachable at {admin} ({error}); start it or set TEST_DATABASE_URL")
        });
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        let url = replace_database(&admin, &name);
        TestDatabase { name, url }
    }

    /// A plain connection to this database, for assertions on what was stored.
    pub async fn connect(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        client
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside async context; a short-lived thread and runtime do the cleanup.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok((client, connection)) =
                    tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls).await
                {
                    tokio::spawn(connection);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

fn replace_database(url: &str, database: &str) -> String {
    // postgres://user@host:port/dbname?params → same with another dbname.
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let prefix = match base.rfind('/') {
        Some(slash) if slash > "postgres://".len() => &base[..slash],
        _ => base,
    };
    match query {
        Some(query) => format!("{prefix}/{database}?{query}"),
        None => format!("{prefix}/{database}"),
    }
}

/// Settings of a [`TestSystem`].
#[derive(Debug, Clone)]
pub struct Options {
    pub flag_ttl: Duration,
    pub max_enables_per_hour: u32,
    /// A clock shared by both services, moved by hand; `None` for the wall clock.
    pub clock: Option<ManualClock>,
    pub flag_check_timeout: Duration,
    /// query-service's `--retention`; long by default so tests may record historic sign-ins.
    pub retention: Duration,
    /// query-service's statement timeout.
    pub query_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            flag_ttl: Duration::from_secs(20 * 60),
            max_enables_per_hour: 10,
            clock: None,
            flag_check_timeout: Duration::from_secs(2),
            retention: Duration::from_secs(3650 * 86_400),
            query_timeout: Duration::from_secs(5),
        }
    }
}

/// A running service and the switch that stops it.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    /// `https` when the service was started with a certificate.
    pub scheme: &'static str,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops the service and waits until it has drained.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn spawn_until_stopped<F>(
    run: impl FnOnce(oneshot::Receiver<()>) -> F,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let (stop, stopped) = oneshot::channel();
    (stop, tokio::spawn(run(stopped)))
}

/// flag-service's settings as the harness starts it: port `listen`, the test secret.
pub fn flag_service_config(
    database_url: &str,
    options: &Options,
    listen: &str,
) -> flag_service::Config {
    let mut config = flag_service::Config::new(database_url, SECRET);
    config.listen = listen.into();
    config.flag_ttl = options.flag_ttl;
    config.max_enables_per_hour = options.max_enables_per_hour;
    config.shutdown_grace = Duration::from_secs(2);
    config
}

fn clock_of(options: &Options) -> Arc<dyn Clock> {
    match &options.clock {
        Some(clock) => Arc::new(clock.clone()),
        None => Arc::new(SystemClock),
    }
}

pub async fn start_flag_service(database_url: &str, options: &Options, listen: &str) -> Running {
    start_flag_service_with(flag_service_config(database_url, options, listen), options).await
}

/// Starts flag-service with exactly these settings (and the clock of `options`).
pub async fn start_flag_service_with(config: flag_service::Config, options: &Options) -> Running {
    let scheme = if config.tls.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let app = flag_service::Application::build_with_clock(config, clock_of(options))
        .await
        .expect("flag-service starts");
    let addr = app.local_addr();
    let (stop, task) = spawn_until_stopped(|stopped| async move {
        app.run_until_stopped(async move {
            let _ = stopped.await;
        })
        .await
        .expect("flag-service runs");
    });
    Running {
        addr,
        scheme,
        stop: Some(stop),
        task: Some(task),
    }
}

/// query-service's settings as the harness starts it: port 0, the test secret.
pub fn query_service_config(
    database_url: &str,
    flag_service_url: &str,
    options: &Options,
) -> query_service::Config {
    let mut config = query_service::Config::new(database_url, flag_service_url, SECRET);
    config.flag_check_timeout = options.flag_check_timeout;
    config.retention = options.retention;
    config.query_timeout = options.query_timeout;
    config.shutdown_grace = Duration::from_secs(2);
    config
}

pub async fn start_query_service(
    database_url: &str,
    flag_service_url: &str,
    options: &Options,
) -> Running {
    start_query_service_with(
        query_service_config(database_url, flag_service_url, options),
        options,
    )
    .await
}

/// Starts query-service with exactly these settings (and the clock of `options`).
pub async fn start_query_service_with(config: query_service::Config, options: &Options) -> Running {
    let scheme = if config.tls.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    let app = query_service::Application::build_with_clock(config, clock_of(options))
        .await
        .expect("query-service starts");
    let addr = app.local_addr();
    let (stop, task) = spawn_until_stopped(|stopped| async move {
        app.run_until_stopped(async move {
            let _ = stopped.await;
        })
        .await
        .expect("query-service runs");
    });
    Running {
        addr,
        scheme,
        stop: Some(stop),
        task: Some(task),
    }
}

/// Both services on a fresh database.
#[derive(Debug)]
pub struct TestSystem {
    pub flag: Running,
    pub query: Running,
    pub database: TestDatabase,
    pub options: Options,
    minter: TokenMinter,
}

impl TestSystem {
    pub async fn start() -> TestSystem {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> TestSystem {
        let database = TestDatabase::create().await;
        let flag = start_flag_service(&database.url, &options, "127.0.0.1:0").await;
        let query = start_query_service(&database.url, &flag.url(), &options).await;
        TestSystem {
            flag,
            query,
            database,
            options,
            minter: TokenMinter::hs256(SECRET, "signins", "signins"),
        }
    }

    /// Both services with settings of the test's own: `flag` edits flag-service's config,
    /// then `query` edits query-service's (whose `flag_service_url` already points at the
    /// flag-service just started); `minter` signs the tokens of [`TestSystem::token`].
    pub async fn start_custom(
        options: Options,
        minter: TokenMinter,
        flag: impl FnOnce(&mut flag_service::Config),
        query: impl FnOnce(&mut query_service::Config),
    ) -> TestSystem {
        let database = TestDatabase::create().await;
        let mut flag_config = flag_service_config(&database.url, &options, "127.0.0.1:0");
        flag(&mut flag_config);
        let flag_service = start_flag_service_with(flag_config, &options).await;
        let mut query_config = query_service_config(&database.url, &flag_service.url(), &options);
        query(&mut query_config);
        let query_service = start_query_service_with(query_config, &options).await;
        TestSystem {
            flag: flag_service,
            query: query_service,
            database,
            options,
            minter,
        }
    }

    /// A token from claims edited by the test (an `exp` in the past, another `aud`, ...).
    pub fn signed(&self, subject: &str, edit: impl FnOnce(&mut Claims)) -> String {
        let mut claims = self.minter.claims(subject, Duration::from_secs(3600));
        edit(&mut claims);
        self.minter.sign(&claims).expect("sign token")
    }

    /// The current time of the system's clock.
    pub fn now(&self) -> DateTime<Utc> {
        match &self.options.clock {
            Some(clock) => clock.now(),
            None => SystemClock.now(),
        }
    }

    pub fn token(&self, subject: &str, tenant: Option<Uuid>, roles: &[Role]) -> String {
        self.minter
            .mint(subject, tenant, roles, Duration::from_secs(3600))
            .expect("mint token")
    }

    /// The auth gateway's platform identity: writes sign-ins and flags for any tenant.
    pub fn gateway_token(&self) -> String {
        self.token(
            "gateway",
            None,
            &[Role::SignInLogsWrite, Role::FlaggingWrite],
        )
    }

    pub fn reader_token(&self, tenant: Uuid) -> String {
        self.token("admin", Some(tenant), &[Role::GlobalReader])
    }

    pub fn minter(&self) -> &TokenMinter {
        &self.minter
    }

    pub async fn flag_client(&self, token: &str) -> FlagClient {
        flag_client(self.flag.addr, token).await
    }

    pub async fn query_client(&self, token: &str) -> QueryClient {
        query_client(self.query.addr, token).await
    }

    pub async fn channel(addr: SocketAddr) -> Channel {
        Channel::from_shared(format!("http://{addr}"))
            .expect("url")
            .connect()
            .await
            .expect("connect")
    }
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Debug, Clone)]
pub struct Bearer(Option<MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

impl Bearer {
    /// An empty token sends no header at all.
    pub fn new(token: &str) -> Bearer {
        if token.is_empty() {
            Bearer(None)
        } else {
            Bearer(Some(
                format!("Bearer {token}")
                    .parse()
                    .expect("token is a header value"),
            ))
        }
    }
}

pub type FlagClient = FlagServiceClient<InterceptedService<Channel, Bearer>>;
pub type QueryClient = SignInServiceClient<InterceptedService<Channel, Bearer>>;

/// A channel over TLS to `url` (https://...), trusting only `ca_pem`; with `identity`
/// (certificate and key PEM) the client presents a certificate too (mutual TLS).
pub async fn tls_channel(
    url: &str,
    ca_pem: &[u8],
    identity: Option<(&[u8], &[u8])>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca_pem));
    if let Some((cert, key)) = identity {
        tls = tls.identity(tonic::transport::Identity::from_pem(cert, key));
    }
    Channel::from_shared(url.to_owned())
        .expect("url")
        .tls_config(tls)?
        .connect()
        .await
}

/// A flag-service client on a channel of the test's making (e.g. [`tls_channel`]).
pub fn flag_client_on(channel: Channel, token: &str) -> FlagClient {
    FlagServiceClient::with_interceptor(channel, Bearer::new(token))
}

/// A query-service client on a channel of the test's making (e.g. [`tls_channel`]).
pub fn query_client_on(channel: Channel, token: &str) -> QueryClient {
    SignInServiceClient::with_interceptor(channel, Bearer::new(token))
}

pub async fn flag_client(addr: SocketAddr, token: &str) -> FlagClient {
    FlagServiceClient::with_interceptor(TestSystem::channel(addr).await, Bearer::new(token))
}

pub async fn query_client(addr: SocketAddr, token: &str) -> QueryClient {
    SignInServiceClient::with_interceptor(TestSystem::channel(addr).await, Bearer::new(token))
}

/// A flag key's parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub tenant: Uuid,
    pub user: Uuid,
    pub device: String,
    pub browser: String,
}

impl Key {
    pub fn random() -> Key {
        Key {
            tenant: Uuid::new_v4(),
            user: Uuid::new_v4(),
            device: format!("device-{}", Uuid::new_v4()),
            browser: format!("browser-{}", Uuid::new_v4()),
        }
    }

    pub fn client(&self) -> flag::Client {
        flag::Client {
            device_id: self.device.clone(),
            browser_id: self.browser.clone(),
        }
    }

    pub fn enable(&self) -> flag::EnableFlaggingRequest {
        flag::EnableFlaggingRequest {
            tenant_id: self.tenant.to_string(),
            user_id: self.user.to_string(),
            client: Some(self.client()),
            user_principal_name: "user@contoso.com".into(),
            trigger: Some(flag::Trigger {
                error_code: 50126,
                correlation_id: Uuid::new_v4().to_string(),
                ..Default::default()
            }),
        }
    }

    pub fn disable(&self) -> flag::DisableFlaggingRequest {
        flag::DisableFlaggingRequest {
            tenant_id: self.tenant.to_string(),
            user_id: self.user.to_string(),
            client: Some(self.client()),
        }
    }

    pub fn status(&self) -> flag::GetFlagStatusRequest {
        flag::GetFlagStatusRequest {
            tenant_id: self.tenant.to_string(),
            user_id: self.user.to_string(),
            client: Some(self.client()),
        }
    }

    pub fn check_at(&self, at: DateTime<Utc>) -> flag::FlagCheck {
        flag::FlagCheck {
            tenant_id: self.tenant.to_string(),
            user_id: self.user.to_string(),
            client: Some(self.client()),
            at: Some(timestamp(at)),
        }
    }

    /// A sign-in of this key at `at`, with a fresh id.
    pub fn sign_in_at(&self, at: DateTime<Utc>, upn: &str, error_code: i32) -> query::SignIn {
        query::SignIn {
            id: Uuid::new_v4().to_string(),
            created_date_time: Some(timestamp(at)),
            tenant_id: self.tenant.to_string(),
            user_id: self.user.to_string(),
            user_principal_name: Some(upn.into()),
            app_display_name: Some("Azure Portal".into()),
            ip_address: Some("203.0.113.7".into()),
            user_agent: Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36".into()),
            status: Some(query::SignInStatus { error_code, ..Default::default() }),
            device_detail: Some(query::DeviceDetail {
                device_id: Some(self.device.clone()),
                browser_id: Some(self.browser.clone()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

pub fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

pub fn from_timestamp(time: &prost_types::Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(time.seconds, u32::try_from(time.nanos).unwrap_or(0))
        .expect("valid timestamp")
}

/// Every page of a ListSignIns query, following `nextPageToken` until it is absent.
pub async fn list_pages(
    client: &mut QueryClient,
    filter: &str,
    top: Option<i32>,
    order_by: &str,
) -> Result<Vec<Vec<query::SignIn>>, tonic::Status> {
    let mut pages = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_sign_ins(query::ListSignInsRequest {
                filter: filter.into(),
                top,
                order_by: order_by.into(),
                page_token,
            })
            .await?
            .into_inner();
        pages.push(page.sign_ins);
        match page.next_page_token {
            Some(next) => page_token = next,
            None => return Ok(pages),
        }
    }
}

/// Polls `probe` until it returns `Some`, for at most `limit`; for effects that happen in the
/// background (re-checks), never for readiness.
pub async fn eventually<T, F, Fut>(limit: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
