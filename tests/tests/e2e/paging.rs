//! ListSignIns paging, ordering and limits through gRPC: keyset pages that never lose or repeat
//! a sign-in while others are being recorded, page tokens bound to their query, `top` and
//! `orderBy` validation, and the statement timeout.

use chrono::{DateTime, Duration, Utc};
use signins_tests::{Key, Options, QueryClient, TestSystem, from_timestamp, list_pages, query};
use std::collections::HashSet;
use tokio::sync::mpsc;
use tonic::Code;
use uuid::Uuid;

const FILTER: &str = "appDisplayName eq 'Paged'";

fn paged(key: &Key, at: DateTime<Utc>) -> query::SignIn {
    let mut sign_in = key.sign_in_at(at, "user@contoso.com", 0);
    sign_in.app_display_name = Some("Paged".into());
    sign_in
}

async fn record(gateway: &mut QueryClient, sign_ins: Vec<query::SignIn>) {
    let sent = sign_ins.len() as i64;
    let response = gateway
        .record_sign_ins(query::RecordSignInsRequest { sign_ins })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.recorded, sent);
}

/// (createdDateTime, id): the total order pages follow.
fn position(sign_in: &query::SignIn) -> (DateTime<Utc>, Uuid) {
    (
        from_timestamp(sign_in.created_date_time.as_ref().unwrap()),
        Uuid::parse_str(&sign_in.id).unwrap(),
    )
}

/// Pages through 1,000 matching sign-ins seven at a time in `order_by`, while another task
/// records matching sign-ins newer than all of them and in between them (some at exactly the
/// same instant as existing ones), one batch per page served.
async fn page_while_recording(system: &TestSystem, order_by: &str) {
    let key = Key::random();
    let mut gateway = system.query_client(&system.gateway_token()).await;
    let start = Utc::now() - Duration::hours(1);
    // Three sign-ins per instant, so the id decides the order inside each instant.
    let existing: Vec<query::SignIn> = (0..1000)
        .map(|i| paged(&key, start + Duration::seconds(i / 3)))
        .collect();
    let times: Vec<DateTime<Utc>> = existing.iter().map(|s| position(s).0).collect();
    let decoys: Vec<query::SignIn> = (0..100)
        .map(|i| key.sign_in_at(start + Duration::seconds(i), "user@contoso.com", 0))
        .collect();
    record(&mut gateway, existing.clone()).await;
    record(&mut gateway, decoys).await;

    let (served, mut pages_served) = mpsc::channel::<usize>(1);
    let (committed, mut batches_committed) = mpsc::unbounded_channel::<()>();
    let writer_key = key.clone();
    let writer = tokio::spawn(async move {
        let mut inserted = Vec::new();
        while let Some(page) = pages_served.recv().await {
            let batch = vec![
                paged(&writer_key, Utc::now()),
                paged(&writer_key, Utc::now()),
                paged(&writer_key, times[(page * 7 + 3) % times.len()]),
                paged(
                    &writer_key,
                    times[(page * 131) % times.len()] + Duration::milliseconds(500),
                ),
                paged(
                    &writer_key,
                    times[times.len() - 1 - (page * 7) % times.len()],
                ),
            ];
            inserted.extend(batch.iter().map(|s| s.id.clone()));
            record(&mut gateway, batch).await;
            if committed.send(()).is_err() {
                break;
            }
        }
        inserted
    });

    let mut reader = system.query_client(&system.reader_token(key.tenant)).await;
    let mut pages: Vec<Vec<query::SignIn>> = Vec::new();
    let mut page_token = String::new();
    let (mut batches_sent, mut batches_done) = (0, 0);
    loop {
        let page = reader
            .list_sign_ins(query::ListSignInsRequest {
                filter: FILTER.into(),
                top: Some(7),
                order_by: order_by.into(),
                page_token,
            })
            .await
            .unwrap()
            .into_inner();
        pages.push(page.sign_ins);
        let Some(next) = page.next_page_token else {
            break;
        };
        page_token = next;
        // The next page is read while this batch is being recorded; every tenth page also
        // waits for the batches so far to commit, so some inserts certainly land mid-paging.
        served.send(pages.len()).await.unwrap();
        batches_sent += 1;
        if pages.len() % 10 == 0 {
            while batches_done < batches_sent {
                batches_committed.recv().await.unwrap();
                batches_done += 1;
            }
        }
    }
    drop(served);
    drop(batches_committed);
    let inserted: HashSet<String> = writer.await.unwrap().into_iter().collect();

    let union: Vec<&query::SignIn> = pages.iter().flatten().collect();
    let ids: Vec<&str> = union.iter().map(|s| s.id.as_str()).collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "{order_by}: a sign-in came twice");
    for sign_in in &existing {
        assert!(
            unique.contains(sign_in.id.as_str()),
            "{order_by}: {} was lost",
            sign_in.id
        );
    }
    for id in &ids {
        assert!(
            existing.iter().any(|s| s.id == *id) || inserted.contains(*id),
            "{order_by}: {id} does not match the filter"
        );
    }
    let descending = !order_by.to_ascii_lowercase().ends_with("asc");
    for pair in union.windows(2) {
        let (a, b) = (position(pair[0]), position(pair[1]));
        assert!(
            if descending { a > b } else { a < b },
            "{order_by}: {a:?} then {b:?}"
        );
    }
    let (last, full) = pages.split_last().unwrap();
    assert!(
        full.iter().all(|page| page.len() == 7),
        "{order_by}: a short page before the last"
    );
    assert!(
        (1..=7).contains(&last.len()),
        "{order_by}: last page has {}",
        last.len()
    );
    assert!(
        !inserted.is_empty(),
        "{order_by}: nothing was recorded while paging"
    );
}

#[tokio::test]
async fn paging_seven_at_a_time_while_sign_ins_arrive_returns_every_existing_one_once_in_order() {
    let system = TestSystem::start().await;

    page_while_recording(&system, "").await;
    page_while_recording(&system, "createdDateTime asc").await;
}

/// A tenant with `count` matching sign-ins one second apart, and a reader of it.
async fn tenant_with(system: &TestSystem, count: i64) -> (Key, QueryClient) {
    let key = Key::random();
    let mut gateway = system.query_client(&system.gateway_token()).await;
    let start = Utc::now() - Duration::hours(1);
    record(
        &mut gateway,
        (0..count)
            .map(|i| paged(&key, start + Duration::seconds(i)))
            .collect(),
    )
    .await;
    let reader = system.query_client(&system.reader_token(key.tenant)).await;
    (key, reader)
}

fn request(
    filter: &str,
    top: Option<i32>,
    order_by: &str,
    page_token: &str,
) -> query::ListSignInsRequest {
    query::ListSignInsRequest {
        filter: filter.into(),
        top,
        order_by: order_by.into(),
        page_token: page_token.into(),
    }
}

#[tokio::test]
async fn a_page_token_works_again_for_its_own_query_and_is_refused_for_any_other() {
    let system = TestSystem::start().await;
    let (_, mut reader) = tenant_with(&system, 10).await;
    let first = reader
        .list_sign_ins(request(FILTER, Some(3), "", ""))
        .await
        .unwrap()
        .into_inner();
    let token = first.next_page_token.unwrap();

    let second = reader
        .list_sign_ins(request(FILTER, Some(3), "", &token))
        .await
        .unwrap();
    let again = reader
        .list_sign_ins(request(FILTER, Some(3), "", &token))
        .await
        .unwrap();
    let larger_page = reader
        .list_sign_ins(request(FILTER, Some(5), "", &token))
        .await
        .unwrap();
    let other_filter = reader
        .list_sign_ins(request("appDisplayName eq 'Other'", Some(3), "", &token))
        .await
        .unwrap_err();
    let no_filter = reader
        .list_sign_ins(request("", Some(3), "", &token))
        .await
        .unwrap_err();
    let other_order = reader
        .list_sign_ins(request(FILTER, Some(3), "createdDateTime asc", &token))
        .await
        .unwrap_err();
    let (_, mut other_tenant) = tenant_with(&system, 1).await;
    let other_reader = other_tenant
        .list_sign_ins(request(FILTER, Some(3), "", &token))
        .await
        .unwrap_err();

    let ids = |page: &query::ListSignInsResponse| {
        page.sign_ins
            .iter()
            .map(|s| s.id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(second.get_ref()), ids(again.get_ref()));
    assert_eq!(ids(second.get_ref()).len(), 3);
    assert_eq!(
        ids(&larger_page.into_inner())[..3],
        ids(second.get_ref())[..]
    );
    for refused in [other_filter, no_filter, other_order, other_reader] {
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert!(
            refused.message().starts_with("pageToken: "),
            "{}",
            refused.message()
        );
    }
}

#[tokio::test]
async fn top_defaults_to_a_hundred_allows_a_thousand_and_refuses_anything_outside() {
    let system = TestSystem::start().await;
    let (_, mut reader) = tenant_with(&system, 150).await;

    let default = reader
        .list_sign_ins(request("", None, "", ""))
        .await
        .unwrap()
        .into_inner();
    let most = reader
        .list_sign_ins(request("", Some(1000), "", ""))
        .await
        .unwrap()
        .into_inner();
    let mut refusals = Vec::new();
    for top in [0, -1, 1001, i32::MIN, i32::MAX] {
        refusals.push(
            reader
                .list_sign_ins(request("", Some(top), "", ""))
                .await
                .unwrap_err(),
        );
    }

    assert_eq!(default.sign_ins.len(), 100);
    assert!(default.next_page_token.is_some());
    assert_eq!(most.sign_ins.len(), 150);
    assert!(most.next_page_token.is_none());
    for refused in refusals {
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert_eq!(refused.message(), "top: must be between 1 and 1000");
    }
}

#[tokio::test]
async fn order_by_takes_created_date_time_either_way_in_any_case_and_nothing_else() {
    let system = TestSystem::start().await;
    let (_, mut reader) = tenant_with(&system, 5).await;
    let times =
        |pages: Vec<Vec<query::SignIn>>| pages.iter().flatten().map(position).collect::<Vec<_>>();

    let newest_first = times(list_pages(&mut reader, "", Some(2), "").await.unwrap());
    let desc = times(
        list_pages(&mut reader, "", Some(2), "CreatedDateTime DESC")
            .await
            .unwrap(),
    );
    let asc = times(
        list_pages(&mut reader, "", Some(2), "createddatetime   asc")
            .await
            .unwrap(),
    );
    let refused = reader
        .list_sign_ins(request("", None, "userId desc", ""))
        .await
        .unwrap_err();

    let mut sorted = newest_first.clone();
    sorted.sort();
    assert_eq!(asc, sorted);
    sorted.reverse();
    assert_eq!(newest_first, sorted);
    assert_eq!(desc, sorted);
    assert_eq!(sorted.len(), 5);
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().starts_with("orderBy: "),
        "{}",
        refused.message()
    );
}

#[tokio::test]
async fn a_query_that_outlives_the_statement_timeout_is_deadline_exceeded() {
    let system = TestSystem::start_with(Options {
        query_timeout: std::time::Duration::from_millis(300),
        ..Options::default()
    })
    .await;
    let (_, mut reader) = tenant_with(&system, 1).await;
    // Another session holds the table, so the query waits until the timeout cancels it.
    let blocker = system.database.connect().await;
    blocker
        .batch_execute("BEGIN; LOCK TABLE query.sign_ins IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();

    let timed_out = reader
        .list_sign_ins(request("", None, "", ""))
        .await
        .unwrap_err();
    blocker.batch_execute("ROLLBACK").await.unwrap();
    let afterwards = reader.list_sign_ins(request("", None, "", "")).await;

    assert_eq!(timed_out.code(), Code::DeadlineExceeded);
    assert!(
        !timed_out.message().contains("statement"),
        "{}",
        timed_out.message()
    );
    assert_eq!(afterwards.unwrap().into_inner().sign_ins.len(), 1);
}
