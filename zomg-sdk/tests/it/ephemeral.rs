//! The ephemeral-box guard: create, then a forced delete on success, on error, and from
//! `Drop` as a fallback.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};
use zomg_sdk::{Client, CreateBox, EphemeralBox, Error, ProjectName, Target};

fn project() -> ProjectName {
    "ci".parse().unwrap()
}

fn box_json(name: &str, status: &str) -> Value {
    json!({
        "id": "b-1",
        "name": name,
        "project": "ci",
        "status": status,
        "base": "box-base:latest",
        "created_at": "2026-11-28T10:00:00Z",
        "updated_at": "2026-11-28T10:00:00Z",
        "config": {"cpus": 1.0, "ram_mb": 1024},
        "termination_grace_period_seconds": 10
    })
}

/// A server that creates whatever box is asked for (answering `status`) and deletes with
/// `delete_status`; returns the server and a client.
async fn setup(status: &'static str, delete_status: u16) -> (MockServer, Client) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/projects/ci/boxes"))
        .respond_with(move |r: &Request| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            let name = body["name"].as_str().unwrap();
            ResponseTemplate::new(200).set_body_json(box_json(name, status))
        })
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path_regex(
            "^/v1/projects/ci/boxes/ephemeral-[0-9]+-[0-9]+$",
        ))
        .and(query_param("force", "true"))
        .respond_with(move |r: &Request| {
            if delete_status == 200 {
                let name = r.url.path().rsplit('/').next().unwrap().to_owned();
                ResponseTemplate::new(200).set_body_json(json!({"name": name, "status": "deleted"}))
            } else {
                ResponseTemplate::new(delete_status)
                    .set_body_json(json!({"error": "internal", "message": "disk on fire"}))
            }
        })
        .mount(&server)
        .await;
    let client = Client::new(&Target::new(server.uri().parse().unwrap())).unwrap();
    (server, client)
}

async fn requests(server: &MockServer, m: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == m)
        .collect()
}

#[tokio::test]
async fn create_generates_a_name_and_delete_forces() {
    let (server, client) = setup("running", 200).await;
    let guard = EphemeralBox::create(&client, &project(), CreateBox::default())
        .await
        .unwrap();
    let name = guard.name().to_string();
    let pid = std::process::id();
    assert!(name.starts_with(&format!("ephemeral-{pid}-")), "{name}");
    assert_eq!(guard.project().as_str(), "ci");
    let status = guard.delete().await.unwrap();
    assert_eq!(status.name, name);
    let deletes = requests(&server, "DELETE").await;
    assert_eq!(deletes.len(), 1);
    assert_eq!(
        deletes[0].url.path(),
        format!("/v1/projects/ci/boxes/{name}")
    );
    assert_eq!(deletes[0].url.query(), Some("force=true"));
}

#[tokio::test]
async fn with_ephemeral_deletes_after_success_and_after_error() {
    let (server, client) = setup("running", 200).await;
    let got: Result<String, Error> = client
        .with_ephemeral(&project(), CreateBox::default(), |b| async move {
            Ok(b.name.to_string())
        })
        .await;
    let name = got.unwrap();
    assert!(name.starts_with("ephemeral-"));

    let got: Result<(), Error> = client
        .with_ephemeral(&project(), CreateBox::default(), |_| async {
            Err(Error::Invalid("the job failed".into()))
        })
        .await;
    assert_eq!(got.unwrap_err().to_string(), "the job failed");
    assert_eq!(requests(&server, "DELETE").await.len(), 2);
}

#[tokio::test]
async fn a_failed_delete_is_reported_with_the_jobs_error() {
    let (_server, client) = setup("running", 500).await;
    let got: Result<(), Error> = client
        .with_ephemeral(&project(), CreateBox::default(), |_| async {
            Err(Error::Invalid("the job failed".into()))
        })
        .await;
    let e = got.unwrap_err();
    assert!(matches!(e, Error::Cleanup { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "the job failed; cleaning up failed too: disk on fire"
    );
    let got: Result<u8, Error> = client
        .with_ephemeral(&project(), CreateBox::default(), |_| async { Ok(1) })
        .await;
    assert_eq!(got.unwrap_err().to_string(), "disk on fire");
}

#[tokio::test]
async fn a_refused_create_deletes_nothing_and_a_failed_one_cleans_up() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/projects/ci/boxes"))
        .respond_with(ResponseTemplate::new(404).set_body_json(
            json!({"error": "base_not_found", "message": "base \"nope:latest\" not found"}),
        ))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/projects/ci/boxes"))
        .respond_with(ResponseTemplate::new(502).set_body_string("bad gateway"))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let client = Client::new(&Target::new(server.uri().parse().unwrap())).unwrap();
    let e = EphemeralBox::create(&client, &project(), CreateBox::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some("base_not_found"));
    assert_eq!(requests(&server, "DELETE").await.len(), 0);
    let e = EphemeralBox::create(&client, &project(), CreateBox::default())
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(502));
    let deletes = requests(&server, "DELETE").await;
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].url.query(), Some("force=true"));
}

#[tokio::test]
async fn a_creating_box_is_waited_for() {
    let (server, client) = setup("creating", 200).await;
    Mock::given(method("GET"))
        .and(path_regex(
            "^/v1/projects/ci/boxes/ephemeral-[0-9]+-[0-9]+$",
        ))
        .respond_with(|r: &Request| {
            let name = r.url.path().rsplit('/').next().unwrap().to_owned();
            ResponseTemplate::new(200).set_body_json(box_json(&name, "running"))
        })
        .expect(1)
        .mount(&server)
        .await;
    let guard = EphemeralBox::create(&client, &project(), CreateBox::default())
        .await
        .unwrap();
    assert_eq!(guard.info().status.as_str(), "running");
    guard.delete().await.unwrap();
}

#[tokio::test]
async fn a_dropped_guard_still_deletes_and_keep_does_not() {
    let (server, client) = setup("running", 200).await;
    let guard = EphemeralBox::create(&client, &project(), CreateBox::default())
        .await
        .unwrap();
    let kept = EphemeralBox::create(&client, &project(), CreateBox::default())
        .await
        .unwrap();
    let name = guard.name().to_string();
    drop(guard);
    let _info = kept.keep();
    for _ in 0..100 {
        if !requests(&server, "DELETE").await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let deletes = requests(&server, "DELETE").await;
    assert_eq!(
        deletes.len(),
        1,
        "exactly the dropped guard's box is deleted"
    );
    assert_eq!(
        deletes[0].url.path(),
        format!("/v1/projects/ci/boxes/{name}")
    );
}
