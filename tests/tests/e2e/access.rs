//! Who may call what. The matrix calls every RPC of both services as every kind of caller and
//! expects the code that the services' own `ACCESS` tables (the ones the auth layer enforces)
//! imply, so the table, the layer and this test cannot drift apart; `docs/security.md` is
//! checked against the same tables. Least-privilege stories follow as sentences.

use chrono::Utc;
use prost::Message;
use signins_common::auth::{AccessRule, Role, TokenMinter, access_table_markdown};
use signins_tests::{Key, Options, SECRET, TestSystem, flag, query};
use std::collections::BTreeSet;
use std::time::Duration;
use tonic::Code;
use uuid::Uuid;

/// Every RPC of both services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rpc {
    EnableFlagging,
    DisableFlagging,
    GetFlagStatus,
    CheckFlags,
    ListFlagSessions,
    RecordSignIns,
    StreamSignIns,
    ListSignIns,
    GetSignIn,
    WatchSignIns,
}

impl Rpc {
    const ALL: [Rpc; 10] = [
        Rpc::EnableFlagging,
        Rpc::DisableFlagging,
        Rpc::GetFlagStatus,
        Rpc::CheckFlags,
        Rpc::ListFlagSessions,
        Rpc::RecordSignIns,
        Rpc::StreamSignIns,
        Rpc::ListSignIns,
        Rpc::GetSignIn,
        Rpc::WatchSignIns,
    ];

    fn path(self) -> String {
        let (service, method) = match self {
            Rpc::EnableFlagging => ("signins.flag.v1.FlagService", "EnableFlagging"),
            Rpc::DisableFlagging => ("signins.flag.v1.FlagService", "DisableFlagging"),
            Rpc::GetFlagStatus => ("signins.flag.v1.FlagService", "GetFlagStatus"),
            Rpc::CheckFlags => ("signins.flag.v1.FlagService", "CheckFlags"),
            Rpc::ListFlagSessions => ("signins.flag.v1.FlagService", "ListFlagSessions"),
            Rpc::RecordSignIns => ("signins.query.v1.SignInService", "RecordSignIns"),
            Rpc::StreamSignIns => ("signins.query.v1.SignInService", "StreamSignIns"),
            Rpc::ListSignIns => ("signins.query.v1.SignInService", "ListSignIns"),
            Rpc::GetSignIn => ("signins.query.v1.SignInService", "GetSignIn"),
            Rpc::WatchSignIns => ("signins.query.v1.SignInService", "WatchSignIns"),
        };
        format!("/{service}/{method}")
    }

    /// The rule the service's auth layer applies to this RPC: read from its `ACCESS` table.
    fn rule(self) -> AccessRule {
        let path = self.path();
        flag_service::api::ACCESS
            .iter()
            .chain(query_service::api::ACCESS)
            .find(|(entry, _)| *entry == path)
            .map(|(_, rule)| *rule)
            .unwrap_or_else(|| panic!("{path} is missing from the ACCESS tables"))
    }

    /// Whether the request names a tenant, so that a caller of another tenant is refused
    /// outright rather than shown nothing.
    fn names_a_tenant(self) -> bool {
        !matches!(self, Rpc::ListSignIns | Rpc::GetSignIn | Rpc::WatchSignIns)
    }
}

/// Who calls.
#[derive(Debug, Clone, Copy)]
enum Caller {
    NoToken,
    BadSignature,
    Expired,
    WrongAudience,
    /// A token of the tenant with exactly this role.
    Role(Role),
    /// A token of the tenant with none of the roles: a signed-in user.
    PlainUser,
    /// A caller the table lets in, whose token belongs to another tenant (`None`: plain user).
    OtherTenant(Option<Role>),
}

/// The outcome a cell of the matrix expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Unauthenticated,
    PermissionDenied,
    /// Past authorization: success or any code but UNAUTHENTICATED and PERMISSION_DENIED.
    Allowed,
    NotFound,
    /// Answers, with none of the tenant's sign-ins.
    SeesNothing,
}

/// The tenant's data the calls refer to.
struct Fixture {
    key: Key,
    sign_in_id: String,
}

fn roles_of(rule: AccessRule) -> &'static [Role] {
    match rule {
        AccessRule::AnySignedIn => &Role::ALL,
        AccessRule::AnyOf(roles) | AccessRule::AnyOfOrPlainUser(roles) => roles,
    }
}

/// Whether the table lets a token of the tenant with exactly `roles` in: the rule's meaning
/// spelled out here again, rather than calling the layer's own `AccessRule::allows`, so a bug
/// there cannot hide behind agreeing with itself.
fn table_allows(rule: AccessRule, roles: &[Role]) -> bool {
    let plain_user = roles.is_empty();
    match rule {
        AccessRule::AnySignedIn => true,
        AccessRule::AnyOf(allowed) => roles.iter().any(|role| allowed.contains(role)),
        AccessRule::AnyOfOrPlainUser(allowed) => {
            plain_user || roles.iter().any(|role| allowed.contains(role))
        }
    }
}

fn expected(rpc: Rpc, caller: Caller) -> Expect {
    let by_table = |roles: &[Role]| {
        if table_allows(rpc.rule(), roles) {
            Expect::Allowed
        } else {
            Expect::PermissionDenied
        }
    };
    match caller {
        Caller::NoToken | Caller::BadSignature | Caller::Expired | Caller::WrongAudience => {
            Expect::Unauthenticated
        }
        Caller::Role(role) => by_table(&[role]),
        Caller::PlainUser => by_table(&[]),
        Caller::OtherTenant(_) if rpc.names_a_tenant() => Expect::PermissionDenied,
        Caller::OtherTenant(_) => match rpc {
            Rpc::GetSignIn => Expect::NotFound,
            Rpc::ListSignIns => Expect::SeesNothing,
            _ => Expect::Allowed,
        },
    }
}

/// The callers of one RPC: the four broken tokens, each role, a plain user, and each caller
/// the table lets in, from another tenant.
fn callers(rpc: Rpc) -> Vec<Caller> {
    let mut callers = vec![
        Caller::NoToken,
        Caller::BadSignature,
        Caller::Expired,
        Caller::WrongAudience,
    ];
    callers.extend(Role::ALL.into_iter().map(Caller::Role));
    callers.push(Caller::PlainUser);
    callers.extend(
        roles_of(rpc.rule())
            .iter()
            .map(|role| Caller::OtherTenant(Some(*role))),
    );
    if matches!(
        rpc.rule(),
        AccessRule::AnyOfOrPlainUser(_) | AccessRule::AnySignedIn
    ) {
        callers.push(Caller::OtherTenant(None));
    }
    callers
}

fn token(system: &TestSystem, caller: Caller, fixture: &Fixture) -> String {
    let tenant = fixture.key.tenant;
    let user = fixture.key.user.to_string();
    let every_role: Vec<Role> = Role::ALL.to_vec();
    let with_all_roles = |claims: &mut signins_common::auth::Claims| {
        claims.tid = Some(tenant.to_string());
        claims.roles = every_role
            .iter()
            .map(|role| role.claim().to_owned())
            .collect();
    };
    match caller {
        Caller::NoToken => String::new(),
        Caller::BadSignature => {
            let forger = TokenMinter::hs256("not-the-secret", "signins", "signins");
            forger
                .mint(&user, Some(tenant), &every_role, Duration::from_secs(600))
                .expect("mint")
        }
        Caller::Expired => system.signed(&user, |claims| {
            with_all_roles(claims);
            let now = Utc::now().timestamp();
            claims.nbf = Some(now - 3_600);
            claims.exp = now - 600;
        }),
        Caller::WrongAudience => system.signed(&user, |claims| {
            with_all_roles(claims);
            claims.aud = "another-api".into();
        }),
        Caller::Role(role) => system.token(&user, Some(tenant), &[role]),
        Caller::PlainUser => system.token(&user, Some(tenant), &[]),
        Caller::OtherTenant(role) => {
            let roles: Vec<Role> = role.into_iter().collect();
            system.token(&user, Some(Uuid::new_v4()), &roles)
        }
    }
}

/// Calls `rpc` with a minimal valid request; `Ok` carries how many sign-ins it showed.
async fn call(
    system: &TestSystem,
    rpc: Rpc,
    token: &str,
    fixture: &Fixture,
) -> Result<usize, tonic::Status> {
    let key = &fixture.key;
    match rpc {
        Rpc::EnableFlagging => {
            let mut client = system.flag_client(token).await;
            client.enable_flagging(key.enable()).await.map(|_| 0)
        }
        Rpc::DisableFlagging => {
            let mut client = system.flag_client(token).await;
            client.disable_flagging(key.disable()).await.map(|_| 0)
        }
        Rpc::GetFlagStatus => {
            let mut client = system.flag_client(token).await;
            client.get_flag_status(key.status()).await.map(|_| 0)
        }
        Rpc::CheckFlags => {
            let mut client = system.flag_client(token).await;
            let request = flag::CheckFlagsRequest {
                checks: vec![key.check_at(Utc::now())],
            };
            client.check_flags(request).await.map(|_| 0)
        }
        Rpc::ListFlagSessions => {
            let mut client = system.flag_client(token).await;
            let request = flag::ListFlagSessionsRequest {
                tenant_id: key.tenant.to_string(),
                ..Default::default()
            };
            client.list_flag_sessions(request).await.map(|_| 0)
        }
        Rpc::RecordSignIns => {
            let mut client = system.query_client(token).await;
            let request = query::RecordSignInsRequest {
                sign_ins: vec![key.sign_in_at(Utc::now(), "user@contoso.com", 50126)],
            };
            client.record_sign_ins(request).await.map(|_| 0)
        }
        Rpc::StreamSignIns => {
            let mut client = system.query_client(token).await;
            let events = vec![key.sign_in_at(Utc::now(), "user@contoso.com", 50126)];
            client
                .stream_sign_ins(tokio_stream::iter(events))
                .await
                .map(|_| 0)
        }
        Rpc::ListSignIns => {
            let mut client = system.query_client(token).await;
            client
                .list_sign_ins(query::ListSignInsRequest::default())
                .await
                .map(|response| response.into_inner().sign_ins.len())
        }
        Rpc::GetSignIn => {
            let mut client = system.query_client(token).await;
            let request = query::GetSignInRequest {
                id: fixture.sign_in_id.clone(),
            };
            client.get_sign_in(request).await.map(|_| 1)
        }
        Rpc::WatchSignIns => {
            let mut client = system.query_client(token).await;
            client
                .watch_sign_ins(query::WatchSignInsRequest::default())
                .await
                .map(|_| 0)
        }
    }
}

fn meets(expect: Expect, outcome: &Result<usize, tonic::Status>) -> bool {
    match (expect, outcome) {
        (Expect::Allowed, Ok(_)) => true,
        (Expect::Allowed, Err(status)) => !matches!(
            status.code(),
            Code::Unauthenticated | Code::PermissionDenied
        ),
        (Expect::SeesNothing, Ok(seen)) => *seen == 0,
        (Expect::Unauthenticated, Err(status)) => status.code() == Code::Unauthenticated,
        (Expect::PermissionDenied, Err(status)) => status.code() == Code::PermissionDenied,
        (Expect::NotFound, Err(status)) => status.code() == Code::NotFound,
        _ => false,
    }
}

/// The RPCs the contracts declare, read from the descriptor set the services serve.
fn declared_rpcs() -> BTreeSet<String> {
    let set = prost_types::FileDescriptorSet::decode(signins_proto::FILE_DESCRIPTOR_SET)
        .expect("descriptor set");
    set.file
        .iter()
        .flat_map(|file| {
            file.service.iter().flat_map(move |service| {
                service.method.iter().map(move |method| {
                    format!("/{}.{}/{}", file.package(), service.name(), method.name())
                })
            })
        })
        .collect()
}

#[test]
fn the_access_tables_cover_exactly_the_rpcs_the_contracts_declare() {
    let tabled: BTreeSet<String> = flag_service::api::ACCESS
        .iter()
        .chain(query_service::api::ACCESS)
        .map(|(path, _)| (*path).to_owned())
        .collect();
    let matrix: BTreeSet<String> = Rpc::ALL.iter().map(|rpc| rpc.path()).collect();

    assert_eq!(tabled, declared_rpcs());
    assert_eq!(matrix, tabled);
}

const DOCS_BEGIN: &str =
    "<!-- access-table:begin (generated from ACCESS; checked by tests/tests/e2e/access.rs) -->\n";
const DOCS_END: &str = "<!-- access-table:end -->";

#[test]
fn docs_security_md_shows_the_access_tables_the_services_enforce() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/security.md");
    let docs = std::fs::read_to_string(path).expect("read docs/security.md");
    let rendered = access_table_markdown(&[flag_service::api::ACCESS, query_service::api::ACCESS]);

    let section = docs
        .split_once(DOCS_BEGIN)
        .and_then(|(_, rest)| rest.split_once(DOCS_END))
        .map(|(section, _)| section);

    assert_eq!(
        section,
        Some(rendered.as_str()),
        "docs/security.md's access table differs from the ACCESS tables; replace the lines between its markers with:\n{rendered}"
    );
}

#[tokio::test]
async fn every_rpc_answers_every_kind_of_caller_as_the_access_table_says() {
    let system = TestSystem::start_with(Options {
        max_enables_per_hour: 1_000,
        ..Default::default()
    })
    .await;
    let key = Key::random();
    let sign_in = key.sign_in_at(Utc::now(), "user@contoso.com", 50126);
    let sign_in_id = sign_in.id.clone();
    system
        .query_client(&system.gateway_token())
        .await
        .record_sign_ins(query::RecordSignInsRequest {
            sign_ins: vec![sign_in],
        })
        .await
        .expect("record the fixture sign-in");
    let fixture = Fixture { key, sign_in_id };

    let mut cells = 0;
    let mut mismatches = Vec::new();
    for rpc in Rpc::ALL {
        for caller in callers(rpc) {
            let expect = expected(rpc, caller);
            let outcome = call(&system, rpc, &token(&system, caller, &fixture), &fixture).await;
            cells += 1;
            if !meets(expect, &outcome) {
                let got = match &outcome {
                    Ok(seen) => format!("OK ({seen} sign-ins)"),
                    Err(status) => format!("{:?}: {}", status.code(), status.message()),
                };
                mismatches.push(format!(
                    "{rpc:?} as {caller:?}: expected {expect:?}, got {got}"
                ));
            }
        }
    }

    // 10 RPCs × (4 broken tokens + 11 roles + a plain user + each allowed caller of another tenant).
    assert!(cells >= 10 * 16, "{cells} cells");
    assert!(
        mismatches.is_empty(),
        "{} of {cells} cells differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[tokio::test]
async fn a_gateway_cannot_read_sign_ins_or_flag_sessions() {
    let system = TestSystem::start().await;
    let gateway = system.gateway_token();
    let tenant = Uuid::new_v4();
    let mut query_client = system.query_client(&gateway).await;
    let mut flag_client = system.flag_client(&gateway).await;

    let list = query_client
        .list_sign_ins(query::ListSignInsRequest::default())
        .await;
    let get = query_client
        .get_sign_in(query::GetSignInRequest {
            id: Uuid::new_v4().to_string(),
        })
        .await;
    let watch = query_client
        .watch_sign_ins(query::WatchSignInsRequest::default())
        .await;
    let sessions = flag_client
        .list_flag_sessions(flag::ListFlagSessionsRequest {
            tenant_id: tenant.to_string(),
            ..Default::default()
        })
        .await;

    assert_eq!(list.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(get.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(
        watch.err().map(|status| status.code()),
        Some(Code::PermissionDenied)
    );
    let refused = sessions.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(
        refused.message().contains("missing role"),
        "{}",
        refused.message()
    );
}

#[tokio::test]
async fn a_reader_cannot_write_sign_ins_or_flag() {
    let system = TestSystem::start().await;
    let key = Key::random();
    let reader = system.token("admin", Some(key.tenant), &[Role::GlobalAdministrator]);
    let mut query_client = system.query_client(&reader).await;
    let mut flag_client = system.flag_client(&reader).await;

    let record = query_client
        .record_sign_ins(query::RecordSignInsRequest {
            sign_ins: vec![key.sign_in_at(Utc::now(), "user@contoso.com", 0)],
        })
        .await;
    let stream = query_client
        .stream_sign_ins(tokio_stream::iter(vec![key.sign_in_at(
            Utc::now(),
            "user@contoso.com",
            0,
        )]))
        .await;
    let enable = flag_client.enable_flagging(key.enable()).await;
    let disable = flag_client.disable_flagging(key.disable()).await;
    let check = flag_client
        .check_flags(flag::CheckFlagsRequest {
            checks: vec![key.check_at(Utc::now())],
        })
        .await;

    for (rpc, code) in [
        ("RecordSignIns", record.err().map(|s| s.code())),
        ("StreamSignIns", stream.err().map(|s| s.code())),
        ("EnableFlagging", enable.err().map(|s| s.code())),
        ("DisableFlagging", disable.err().map(|s| s.code())),
        ("CheckFlags", check.err().map(|s| s.code())),
    ] {
        assert_eq!(code, Some(Code::PermissionDenied), "{rpc}");
    }
}

#[tokio::test]
async fn help_desk_and_a_user_get_not_found_for_sign_ins_outside_their_view() {
    let system = TestSystem::start().await;
    let key = Key::random();
    let other_user = Key {
        user: Uuid::new_v4(),
        ..key.clone()
    };
    let mine = key.sign_in_at(Utc::now(), "user@contoso.com", 50126);
    let theirs = other_user.sign_in_at(Utc::now(), "other@contoso.com", 50126);
    system
        .query_client(&system.gateway_token())
        .await
        .record_sign_ins(query::RecordSignInsRequest {
            sign_ins: vec![mine.clone(), theirs.clone()],
        })
        .await
        .unwrap();
    let helpdesk = system.token("helpdesk", Some(key.tenant), &[Role::HelpdeskAdministrator]);
    let user = system.token(&key.user.to_string(), Some(key.tenant), &[]);
    let get = |token: String, id: String| {
        let system = &system;
        async move {
            system
                .query_client(&token)
                .await
                .get_sign_in(query::GetSignInRequest { id })
                .await
        }
    };

    let helpdesk_unflagged = get(helpdesk.clone(), mine.id.clone()).await;
    let helpdesk_asks_for_unflagged = system
        .query_client(&helpdesk)
        .await
        .list_sign_ins(query::ListSignInsRequest {
            filter: "flaggedForReview eq false".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let user_own = get(user.clone(), mine.id.clone()).await;
    let user_other = get(user, theirs.id.clone()).await;

    assert_eq!(helpdesk_unflagged.unwrap_err().code(), Code::NotFound);
    assert!(helpdesk_asks_for_unflagged.sign_ins.is_empty());
    assert_eq!(user_own.unwrap().into_inner().id, mine.id);
    assert_eq!(user_other.unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn a_token_of_another_tenant_cannot_flag_check_or_record_for_this_one() {
    let system = TestSystem::start().await;
    let key = Key::random();
    let elsewhere = Some(Uuid::new_v4());
    let gateway = system.token(
        "gateway",
        elsewhere,
        &[
            Role::FlaggingWrite,
            Role::SignInLogsWrite,
            Role::FlaggingCheck,
        ],
    );

    let enable = system
        .flag_client(&gateway)
        .await
        .enable_flagging(key.enable())
        .await;
    let check = system
        .flag_client(&gateway)
        .await
        .check_flags(flag::CheckFlagsRequest {
            checks: vec![key.check_at(Utc::now())],
        })
        .await;
    let record = system
        .query_client(&gateway)
        .await
        .record_sign_ins(query::RecordSignInsRequest {
            sign_ins: vec![key.sign_in_at(Utc::now(), "user@contoso.com", 0)],
        })
        .await;

    assert_eq!(enable.unwrap_err().code(), Code::PermissionDenied);
    let check = check.unwrap_err();
    assert_eq!(check.code(), Code::PermissionDenied);
    assert!(
        check.message().contains("checks[0].tenantId"),
        "{}",
        check.message()
    );
    let record = record.unwrap_err();
    assert_eq!(record.code(), Code::PermissionDenied);
    assert!(
        record.message().contains("signIns[0].tenantId"),
        "{}",
        record.message()
    );
}

#[tokio::test]
async fn refusals_say_what_is_wrong_without_echoing_the_token() {
    let system = TestSystem::start().await;
    let expired = system.signed("admin", |claims| {
        claims.exp = Utc::now().timestamp() - 600;
        claims.nbf = Some(claims.exp - 3_600);
    });
    let wrong_audience = system.signed("admin", |claims| claims.aud = "another-api".into());
    let forged = TokenMinter::hs256("not-the-secret", "signins", "signins")
        .mint(
            "admin",
            None,
            &[Role::GlobalReader],
            Duration::from_secs(60),
        )
        .unwrap();
    assert_ne!(SECRET, "not-the-secret");

    for (token, says) in [
        (expired, "token expired"),
        (
            wrong_audience,
            "token audience is wrong: expected 'signins'",
        ),
        (forged, "token signature is invalid"),
        (String::new(), "missing bearer token"),
    ] {
        let refused = system
            .query_client(&token)
            .await
            .list_sign_ins(query::ListSignInsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated);
        assert!(refused.message().contains(says), "{}", refused.message());
        assert!(!refused.message().contains(SECRET));
        for part in token.split('.').filter(|part| !part.is_empty()) {
            assert!(!refused.message().contains(part), "{}", refused.message());
        }
    }
}

#[tokio::test]
async fn health_and_reflection_answer_without_a_token() {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    use tonic_reflection::pb::{v1, v1alpha};
    let system = TestSystem::start().await;

    for (addr, service) in [
        (system.flag.addr, "signins.flag.v1.FlagService"),
        (system.query.addr, "signins.query.v1.SignInService"),
    ] {
        let channel = TestSystem::channel(addr).await;
        let health = HealthClient::new(channel.clone())
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await;
        let listed_v1 = v1::server_reflection_client::ServerReflectionClient::new(channel.clone())
            .server_reflection_info(tokio_stream::iter([v1::ServerReflectionRequest {
                host: String::new(),
                message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
                    String::new(),
                )),
            }]))
            .await
            .expect("reflection v1 without a token")
            .into_inner()
            .message()
            .await
            .expect("a reflection v1 answer");
        let listed_v1alpha =
            v1alpha::server_reflection_client::ServerReflectionClient::new(channel)
                .server_reflection_info(tokio_stream::iter([v1alpha::ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(
                        v1alpha::server_reflection_request::MessageRequest::ListServices(
                            String::new(),
                        ),
                    ),
                }]))
                .await
                .expect("reflection v1alpha without a token")
                .into_inner()
                .message()
                .await
                .expect("a reflection v1alpha answer");

        assert!(health.is_ok(), "{service}: {health:?}");
        // Whichever protocol grpcurl speaks, `list` shows the same services.
        for listed in [format!("{listed_v1:?}"), format!("{listed_v1alpha:?}")] {
            for name in [
                service,
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
            ] {
                assert!(
                    listed.contains(&format!("\"{name}\"")),
                    "{name} in {listed}"
                );
            }
        }
    }
}
