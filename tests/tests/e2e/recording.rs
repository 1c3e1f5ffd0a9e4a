//! query-service's ingestion: idempotency, validation, streaming, degraded mode.

use chrono::Utc;
use signins_tests::{Key, Options, TestSystem, eventually, query, start_flag_service, timestamp};
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
async fn an_id_sent_again_with_another_time_is_a_second_event_and_get_answers_the_first() {
    // The log's key is (tenant, createdDateTime, id): a partitioned table's keys hold its
    // partition key. A retry resends the same event; an id reused with another time is
    // stored as what it claims to be, and GetSignIn still answers (the earliest), never an
    // error.
    let system = TestSystem::start().await;
    let key = Key::random();
    let mut gateway = system.query_client(&system.gateway_token()).await;
    let mut reader = system.query_client(&system.reader_token(key.tenant)).await;
    let first = key.sign_in_at(
        Utc::now() - chrono::Duration::minutes(3),
        "user@contoso.com",
        50126,
    );
    let mut reused = first.clone();
    reused.created_date_time = Some(timestamp(Utc::now()));

    let counts = gateway
        .record_sign_ins(query::RecordSignInsRequest {
            sign_ins: vec![first.clone(), reused],
        })
        .await
        .unwrap()
        .into_inner();
    let got = reader
        .get_sign_in(query::GetSignInRequest {
            id: first.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();

    assert_eq!((counts.recorded, counts.duplicates), (2, 0));
    // Stored to the microsecond, as PostgreSQL keeps it.
    let micros = |time: Option<prost_types::Timestamp>| time.map(|t| (t.seconds, t.nanos / 1_000));
    assert_eq!(
        micros(got.created_date_time),
        micros(first.created_date_time)
    );
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
    let events: Vec<_> = (0..10_000)
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

    assert_eq!((first.recorded, first.duplicates), (10_000, 0));
    assert_eq!((again.recorded, again.duplicates), (0, 10_000));
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

#[tokio::test]
async fn partitions_for_the_days_ahead_exist_after_start() {
    let system = TestSystem::start().await;
    let client = system.database.connect().await;

    let partitions: Vec<String> = client
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'query.sign_ins'::regclass ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();

    let today = Utc::now().date_naive();
    for offset in -1..=3 {
        let day = today + chrono::Duration::days(offset);
        let name = format!("sign_ins_p{}", day.format("%Y%m%d"));
        assert!(
            partitions.contains(&name),
            "{name} missing from {partitions:?}"
        );
    }
}

#[tokio::test]
async fn retention_drops_whole_partitions_past_the_retention_period() {
    let system = TestSystem::start().await;
    let mut gateway = system.query_client(&system.gateway_token()).await;
    let key = Key::random();
    let old = key.sign_in_at(
        Utc::now() - chrono::Duration::days(40),
        "user@contoso.com",
        0,
    );
    let recent = key.sign_in_at(
        Utc::now() - chrono::Duration::days(2),
        "user@contoso.com",
        0,
    );
    gateway
        .record_sign_ins(query::RecordSignInsRequest {
            sign_ins: vec![old.clone(), recent.clone()],
        })
        .await
        .unwrap();

    // A replica started with the default 30-day retention maintains partitions at start-up.
    let options = Options {
        retention: Duration::from_secs(30 * 86_400),
        ..Options::default()
    };
    let replica =
        signins_tests::start_query_service(&system.database.url, &system.flag.url(), &options)
            .await;

    let client = system.database.connect().await;
    let stored: Vec<String> = client
        .query("SELECT id::text FROM query.sign_ins", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let old_partition = format!(
        "query.sign_ins_p{}",
        (Utc::now() - chrono::Duration::days(40)).format("%Y%m%d")
    );
    let exists: Option<String> = client
        .query_one("SELECT to_regclass($1)::text", &[&old_partition])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, vec![recent.id]);
    assert_eq!(exists, None);

    let mut replica_gateway = signins_tests::query_client(replica.addr, &gateway_token()).await;
    let refused = replica_gateway
        .record_sign_ins(query::RecordSignInsRequest {
            sign_ins: vec![old],
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused
            .message()
            .starts_with("signIns[0].createdDateTime: older than the retention period"),
        "{}",
        refused.message()
    );
}

#[tokio::test]
async fn every_catalogued_error_code_gets_its_failure_reason_and_outcome() {
    let system = TestSystem::start().await;
    let mut gateway = system.query_client(&system.gateway_token()).await;
    let mut reader = system
        .query_client(&system.reader_token(Key::random().tenant))
        .await;
    let key = Key::random();
    let mut reader_of_key = system.query_client(&system.reader_token(key.tenant)).await;
    let catalogue = query_service::domain::sign_in_errors::CATALOGUE;
    let events: Vec<_> = catalogue
        .iter()
        .map(|entry| key.sign_in_at(Utc::now(), "user@contoso.com", entry.code))
        .collect();

    gateway
        .record_sign_ins(query::RecordSignInsRequest {
            sign_ins: events.clone(),
        })
        .await
        .unwrap();

    assert!(catalogue.len() >= 40);
    for (event, entry) in events.iter().zip(catalogue) {
        let stored = reader_of_key
            .get_sign_in(query::GetSignInRequest {
                id: event.id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        let status = stored.status.unwrap();
        let expected_outcome = match entry.outcome {
            query_service::domain::sign_in_errors::SignInOutcome::Success => "success",
            query_service::domain::sign_in_errors::SignInOutcome::Failure => "failure",
            query_service::domain::sign_in_errors::SignInOutcome::Interrupted => "interrupted",
        };
        assert_eq!(
            status.outcome.as_deref(),
            Some(expected_outcome),
            "code {}",
            entry.code
        );
        if entry.code == 0 {
            assert_eq!(status.failure_reason, None);
        } else {
            assert_eq!(
                status.failure_reason.as_deref(),
                Some(entry.failure_reason),
                "code {}",
                entry.code
            );
            assert!(status.additional_details.is_some(), "code {}", entry.code);
        }
    }
    // Another tenant's reader finds none of them.
    let other = reader
        .list_sign_ins(query::ListSignInsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(other.sign_ins.is_empty());
}
