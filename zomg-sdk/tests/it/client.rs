//! `Client` against a scripted HTTP server: method, path, query, body and token of every
//! call, and how failures map to `Error`.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};
use zomg_sdk::{
    BoxName, BoxStatus, Client, CreateBox, DeleteState, Error, ListOptions, ProjectName,
    ProjectScope, Target, UpdateBox,
};

const TOKEN: &str = "tok-123";

fn box_json(project: &str, name: &str, status: &str) -> Value {
    json!({
        "id": format!("b-{name}"),
        "name": name,
        "project": project,
        "status": status,
        "base": "box-base:latest",
        "created_at": "2026-11-28T10:00:00Z",
        "updated_at": "2026-11-28T10:00:00Z",
        "config": {"cpus": 1.0, "ram_mb": 1024},
        "termination_grace_period_seconds": 10
    })
}

fn project() -> ProjectName {
    "default".parse().unwrap()
}

fn web() -> BoxName {
    "web".parse().unwrap()
}

async fn setup() -> (MockServer, Client) {
    let server = MockServer::start().await;
    let target = Target::new(server.uri().parse().unwrap()).with_token(TOKEN);
    let client = Client::new(&target).unwrap();
    (server, client)
}

/// Matches a request whose whole query string is `want` (`""` for none).
fn exact_query(want: &'static str) -> impl Fn(&Request) -> bool + Send + Sync {
    move |r: &Request| r.url.query().unwrap_or("") == want
}

fn authed(m: &str, p: &str) -> wiremock::MockBuilder {
    Mock::given(method(m))
        .and(path(p))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
}

#[tokio::test]
async fn version_health_and_bases() {
    let (server, client) = setup().await;
    authed("GET", "/version")
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"version": "0.1.0", "backend": "local"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    authed("GET", "/healthz")
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .expect(1)
        .mount(&server)
        .await;
    authed("GET", "/v1/bases")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"bases": [
            {"alias": "box-base", "tag": "latest", "created_at": "2026-11-28T10:00:00Z"}
        ]})))
        .expect(1)
        .mount(&server)
        .await;

    let v = client.version().await.unwrap();
    assert_eq!((v.version.as_str(), v.backend.as_str()), ("0.1.0", "local"));
    client.health().await.unwrap();
    let bases = client.list_bases().await.unwrap();
    assert_eq!(bases.bases[0].alias, "box-base");
}

#[tokio::test]
async fn list_boxes_sends_every_filter() {
    let (server, client) = setup().await;
    authed("GET", "/v1/projects/-/boxes")
        .and(exact_query(
            "prefix=we&tag=env%3Ddev&tag=team%3Dweb&max_results=5&continuation_token=abc",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "boxes": [box_json("p1", "web", "running")],
            "has_more": true,
            "next_continuation_token": "web"
        })))
        .expect(1)
        .mount(&server)
        .await;
    authed("GET", "/v1/projects/default/boxes")
        .and(exact_query(""))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"boxes": []})))
        .expect(1)
        .mount(&server)
        .await;

    let opts = ListOptions {
        prefix: Some("we".into()),
        tags: [("env".into(), "dev".into()), ("team".into(), "web".into())].into(),
        max_results: Some(5),
        continuation_token: Some("abc".into()),
    };
    let page = client.list_boxes(ProjectScope::All, &opts).await.unwrap();
    assert_eq!(page.boxes[0].project, "p1");
    assert!(page.has_more);
    assert_eq!(page.next_continuation_token.as_deref(), Some("web"));

    let page = client
        .list_boxes(&project(), &ListOptions::default())
        .await
        .unwrap();
    assert!(page.boxes.is_empty());
    assert!(!page.has_more);
}

#[tokio::test]
async fn list_all_boxes_follows_pages() {
    let (server, client) = setup().await;
    authed("GET", "/v1/projects/default/boxes")
        .and(exact_query("prefix=a"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "boxes": [box_json("default", "a1", "running")],
            "has_more": true, "next_continuation_token": "t1"
        })))
        .expect(1)
        .mount(&server)
        .await;
    authed("GET", "/v1/projects/default/boxes")
        .and(exact_query("prefix=a&continuation_token=t1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "boxes": [box_json("default", "a2", "stopped"), box_json("default", "a3", "running")],
            "has_more": false
        })))
        .expect(1)
        .mount(&server)
        .await;
    let opts = ListOptions {
        prefix: Some("a".into()),
        ..Default::default()
    };
    let all = client.list_all_boxes(&project(), &opts).await.unwrap();
    let names: Vec<&str> = all.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["a1", "a2", "a3"]);
}

#[tokio::test]
async fn list_all_boxes_rejects_a_broken_paging_answer() {
    let (server, client) = setup().await;
    authed("GET", "/v1/projects/default/boxes")
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"boxes": [], "has_more": true})),
        )
        .mount(&server)
        .await;
    let e = client
        .list_all_boxes(&project(), &ListOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Protocol(_)), "{e}");
    assert!(e.to_string().contains("no continuation token"), "{e}");
}

#[tokio::test]
async fn create_get_update() {
    let (server, client) = setup().await;
    let create = CreateBox {
        name: "web".into(),
        base: Some("box-base:v2".into()),
        tags: [("env".into(), "dev".into())].into(),
        port: Some(8080),
        ..Default::default()
    };
    authed("POST", "/v1/projects/default/boxes")
        .and(body_json(json!({
            "name": "web", "base": "box-base:v2", "tags": {"env": "dev"}, "port": 8080
        })))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(box_json("default", "web", "creating")),
        )
        .expect(1)
        .mount(&server)
        .await;
    authed("GET", "/v1/projects/default/boxes/web")
        .respond_with(
            ResponseTemplate::new(200).set_body_json(box_json("default", "web", "running")),
        )
        .expect(1)
        .mount(&server)
        .await;
    authed("PUT", "/v1/projects/default/boxes/web")
        .and(body_json(
            json!({"environment": {"PORT": "9090"}, "tags": {"a": "b"}}),
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(box_json("default", "web", "running")),
        )
        .expect(1)
        .mount(&server)
        .await;

    let b = client.create_box(&project(), &create).await.unwrap();
    assert_eq!(b.status, BoxStatus::Creating);
    let b = client.get_box(&project(), &web()).await.unwrap();
    assert_eq!(b.status, BoxStatus::Running);
    let update = UpdateBox {
        environment: [("PORT".into(), "9090".into())].into(),
        tags: [("a".into(), "b".into())].into(),
    };
    client
        .update_box(&project(), &web(), &update)
        .await
        .unwrap();
}

#[tokio::test]
async fn stop_and_resume() {
    let (server, client) = setup().await;
    authed("POST", "/v1/projects/default/boxes/web/stop")
        .respond_with(
            ResponseTemplate::new(200).set_body_json(box_json("default", "web", "stopped")),
        )
        .expect(1)
        .mount(&server)
        .await;
    authed("POST", "/v1/projects/default/boxes/web/resume")
        .respond_with(
            ResponseTemplate::new(200).set_body_json(box_json("default", "web", "running")),
        )
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(
        client.stop_box(&project(), &web()).await.unwrap().status,
        BoxStatus::Stopped
    );
    assert_eq!(
        client.resume_box(&project(), &web()).await.unwrap().status,
        BoxStatus::Running
    );
}

#[tokio::test]
async fn delete_variants() {
    let (server, client) = setup().await;
    authed("DELETE", "/v1/projects/default/boxes/web")
        .and(exact_query("force=true"))
        .respond_with(
            ResponseTemplate::new(202).set_body_json(json!({"name": "web", "status": "deleting"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    authed("DELETE", "/v1/projects/default/boxes/gone")
        .and(exact_query(""))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"name": "gone", "status": "deleted"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    authed("DELETE", "/v1/projects/default/boxes/running")
        .and(exact_query(""))
        .respond_with(
            ResponseTemplate::new(409)
                .set_body_json(json!({"error": "box_running", "message": "box is running"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    authed("DELETE", "/v1/projects/default/boxes/bodyless")
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&server)
        .await;

    let s = client.delete_box(&project(), &web(), true).await.unwrap();
    assert_eq!(s.status, DeleteState::Deleting);
    let s = client
        .delete_box(&project(), &"gone".parse().unwrap(), false)
        .await
        .unwrap();
    assert_eq!((s.name.as_str(), s.status), ("gone", DeleteState::Deleted));
    let e = client
        .delete_box(&project(), &"running".parse().unwrap(), false)
        .await
        .unwrap_err();
    assert!(e.is_conflict());
    assert_eq!(e.code(), Some("box_running"));
    assert_eq!(e.to_string(), "box is running");
    let s = client
        .delete_box(&project(), &"bodyless".parse().unwrap(), false)
        .await
        .unwrap();
    assert_eq!(
        (s.name.as_str(), s.status),
        ("bodyless", DeleteState::Deleting)
    );
}

#[tokio::test]
async fn wait_deleted_polls_until_done() {
    let (server, client) = setup().await;
    let status = "/v1/projects/default/boxes/web/delete-status";
    authed("GET", status)
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"name": "web", "status": "deleting"})),
        )
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    authed("GET", status)
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"name": "web", "status": "deleted"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let s = client
        .wait_deleted(&project(), &web(), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(s.status, DeleteState::Deleted);
}

#[tokio::test]
async fn wait_deleted_returns_failed_and_times_out() {
    let (server, client) = setup().await;
    authed("GET", "/v1/projects/default/boxes/bad/delete-status")
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"name": "bad", "status": "failed", "message": "subvolume busy"}),
            ),
        )
        .mount(&server)
        .await;
    authed("GET", "/v1/projects/default/boxes/slow/delete-status")
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"name": "slow", "status": "deleting"})),
        )
        .mount(&server)
        .await;
    let s = client
        .wait_deleted(&project(), &"bad".parse().unwrap(), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(s.status, DeleteState::Failed);
    assert_eq!(s.message.as_deref(), Some("subvolume busy"));
    let e = client
        .wait_deleted(
            &project(),
            &"slow".parse().unwrap(),
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "timed out after 1s waiting for box default:slow to be deleted"
    );
}

#[tokio::test]
async fn wait_for_box_checks_the_condition() {
    let (server, client) = setup().await;
    authed("GET", "/v1/projects/default/boxes/web")
        .respond_with(
            ResponseTemplate::new(200).set_body_json(box_json("default", "web", "creating")),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    authed("GET", "/v1/projects/default/boxes/web")
        .respond_with(
            ResponseTemplate::new(200).set_body_json(box_json("default", "web", "running")),
        )
        .mount(&server)
        .await;
    let b = client
        .wait_for_box(&project(), &web(), Duration::from_secs(10), |b| {
            b.status == BoxStatus::Running
        })
        .await
        .unwrap();
    assert_eq!(b.status, BoxStatus::Running);
}

#[tokio::test]
async fn error_mapping() {
    let (server, client) = setup().await;
    let route = |name: &str| format!("/v1/projects/default/boxes/{name}");
    Mock::given(method("GET"))
        .and(path(route("missing")))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(
                json!({"error": "not_found", "message": "box \"missing\" not found"}),
            ),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(route("panics")))
        .respond_with(ResponseTemplate::new(500).set_body_string("thread panicked\nat src/x.rs"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(route("proxied")))
        .respond_with(
            ResponseTemplate::new(502)
                .insert_header("content-type", "text/html")
                .set_body_string("<html><body>Bad Gateway</body></html>"),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(route("denied")))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(route("garbage")))
        .respond_with(ResponseTemplate::new(200).set_body_string("not json"))
        .mount(&server)
        .await;

    let get = |name: &'static str| {
        let client = client.clone();
        async move {
            client
                .get_box(&project(), &name.parse().unwrap())
                .await
                .unwrap_err()
        }
    };

    let e = get("missing").await;
    assert!(e.is_not_found());
    assert_eq!(e.code(), Some("not_found"));
    assert_eq!(e.to_string(), "box \"missing\" not found");

    let e = get("panics").await;
    assert_eq!(e.status(), Some(500));
    assert_eq!(e.code(), Some("internal_server_error"));
    assert_eq!(e.to_string(), "thread panicked…");

    let e = get("proxied").await;
    assert_eq!(e.code(), Some("bad_gateway"));
    assert_eq!(e.to_string(), "server answered 502 Bad Gateway");

    let e = get("denied").await;
    assert!(e.is_unauthorized());
    assert_eq!(e.to_string(), "server answered 401 Unauthorized");

    let e = get("garbage").await;
    assert!(matches!(e, Error::Protocol(_)), "{e}");
    assert!(e.to_string().contains("not json"), "{e}");
}

#[tokio::test]
async fn unreachable_server_names_the_url() {
    // Bind and drop a listener: nothing listens on that port afterwards.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let client = Client::new(&Target::new(url.parse().unwrap())).unwrap();
    let e = client.version().await.unwrap_err();
    let Error::Unreachable { url: tried, reason } = &e else {
        panic!("expected Unreachable, got {e:?}");
    };
    assert_eq!(tried, &url);
    assert!(reason.to_lowercase().contains("refused"), "{reason}");
    assert!(
        e.to_string()
            .starts_with(&format!("cannot reach the zomg server at {url}: ")),
        "{e}"
    );
    assert!(
        e.to_string()
            .ends_with("(set --url, ZOMG_URL or a profile to use another server)")
    );
}

#[tokio::test]
async fn no_token_sends_no_authorization_header() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/healthz"))
        .and(|r: &Request| !r.headers.contains_key("authorization"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let client = Client::new(&Target::new(server.uri().parse().unwrap())).unwrap();
    client.health().await.unwrap();
}

#[tokio::test]
async fn ip_override_keeps_the_host_name() {
    let server = MockServer::start().await;
    let port = server.address().port();
    let host = format!("zomg.test:{port}");
    Mock::given(method("GET"))
        .and(path("/healthz"))
        .and(header("host", host.as_str()))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let mut target = Target::new(format!("http://zomg.test:{port}").parse().unwrap());
    target.ip = Some("127.0.0.1".parse().unwrap());
    Client::new(&target).unwrap().health().await.unwrap();
}

#[tokio::test]
async fn base_url_path_prefix_is_kept() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/zomg/v1/projects/default/boxes/web"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(box_json("default", "web", "running")),
        )
        .expect(1)
        .mount(&server)
        .await;
    let target = Target::new(format!("{}/zomg", server.uri()).parse().unwrap());
    Client::new(&target)
        .unwrap()
        .get_box(&project(), &web())
        .await
        .unwrap();
}
