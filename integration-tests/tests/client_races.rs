//! Client-credentials grants racing a client's deletion or disabling (issue 16): every
//! token issued before the change commits is revoked by it, and a grant that meets the
//! change mid-commit waits for it and is refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use integration_tests::TestDatabase;
use integration_tests::api::{ServiceProcess, access_token, claims_of};
use integration_tests::clients::{client_token, new_client, patch_client};
use integration_tests::database::{FeedVersionHold, lock_waiters};
use integration_tests::eventually;

#[tokio::test]
async fn every_token_issued_while_its_client_is_deleted_or_disabled_is_revoked() {
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let admin = api.admin_token().await;
    let pool = db.pool().await;
    for round in 0..2 {
        let (id, secret) = new_client(&api, &admin, &format!("racer {round}"), "user").await;
        // Clients ask for tokens as fast as they can until they are refused.
        let granted = Arc::new(AtomicUsize::new(0));
        let mut askers = Vec::new();
        for _ in 0..12 {
            let (client, url) = (api.client.clone(), api.url("/api/v1/tokens"));
            let (id, secret) = (id.clone(), secret.clone());
            let granted = Arc::clone(&granted);
            askers.push(tokio::spawn(async move {
                let mut tokens = Vec::new();
                loop {
                    let response = client
                        .post(&url)
                        .basic_auth(&id, Some(&secret))
                        .form(&[("grant_type", "client_credentials")])
                        .send()
                        .await
                        .expect("token request");
                    match response.status().as_u16() {
                        200 => {
                            tokens.push(access_token(&response.json().await.expect("json")));
                            granted.fetch_add(1, Ordering::SeqCst);
                        }
                        // Refused; the refusals of 12 askers soon close the throttle.
                        401 | 429 => return tokens,
                        other => panic!("unexpected {other}"),
                    }
                }
            }));
        }
        client_token(&api, &id, &secret).await;
        // The change lands while the askers are being served: without this wait, a change
        // that committed before any of their first requests left the race with no token
        // (seen once in CI on a loaded machine).
        eventually(Duration::from_secs(10), "an asker has a token", || {
            let granted = Arc::clone(&granted);
            async move { granted.load(Ordering::SeqCst) > 0 }
        })
        .await;
        let revoked = if round % 2 == 0 {
            let url = api.url(&format!("/api/v1/clients/{id}"));
            api.client
                .delete(url)
                .bearer_auth(&admin)
                .send()
                .await
                .expect("delete")
                .status()
        } else {
            patch_client(&api, &admin, &id, true).await.status()
        };
        assert!(revoked.is_success(), "{revoked}");
        let cutoff: f64 = sqlx::query_scalar(
            "SELECT ceil(extract(epoch FROM revoked_at))::float8 FROM revoked_subjects WHERE subject = $1",
        )
        .bind(&id)
        .fetch_one(&pool)
        .await
        .expect("the client's cut-off is in the feed");
        let mut issued = 0;
        for asker in askers {
            for token in asker.await.expect("asker") {
                let iat = claims_of(&token)["iat"].as_f64().expect("iat");
                assert!(
                    iat < cutoff,
                    "a token issued at {iat} outlives the cut-off {cutoff}"
                );
                issued += 1;
            }
        }
        assert!(issued > 0, "the race issued no token at all");
    }
}

#[tokio::test]
async fn a_token_requested_while_a_deletion_commits_waits_for_it_and_is_refused() {
    // The deletion is held between computing its revocation cut-off and committing (this
    // test holds the feed's version row, which its trigger must update), across a second
    // boundary. A token request then must wait for the deletion and be refused: a grant
    // that read the client without a lock would get a token whose `iat` is at or after
    // the cut-off, valid for a client that no longer exists.
    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let admin = api.admin_token().await;
    let pool = db.pool().await;
    let (id, secret) = new_client(&api, &admin, "doomed", "user").await;
    client_token(&api, &id, &secret).await;

    let hold = FeedVersionHold::take(&pool).await;
    let deletion = {
        let request = api
            .client
            .delete(api.url(&format!("/api/v1/clients/{id}")))
            .bearer_auth(&admin);
        tokio::spawn(async move { request.send().await.expect("delete").status().as_u16() })
    };
    hold.wait_for_the_change(&pool, "the deletion waits for the feed version")
        .await;
    let grant = {
        let request = api
            .client
            .post(api.url("/api/v1/tokens"))
            .basic_auth(&id, Some(&secret))
            .form(&[("grant_type", "client_credentials")]);
        tokio::spawn(async move {
            let response = request.send().await.expect("token request");
            let status = response.status().as_u16();
            (status, response.text().await.expect("body"))
        })
    };
    eventually(
        Duration::from_secs(10),
        "the token request waits for the deletion (or is answered)",
        || async { grant.is_finished() || lock_waiters(&pool).await == 2 },
    )
    .await;
    hold.release().await;
    assert_eq!(deletion.await.expect("deletion"), 204);
    let (status, body) = grant.await.expect("grant");
    assert_eq!(status, 401, "a token for a client being deleted: {body}");
}
