//! query-service's ingestion: idempotency, validation, streaming, degraded mode.

use chrono::Utc;
use signins_tests::{Key, Options, TestSystem, eventually, query, start_flag_service};
use std::time::Duration;
use tonic::Code;

#[tokio::test]
async fn the_same_batch_twice_is_stored_once() {
    let system = TestSystem::start().await;
    let mut gateway = system.query_client(&system.gateway_token()).await;
    let key = Key::random();
    let batch: Vec<_> = (0..25)
        .map(|_| key.sign_in_at(Utc::now(), "user@contoso.com", 50126))
        .collect();

    let first = gateway
        .record_sign_ins(query::RecordSignInsRequest {
            sign_ins: batch.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let second = gateway
        .record_sign_ins(query::RecordSignInsRequest { sign_ins: batch })
        .await
        .unwrap()
        .into_inner();

    assert_eq!((first.recorded, first.duplicates), (25, 0));
    assert_eq!((second.recorded, second.duplicates), (0, 25));
    let stored: i64 = system
        .database
        .connect()
        .await
        .query_one("SELECT count(*) FROM query.sign_ins", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 25);
}

#[tokio::test]
async fn a_batch_with_one_invalid_event_is_rejected_whole() {
    let system = TestSystem::start().await;
    let mut gateway = system.query_client(&system.gateway_token()).await;
    let key = Key::random();
    let mut batch: Vec<_> = (0..3)
        .map(|_| key.sign_in_at(Utc::now(), "user@contoso.com", 0))
        .collect();
    batch[1].user_id = "oops".into();

    let refused = gateway
        .record_sign_ins(query::RecordSignInsRequest { sign_ins: batch })
        .await
        .unwrap_err();

    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(refused.message(), "signIns[1].userId: must be a GUID");
    let stored: i64 = system
        .database
        .connect()
        .await
        .query_one("SELECT count(*) FROM query.sign_ins", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn more_than_a_thousand_events_in_one_call_are_refused() {
    let system = TestSystem::start().await;
    let mut gateway = system.query_client(&system.gateway_token()).await;
    let key = Key::random();
    let batch: Vec<_> = (0..1001)
        .map(|_| key.sign_in_at(Utc::now(), "user@contoso.com", 0))
        .collect();

    let refused = gateway
        .record_sign_ins(query::RecordSignInsRequest { sign_ins: batch })
        .await
        .unwrap_err();

    assert_eq!(refused.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn a_stream_of_events_is_stored_once_and_counted() {
    let system = TestSystem::start().await;
    let mut gateway = system.query_client(&system.gateway_token()).await;
    let key = Key::random();
    let events: Vec<_> = (0..1_200)
        .map(|_| key.sign_in_at(Utc::now(), "user@contoso.com", 0))
        .collect();

    let first = gateway
        .stream_sign_ins(futures::stream::iter(events.clone()))
        .await
        .unwrap()
        .into_inner();
    let again = gateway
        .stream_sign_ins(futures::stream::iter(events))
        .await
        .unwrap()
        .into_inner();

    assert_eq!((first.recorded, first.duplicates), (1_200, 0));
    assert_eq!((again.recorded, again.duplicates), (0, 1_200));
}

#[tokio::test]
async fn while_flag_service_is_away_events_are_stored_pending_and_resolved_when_it_returns() {
    let options = Options {
        flag_check_timeout: Duration::from_millis(500),
        ..Options::default()
    };
    let system = TestSystem::start_with(options.clone()).await;
    let flag_addr = system.flag.addr;
    let mut flags = system.flag_client(&system.gateway_token()).await;
    let key = Key::random();
    flags.enable_flagging(key.enable()).await.unwrap();
    let TestSystem {
        flag,
        query: query_service,
        database,
        ..
    } = system;
    flag.stop().await;

    let mut gateway = signins_tests::query_client(query_service.addr, &gateway_token()).await;
    let event = key.sign_in_at(Utc::now(), "user@contoso.com", 50126);
    let response = gateway
        .record_sign_ins(query::RecordSignInsRequest {
            sign_ins: vec![event.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.recorded, 1);
    let mut reader =
        signins_tests::query_client(query_service.addr, &reader_token(key.tenant)).await;
    let pending = reader
        .get_sign_in(query::GetSignInRequest {
            id: event.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pending.flag_check_pending, Some(true));

    let _flag_again = start_flag_service(&database.url, &options, &flag_addr.to_string()).await;
    let resolved = eventually(Duration::from_secs(10), || {
        let mut reader = reader.clone();
        let id = event.id.clone();
        async move {
            let sign_in = reader
                .get_sign_in(query::GetSignInRequest { id })
                .await
                .ok()?
                .into_inner();
            (sign_in.flag_check_pending == Some(false)).then_some(sign_in)
        }
    })
    .await
    .expect("resolved within 10 s");

    assert_eq!(resolved.flagged_for_review, Some(true));
    let stored: i64 = database
        .connect()
        .await
        .query_one("SELECT count(*) FROM query.sign_ins", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 1);
}

fn gateway_token() -> String {
    signins_common::auth::TokenMinter::hs256(signins_tests::SECRET, "signins", "signins")
        .mint(
            "gateway",
            None,
            &[signins_common::auth::Role::SignInLogsWrite],
            Duration::from_secs(600),
        )
        .unwrap()
}

fn reader_token(tenant: uuid::Uuid) -> String {
    signins_common::auth::TokenMinter::hs256(signins_tests::SECRET, "signins", "signins")
        .mint(
            "admin",
            Some(tenant),
            &[signins_common::auth::Role::GlobalReader],
            Duration::from_secs(600),
        )
        .unwrap()
}
