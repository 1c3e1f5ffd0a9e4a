//! The product document's story end to end: a user flags their browser, the gateway records
//! sign-ins, and an admin finds exactly the flagged ones with the document's own queries.

use chrono::Utc;
use signins_common::auth::Role;
use signins_tests::{Key, TestSystem, query};
use std::collections::BTreeSet;
use uuid::Uuid;

const UPN: &str = "user@contoso.com";

/// The seed's three queries, verbatim.
const SEED_QUERIES: [&str; 3] = [
    "flaggedforReview eq true",
    "flaggedforReview eq true and userPrincipalname eq 'user@contoso.com'",
    "flaggedforReview eq true and createdDateTime ge 2021-10-01 and userPrincipalname eq 'user@contoso.com'",
];

struct Story {
    system: TestSystem,
    key: Key,
    session_id: String,
    flagged_ids: BTreeSet<String>,
    unflagged_ids: BTreeSet<String>,
}

/// Enables flagging for one key, then records sign-ins of every kind the story tells apart.
async fn flag_then_record() -> Story {
    let system = TestSystem::start().await;
    let mut flags = system.flag_client(&system.gateway_token()).await;
    let mut gateway = system.query_client(&system.gateway_token()).await;
    let key = Key::random();
    let before = Utc::now() - chrono::Duration::minutes(1);
    let session = flags
        .enable_flagging(key.enable())
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    let now = Utc::now();

    let same_failed = key.sign_in_at(now, UPN, 50126);
    let same_succeeded = key.sign_in_at(now, "User@Contoso.com", 0);
    let other_browser = Key {
        browser: "another-browser".into(),
        ..key.clone()
    }
    .sign_in_at(now, UPN, 50126);
    let other_device = Key {
        device: "another-device".into(),
        ..key.clone()
    }
    .sign_in_at(now, UPN, 50126);
    let other_user = Key {
        user: Uuid::new_v4(),
        ..key.clone()
    }
    .sign_in_at(now, "someone@contoso.com", 50126);
    let before_enabling = key.sign_in_at(before, UPN, 50126);
    let flagged_ids: BTreeSet<String> = [&same_failed, &same_succeeded]
        .iter()
        .map(|s| s.id.clone())
        .collect();
    let unflagged_ids: BTreeSet<String> =
        [&other_browser, &other_device, &other_user, &before_enabling]
            .iter()
            .map(|s| s.id.clone())
            .collect();

    let response = gateway
        .record_sign_ins(query::RecordSignInsRequest {
            sign_ins: vec![
                same_failed,
                same_succeeded,
                other_browser,
                other_device,
                other_user,
                before_enabling,
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((response.recorded, response.duplicates), (6, 0));
    Story {
        system,
        key,
        session_id: session.id,
        flagged_ids,
        unflagged_ids,
    }
}

async fn list(system: &TestSystem, token: &str, filter: &str) -> Vec<query::SignIn> {
    let mut reader = system.query_client(token).await;
    reader
        .list_sign_ins(query::ListSignInsRequest {
            filter: filter.into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|status| panic!("{filter}: {status:?}"))
        .into_inner()
        .sign_ins
}

#[tokio::test]
async fn only_sign_ins_of_the_same_user_device_and_browser_inside_the_window_are_flagged() {
    let story = flag_then_record().await;
    let token = story.system.reader_token(story.key.tenant);

    let all = list(&story.system, &token, "").await;

    assert_eq!(all.len(), 6);
    for sign_in in &all {
        let expected = story.flagged_ids.contains(&sign_in.id);
        assert_eq!(
            sign_in.flagged_for_review,
            Some(expected),
            "sign-in {}",
            sign_in.id
        );
        assert_eq!(sign_in.flag_check_pending, Some(false));
        if expected {
            assert_eq!(
                sign_in.flag_session_id.as_deref(),
                Some(story.session_id.as_str())
            );
        } else {
            assert_eq!(sign_in.flag_session_id, None);
        }
    }
    assert!(
        story
            .unflagged_ids
            .iter()
            .all(|id| all.iter().any(|s| &s.id == id))
    );
}

#[tokio::test]
async fn the_seed_documents_three_queries_return_exactly_the_flagged_sign_ins() {
    let story = flag_then_record().await;
    let token = story.system.reader_token(story.key.tenant);

    for filter in SEED_QUERIES {
        let found: BTreeSet<String> = list(&story.system, &token, filter)
            .await
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(found, story.flagged_ids, "{filter}");
    }
}

#[tokio::test]
async fn get_sign_in_shows_the_flag_session_and_the_enrichment() {
    let story = flag_then_record().await;
    let mut reader = story
        .system
        .query_client(&story.system.reader_token(story.key.tenant))
        .await;
    let id = story.flagged_ids.iter().next().unwrap().clone();

    let sign_in = reader
        .get_sign_in(query::GetSignInRequest { id })
        .await
        .unwrap()
        .into_inner();

    assert_eq!(sign_in.flagged_for_review, Some(true));
    assert_eq!(
        sign_in.flag_session_id.as_deref(),
        Some(story.session_id.as_str())
    );
    assert_eq!(sign_in.user_principal_name.as_deref(), Some(UPN));
    let device = sign_in.device_detail.unwrap();
    assert_eq!(device.browser.as_deref(), Some("Chrome 131"));
}

#[tokio::test]
async fn after_disabling_new_sign_ins_are_not_flagged() {
    let story = flag_then_record().await;
    let mut flags = story
        .system
        .flag_client(&story.system.gateway_token())
        .await;
    let mut gateway = story
        .system
        .query_client(&story.system.gateway_token())
        .await;
    flags.disable_flagging(story.key.disable()).await.unwrap();

    let later = story.key.sign_in_at(Utc::now(), UPN, 50126);
    gateway
        .record_sign_ins(query::RecordSignInsRequest {
            sign_ins: vec![later.clone()],
        })
        .await
        .unwrap();
    let mut reader = story
        .system
        .query_client(&story.system.reader_token(story.key.tenant))
        .await;
    let stored = reader
        .get_sign_in(query::GetSignInRequest { id: later.id })
        .await
        .unwrap()
        .into_inner();

    assert_eq!(stored.flagged_for_review, Some(false));
}

#[tokio::test]
async fn help_desk_sees_only_flagged_sign_ins_and_a_user_only_their_own() {
    let story = flag_then_record().await;
    let helpdesk = story.system.token(
        "helpdesk",
        Some(story.key.tenant),
        &[Role::HelpdeskAdministrator],
    );
    let user = story
        .system
        .token(&story.key.user.to_string(), Some(story.key.tenant), &[]);

    let seen_by_helpdesk: BTreeSet<String> = list(&story.system, &helpdesk, "")
        .await
        .into_iter()
        .map(|s| s.id)
        .collect();
    let seen_by_user = list(&story.system, &user, "").await;

    assert_eq!(seen_by_helpdesk, story.flagged_ids);
    assert_eq!(seen_by_user.len(), 5, "all but the other user's sign-in");
    assert!(
        seen_by_user
            .iter()
            .all(|s| s.user_id == story.key.user.to_string())
    );
}

#[tokio::test]
async fn another_tenant_sees_nothing_and_gets_not_found_by_id() {
    let story = flag_then_record().await;
    let stranger = story.system.reader_token(Uuid::new_v4());
    let mut reader = story.system.query_client(&stranger).await;

    let listed = list(&story.system, &stranger, "flaggedForReview eq true").await;
    let by_id = reader
        .get_sign_in(query::GetSignInRequest {
            id: story.flagged_ids.iter().next().unwrap().clone(),
        })
        .await;

    assert!(listed.is_empty());
    assert_eq!(by_id.unwrap_err().code(), tonic::Code::NotFound);
}
