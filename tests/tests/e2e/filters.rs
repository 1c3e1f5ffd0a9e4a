//! `$filter` through the real ListSignIns: the filters of Graph's own sign-in documentation and
//! the product document's three queries, each returning exactly the expected sign-ins of a
//! seeded tenant (with near misses beside every match); and malformed filters refused with
//! INVALID_ARGUMENT naming the problem and its position.

use chrono::{DateTime, Utc};
use signins_common::clock::ManualClock;
use signins_tests::{Key, Options, TestSystem, list_pages, query, timestamp};
use std::collections::BTreeMap;
use tonic::Code;
use uuid::Uuid;

/// Graph's documented appId in its time-window example.
const APP_ID: &str = "de8bc8b5-d9f9-48b1-a8ad-b748da725064";

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// A sign-in with only what every event needs, at `at`.
fn event(tenant: Uuid, at: &str) -> query::SignIn {
    query::SignIn {
        id: Uuid::new_v4().to_string(),
        created_date_time: Some(timestamp(utc(at))),
        tenant_id: tenant.to_string(),
        user_id: Uuid::new_v4().to_string(),
        status: Some(query::SignInStatus::default()),
        ..Default::default()
    }
}

fn located(
    mut sign_in: query::SignIn,
    city: &str,
    state: Option<&str>,
    country: &str,
) -> query::SignIn {
    sign_in.location = Some(query::SignInLocation {
        city: Some(city.into()),
        state: state.map(Into::into),
        country_or_region: Some(country.into()),
    });
    sign_in
}

fn with<F: FnOnce(&mut query::SignIn)>(mut sign_in: query::SignIn, change: F) -> query::SignIn {
    change(&mut sign_in);
    sign_in
}

/// A tenant whose sign-ins are named, so expectations read as names.
struct Seeded {
    system: TestSystem,
    tenant: Uuid,
    names: BTreeMap<String, &'static str>,
}

impl Seeded {
    async fn names_found(&self, filter: &str) -> Vec<&'static str> {
        let mut reader = self
            .system
            .query_client(&self.system.reader_token(self.tenant))
            .await;
        let pages = list_pages(&mut reader, filter, None, "")
            .await
            .unwrap_or_else(|status| panic!("{filter}: {status:?}"));
        pages
            .into_iter()
            .flatten()
            .map(|sign_in| self.names[&sign_in.id])
            .collect()
    }
}

/// Records the Graph examples' matches and near misses in 2024, then flags user@contoso.com's
/// browser just before midnight on 2021-09-30 and records around that midnight, so the
/// product document's `createdDateTime ge 2021-10-01` has a flagged sign-in on each side.
async fn seed() -> Seeded {
    // 2024 first: the clock ends in 2021, so no retention pass can find the 2021 events old.
    let clock = ManualClock::new(utc("2024-01-15T00:00:00Z"));
    let system = TestSystem::start_with(Options {
        clock: Some(clock.clone()),
        ..Options::default()
    })
    .await;
    let tenant = Uuid::new_v4();
    let mut gateway = system.query_client(&system.gateway_token()).await;
    let mut names = BTreeMap::new();
    let mut record = async |events: Vec<(&'static str, query::SignIn)>| {
        for (name, event) in &events {
            names.insert(event.id.clone(), *name);
        }
        let sent = events.len() as i64;
        let response = gateway
            .record_sign_ins(query::RecordSignInsRequest {
                sign_ins: events.into_iter().map(|(_, event)| event).collect(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((response.recorded, response.duplicates), (sent, 0));
    };

    let at = |time: &str| event(tenant, time);
    let noon = "2024-01-10T12:00:00Z";
    record(vec![
        (
            "azure portal",
            with(at(noon), |s| {
                s.app_display_name = Some("Azure Portal".into())
            }),
        ),
        (
            "azure exactly",
            with(at("2024-01-10T11:00:00Z"), |s| {
                s.app_display_name = Some("Azure".into())
            }),
        ),
        (
            "microsoft azure",
            with(at(noon), |s| {
                s.app_display_name = Some("Microsoft Azure".into())
            }),
        ),
        (
            "azure lowercase",
            with(at(noon), |s| {
                s.app_display_name = Some("azure portal".into())
            }),
        ),
        (
            "redmond",
            located(at(noon), "Redmond", Some("Washington"), "US"),
        ),
        (
            "redmond usa",
            located(at(noon), "Redmond", Some("Washington"), "USA"),
        ),
        (
            "redmond lowercase",
            located(at(noon), "redmond", Some("Washington"), "US"),
        ),
        ("redmond no state", located(at(noon), "Redmond", None, "US")),
        (
            "seattle",
            located(at(noon), "Seattle", Some("Washington"), "US"),
        ),
        (
            "ca failure",
            with(at(noon), |s| {
                s.conditional_access_status = Some("failure".into())
            }),
        ),
        (
            "ca success",
            with(at(noon), |s| {
                s.conditional_access_status = Some("success".into())
            }),
        ),
        (
            "ca not applied",
            with(at(noon), |s| {
                s.conditional_access_status = Some("notApplied".into())
            }),
        ),
        (
            "app at window start",
            with(at("2024-01-13T14:13:32Z"), |s| {
                s.app_id = Some(APP_ID.into())
            }),
        ),
        (
            "app inside window",
            with(at("2024-01-14T01:00:00.5Z"), |s| {
                s.app_id = Some(APP_ID.into())
            }),
        ),
        (
            "app at window end",
            with(at("2024-01-14T17:43:26Z"), |s| {
                s.app_id = Some(APP_ID.into())
            }),
        ),
        (
            "app just before window",
            with(at("2024-01-13T14:13:31.999999Z"), |s| {
                s.app_id = Some(APP_ID.into())
            }),
        ),
        (
            "app just after window",
            with(at("2024-01-14T17:43:26.000001Z"), |s| {
                s.app_id = Some(APP_ID.into())
            }),
        ),
        (
            "other app inside window",
            with(at("2024-01-14T01:00:00Z"), |s| {
                s.app_id = Some("c44b4083-3bb0-49c1-b47d-974e53cbdf3c".into())
            }),
        ),
        (
            "error 50126",
            with(at(noon), |s| {
                s.status = Some(query::SignInStatus {
                    error_code: 50126,
                    ..Default::default()
                })
            }),
        ),
        (
            "error 50126 again",
            with(at("2024-01-11T08:00:00Z"), |s| {
                s.status = Some(query::SignInStatus {
                    error_code: 50126,
                    ..Default::default()
                })
            }),
        ),
        (
            "error 50053",
            with(at(noon), |s| {
                s.status = Some(query::SignInStatus {
                    error_code: 50053,
                    ..Default::default()
                })
            }),
        ),
        (
            "error 501260",
            with(at(noon), |s| {
                s.status = Some(query::SignInStatus {
                    error_code: 501260,
                    ..Default::default()
                })
            }),
        ),
    ])
    .await;

    clock.set(utc("2021-09-30T23:50:00Z"));
    let mut flags = system.flag_client(&system.gateway_token()).await;
    let user = Key {
        tenant,
        ..Key::random()
    };
    let someone = Key {
        tenant,
        ..Key::random()
    };
    for key in [&user, &someone] {
        flags.enable_flagging(key.enable()).await.unwrap();
    }
    clock.set(utc("2021-10-01T00:05:00Z"));
    let upn = "user@contoso.com";
    // Out of the way of the Graph examples above.
    let mut flagged_story = vec![
        (
            "flagged before oct 1",
            user.sign_in_at(utc("2021-09-30T23:59:59.999999Z"), upn, 50126),
        ),
        (
            "flagged at oct 1",
            user.sign_in_at(utc("2021-10-01T00:00:00Z"), upn, 50126),
        ),
        (
            "flagged, UPN sent in capitals",
            user.sign_in_at(utc("2021-10-01T00:01:00Z"), "User@Contoso.COM", 0),
        ),
        (
            "flagged other user",
            someone.sign_in_at(utc("2021-10-01T00:02:00Z"), "someone@contoso.com", 50126),
        ),
        (
            "unflagged, before enabling",
            user.sign_in_at(utc("2021-09-30T23:49:00Z"), upn, 50126),
        ),
        (
            "unflagged, other browser",
            Key {
                browser: "another-browser".into(),
                ..user.clone()
            }
            .sign_in_at(utc("2021-10-01T00:03:00Z"), upn, 50126),
        ),
    ];
    for (_, event) in &mut flagged_story {
        event.app_display_name = Some("My Apps".into());
        event.status = Some(query::SignInStatus {
            error_code: 50053,
            ..Default::default()
        });
    }
    record(flagged_story).await;
    Seeded {
        system,
        tenant,
        names,
    }
}

#[tokio::test]
async fn graphs_documented_filters_and_the_product_queries_return_exactly_their_sign_ins() {
    let seeded = seed().await;
    // Newest first, as ListSignIns answers by default.
    let cases: &[(&str, &[&str])] = &[
        (
            "startswith(appDisplayName,'Azure')",
            &["azure portal", "azure exactly"],
        ),
        (
            "location/city eq 'Redmond' and location/state eq 'Washington' and location/countryOrRegion eq 'US'",
            &["redmond"],
        ),
        ("conditionalAccessStatus eq 'failure'", &["ca failure"]),
        (
            "(createdDateTime ge 2024-01-13T14:13:32Z and createdDateTime le 2024-01-14T17:43:26Z) and appId eq 'de8bc8b5-d9f9-48b1-a8ad-b748da725064'",
            &[
                "app at window end",
                "app inside window",
                "app at window start",
            ],
        ),
        (
            "status/errorCode eq 50126",
            &["error 50126 again", "error 50126"],
        ),
        (
            "flaggedforReview eq true",
            &[
                "flagged other user",
                "flagged, UPN sent in capitals",
                "flagged at oct 1",
                "flagged before oct 1",
            ],
        ),
        (
            "flaggedforReview eq true and userPrincipalname eq 'user@contoso.com'",
            &[
                "flagged, UPN sent in capitals",
                "flagged at oct 1",
                "flagged before oct 1",
            ],
        ),
        (
            "flaggedforReview eq true and createdDateTime ge 2021-10-01 and userPrincipalname eq 'user@contoso.com'",
            &["flagged, UPN sent in capitals", "flagged at oct 1"],
        ),
    ];

    for (filter, expected) in cases {
        let found = seeded.names_found(filter).await;

        assert_eq!(found, *expected, "{filter}");
    }
}

async fn refusal(system: &TestSystem, filter: &str) -> tonic::Status {
    let mut reader = system
        .query_client(&system.reader_token(Uuid::new_v4()))
        .await;
    reader
        .list_sign_ins(query::ListSignInsRequest {
            filter: filter.into(),
            ..Default::default()
        })
        .await
        .expect_err(filter)
}

#[tokio::test]
async fn malformed_filters_are_invalid_argument_naming_the_problem_and_its_position() {
    let system = TestSystem::start().await;
    let too_long = format!("userDisplayName eq '{}'", "a".repeat(4096));
    let too_deep = format!(
        "{}flaggedForReview eq true{}",
        "(".repeat(33),
        ")".repeat(33)
    );
    let cases: [(&str, &str); 6] = [
        (
            "location/town eq 'Redmond'",
            "position 0: unknown property 'location/town'",
        ),
        (
            "status/errorCode eq '50126'",
            "position 20: property 'status/errorCode' expects an integer, found a string",
        ),
        (
            "userDisplayName eq 'O''Brien",
            "position 19: unterminated string literal",
        ),
        (
            "flaggedForReview eq true and",
            "position 28: expected a condition after 'and', found end of input",
        ),
        (&too_long, "position 4096: filter is longer than 4096 bytes"),
        (&too_deep, "position 32: filter nests deeper than 32 levels"),
    ];

    for (filter, problem) in cases {
        let refused = refusal(&system, filter).await;

        assert_eq!(refused.code(), Code::InvalidArgument, "{filter}");
        assert_eq!(
            refused.message(),
            format!("filter: invalid filter at {problem}"),
            "{filter}"
        );
    }
}
