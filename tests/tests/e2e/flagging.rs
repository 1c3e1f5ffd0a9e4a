//! flag-service through its gRPC API: sessions, idempotency, history and expiry.

use chrono::{TimeZone, Utc};
use signins_common::auth::Role;
use signins_common::clock::ManualClock;
use signins_tests::{Key, Options, TestSystem, flag, from_timestamp, query};
use std::time::Duration;
use tonic::Code;

#[tokio::test]
async fn enabling_starts_an_active_session_that_expires_after_the_ttl() {
    let system = TestSystem::start().await;
    let mut flags = system.flag_client(&system.gateway_token()).await;
    let key = Key::random();

    let response = flags
        .enable_flagging(key.enable())
        .await
        .unwrap()
        .into_inner();

    assert_eq!(response.created, Some(true));
    let session = response.session.unwrap();
    assert_eq!(session.state(), flag::FlagSessionState::Active);
    let enabled = from_timestamp(session.enabled_date_time.as_ref().unwrap());
    let expires = from_timestamp(session.expires_date_time.as_ref().unwrap());
    assert_eq!(expires - enabled, chrono::Duration::minutes(20));
    assert_eq!(session.enabled_by, "gateway");
    assert_eq!(session.trigger.unwrap().error_code, 50126);
}

#[tokio::test]
async fn enabling_again_while_active_returns_the_same_session_unchanged() {
    let system = TestSystem::start().await;
    let mut flags = system.flag_client(&system.gateway_token()).await;
    let key = Key::random();

    let first = flags
        .enable_flagging(key.enable())
        .await
        .unwrap()
        .into_inner();
    let second = flags
        .enable_flagging(key.enable())
        .await
        .unwrap()
        .into_inner();

    assert_eq!(second.created, Some(false));
    assert_eq!(
        second.session.as_ref().unwrap().id,
        first.session.as_ref().unwrap().id
    );
    assert_eq!(
        second.session.unwrap().expires_date_time,
        first.session.unwrap().expires_date_time
    );
}

#[tokio::test]
async fn concurrent_enables_of_one_key_yield_one_session() {
    let system = TestSystem::start().await;
    let flags = system.flag_client(&system.gateway_token()).await;
    let key = Key::random();

    let calls = (0..20).map(|_| {
        let mut flags = flags.clone();
        let request = key.enable();
        async move { flags.enable_flagging(request).await.unwrap().into_inner() }
    });
    let answers = futures::future::join_all(calls).await;

    let ids: std::collections::HashSet<_> = answers
        .iter()
        .map(|answer| answer.session.as_ref().unwrap().id.clone())
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(
        answers
            .iter()
            .filter(|answer| answer.created == Some(true))
            .count(),
        1
    );
}

#[tokio::test]
async fn disabling_ends_the_session_now_and_twice_is_not_an_error() {
    let system = TestSystem::start().await;
    let mut flags = system.flag_client(&system.gateway_token()).await;
    let key = Key::random();
    let enabled = flags
        .enable_flagging(key.enable())
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();

    let disabled = flags
        .disable_flagging(key.disable())
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    let again = flags
        .disable_flagging(key.disable())
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    let status = flags
        .get_flag_status(key.status())
        .await
        .unwrap()
        .into_inner();

    assert_eq!(disabled.id, enabled.id);
    assert_eq!(disabled.state(), flag::FlagSessionState::Disabled);
    assert!(disabled.disabled_date_time.is_some());
    assert_eq!(again.id, enabled.id);
    assert_eq!(status.flagged, Some(false));
    assert!(status.session.is_none());
}

#[tokio::test]
async fn status_reports_the_active_session_and_its_remaining_time() {
    let system = TestSystem::start().await;
    let mut flags = system.flag_client(&system.gateway_token()).await;
    let key = Key::random();
    flags.enable_flagging(key.enable()).await.unwrap();

    let status = flags
        .get_flag_status(key.status())
        .await
        .unwrap()
        .into_inner();

    assert_eq!(status.flagged, Some(true));
    let remaining = status.remaining.unwrap();
    assert!(
        remaining.seconds > 19 * 60 && remaining.seconds <= 20 * 60,
        "remaining {remaining:?}"
    );
}

#[tokio::test]
async fn check_flags_answers_for_any_time_with_a_half_open_window() {
    let start = Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap();
    let clock = ManualClock::new(start);
    let system = TestSystem::start_with(Options {
        clock: Some(clock.clone()),
        ..Options::default()
    })
    .await;
    let mut flags = system.flag_client(&system.gateway_token()).await;
    let mut checker = system
        .flag_client(&system.token("query-service", None, &[Role::FlaggingCheck]))
        .await;
    let key = Key::random();
    let session = flags
        .enable_flagging(key.enable())
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    let expires = start + chrono::Duration::minutes(20);
    clock.advance(chrono::Duration::minutes(5));
    flags.disable_flagging(key.disable()).await.unwrap();
    let disabled = start + chrono::Duration::minutes(5);
    let ms = chrono::Duration::milliseconds(1);

    let times = [
        start - ms,
        start,
        disabled - ms,
        disabled,
        expires - ms,
        expires,
    ];
    let results = checker
        .check_flags(flag::CheckFlagsRequest {
            checks: times.iter().map(|at| key.check_at(*at)).collect(),
        })
        .await
        .unwrap()
        .into_inner()
        .results;

    let flagged: Vec<bool> = results.iter().map(|result| result.flagged).collect();
    assert_eq!(flagged, [false, true, true, false, false, false]);
    assert_eq!(results[1].flag_session_id, session.id);
    assert_eq!(results[0].flag_session_id, "");
}

#[tokio::test]
async fn an_expired_session_is_over_without_any_job_running() {
    let start = Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap();
    let clock = ManualClock::new(start);
    let system = TestSystem::start_with(Options {
        clock: Some(clock.clone()),
        ..Options::default()
    })
    .await;
    let mut flags = system.flag_client(&system.gateway_token()).await;
    let key = Key::random();
    let first = flags
        .enable_flagging(key.enable())
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();

    clock.advance(chrono::Duration::minutes(20));
    let status = flags
        .get_flag_status(key.status())
        .await
        .unwrap()
        .into_inner();
    let again = flags
        .enable_flagging(key.enable())
        .await
        .unwrap()
        .into_inner();

    assert_eq!(status.flagged, Some(false));
    assert_eq!(again.created, Some(true));
    assert_ne!(again.session.unwrap().id, first.id);
}

#[tokio::test]
async fn a_short_ttl_expires_in_real_time() {
    let system = TestSystem::start_with(Options {
        flag_ttl: Duration::from_secs(2),
        ..Options::default()
    })
    .await;
    let key = Key::random();
    let mut flags = system.flag_client(&system.gateway_token()).await;
    let mut gateway = system.query_client(&system.gateway_token()).await;
    let reader = system.query_client(&system.reader_token(key.tenant)).await;
    let session = flags
        .enable_flagging(key.enable())
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    let during = key.sign_in_at(Utc::now(), "user@contoso.com", 50126);
    gateway
        .record_sign_ins(query::RecordSignInsRequest {
            sign_ins: vec![during.clone()],
        })
        .await
        .unwrap();
    let status_during = flags
        .get_flag_status(key.status())
        .await
        .unwrap()
        .into_inner();

    // The one real wait in the suite: end-to-end expiry with --flag-ttl 2s.
    tokio::time::sleep(Duration::from_millis(2_100)).await;

    let after = key.sign_in_at(Utc::now(), "user@contoso.com", 50126);
    gateway
        .record_sign_ins(query::RecordSignInsRequest {
            sign_ins: vec![after.clone()],
        })
        .await
        .unwrap();
    let status_after = flags
        .get_flag_status(key.status())
        .await
        .unwrap()
        .into_inner();
    let stored = |id: String| {
        let mut reader = reader.clone();
        async move {
            reader
                .get_sign_in(query::GetSignInRequest { id })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let stored_during = stored(during.id).await;
    let stored_after = stored(after.id).await;

    let enabled = from_timestamp(session.enabled_date_time.as_ref().unwrap());
    let expires = from_timestamp(session.expires_date_time.as_ref().unwrap());
    assert_eq!(expires - enabled, chrono::Duration::seconds(2));
    assert_eq!(status_during.flagged, Some(true));
    assert_eq!(stored_during.flagged_for_review, Some(true));
    assert_eq!(stored_during.flag_session_id, Some(session.id));
    assert_eq!(status_after.flagged, Some(false));
    assert_eq!(stored_after.flagged_for_review, Some(false));
    assert_eq!(stored_after.flag_session_id, None);
}

#[tokio::test]
async fn the_eleventh_new_session_of_a_user_within_an_hour_is_refused() {
    let system = TestSystem::start().await;
    let mut flags = system.flag_client(&system.gateway_token()).await;
    let key = Key::random();
    for browser in 0..10 {
        let key = Key {
            browser: format!("browser-{browser}"),
            ..key.clone()
        };
        flags.enable_flagging(key.enable()).await.unwrap();
    }

    let refused = flags
        .enable_flagging(
            Key {
                browser: "browser-10".into(),
                ..key.clone()
            }
            .enable(),
        )
        .await
        .unwrap_err();
    let same_key_again = flags
        .enable_flagging(
            Key {
                browser: "browser-3".into(),
                ..key.clone()
            }
            .enable(),
        )
        .await;
    let other_user = flags
        .enable_flagging(
            Key {
                user: uuid::Uuid::new_v4(),
                ..key.clone()
            }
            .enable(),
        )
        .await;

    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().contains("retry after"),
        "{}",
        refused.message()
    );
    assert!(refused.metadata().get("retry-after").is_some());
    assert_eq!(same_key_again.unwrap().into_inner().created, Some(false));
    assert_eq!(other_user.unwrap().into_inner().created, Some(true));
}

#[tokio::test]
async fn invalid_flag_keys_are_refused_naming_the_field() {
    let system = TestSystem::start().await;
    let mut flags = system.flag_client(&system.gateway_token()).await;
    let mut request = Key::random().enable();
    request.user_id = "not-a-guid".into();

    let refused = flags.enable_flagging(request).await.unwrap_err();

    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(refused.message(), "userId: must be a GUID");
}

#[tokio::test]
async fn list_flag_sessions_is_newest_first_paged_and_tenant_scoped() {
    let system = TestSystem::start().await;
    let mut flags = system.flag_client(&system.gateway_token()).await;
    let key = Key::random();
    for browser in 0..3 {
        flags
            .enable_flagging(
                Key {
                    browser: format!("b{browser}"),
                    ..key.clone()
                }
                .enable(),
            )
            .await
            .unwrap();
    }
    let mut reader = system.flag_client(&system.reader_token(key.tenant)).await;

    let first = reader
        .list_flag_sessions(flag::ListFlagSessionsRequest {
            tenant_id: key.tenant.to_string(),
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let second = reader
        .list_flag_sessions(flag::ListFlagSessionsRequest {
            tenant_id: key.tenant.to_string(),
            page_size: 2,
            page_token: first.next_page_token.clone().unwrap(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let other_tenant = reader
        .list_flag_sessions(flag::ListFlagSessionsRequest {
            tenant_id: uuid::Uuid::new_v4().to_string(),
            ..Default::default()
        })
        .await
        .unwrap_err();

    let browsers: Vec<_> = first
        .sessions
        .iter()
        .chain(&second.sessions)
        .map(|s| s.client.clone().unwrap().browser_id)
        .collect();
    assert_eq!(browsers, ["b2", "b1", "b0"]);
    assert!(second.next_page_token.is_none());
    assert_eq!(other_tenant.code(), Code::PermissionDenied);
}
