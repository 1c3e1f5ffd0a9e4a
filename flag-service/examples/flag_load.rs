//! A load generator against flag-service running as its own process, so that its memory can
//! be read from `/proc/<pid>/status` (VmHWM: peak resident set) with a large table behind it.
//!
//! It makes a fresh database, starts the `flag-service` binary on it, writes `SESSIONS`
//! sessions (default 1,000,000) enabled evenly over the last `SPREAD_MINUTES` (default 43,200:
//! the 30 days of the default retention, so the table holds what a service keeps; 40 makes
//! every session recent, about half active: a stress case past the mirror's default 100,000
//! sessions), then for `SECONDS` each (default 10):
//! CheckFlags in batches of 1,000 with `IN_FLIGHT` calls outstanding (default 4), and
//! GetFlagStatus one call at a time; it prints throughput, latency percentiles and the
//! service's VmHWM/VmRSS, stops the service with SIGTERM and drops the database.
//!
//! ```text
//! cargo build --release -p flag-service --bin flag-service --example flag_load
//! target/release/examples/flag_load
//! ```
//! `FLAG_SERVICE_BIN` overrides where the binary is (default: `../flag-service` beside this
//! example's folder); PostgreSQL as for the benchmark (`BENCH_DATABASE_URL`, ...).

#![allow(clippy::unwrap_used)] // A load generator fails loudly.

#[path = "../benches/support/mod.rs"]
mod support;

use chrono::Utc;
use futures::StreamExt;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{BenchDatabase, Percentiles};

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn flag_service_binary() -> PathBuf {
    if let Ok(path) = std::env::var("FLAG_SERVICE_BIN") {
        return path.into();
    }
    let example = std::env::current_exe().unwrap();
    let profile_dir = example
        .parent()
        .and_then(|examples| examples.parent())
        .unwrap();
    profile_dir.join("flag-service")
}

/// The peak and current resident set of `pid`, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// CPU time (user + system) that process `pid` has used so far. /proc reports it in ticks of
/// USER_HZ, which is 100 on Linux whatever the kernel's own tick rate.
fn cpu_time(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // The command name (field 2) may hold spaces; fields are counted after its ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|value| value.parse::<u64>().ok())
    };
    let total = ticks(11).unwrap_or(0) + ticks(12).unwrap_or(0); // utime, stime
    Duration::from_millis(total * 10)
}

/// Where the CPU went during a phase: flag-service, the PostgreSQL backends serving its
/// database, and this load generator. On a machine shared with other work, CPU per call says
/// more about capacity than wall-clock throughput does.
struct CpuMeter {
    service: u32,
    database: tokio_postgres::Client,
    start: Vec<(u32, Duration)>,
}

impl CpuMeter {
    async fn new(service: u32, database_url: &str) -> CpuMeter {
        let (database, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let mut meter = CpuMeter {
            service,
            database,
            start: Vec::new(),
        };
        meter.start = meter.sample().await;
        meter
    }

    /// CPU used so far by flag-service (first), this process (second) and each backend.
    async fn sample(&self) -> Vec<(u32, Duration)> {
        let backends = self
            .database
            .query(
                "SELECT pid FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap();
        let mut pids = vec![self.service, std::process::id()];
        pids.extend(
            backends
                .iter()
                .map(|row| row.get::<_, i32>(0).unsigned_abs()),
        );
        pids.into_iter().map(|pid| (pid, cpu_time(pid))).collect()
    }

    /// CPU since the last reading: (flag-service, PostgreSQL, load generator).
    async fn lap(&mut self) -> (Duration, Duration, Duration) {
        let now = self.sample().await;
        let used = |pid: u32| {
            let before = self
                .start
                .iter()
                .find(|(seen, _)| *seen == pid)
                .map_or(Duration::ZERO, |(_, time)| *time);
            now.iter()
                .find(|(seen, _)| *seen == pid)
                .map_or(Duration::ZERO, |(_, time)| time.saturating_sub(before))
        };
        let service = used(self.service);
        let generator = used(std::process::id());
        let database = now.iter().skip(2).map(|(pid, _)| used(*pid)).sum();
        self.start = now;
        (service, database, generator)
    }
}

fn per_call(cpu: (Duration, Duration, Duration), calls: u64) -> String {
    let us = |time: Duration| time.as_secs_f64() * 1e6 / calls.max(1) as f64;
    format!(
        "CPU per call: flag-service {:.0} µs, PostgreSQL {:.0} µs, load generator {:.0} µs",
        us(cpu.0),
        us(cpu.1),
        us(cpu.2)
    )
}

/// Starts flag-service and returns once it logs that it listens (it has migrated by then).
fn start_flag_service(database_url: &str) -> (Child, std::net::SocketAddr) {
    // Let the kernel pick a free port, then hand it over; nothing else binds here meanwhile.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap();
    let binary = flag_service_binary();
    let mut child = Command::new(&binary)
        .env("DATABASE_URL", database_url)
        .env("AUTH_JWT_SECRET", support::SECRET)
        .env("FLAG_SERVICE_LISTEN", addr.to_string())
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| {
            panic!(
                "cannot start {}: {error}; build it with `cargo build --release -p flag-service`",
                binary.display()
            )
        });
    let stderr = child.stderr.take().unwrap();
    let (ready, listening) = std::sync::mpsc::channel();
    // Reads the log to the end, so the service never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("flag-service listening") {
                let _ = ready.send(());
            } else if line.contains("\"ERROR\"") || line.contains("\"WARN\"") {
                eprintln!("flag-service: {line}");
            }
        }
    });
    listening
        .recv_timeout(Duration::from_secs(60))
        .expect("flag-service logs that it listens within a minute");
    (child, addr)
}

fn stop(child: &mut Child) -> bool {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().map(|status| status.success()).unwrap_or(false)
}

#[tokio::main]
async fn main() {
    let sessions = setting("SESSIONS", 1_000_000);
    let spread_minutes = i64::try_from(setting("SPREAD_MINUTES", 43_200)).unwrap();
    let seconds = Duration::from_secs(setting("SECONDS", 10));
    let in_flight = setting("IN_FLIGHT", 4) as usize;

    let database = BenchDatabase::create().await;
    let (mut child, addr) = start_flag_service(&database.url);
    let pid = child.id();
    let (idle_hwm, _) = memory_kib(pid);
    let filling = Instant::now();
    database.fill(sessions, Utc::now(), spread_minutes).await;
    println!(
        "flag-service pid {pid} on {addr}; {sessions} sessions written in {:.1} s; VmHWM at start {} KiB",
        filling.elapsed().as_secs_f64(),
        idle_hwm
    );
    let client = support::client(addr).await;
    let now = Utc::now();

    let mut cpu = CpuMeter::new(pid, &database.url).await;
    let requests: Vec<_> = (0..64)
        .map(|seed| support::check_request(seed, 1_000, sessions, now))
        .collect();
    let started = Instant::now();
    let mut calls = 0_u64;
    let mut latencies = Vec::new();
    while started.elapsed() < seconds {
        let round: Vec<Duration> = futures::stream::iter(0..in_flight * 8)
            .map(|index| {
                let mut client = client.clone();
                let request = requests[(calls as usize + index) % requests.len()].clone();
                async move {
                    let call_started = Instant::now();
                    let answer = client.check_flags(request).await.unwrap().into_inner();
                    assert_eq!(answer.results.len(), 1_000);
                    call_started.elapsed()
                }
            })
            .buffer_unordered(in_flight)
            .collect()
            .await;
        calls += round.len() as u64;
        latencies.extend(round);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let used = cpu.lap().await;
    println!(
        "CheckFlags, 1,000 checks a call, {in_flight} in flight: {calls} calls in {elapsed:.1} s = {:.0} checks/s; per call {}",
        calls as f64 * 1_000.0 / elapsed,
        Percentiles::new(latencies).summary()
    );
    let server_side = (used.0 + used.1).as_secs_f64();
    println!(
        "  {}; so flag-service and PostgreSQL together could answer {:.0} checks/s per core",
        per_call(used, calls),
        calls as f64 * 1_000.0 / server_side.max(f64::EPSILON)
    );

    let status: Vec<_> = (0..4_096)
        .map(|seed| support::status_request(seed, sessions))
        .collect();
    let mut one = client.clone();
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut call = 0_usize;
    while started.elapsed() < seconds {
        let request = status[call % status.len()].clone();
        let call_started = Instant::now();
        one.get_flag_status(request).await.unwrap();
        latencies.push(call_started.elapsed());
        call += 1;
    }
    let used = cpu.lap().await;
    println!(
        "GetFlagStatus, one in flight: {:.0} calls/s; {}",
        call as f64 / started.elapsed().as_secs_f64(),
        Percentiles::new(latencies).summary()
    );
    println!("  {}", per_call(used, call as u64));

    let (hwm, rss) = memory_kib(pid);
    println!(
        "flag-service memory: VmHWM {hwm} KiB ({:.1} MiB), VmRSS {rss} KiB ({:.1} MiB)",
        hwm as f64 / 1024.0,
        rss as f64 / 1024.0
    );
    drop(client);
    drop(one);
    let clean = stop(&mut child);
    println!(
        "flag-service stopped on SIGTERM: exit {}",
        if clean { "0" } else { "non-zero" }
    );
    database.drop_database().await;
}
