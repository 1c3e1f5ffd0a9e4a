//! TLS end to end: both services serving with certificates from a CA made for the test,
//! query-service asking flag-service over https with `--flag-service-ca`, clients that trust
//! the CA, and mutual TLS.

use crate::pki::{TempDir, TestCa};
use chrono::Utc;
use signins_common::tls::TlsArgs;
use signins_tests::{
    Key, Options, SECRET, TestSystem, flag_client_on, query, query_client_on, tls_channel,
};
use std::time::Duration;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// Enables flagging for a key and records one of its sign-ins through `flag` and `query`
/// channels, then reads it back as a reader: the whole flow, enrichment included.
async fn flag_record_and_read(
    system: &TestSystem,
    flag: tonic::transport::Channel,
    query: tonic::transport::Channel,
) -> query::SignIn {
    let key = Key::random();
    let gateway = system.gateway_token();
    flag_client_on(flag, &gateway)
        .enable_flagging(key.enable())
        .await
        .expect("enable over TLS");
    let sign_in = key.sign_in_at(Utc::now(), "user@contoso.com", 50126);
    let id = sign_in.id.clone();
    query_client_on(query.clone(), &gateway)
        .record_sign_ins(query::RecordSignInsRequest {
            sign_ins: vec![sign_in],
        })
        .await
        .expect("record over TLS");
    query_client_on(query, &system.reader_token(key.tenant))
        .get_sign_in(query::GetSignInRequest { id })
        .await
        .expect("read over TLS")
        .into_inner()
}

#[tokio::test]
async fn query_service_asks_flag_service_over_tls_and_clients_trusting_the_ca_get_answers() {
    let dir = TempDir::new();
    let ca = TestCa::new(&dir, "test");
    let flag_cert = ca.server(&dir, "flag-service");
    let query_cert = ca.server(&dir, "query-service");
    let system = TestSystem::start_custom(
        Options::default(),
        signins_common::auth::TokenMinter::hs256(SECRET, "signins", "signins"),
        |flag| flag.tls = TlsArgs::files(&flag_cert.cert, &flag_cert.key),
        |query| {
            query.tls = TlsArgs::files(&query_cert.cert, &query_cert.key);
            query.flag_service_tls.flag_service_ca = Some(ca.cert.clone());
        },
    )
    .await;
    assert!(system.flag.url().starts_with("https://"));
    let flag = tls_channel(&system.flag.url(), ca.cert_pem.as_bytes(), None)
        .await
        .expect("TLS to flag-service");
    // By name as well as by address: the certificate carries both.
    let query_url = format!("https://localhost:{}", system.query.addr.port());
    let query = tls_channel(&query_url, ca.cert_pem.as_bytes(), None)
        .await
        .expect("TLS to query-service");

    let stored = flag_record_and_read(&system, flag, query.clone()).await;
    let health = HealthClient::new(query)
        .check(HealthCheckRequest::default())
        .await;

    assert_eq!(stored.flagged_for_review, Some(true), "{stored:?}");
    assert_eq!(stored.flag_check_pending, Some(false));
    assert!(health.is_ok(), "health over TLS needs no token: {health:?}");
}

#[tokio::test]
async fn a_tls_service_refuses_plain_text_and_clients_that_do_not_trust_its_ca() {
    let dir = TempDir::new();
    let ca = TestCa::new(&dir, "right");
    let stranger = TestCa::new(&dir, "wrong");
    let cert = ca.server(&dir, "flag-service");
    let system = TestSystem::start_custom(
        Options::default(),
        signins_common::auth::TokenMinter::hs256(SECRET, "signins", "signins"),
        |flag| flag.tls = TlsArgs::files(&cert.cert, &cert.key),
        |_| {},
    )
    .await;

    let plain = async {
        let channel =
            tonic::transport::Channel::from_shared(format!("http://{}", system.flag.addr))
                .unwrap()
                .connect_timeout(Duration::from_secs(5))
                .connect()
                .await?;
        HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .map_err(|status| status.into())
            .map(|_| ())
    };
    let plain: Result<(), Box<dyn std::error::Error>> =
        tokio::time::timeout(Duration::from_secs(10), plain)
            .await
            .expect("a plain-text attempt ends, it does not hang");
    let untrusted = tls_channel(&system.flag.url(), stranger.cert_pem.as_bytes(), None).await;

    assert!(plain.is_err(), "plain text reached a TLS-only service");
    assert!(
        untrusted.is_err(),
        "a certificate from another CA was trusted"
    );
}

#[tokio::test]
async fn with_mutual_tls_flag_service_takes_only_clients_with_a_certificate_and_query_service_has_one()
 {
    let dir = TempDir::new();
    let ca = TestCa::new(&dir, "test");
    let flag_cert = ca.server(&dir, "flag-service");
    let query_identity = ca.client(&dir, "query-service-client");
    let gateway_identity = ca.client(&dir, "gateway-client");
    let system = TestSystem::start_custom(
        Options::default(),
        signins_common::auth::TokenMinter::hs256(SECRET, "signins", "signins"),
        |flag| {
            flag.tls = TlsArgs::files(&flag_cert.cert, &flag_cert.key);
            flag.tls.tls_client_ca = Some(ca.cert.clone());
        },
        |query| {
            query.flag_service_tls.flag_service_ca = Some(ca.cert.clone());
            query.flag_service_tls.flag_service_client_cert = Some(query_identity.cert.clone());
            query.flag_service_tls.flag_service_client_key = Some(query_identity.key.clone());
        },
    )
    .await;

    let anonymous = async {
        let channel = tls_channel(&system.flag.url(), ca.cert_pem.as_bytes(), None).await?;
        HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .map_err(Box::<dyn std::error::Error>::from)
            .map(|_| ())
    }
    .await;
    let flag = tls_channel(
        &system.flag.url(),
        ca.cert_pem.as_bytes(),
        Some((
            gateway_identity.cert_pem.as_bytes(),
            gateway_identity.key_pem.as_bytes(),
        )),
    )
    .await
    .expect("mutual TLS with a client certificate");
    let query = TestSystem::channel(system.query.addr).await;
    let stored = flag_record_and_read(&system, flag, query).await;

    assert!(
        anonymous.is_err(),
        "a client without a certificate got through"
    );
    assert_eq!(stored.flagged_for_review, Some(true), "{stored:?}");
}

#[tokio::test]
async fn a_service_whose_certificate_cannot_be_read_or_used_refuses_to_start_saying_why() {
    let dir = TempDir::new();
    let ca = TestCa::new(&dir, "test");
    let cert = ca.server(&dir, "flag-service");
    let other = ca.server(&dir, "other");
    // Start-up checks TLS before it touches the database, so none is needed here.
    let config = |tls: TlsArgs| {
        let mut config = flag_service::Config::new("postgres://nobody@127.0.0.1:1/none", SECRET);
        config.tls = tls;
        config
    };

    let missing = flag_service::Application::build(config(TlsArgs::files(
        &dir.path().join("absent.pem"),
        &cert.key,
    )))
    .await
    .err()
    .map(|error| error.to_string());
    let mismatched =
        flag_service::Application::build(config(TlsArgs::files(&cert.cert, &other.key)))
            .await
            .err()
            .map(|error| error.to_string());

    let missing = missing.expect("a missing certificate stops start-up");
    assert!(
        missing.contains("--tls-cert") && missing.contains("absent.pem"),
        "{missing}"
    );
    let mismatched = mismatched.expect("a key of another certificate stops start-up");
    assert!(
        mismatched.contains("--tls-cert and --tls-key"),
        "{mismatched}"
    );
}
