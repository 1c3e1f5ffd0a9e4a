//! Flag sessions exactly right under concurrency, replicas and time: one session per key
//! across two flag-service instances on one database, read-your-writes between them, every
//! edge of the half-open window, full CheckFlags batches in request order, a reference model
//! checked against random histories, the rolling rate limit, retention, audit and validation.

use chrono::{DateTime, TimeZone, Utc};
use flag_service::flagging::{Flagging, FlaggingSettings};
use flag_service::store::Store;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use signins_common::auth::Role;
use signins_common::clock::{Clock, ManualClock};
use signins_tests::{
    FlagClient, Key, Options, TestSystem, flag, flag_client, from_timestamp, start_flag_service,
    timestamp,
};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tonic::Code;
use uuid::Uuid;

const MS: chrono::Duration = chrono::Duration::milliseconds(1);
const MICRO: chrono::Duration = chrono::Duration::microseconds(1);

fn start_of_test_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap()
}

async fn manual_system(clock: &ManualClock, max_enables_per_hour: u32) -> TestSystem {
    TestSystem::start_with(Options {
        clock: Some(clock.clone()),
        max_enables_per_hour,
        ..Options::default()
    })
    .await
}

/// query-service's identity: the only one allowed to call CheckFlags.
async fn checker(system: &TestSystem) -> FlagClient {
    system
        .flag_client(&system.token("query-service", None, &[Role::FlaggingCheck]))
        .await
}

async fn check(
    checker: &mut FlagClient,
    checks: Vec<flag::FlagCheck>,
) -> Vec<flag::FlagCheckResult> {
    checker
        .check_flags(flag::CheckFlagsRequest { checks })
        .await
        .unwrap()
        .into_inner()
        .results
}

async fn enable(flags: &mut FlagClient, key: &Key) -> flag::FlagSession {
    flags
        .enable_flagging(key.enable())
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap()
}

fn with_browser(key: &Key, browser: impl Into<String>) -> Key {
    Key {
        browser: browser.into(),
        ..key.clone()
    }
}

#[tokio::test]
async fn fifty_concurrent_enables_over_two_replicas_start_exactly_one_session() {
    let system = TestSystem::start().await;
    let replica_b = start_flag_service(&system.database.url, &system.options, "127.0.0.1:0").await;
    let token = system.gateway_token();
    let on_a = system.flag_client(&token).await;
    let on_b = flag_client(replica_b.addr, &token).await;
    let key = Key::random();

    let calls = (0..50).map(|call| {
        let mut flags = if call % 2 == 0 {
            on_a.clone()
        } else {
            on_b.clone()
        };
        let request = key.enable();
        async move { flags.enable_flagging(request).await.unwrap().into_inner() }
    });
    let answers = futures::future::join_all(calls).await;

    let ids: HashSet<_> = answers
        .iter()
        .map(|answer| answer.session.as_ref().unwrap().id.clone())
        .collect();
    assert_eq!(
        ids.len(),
        1,
        "every answer carries the one session: {ids:?}"
    );
    let created = answers
        .iter()
        .filter(|answer| answer.created == Some(true))
        .count();
    assert_eq!(created, 1);
    let stored: i64 = system
        .database
        .connect()
        .await
        .query_one(
            "SELECT count(*) FROM flag.flag_sessions WHERE tenant_id = $1 AND user_id = $2",
            &[&key.tenant, &key.user],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 1);
}

#[tokio::test]
async fn a_session_enabled_on_one_replica_is_seen_at_once_on_the_other_and_so_is_its_end() {
    let system = TestSystem::start().await;
    let replica_b = start_flag_service(&system.database.url, &system.options, "127.0.0.1:0").await;
    let token = system.gateway_token();
    let check_token = system.token("query-service", None, &[Role::FlaggingCheck]);
    let mut flags_a = system.flag_client(&token).await;
    let mut checker_a = system.flag_client(&check_token).await;
    let mut flags_b = flag_client(replica_b.addr, &token).await;
    let mut checker_b = flag_client(replica_b.addr, &check_token).await;
    let key = Key::random();
    // Both replicas answer a check first, so what follows is answered by mirrors that were
    // already loaded and must catch up, not by a first load.
    for checker in [&mut checker_a, &mut checker_b] {
        assert!(!check(checker, vec![key.check_at(Utc::now())]).await[0].flagged);
    }

    let session = enable(&mut flags_a, &key).await;
    let enabled_at = from_timestamp(session.enabled_date_time.as_ref().unwrap());
    let status_on_b = flags_b
        .get_flag_status(key.status())
        .await
        .unwrap()
        .into_inner();
    let check_on_b = check(&mut checker_b, vec![key.check_at(enabled_at)]).await;
    // A's mirror takes the session in too, so the disable below must reach a mirror that holds
    // it (a mirror that last read before the enable would read the row afresh either way).
    let check_on_a = check(&mut checker_a, vec![key.check_at(Utc::now())]).await;

    assert_eq!(status_on_b.flagged, Some(true));
    assert_eq!(status_on_b.session.unwrap().id, session.id);
    assert!(check_on_b[0].flagged);
    assert_eq!(check_on_b[0].flag_session_id, session.id);
    assert!(check_on_a[0].flagged);

    let disabled = flags_b
        .disable_flagging(key.disable())
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    let disabled_at = from_timestamp(disabled.disabled_date_time.as_ref().unwrap());
    let status_on_a = flags_a
        .get_flag_status(key.status())
        .await
        .unwrap()
        .into_inner();
    let check_on_a = check(
        &mut checker_a,
        vec![key.check_at(disabled_at), key.check_at(Utc::now())],
    )
    .await;

    assert_eq!(disabled.id, session.id);
    assert_eq!(status_on_a.flagged, Some(false));
    assert!(status_on_a.session.is_none());
    assert!(check_on_a.iter().all(|result| !result.flagged));
}

#[tokio::test]
async fn check_flags_is_exact_at_every_edge_of_the_window() {
    let start = start_of_test_time();
    let clock = ManualClock::new(start);
    let system = manual_system(&clock, 10).await;
    let mut flags = system.flag_client(&system.gateway_token()).await;
    let mut checker = checker(&system).await;
    let expiring = Key::random();
    let disabled = Key::random();
    let expiring_session = enable(&mut flags, &expiring).await;
    let disabled_session = enable(&mut flags, &disabled).await;
    clock.advance(chrono::Duration::minutes(5));
    flags.disable_flagging(disabled.disable()).await.unwrap();
    let expires = start + chrono::Duration::minutes(20);
    let disabled_at = start + chrono::Duration::minutes(5);

    let cases = [
        (&expiring, start - MS, None),
        (&expiring, start - MICRO, None),
        (&expiring, start, Some(&expiring_session.id)),
        (&expiring, expires - MS, Some(&expiring_session.id)),
        (&expiring, expires - MICRO, Some(&expiring_session.id)),
        (&expiring, expires, None),
        (&expiring, expires + MS, None),
        (&disabled, start, Some(&disabled_session.id)),
        (&disabled, disabled_at - MICRO, Some(&disabled_session.id)),
        (&disabled, disabled_at, None),
        (&disabled, disabled_at + chrono::Duration::minutes(5), None),
        (&disabled, expires - MS, None),
        (&disabled, expires, None),
    ];
    let results = check(
        &mut checker,
        cases.iter().map(|(key, at, _)| key.check_at(*at)).collect(),
    )
    .await;

    assert_eq!(results.len(), cases.len());
    for ((key, at, expected), result) in cases.iter().zip(&results) {
        let label = if *key == &expiring {
            "expiring"
        } else {
            "disabled"
        };
        assert_eq!(
            result.flagged,
            expected.is_some(),
            "{label} key at {at}: {result:?}"
        );
        assert_eq!(
            result.flag_session_id,
            expected.cloned().unwrap_or_default(),
            "{label} key at {at}"
        );
    }
}

#[tokio::test]
async fn a_session_disabled_in_the_instant_it_began_does_not_hide_the_next_one() {
    let start = start_of_test_time();
    let clock = ManualClock::new(start);
    let system = manual_system(&clock, 10).await;
    let mut flags = system.flag_client(&system.gateway_token()).await;
    let mut checker = checker(&system).await;
    let key = Key::random();
    let empty = enable(&mut flags, &key).await;
    flags.disable_flagging(key.disable()).await.unwrap();

    let again = flags
        .enable_flagging(key.enable())
        .await
        .unwrap()
        .into_inner();
    let session = again.session.unwrap();
    let status = flags
        .get_flag_status(key.status())
        .await
        .unwrap()
        .into_inner();
    let results = check(&mut checker, vec![key.check_at(start)]).await;
    let disabled = flags
        .disable_flagging(key.disable())
        .await
        .unwrap()
        .into_inner();

    assert_eq!(again.created, Some(true));
    assert_ne!(session.id, empty.id);
    assert_eq!(
        from_timestamp(session.enabled_date_time.as_ref().unwrap()),
        start
    );
    assert_eq!(status.session.unwrap().id, session.id);
    assert_eq!(results[0].flag_session_id, session.id);
    assert_eq!(disabled.session.unwrap().id, session.id);
}

#[tokio::test]
async fn a_full_batch_of_ten_thousand_checks_is_answered_in_request_order() {
    let start = start_of_test_time();
    let clock = ManualClock::new(start);
    let system = manual_system(&clock, 10).await;
    let mut flags = system.flag_client(&system.gateway_token()).await;
    let mut checker = checker(&system).await;
    // Eight keys flagged over staggered windows, some cut short, and four never flagged.
    let mut windows = Vec::new();
    for index in 0..8 {
        let key = Key::random();
        let session = enable(&mut flags, &key).await;
        let enabled = clock.now();
        let mut ends = enabled + chrono::Duration::minutes(20);
        clock.advance(chrono::Duration::minutes(3));
        if index % 3 == 0 {
            flags.disable_flagging(key.disable()).await.unwrap();
            ends = clock.now();
        }
        windows.push((key, Some((session.id, enabled, ends))));
    }
    windows.extend((0..4).map(|_| (Key::random(), None)));
    // Times from before the first window to past most of them, in 15-second steps, visited in
    // an order that differs from both the key order and time order.
    let times: Vec<DateTime<Utc>> = (0..120)
        .map(|step| start - chrono::Duration::minutes(5) + chrono::Duration::seconds(15 * step))
        .collect();
    let mut checks = Vec::with_capacity(10_000);
    let mut expected = Vec::with_capacity(10_000);
    for item in 0..10_000_usize {
        let (key, window) = &windows[(item * 7 + item / 13) % windows.len()];
        let at = times[(item * 37 + item / 11) % times.len()];
        checks.push(key.check_at(at));
        expected.push(
            window
                .as_ref()
                .filter(|(_, enabled, ends)| *enabled <= at && at < *ends)
                .map(|(id, _, _)| id.clone()),
        );
    }
    assert!(expected.iter().filter(|id| id.is_some()).count() > 1_000);
    assert!(expected.iter().filter(|id| id.is_none()).count() > 1_000);

    let results = check(&mut checker, checks).await;

    assert_eq!(results.len(), 10_000);
    for (item, (result, expected)) in results.iter().zip(&expected).enumerate() {
        assert_eq!(result.flagged, expected.is_some(), "check {item}");
        assert_eq!(
            &result.flag_session_id,
            expected.as_ref().unwrap_or(&String::new()),
            "check {item}"
        );
    }
}

#[tokio::test]
async fn ten_thousand_checks_of_the_longest_ids_are_taken_and_one_more_is_refused() {
    let system = TestSystem::start().await;
    let mut checker = checker(&system).await;
    let key = Key {
        device: "d".repeat(256),
        browser: "b".repeat(256),
        ..Key::random()
    };
    let now = Utc::now();

    let full = check(&mut checker, vec![key.check_at(now); 10_000]).await;
    let refused = checker
        .check_flags(flag::CheckFlagsRequest {
            checks: vec![key.check_at(now); 10_001],
        })
        .await
        .unwrap_err();

    assert_eq!(full.len(), 10_000);
    assert!(full.iter().all(|result| !result.flagged));
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().starts_with("checks: at most 10000"),
        "{}",
        refused.message()
    );
}

/// One step of a random history, applied to the service and to [`Model`] alike.
#[derive(Debug, Clone)]
enum Step {
    Enable(usize),
    Disable(usize),
    Advance(chrono::Duration),
}

/// A session as the reference model sees it, with the id the service gave it.
#[derive(Debug, Clone)]
struct ModelSession {
    browser: usize,
    id: String,
    enabled: DateTime<Utc>,
    expires: DateTime<Utc>,
    disabled: Option<DateTime<Utc>>,
}

impl ModelSession {
    fn ends(&self) -> DateTime<Utc> {
        self.disabled
            .map_or(self.expires, |disabled| disabled.min(self.expires))
    }

    fn in_force_at(&self, at: DateTime<Utc>) -> bool {
        self.enabled <= at && at < self.ends()
    }
}

/// The rules of flag sessions, written as plainly as possible: one user, a few browsers.
#[derive(Debug, Default)]
struct Model {
    sessions: Vec<ModelSession>,
}

impl Model {
    fn in_force(&self, browser: usize, at: DateTime<Utc>) -> Option<&ModelSession> {
        self.sessions
            .iter()
            .find(|session| session.browser == browser && session.in_force_at(at))
    }

    fn enables_in_the_hour_before(&self, now: DateTime<Utc>) -> usize {
        self.sessions
            .iter()
            .filter(|session| session.enabled > now - chrono::Duration::hours(1))
            .count()
    }
}

const MODEL_TTL: chrono::Duration = chrono::Duration::minutes(20);
const MODEL_LIMIT: u32 = 4;
const MODEL_BROWSERS: usize = 2;

fn step_strategy() -> impl Strategy<Value = Step> {
    let advance = prop_oneof![
        Just(chrono::Duration::zero()),
        Just(MICRO),
        Just(chrono::Duration::minutes(1)),
        Just(chrono::Duration::minutes(19)),
        Just(MODEL_TTL),
        Just(chrono::Duration::minutes(61)),
        (0..3_600_000_000_i64).prop_map(chrono::Duration::microseconds),
    ];
    prop_oneof![
        3 => (0..MODEL_BROWSERS).prop_map(Step::Enable),
        2 => (0..MODEL_BROWSERS).prop_map(Step::Disable),
        3 => advance.prop_map(Step::Advance),
    ]
}

/// Plays `steps` on the service and on the model, comparing every answer, then asks CheckFlags
/// about every edge of every session and about `offsets` (microseconds from the case's start).
async fn play(
    clock: &ManualClock,
    flags: &mut FlagClient,
    checkers: &mut [FlagClient],
    steps: Vec<Step>,
    offsets: Vec<i64>,
) -> Result<(), TestCaseError> {
    let user = Key::random();
    let keys: Vec<Key> = (0..MODEL_BROWSERS)
        .map(|browser| with_browser(&user, format!("browser-{browser}")))
        .collect();
    let case_start = clock.now();
    let mut model = Model::default();
    for step in steps {
        let now = clock.now();
        match step {
            Step::Advance(by) => clock.advance(by),
            Step::Enable(browser) => {
                let answer = flags.enable_flagging(keys[browser].enable()).await;
                if let Some(active) = model.in_force(browser, now) {
                    let answer =
                        answer.map_err(|status| TestCaseError::fail(format!("{status:?}")))?;
                    prop_assert_eq!(answer.get_ref().created, Some(false));
                    prop_assert_eq!(&answer.get_ref().session.as_ref().unwrap().id, &active.id);
                } else if model.enables_in_the_hour_before(now) >= MODEL_LIMIT as usize {
                    let status = answer.err().ok_or_else(|| {
                        TestCaseError::fail("over the limit, yet a session was started")
                    })?;
                    prop_assert_eq!(status.code(), Code::ResourceExhausted);
                } else {
                    let answer = answer
                        .map_err(|status| TestCaseError::fail(format!("{status:?}")))?
                        .into_inner();
                    prop_assert_eq!(answer.created, Some(true));
                    let session = answer.session.unwrap();
                    prop_assert_eq!(
                        from_timestamp(session.enabled_date_time.as_ref().unwrap()),
                        now
                    );
                    model.sessions.push(ModelSession {
                        browser,
                        id: session.id,
                        enabled: now,
                        expires: now + MODEL_TTL,
                        disabled: None,
                    });
                }
            }
            Step::Disable(browser) => {
                let answer = flags
                    .disable_flagging(keys[browser].disable())
                    .await
                    .map_err(|status| TestCaseError::fail(format!("{status:?}")))?
                    .into_inner();
                let ended = model
                    .sessions
                    .iter_mut()
                    .find(|session| session.browser == browser && session.in_force_at(now));
                if let Some(ended) = ended {
                    ended.disabled = Some(now);
                    prop_assert_eq!(&answer.session.unwrap().id, &ended.id);
                } else {
                    // Not an error; the answer is the key's last session, if any (two may
                    // tie when one was disabled in the instant it began).
                    let last = model
                        .sessions
                        .iter()
                        .filter(|session| session.browser == browser && session.enabled <= now)
                        .map(|session| session.enabled)
                        .max();
                    let candidates: Vec<&str> = model
                        .sessions
                        .iter()
                        .filter(|session| {
                            session.browser == browser && Some(session.enabled) == last
                        })
                        .map(|session| session.id.as_str())
                        .collect();
                    match answer.session {
                        None => prop_assert!(candidates.is_empty()),
                        Some(session) => prop_assert!(
                            candidates.contains(&session.id.as_str()),
                            "{} not among {:?}",
                            session.id,
                            candidates
                        ),
                    }
                }
            }
        }
    }
    let mut times: Vec<DateTime<Utc>> = offsets
        .iter()
        .map(|offset| case_start + chrono::Duration::microseconds(*offset))
        .collect();
    for session in &model.sessions {
        for edge in [session.enabled, session.ends(), session.expires] {
            times.extend([edge - MICRO, edge, edge + MICRO]);
        }
    }
    let mut checks = Vec::new();
    let mut expected = Vec::new();
    for (browser, key) in keys.iter().enumerate() {
        for at in &times {
            checks.push(key.check_at(*at));
            expected.push(
                model
                    .in_force(browser, *at)
                    .map(|session| session.id.clone()),
            );
        }
    }
    for (replica, checker) in checkers.iter_mut().enumerate() {
        let results = checker
            .check_flags(flag::CheckFlagsRequest {
                checks: checks.clone(),
            })
            .await
            .map_err(|status| TestCaseError::fail(format!("replica {replica}: {status:?}")))?
            .into_inner()
            .results;
        prop_assert_eq!(results.len(), expected.len());
        for (result, expected) in results.iter().zip(&expected) {
            prop_assert_eq!(result.flagged, expected.is_some(), "replica {}", replica);
            prop_assert_eq!(
                result.flag_session_id.as_str(),
                expected.as_deref().unwrap_or_default(),
                "replica {}",
                replica
            );
        }
    }
    Ok(())
}

#[test]
fn random_histories_of_enable_disable_and_time_agree_with_a_reference_model() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let clock = ManualClock::new(start_of_test_time());
    let system = runtime.block_on(TestSystem::start_with(Options {
        clock: Some(clock.clone()),
        flag_ttl: MODEL_TTL.to_std().unwrap(),
        max_enables_per_hour: MODEL_LIMIT,
        ..Options::default()
    }));
    // Beside the default replica (the mirror for the last hour, the database before), one
    // whose mirror reaches back over the whole test and one without a mirror: all three must
    // give the model's answers.
    let year = Duration::from_secs(365 * 86_400);
    let replicas = runtime.block_on(async {
        let mut replicas = Vec::new();
        for horizon in [year, Duration::ZERO] {
            let mut config = signins_tests::flag_service_config(
                &system.database.url,
                &system.options,
                "127.0.0.1:0",
            );
            config.retention = 2 * year;
            config.flag_mirror_horizon = horizon;
            replicas.push(signins_tests::start_flag_service_with(config, &system.options).await);
        }
        replicas
    });
    let (flags, checkers) = runtime.block_on(async {
        let check_token = system.token("query-service", None, &[Role::FlaggingCheck]);
        let mut checkers = vec![checker(&system).await];
        for replica in &replicas {
            checkers.push(flag_client(replica.addr, &check_token).await);
        }
        (system.flag_client(&system.gateway_token()).await, checkers)
    });
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    });

    // Each case uses a user of its own; the shared clock only moves forward between cases.
    let result = runner.run(
        &(
            proptest::collection::vec(step_strategy(), 1..30),
            proptest::collection::vec(-3_600_000_000_i64..7_200_000_000, 0..12),
        ),
        |(steps, offsets)| {
            let (mut flags, mut checkers) = (flags.clone(), checkers.clone());
            runtime.block_on(play(&clock, &mut flags, &mut checkers, steps, offsets))
        },
    );

    drop(replicas);
    drop(system);
    result.unwrap();
}

#[tokio::test]
async fn returning_an_active_session_does_not_count_against_the_limit() {
    let system = TestSystem::start().await;
    let mut flags = system.flag_client(&system.gateway_token()).await;
    let key = Key::random();

    let repeats: Vec<_> = futures::future::join_all((0..15).map(|_| {
        let mut flags = flags.clone();
        let request = key.enable();
        async move { flags.enable_flagging(request).await.unwrap().into_inner() }
    }))
    .await;
    for browser in 1..10 {
        flags
            .enable_flagging(with_browser(&key, format!("other-{browser}")).enable())
            .await
            .unwrap();
    }
    let eleventh = flags
        .enable_flagging(with_browser(&key, "eleventh").enable())
        .await
        .unwrap_err();

    let created = repeats
        .iter()
        .filter(|answer| answer.created == Some(true))
        .count();
    assert_eq!(created, 1);
    assert_eq!(eleventh.code(), Code::ResourceExhausted);
}

#[tokio::test]
async fn the_limit_rolls_with_the_hour_and_retry_after_says_when() {
    let start = start_of_test_time();
    let clock = ManualClock::new(start);
    let system = manual_system(&clock, 10).await;
    let mut flags = system.flag_client(&system.gateway_token()).await;
    let key = Key::random();
    for browser in 0..10 {
        enable(&mut flags, &with_browser(&key, format!("b{browser}"))).await;
        clock.advance(chrono::Duration::minutes(1));
    }
    let next = with_browser(&key, "next");

    let refused = flags.enable_flagging(next.enable()).await.unwrap_err();
    clock.set(start + chrono::Duration::hours(1) - MICRO);
    let still_refused = flags.enable_flagging(next.enable()).await.unwrap_err();
    clock.set(start + chrono::Duration::hours(1));
    let allowed = flags
        .enable_flagging(next.enable())
        .await
        .unwrap()
        .into_inner();

    assert_eq!(refused.code(), Code::ResourceExhausted);
    // Ten sessions from minute 0 to 9; at minute 10 the first leaves the window in 50 minutes.
    assert_eq!(
        refused
            .metadata()
            .get("retry-after")
            .unwrap()
            .to_str()
            .unwrap(),
        "3000"
    );
    assert!(
        refused.message().contains("2026-03-01 10:00:00"),
        "{}",
        refused.message()
    );
    assert_eq!(still_refused.code(), Code::ResourceExhausted);
    assert_eq!(
        still_refused
            .metadata()
            .get("retry-after")
            .unwrap()
            .to_str()
            .unwrap(),
        "1"
    );
    assert_eq!(allowed.created, Some(true));
}

#[tokio::test]
async fn retention_deletes_sessions_ended_longer_ago_than_retention_and_keeps_the_rest() {
    let start = start_of_test_time();
    let clock = ManualClock::new(start);
    let system = manual_system(&clock, 10).await;
    let mut flags = system.flag_client(&system.gateway_token()).await;
    let expired_long_ago = Key::random();
    let disabled_long_ago = Key::random();
    let ended_recently = Key::random();
    let active = Key::random();
    enable(&mut flags, &expired_long_ago).await;
    enable(&mut flags, &disabled_long_ago).await;
    clock.advance(chrono::Duration::minutes(1));
    flags
        .disable_flagging(disabled_long_ago.disable())
        .await
        .unwrap();
    clock.set(start + chrono::Duration::days(1));
    enable(&mut flags, &ended_recently).await;
    clock.set(start + chrono::Duration::days(30) + chrono::Duration::minutes(21));
    enable(&mut flags, &active).await;
    // More old sessions than one retention statement deletes, so the batches are exercised.
    let database = system.database.connect().await;
    database
        .execute(
            "INSERT INTO flag.flag_sessions (tenant_id, id, user_id, device_id, browser_id,
                 enabled_at, expires_at, enabled_by)
             SELECT gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), '', 'bulk',
                 $1::timestamptz - make_interval(mins => n),
                 $1::timestamptz - make_interval(mins => n) + interval '20 minutes',
                 'gateway'
             FROM generate_series(1, 2500) AS n",
            &[&start],
        )
        .await
        .unwrap();
    let pool = signins_common::db::pool(&system.database.url, 2, None, &[]).unwrap();
    let flagging = Flagging::new(
        Store::new(pool),
        Arc::new(clock.clone()),
        FlaggingSettings {
            flag_ttl: Duration::from_secs(20 * 60),
            max_enables_per_hour: 10,
        },
    );

    let deleted = flagging
        .apply_retention(Duration::from_secs(30 * 86_400))
        .await
        .unwrap();

    assert_eq!(deleted, 2_502);
    let remaining: Vec<Uuid> = database
        .query(
            "SELECT user_id FROM flag.flag_sessions ORDER BY enabled_at",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(remaining, [ended_recently.user, active.user]);
}

#[tokio::test]
async fn sessions_record_who_enabled_and_disabled_them_and_the_trigger() {
    let system = TestSystem::start().await;
    let key = Key::random();
    let mut gateway = system.flag_client(&system.gateway_token()).await;
    let mut other_gateway = system
        .flag_client(&system.token("gateway-eu", None, &[Role::FlaggingWrite]))
        .await;
    let mut tenant_gateway = system
        .flag_client(&system.token("tenant-gw", Some(key.tenant), &[Role::FlaggingWrite]))
        .await;
    let occurred = timestamp(Utc.with_ymd_and_hms(2026, 3, 1, 8, 59, 30).unwrap());
    let trigger = flag::Trigger {
        error_code: 50126,
        request_id: "7e1f3c1a-0b7c-4d69-9a7c-2f4c6f0f1a01".into(),
        correlation_id: "c0ffee00-0000-4000-8000-000000000001".into(),
        app_id: "c44b4083-3bb0-49c1-b47d-974e53cbdf3c".into(),
        app_display_name: "Azure Portal".into(),
        ip_address: "203.0.113.7".into(),
        occurred_date_time: Some(occurred),
    };
    gateway
        .enable_flagging(flag::EnableFlaggingRequest {
            trigger: Some(trigger.clone()),
            ..key.enable()
        })
        .await
        .unwrap();
    other_gateway.disable_flagging(key.disable()).await.unwrap();
    let second = with_browser(&key, "second");
    tenant_gateway
        .enable_flagging(second.enable())
        .await
        .unwrap();
    let mut reader = system.flag_client(&system.reader_token(key.tenant)).await;

    let sessions = reader
        .list_flag_sessions(flag::ListFlagSessionsRequest {
            tenant_id: key.tenant.to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sessions;

    assert_eq!(sessions.len(), 2);
    let (newer, older) = (&sessions[0], &sessions[1]);
    assert_eq!(older.enabled_by, "gateway");
    assert_eq!(older.disabled_by, "gateway-eu");
    assert_eq!(older.state(), flag::FlagSessionState::Disabled);
    assert_eq!(older.trigger.as_ref(), Some(&trigger));
    assert_eq!(older.user_principal_name, "user@contoso.com");
    assert_eq!(newer.enabled_by, format!("tenant-gw@{}", key.tenant));
    assert_eq!(newer.disabled_by, "");
    assert!(newer.disabled_date_time.is_none());
}

#[tokio::test]
async fn listing_defaults_to_fifty_and_filters_by_user_and_active_only() {
    let start = start_of_test_time();
    let clock = ManualClock::new(start);
    let system = manual_system(&clock, 100).await;
    let mut flags = system.flag_client(&system.gateway_token()).await;
    let busy = Key::random();
    let other_user = Key {
        user: Uuid::new_v4(),
        ..busy.clone()
    };
    for index in 0..55 {
        let key = with_browser(&busy, format!("b{index:02}"));
        enable(&mut flags, &key).await;
        clock.advance(chrono::Duration::seconds(1));
        if index % 5 == 0 {
            flags.disable_flagging(key.disable()).await.unwrap();
        }
    }
    for index in 0..3 {
        enable(&mut flags, &with_browser(&other_user, format!("o{index}"))).await;
        clock.advance(chrono::Duration::seconds(1));
    }
    let mut reader = system.flag_client(&system.reader_token(busy.tenant)).await;
    let request = flag::ListFlagSessionsRequest {
        tenant_id: busy.tenant.to_string(),
        ..Default::default()
    };

    let first = reader
        .list_flag_sessions(request.clone())
        .await
        .unwrap()
        .into_inner();
    let rest = reader
        .list_flag_sessions(flag::ListFlagSessionsRequest {
            page_token: first.next_page_token.clone().unwrap(),
            ..request.clone()
        })
        .await
        .unwrap()
        .into_inner();
    let of_other_user = reader
        .list_flag_sessions(flag::ListFlagSessionsRequest {
            user_id: other_user.user.to_string(),
            ..request.clone()
        })
        .await
        .unwrap()
        .into_inner();
    let active_of_busy = reader
        .list_flag_sessions(flag::ListFlagSessionsRequest {
            user_id: busy.user.to_string(),
            active_only: true,
            page_size: 500,
            ..request.clone()
        })
        .await
        .unwrap()
        .into_inner();

    assert_eq!(first.sessions.len(), 50);
    assert_eq!(rest.sessions.len(), 8);
    assert!(rest.next_page_token.is_none());
    let all: Vec<_> = first.sessions.iter().chain(&rest.sessions).collect();
    let enabled: Vec<_> = all
        .iter()
        .map(|session| from_timestamp(session.enabled_date_time.as_ref().unwrap()))
        .collect();
    assert!(
        enabled.windows(2).all(|pair| pair[0] > pair[1]),
        "newest first"
    );
    assert_eq!(of_other_user.sessions.len(), 3);
    assert_eq!(active_of_busy.sessions.len(), 44);
    assert!(
        active_of_busy
            .sessions
            .iter()
            .all(|session| session.state() == flag::FlagSessionState::Active)
    );
}

/// A request and the field its one defect is in.
type Case<T> = (&'static str, T);

fn long(length: usize) -> String {
    "x".repeat(length)
}

#[tokio::test]
async fn each_invalid_field_is_refused_with_invalid_argument_naming_it() {
    let system = TestSystem::start().await;
    let mut flags = system.flag_client(&system.gateway_token()).await;
    let mut checker = checker(&system).await;
    let key = Key::random();
    let mut reader = system.flag_client(&system.reader_token(key.tenant)).await;
    let valid = key.enable();
    let valid_trigger = valid.trigger.clone().unwrap();
    let trigger = |change: fn(&mut flag::Trigger)| {
        let mut trigger = valid_trigger.clone();
        change(&mut trigger);
        flag::EnableFlaggingRequest {
            trigger: Some(trigger),
            ..valid.clone()
        }
    };
    let client = |device: String, browser: String| {
        Some(flag::Client {
            device_id: device,
            browser_id: browser,
        })
    };
    let enables: Vec<Case<flag::EnableFlaggingRequest>> = vec![
        (
            "tenantId: required",
            flag::EnableFlaggingRequest {
                tenant_id: String::new(),
                ..valid.clone()
            },
        ),
        (
            "tenantId: must be a GUID",
            flag::EnableFlaggingRequest {
                tenant_id: "contoso".into(),
                ..valid.clone()
            },
        ),
        (
            "userId: required",
            flag::EnableFlaggingRequest {
                user_id: String::new(),
                ..valid.clone()
            },
        ),
        (
            "userId: must be a GUID",
            flag::EnableFlaggingRequest {
                user_id: "1234".into(),
                ..valid.clone()
            },
        ),
        (
            "client.browserId: required",
            flag::EnableFlaggingRequest {
                client: None,
                ..valid.clone()
            },
        ),
        (
            "client.browserId: required",
            flag::EnableFlaggingRequest {
                client: client("d".into(), " ".into()),
                ..valid.clone()
            },
        ),
        (
            "client.browserId: at most 256 characters",
            flag::EnableFlaggingRequest {
                client: client("d".into(), long(257)),
                ..valid.clone()
            },
        ),
        (
            "client.deviceId: at most 256 characters",
            flag::EnableFlaggingRequest {
                client: client(long(257), "b".into()),
                ..valid.clone()
            },
        ),
        (
            "userPrincipalName: at most 256 characters",
            flag::EnableFlaggingRequest {
                user_principal_name: long(257),
                ..valid.clone()
            },
        ),
        (
            "trigger.requestId: at most 256 characters",
            trigger(|t| t.request_id = long(257)),
        ),
        (
            "trigger.correlationId: at most 256 characters",
            trigger(|t| t.correlation_id = long(257)),
        ),
        (
            "trigger.appId: at most 256 characters",
            trigger(|t| t.app_id = long(257)),
        ),
        (
            "trigger.appDisplayName: at most 256 characters",
            trigger(|t| t.app_display_name = long(257)),
        ),
        (
            "trigger.ipAddress: at most 256 characters",
            trigger(|t| t.ip_address = long(257)),
        ),
        (
            "trigger.occurredDateTime: nanos out of range",
            trigger(|t| {
                t.occurred_date_time = Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: -1,
                })
            }),
        ),
    ];
    for (expected, request) in enables {
        let refused = flags.enable_flagging(request).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{expected}");
        assert_eq!(refused.message(), expected);
    }

    let mut bad_disable = key.disable();
    bad_disable.tenant_id = "nope".into();
    let mut bad_status = key.status();
    bad_status.client = client(String::new(), String::new());
    let refused = [
        flags.disable_flagging(bad_disable).await.unwrap_err(),
        flags.get_flag_status(bad_status).await.unwrap_err(),
    ];
    assert_eq!(refused[0].message(), "tenantId: must be a GUID");
    assert_eq!(refused[1].message(), "client.browserId: required");
    assert!(
        refused
            .iter()
            .all(|status| status.code() == Code::InvalidArgument)
    );

    let now = Utc::now();
    let check_cases: Vec<Case<Vec<flag::FlagCheck>>> = vec![
        (
            "checks[1].userId: must be a GUID",
            vec![
                key.check_at(now),
                flag::FlagCheck {
                    user_id: "x".into(),
                    ..key.check_at(now)
                },
            ],
        ),
        (
            "checks[0].at: required",
            vec![flag::FlagCheck {
                at: None,
                ..key.check_at(now)
            }],
        ),
        (
            "checks[2].client.browserId: required",
            vec![
                key.check_at(now),
                key.check_at(now),
                flag::FlagCheck {
                    client: None,
                    ..key.check_at(now)
                },
            ],
        ),
        (
            "checks[0].client.deviceId: at most 256 characters",
            vec![flag::FlagCheck {
                client: client(long(257), "b".into()),
                ..key.check_at(now)
            }],
        ),
    ];
    for (expected, checks) in check_cases {
        let refused = checker
            .check_flags(flag::CheckFlagsRequest { checks })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{expected}");
        assert_eq!(refused.message(), expected);
    }

    let list = flag::ListFlagSessionsRequest {
        tenant_id: key.tenant.to_string(),
        ..Default::default()
    };
    let list_cases: Vec<Case<flag::ListFlagSessionsRequest>> = vec![
        (
            "tenantId: required",
            flag::ListFlagSessionsRequest {
                tenant_id: String::new(),
                ..list.clone()
            },
        ),
        (
            "userId: must be a GUID",
            flag::ListFlagSessionsRequest {
                user_id: "me".into(),
                ..list.clone()
            },
        ),
        (
            "pageSize: must not be negative",
            flag::ListFlagSessionsRequest {
                page_size: -1,
                ..list.clone()
            },
        ),
        (
            "pageSize: at most 500",
            flag::ListFlagSessionsRequest {
                page_size: 501,
                ..list.clone()
            },
        ),
        (
            "pageToken: not a token this service issued",
            flag::ListFlagSessionsRequest {
                page_token: "garbage".into(),
                ..list.clone()
            },
        ),
    ];
    for (expected, request) in list_cases {
        let refused = reader.list_flag_sessions(request).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{expected}");
        assert_eq!(refused.message(), expected);
    }
}

#[tokio::test]
async fn the_longest_allowed_ids_and_an_unregistered_device_are_accepted() {
    let system = TestSystem::start().await;
    let mut flags = system.flag_client(&system.gateway_token()).await;
    let longest = Key {
        device: "é".repeat(256),
        browser: "b".repeat(256),
        ..Key::random()
    };
    let unregistered = Key {
        device: String::new(),
        ..Key::random()
    };

    let longest_session = enable(&mut flags, &longest).await;
    let unregistered_session = enable(&mut flags, &unregistered).await;
    let no_trigger = flags
        .enable_flagging(flag::EnableFlaggingRequest {
            trigger: None,
            user_principal_name: String::new(),
            ..Key::random().enable()
        })
        .await
        .unwrap()
        .into_inner();

    assert_eq!(longest_session.client.unwrap().device_id, longest.device);
    assert_eq!(unregistered_session.client.unwrap().device_id, "");
    assert_eq!(no_trigger.created, Some(true));
    assert!(no_trigger.session.unwrap().trigger.is_none());
}

#[tokio::test]
async fn a_replica_whose_mirror_overflows_still_answers_exactly() {
    let system = TestSystem::start().await;
    let mut config =
        signins_tests::flag_service_config(&system.database.url, &system.options, "127.0.0.1:0");
    config.flag_mirror_max_sessions = 5;
    let small = signins_tests::start_flag_service_with(config, &system.options).await;
    let mut flags = system.flag_client(&system.gateway_token()).await;
    let mut small_checker = flag_client(
        small.addr,
        &system.token("query-service", None, &[Role::FlaggingCheck]),
    )
    .await;
    let keys: Vec<Key> = (0..8).map(|_| Key::random()).collect();
    let unflagged = Key::random();
    assert!(!check(&mut small_checker, vec![unflagged.check_at(Utc::now())]).await[0].flagged);

    // Eight new sessions, more than the small mirror holds, all read by its next catch-up.
    let mut sessions = Vec::new();
    for key in &keys {
        sessions.push(enable(&mut flags, key).await);
    }
    let now = Utc::now();
    let mut checks: Vec<_> = keys.iter().map(|key| key.check_at(now)).collect();
    checks.push(unflagged.check_at(now));
    let results = check(&mut small_checker, checks).await;

    for (result, session) in results.iter().zip(&sessions) {
        assert!(result.flagged);
        assert_eq!(result.flag_session_id, session.id);
    }
    assert!(!results[8].flagged);
}
