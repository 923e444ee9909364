//! The HTTP side of running code: `POST …/exec` (run to completion and `no_hup`) and the
//! logs of background processes, read once or followed.

use futures_util::StreamExt;
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};
use zomg_sdk::{BoxName, Client, Error, ExecRequest, LogOutput, ProjectName, Target};

const TOKEN: &str = "tok-exec";

async fn setup() -> (MockServer, Client) {
    let server = MockServer::start().await;
    let target = Target::new(server.uri().parse().unwrap()).with_token(TOKEN);
    (server, Client::new(&target).unwrap())
}

fn project() -> ProjectName {
    "default".parse().unwrap()
}

fn web() -> BoxName {
    "web".parse().unwrap()
}

fn authed(m: &str, p: &str) -> wiremock::MockBuilder {
    Mock::given(method(m))
        .and(path(p))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
}

fn exact_query(want: &'static str) -> impl Fn(&Request) -> bool + Send + Sync {
    move |r: &Request| r.url.query().unwrap_or("") == want
}

#[tokio::test]
async fn exec_run_posts_the_request_and_reads_the_result() {
    let (server, client) = setup().await;
    authed("POST", "/v1/projects/default/boxes/web/exec")
        .and(body_json(json!({
            "command": ["echo $X"],
            "env": {"X": "1"},
            "cwd": "/srv",
            "shell": "sh",
            "stdin": "in",
            "no_hup": false
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "stdout": "1\n", "stderr": "", "exit_code": 3, "truncated": false
        })))
        .expect(1)
        .mount(&server)
        .await;
    let request = ExecRequest {
        command: vec!["echo $X".into()],
        env: [("X".to_owned(), "1".to_owned())].into(),
        cwd: Some("/srv".into()),
        shell: Some("sh".into()),
        stdin: Some("in".into()),
        ..Default::default()
    };
    let r = client.exec_run(&project(), &web(), &request).await.unwrap();
    assert_eq!((r.stdout.as_str(), r.exit_code), ("1\n", Some(3)));
}

#[tokio::test]
async fn exec_detached_sets_no_hup_and_returns_the_pid() {
    let (server, client) = setup().await;
    authed("POST", "/v1/projects/default/boxes/web/exec")
        .and(body_json(
            json!({"command": ["sleep", "9"], "no_hup": true}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"pid": 4242})))
        .expect(1)
        .mount(&server)
        .await;
    let request = ExecRequest {
        command: vec!["sleep".into(), "9".into()],
        ..Default::default()
    };
    let pid = client
        .exec_detached(&project(), &web(), &request)
        .await
        .unwrap();
    assert_eq!(pid, 4242);
}

#[tokio::test]
async fn exec_detached_without_a_pid_is_a_protocol_error() {
    let (server, client) = setup().await;
    authed("POST", "/v1/projects/default/boxes/web/exec")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"exit_code": 0})))
        .mount(&server)
        .await;
    let e = client
        .exec_detached(&project(), &web(), &ExecRequest::default())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Protocol(_)), "{e:?}");
}

#[tokio::test]
async fn logs_pass_pid_and_lines() {
    let (server, client) = setup().await;
    authed("GET", "/v1/projects/default/boxes/web/logs")
        .and(exact_query("pid=12&lines=5"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "pid": 12, "output": "a\nb\n", "running": false
        })))
        .expect(1)
        .mount(&server)
        .await;
    authed("GET", "/v1/projects/default/boxes/web/logs")
        .and(exact_query("pid=12"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "pid": 12, "output": "all\n", "running": true
        })))
        .expect(1)
        .mount(&server)
        .await;
    let l = client.logs(&project(), &web(), 12, Some(5)).await.unwrap();
    assert_eq!(
        l,
        LogOutput {
            pid: 12,
            output: "a\nb\n".into(),
            running: false
        }
    );
    let l = client.logs(&project(), &web(), 12, None).await.unwrap();
    assert!(l.running);
}

#[tokio::test]
async fn logs_of_an_unknown_pid_are_not_found() {
    let (server, client) = setup().await;
    authed("GET", "/v1/projects/default/boxes/web/logs")
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "error": "process_not_found", "message": "no background process 9"
        })))
        .mount(&server)
        .await;
    let e = client.logs(&project(), &web(), 9, None).await.unwrap_err();
    assert_eq!(e.code(), Some("process_not_found"));
    let e = client.follow_logs(&project(), &web(), 9).await.unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
}

#[tokio::test]
async fn follow_logs_streams_the_raw_body() {
    let (server, client) = setup().await;
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    authed("GET", "/v1/projects/default/boxes/web/logs")
        .and(query_param("pid", "7"))
        .and(query_param("follow", "true"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(body.clone()))
        .expect(1)
        .mount(&server)
        .await;
    let mut stream = client.follow_logs(&project(), &web(), 7).await.unwrap();
    let mut got = Vec::new();
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    assert!(got == body, "followed bytes differ");
}
