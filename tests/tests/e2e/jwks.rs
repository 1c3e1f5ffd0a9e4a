//! Production keys: both services verifying RS256 or ES256 tokens from a JWKS file, and
//! query-service signing its own credential with a key file whose public half is in that JWKS,
//! so enrichment still flags what it should. Also what start-up says when key material is
//! missing.

use crate::pki::{self, TempDir};
use chrono::Utc;
use signins_common::auth::{AuthArgs, Role, SigningKey, TokenMinter};
use signins_tests::{Key, Options, SECRET, TestSystem, eventually, query};
use tonic::Code;

/// A system whose services trust only `jwks` keys: the identity provider's key signs the
/// tests' tokens, query-service signs its own with `service_key`.
async fn start_with_keys(idp_pem: &str, service_pem: &str, dir: &TempDir) -> TestSystem {
    let idp = SigningKey::from_pem(idp_pem.as_bytes(), Some("idp-key-1")).expect("IdP key");
    let service_key_file = dir.write("query-service-key.pem", service_pem);
    let service = SigningKey::load(&service_key_file, None).expect("query-service key");
    let jwks = serde_json::json!({ "keys": [idp.public_jwk(), service.public_jwk()] });
    let jwks_file = dir.write("jwks.json", jwks.to_string());
    TestSystem::start_custom(
        Options::default(),
        TokenMinter::with_key(&idp, "signins", "signins"),
        |flag| flag.auth = AuthArgs::with_jwks_file(&jwks_file),
        |query| {
            query.auth = AuthArgs::with_jwks_file(&jwks_file);
            query.service_key.service_key_file = Some(service_key_file.clone());
            query.page_token_secret = Some("page-token-secret-for-tests".into());
        },
    )
    .await
}

/// Flags a key, records one of its sign-ins, and returns it as a reader sees it.
async fn flagged_sign_in(system: &TestSystem) -> query::SignIn {
    let key = Key::random();
    let gateway = system.gateway_token();
    system
        .flag_client(&gateway)
        .await
        .enable_flagging(key.enable())
        .await
        .expect("enable with a JWKS-verified token");
    let sign_in = key.sign_in_at(Utc::now(), "user@contoso.com", 50126);
    let id = sign_in.id.clone();
    system
        .query_client(&gateway)
        .await
        .record_sign_ins(query::RecordSignInsRequest {
            sign_ins: vec![sign_in],
        })
        .await
        .expect("record with a JWKS-verified token");
    system
        .query_client(&system.reader_token(key.tenant))
        .await
        .get_sign_in(query::GetSignInRequest { id })
        .await
        .expect("read with a JWKS-verified token")
        .into_inner()
}

#[tokio::test]
async fn with_es256_keys_from_a_jwks_flagged_sign_ins_are_still_flagged() {
    let dir = TempDir::new();
    let system = start_with_keys(&pki::es256_pem(), &pki::es256_pem(), &dir).await;

    let stored = flagged_sign_in(&system).await;

    assert_eq!(stored.flagged_for_review, Some(true), "{stored:?}");
    assert_eq!(stored.flag_check_pending, Some(false));
}

#[tokio::test]
async fn with_rs256_keys_from_a_jwks_flagged_sign_ins_are_still_flagged() {
    let dir = TempDir::new();
    let system = start_with_keys(&pki::rs256_pem(), &pki::rs256_pem(), &dir).await;

    let stored = flagged_sign_in(&system).await;

    assert_eq!(stored.flagged_for_review, Some(true), "{stored:?}");
    assert_eq!(stored.flag_check_pending, Some(false));
}

#[tokio::test]
async fn a_service_verifying_by_jwks_refuses_hs256_and_keys_it_does_not_know() {
    let dir = TempDir::new();
    let system = start_with_keys(&pki::es256_pem(), &pki::es256_pem(), &dir).await;
    let tenant = uuid::Uuid::new_v4();
    let hs256 = TokenMinter::hs256(SECRET, "signins", "signins")
        .mint(
            "admin",
            Some(tenant),
            &[Role::GlobalReader],
            std::time::Duration::from_secs(60),
        )
        .unwrap();
    let unknown_key = SigningKey::from_pem(pki::es256_pem().as_bytes(), Some("idp-key-1")).unwrap();
    let impostor = TokenMinter::with_key(&unknown_key, "signins", "signins")
        .mint(
            "admin",
            Some(tenant),
            &[Role::GlobalReader],
            std::time::Duration::from_secs(60),
        )
        .unwrap();

    for (token, says) in [
        (hs256, "HS256 is not accepted"),
        (impostor, "signature is invalid"),
    ] {
        let refused = system
            .query_client(&token)
            .await
            .list_sign_ins(query::ListSignInsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated);
        assert!(refused.message().contains(says), "{}", refused.message());
    }
}

#[tokio::test]
async fn a_key_added_to_the_jwks_file_is_accepted_without_a_restart_and_a_withdrawn_one_refused() {
    let dir = TempDir::new();
    let current = SigningKey::from_pem(pki::es256_pem().as_bytes(), Some("idp-key-1")).unwrap();
    let next = SigningKey::from_pem(pki::rs256_pem().as_bytes(), Some("idp-key-2")).unwrap();
    // query-service's own key stays published throughout, so enrichment keeps working.
    let service_key_file = dir.write("query-service-key.pem", pki::es256_pem());
    let service = SigningKey::load(&service_key_file, None).expect("query-service key");
    let write = |keys: &[&SigningKey]| {
        let mut published: Vec<_> = keys.iter().map(|key| key.public_jwk()).collect();
        published.push(service.public_jwk());
        let jwks = serde_json::json!({ "keys": published });
        dir.write("jwks.json", jwks.to_string())
    };
    let jwks_file = write(&[&current]);
    let reloading = || {
        let mut auth = AuthArgs::with_jwks_file(&jwks_file);
        auth.jwt_jwks_reload = std::time::Duration::from_millis(100);
        auth
    };
    let system = TestSystem::start_custom(
        Options::default(),
        TokenMinter::with_key(&current, "signins", "signins"),
        |flag| flag.auth = reloading(),
        |query| {
            query.auth = reloading();
            query.service_key.service_key_file = Some(service_key_file.clone());
            query.page_token_secret = Some("page-token-secret-for-tests".into());
        },
    )
    .await;
    let reader = |key: &SigningKey| {
        TokenMinter::with_key(key, "signins", "signins")
            .mint(
                "admin",
                Some(uuid::Uuid::new_v4()),
                &[Role::GlobalReader],
                std::time::Duration::from_secs(60),
            )
            .unwrap()
    };
    let list = async |token: &str| {
        system
            .query_client(token)
            .await
            .list_sign_ins(query::ListSignInsRequest::default())
            .await
            .map(|_| ())
            .map_err(|status| status.code())
    };
    assert_eq!(list(&reader(&current)).await, Ok(()));
    assert_eq!(list(&reader(&next)).await, Err(Code::Unauthenticated));

    // Rotation: the next key is published, later the current one withdrawn. Each must take
    // effect within a few reload intervals.
    write(&[&current, &next]);
    let accepted = eventually(std::time::Duration::from_secs(5), || async {
        list(&reader(&next)).await.ok()
    })
    .await;
    assert!(
        accepted.is_some(),
        "the published key was not accepted within 5 s"
    );
    assert_eq!(list(&reader(&current)).await, Ok(()));

    write(&[&next]);
    let refused = eventually(std::time::Duration::from_secs(5), || async {
        (list(&reader(&current)).await == Err(Code::Unauthenticated)).then_some(())
    })
    .await;
    assert!(
        refused.is_some(),
        "the withdrawn key was still accepted after 5 s"
    );
    assert_eq!(list(&reader(&next)).await, Ok(()));
}

/// Builds query-service with `edit` applied; start-up checks keys before it touches the
/// database, so none is needed.
async fn query_service_start_up_error(edit: impl FnOnce(&mut query_service::Config)) -> String {
    let mut config = query_service::Config::new(
        "postgres://nobody@127.0.0.1:1/none",
        "http://127.0.0.1:9",
        SECRET,
    );
    edit(&mut config);
    query_service::Application::build(config)
        .await
        .expect_err("start-up is refused")
        .to_string()
}

#[tokio::test]
async fn a_service_without_key_material_refuses_to_start_saying_what_to_set() {
    let dir = TempDir::new();
    let jwks_file = dir.write(
        "jwks.json",
        serde_json::json!({ "keys": [SigningKey::from_pem(pki::es256_pem().as_bytes(), None).unwrap().public_jwk()] })
            .to_string(),
    );
    let mut flag_config = flag_service::Config::new("postgres://nobody@127.0.0.1:1/none", SECRET);
    flag_config.auth.jwt_secret = None;

    let flag_error = flag_service::Application::build(flag_config)
        .await
        .err()
        .map(|error| error.to_string());
    let no_keys = query_service_start_up_error(|config| config.auth.jwt_secret = None).await;
    let no_service_key = query_service_start_up_error(|config| {
        config.auth = AuthArgs::with_jwks_file(&jwks_file);
        config.page_token_secret = Some("s".into());
    })
    .await;
    let no_page_token_key = query_service_start_up_error(|config| {
        config.auth = AuthArgs::with_jwks_file(&jwks_file);
        config.service_key.service_key_file = Some(dir.write("k.pem", pki::es256_pem()));
    })
    .await;
    let bad_jwks = query_service_start_up_error(|config| {
        config.auth = AuthArgs::with_jwks_file(&dir.write("bad.json", "{\"keys\": 3}"));
    })
    .await;

    let flag_error = flag_error.expect("flag-service without keys is refused");
    for message in [&flag_error, &no_keys] {
        assert!(
            message.contains("--jwt-jwks-file") && message.contains("--jwt-secret"),
            "{message}"
        );
    }
    assert!(
        no_service_key.contains("--service-key-file"),
        "{no_service_key}"
    );
    assert!(
        no_page_token_key.contains("--page-token-secret"),
        "{no_page_token_key}"
    );
    assert!(
        bad_jwks.contains("bad.json") && bad_jwks.contains("not a usable JWKS"),
        "{bad_jwks}"
    );
}
