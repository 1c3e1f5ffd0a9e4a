//! What operators meet: health, reflection, tokens, start-up migrations.

use signins_common::auth::Role;
use signins_tests::{
    Options, TestDatabase, TestSystem, query, start_flag_service, start_query_service,
};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

#[tokio::test]
async fn both_services_report_serving_without_a_token() {
    let system = TestSystem::start().await;
    for (addr, service) in [
        (system.flag.addr, "signins.flag.v1.FlagService"),
        (system.query.addr, "signins.query.v1.SignInService"),
    ] {
        let mut health = HealthClient::new(TestSystem::channel(addr).await);
        let status = signins_tests::eventually(std::time::Duration::from_secs(5), || {
            let mut health = health.clone();
            async move {
                let status = health
                    .check(HealthCheckRequest {
                        service: service.into(),
                    })
                    .await
                    .ok()?
                    .into_inner()
                    .status();
                (status == ServingStatus::Serving).then_some(status)
            }
        })
        .await;
        assert_eq!(status, Some(ServingStatus::Serving), "{service}");
        let overall = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(overall.status(), ServingStatus::Serving);
    }
}

#[tokio::test]
async fn calls_without_a_valid_token_or_role_are_refused() {
    let system = TestSystem::start().await;
    let tenant = uuid::Uuid::new_v4();
    let request = || query::ListSignInsRequest::default();

    let no_token = system
        .query_client("")
        .await
        .list_sign_ins(request())
        .await
        .unwrap_err();
    let bad_signature =
        signins_common::auth::TokenMinter::hs256("another-secret", "signins", "signins")
            .mint(
                "admin",
                Some(tenant),
                &[Role::GlobalReader],
                std::time::Duration::from_secs(60),
            )
            .unwrap();
    let forged = system
        .query_client(&bad_signature)
        .await
        .list_sign_ins(request())
        .await
        .unwrap_err();
    let gateway_reads = system
        .query_client(&system.gateway_token())
        .await
        .list_sign_ins(request())
        .await
        .unwrap_err();
    let reader_writes = system
        .query_client(&system.reader_token(tenant))
        .await
        .record_sign_ins(query::RecordSignInsRequest::default())
        .await
        .unwrap_err();

    assert_eq!(no_token.code(), Code::Unauthenticated);
    assert_eq!(forged.code(), Code::Unauthenticated);
    assert!(!forged.message().contains(&bad_signature));
    assert_eq!(gateway_reads.code(), Code::PermissionDenied);
    assert_eq!(reader_writes.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn replicas_of_both_services_starting_at_once_on_one_database_migrate_cleanly() {
    let database = TestDatabase::create().await;
    let options = Options::default();

    // query-service connects to flag-service lazily, so all four can start together.
    let flag_url = "http://127.0.0.1:9";
    let (flag_a, flag_b, query_a, query_b) = tokio::join!(
        start_flag_service(&database.url, &options, "127.0.0.1:0"),
        start_flag_service(&database.url, &options, "127.0.0.1:0"),
        start_query_service(&database.url, flag_url, &options),
        start_query_service(&database.url, flag_url, &options)
    );

    let client = database.connect().await;
    let expected = [
        ("flag", flag_service::store::MIGRATIONS.len()),
        ("query", query_service::store::MIGRATIONS.len()),
    ];
    for (schema, migrations) in expected {
        let versions: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM {schema}.schema_migrations"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(versions, i64::try_from(migrations).unwrap(), "{schema}");
    }
    for running in [flag_a, flag_b, query_a, query_b] {
        running.stop().await;
    }
}

#[tokio::test]
async fn a_bad_filter_is_invalid_argument_with_a_position() {
    let system = TestSystem::start().await;
    let mut reader = system
        .query_client(&system.reader_token(uuid::Uuid::new_v4()))
        .await;

    let refused = reader
        .list_sign_ins(query::ListSignInsRequest {
            filter: "flaggedForReview eq".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();

    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("position"),
        "{}",
        refused.message()
    );
}

#[tokio::test]
async fn only_an_unreachable_database_counts_as_unavailable_not_a_query_that_went_wrong() {
    use signins_common::db::is_connection_error;
    let database = TestDatabase::create().await;
    let client = database.connect().await;
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    let no_row = client
        .query_one("SELECT 1 WHERE false", &[])
        .await
        .unwrap_err();
    let wrong_type = client
        .query_one("SELECT 'text'::text", &[])
        .await
        .unwrap()
        .try_get::<_, i32>(0)
        .unwrap_err();
    let refused = tokio_postgres::connect(
        &format!("postgres://postgres@127.0.0.1:{closed_port}/postgres"),
        tokio_postgres::NoTls,
    )
    .await
    .err()
    .expect("nothing listens on a port just released");

    assert!(!is_connection_error(&no_row), "{no_row}");
    assert!(!is_connection_error(&wrong_type), "{wrong_type}");
    assert!(is_connection_error(&refused), "{refused}");
}
