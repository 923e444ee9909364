//! Commands that talk to a server: target resolution errors, and exact output against a
//! scripted HTTP server standing in for `zomg-server`.

use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::{assert_error, sandbox, zomg};

/// A scripted server on its own runtime; the `zomg` binary runs against its URL.
struct Fake {
    rt: tokio::runtime::Runtime,
    server: MockServer,
}

impl Fake {
    fn start() -> Self {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let server = rt.block_on(MockServer::start());
        Self { rt, server }
    }

    fn mount(&self, mock: Mock) {
        self.rt.block_on(mock.mount(&self.server));
    }

    fn url(&self) -> String {
        self.server.uri()
    }
}

fn wire_box(name: &str, status: &str) -> Value {
    json!({
        "id": format!("b-{name}"),
        "name": name,
        "project": "default",
        "status": status,
        "base": "box-base:latest",
        "url": format!("http://{name}.default.zomg.localhost"),
        "port": 8080,
        "created_at": "2026-11-28T10:00:00Z",
        "updated_at": "2026-11-28T10:00:01Z",
        "published_domains": [],
        "tags": {"env": "dev"},
        "environment": {},
        "data_mounts": [{"name": "cache", "path": "/data", "read_only": false}],
        "config": {"cpus": 2.0, "ram_mb": 1024, "storage_gb": 10},
        "termination_grace_period_seconds": 10
    })
}

fn api_error(status: u16, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({"error": code, "message": message}))
}

#[test]
fn list_prints_a_table_and_names() {
    let fake = Fake::start();
    fake.mount(
        Mock::given(method("GET"))
            .and(path("/v1/projects/default/boxes"))
            .and(header("authorization", "Bearer t0k"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "boxes": [wire_box("web", "running"), wire_box("db", "stopped")],
                "has_more": false
            }))),
    );
    let dir = sandbox();
    zomg(dir.path())
        .args(["list", "--url", &fake.url(), "--token", "t0k"])
        .assert()
        .success()
        .stderr("")
        .stdout(
            "\
NAME  STATUS   BASE             URL                                CREATED
web   running  box-base:latest  http://web.default.zomg.localhost  2026-11-28T10:00:00Z
db    stopped  box-base:latest  http://db.default.zomg.localhost   2026-11-28T10:00:00Z
",
        );
    zomg(dir.path())
        .env("ZOMG_URL", fake.url())
        .env("ZOMG_TOKEN", "t0k")
        .args(["list", "-q"])
        .assert()
        .success()
        .stdout("web\ndb\n");
    let out = zomg(dir.path())
        .env("ZOMG_URL", fake.url())
        .env("ZOMG_TOKEN", "t0k")
        .args(["list", "-j"])
        .assert()
        .success();
    let v: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v[0]["name"], "web");
    assert_eq!(v[1]["status"], "stopped");
}

#[test]
fn list_filters_by_tags_in_the_resolved_project() {
    let fake = Fake::start();
    fake.mount(
        Mock::given(method("GET"))
            .and(path("/v1/projects/alpha/boxes"))
            .and(query_param("tag", "env=dev"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "boxes": [wire_box("web", "running")]
            }))),
    );
    let dir = sandbox();
    zomg(dir.path())
        .env("ZOMG_PROJECT", "alpha")
        .args(["list", "-q", "-t", "env=dev", "--url", &fake.url()])
        .assert()
        .success()
        .stdout("web\n");
    zomg(dir.path())
        .args([
            "list",
            "-q",
            "-p",
            "alpha",
            "--tag",
            "env=dev",
            "--url",
            &fake.url(),
        ])
        .assert()
        .success()
        .stdout("web\n");
}

#[test]
fn list_all_uses_the_all_projects_path() {
    let fake = Fake::start();
    fake.mount(
        Mock::given(method("GET"))
            .and(path("/v1/projects/-/boxes"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "boxes": [wire_box("web", "running")]
            }))),
    );
    let dir = sandbox();
    zomg(dir.path())
        .args(["list", "-a", "-q", "--url", &fake.url()])
        .assert()
        .success()
        // Across projects, names are qualified so that they can be fed back to commands.
        .stdout("default:web\n");
}

#[test]
fn show_prints_every_field() {
    let fake = Fake::start();
    fake.mount(
        Mock::given(method("GET"))
            .and(path("/v1/projects/proj/boxes/web"))
            .respond_with(ResponseTemplate::new(200).set_body_json(wire_box("web", "running"))),
    );
    let dir = sandbox();
    zomg(dir.path())
        .args(["show", "proj:web", "--url", &fake.url()])
        .assert()
        .success()
        .stdout(
            "\
name:              web
project:           default
status:            running
base:              box-base:latest
url:               http://web.default.zomg.localhost
port:              8080
created_at:        2026-11-28T10:00:00Z
updated_at:        2026-11-28T10:00:01Z
published_domains: -
tags:              env=dev
data_mounts:       cache=/data:rw
cpus:              2
ram_mb:            1024
storage_gb:        10
storage_used:      -
",
        );
}

#[test]
fn dot_is_the_current_box_and_dash_is_refused() {
    let fake = Fake::start();
    fake.mount(
        Mock::given(method("GET"))
            .and(path("/v1/projects/proj/boxes/web"))
            .respond_with(ResponseTemplate::new(200).set_body_json(wire_box("web", "running"))),
    );
    let dir = sandbox();
    let out = zomg(dir.path())
        .env("ZOMG_PROJECT", "proj")
        .env("BOX_NAME", "web")
        .args(["show", ".", "-j", "--url", &fake.url()])
        .assert()
        .success();
    let v: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v["name"], "web");
    assert_error(
        zomg(dir.path()).args(["show", "-", "--url", &fake.url()]),
        "invalid box ref \"-\": an ephemeral box is only allowed with exec, console and cp/get/put",
    );
}

#[test]
fn show_missing_box_is_an_error() {
    let fake = Fake::start();
    fake.mount(
        Mock::given(method("GET"))
            .and(path("/v1/projects/default/boxes/nope"))
            .respond_with(api_error(404, "not_found", "box \"nope\" not found")),
    );
    let dir = sandbox();
    assert_error(
        zomg(dir.path()).args(["show", "nope", "--url", &fake.url()]),
        "box \"nope\" not found",
    );
}

#[test]
fn delete_reports_each_box_and_fails_on_any_error() {
    let fake = Fake::start();
    fake.mount(
        Mock::given(method("DELETE"))
            .and(path("/v1/projects/default/boxes/gone"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"name": "gone", "status": "deleted"})),
            ),
    );
    fake.mount(
        Mock::given(method("DELETE"))
            .and(path("/v1/projects/default/boxes/slow"))
            .respond_with(
                ResponseTemplate::new(202)
                    .set_body_json(json!({"name": "slow", "status": "deleting"})),
            ),
    );
    fake.mount(
        Mock::given(method("DELETE"))
            .and(path("/v1/projects/default/boxes/busy"))
            .respond_with(api_error(409, "box_running", "box is running")),
    );
    let dir = sandbox();
    zomg(dir.path())
        .args(["rm", "gone", "slow", "busy", "--url", &fake.url()])
        .assert()
        .code(1)
        .stdout("gone: deleted\nslow: deleting\nbusy: error: box is running\n")
        .stderr("Error: 1 of 3 boxes could not be deleted\n");
    zomg(dir.path())
        .args(["delete", "gone", "slow", "--url", &fake.url()])
        .assert()
        .success()
        .stdout("gone: deleted\nslow: deleting\n");
}

#[test]
fn delete_force_and_wait() {
    let fake = Fake::start();
    fake.mount(
        Mock::given(method("DELETE"))
            .and(path("/v1/projects/default/boxes/web"))
            .and(query_param("force", "true"))
            .respond_with(
                ResponseTemplate::new(202)
                    .set_body_json(json!({"name": "web", "status": "deleting"})),
            ),
    );
    fake.mount(
        Mock::given(method("GET"))
            .and(path("/v1/projects/default/boxes/web/delete-status"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"name": "web", "status": "deleted"})),
            ),
    );
    let dir = sandbox();
    zomg(dir.path())
        .args(["delete", "web", "-f", "--wait", "--url", &fake.url()])
        .assert()
        .success()
        .stdout("web: deleted\n");
    let out = zomg(dir.path())
        .args(["delete", "web", "-f", "--wait", "-j", "--url", &fake.url()])
        .assert()
        .success();
    let v: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v, json!([{"name": "web", "status": "deleted"}]));
}

#[test]
fn create_sends_the_parsed_flags() {
    let fake = Fake::start();
    fake.mount(
        Mock::given(method("POST"))
            .and(path("/v1/projects/default/boxes"))
            .and(wiremock::matchers::body_json(json!({
                "name": "web",
                "base": "box-base:v1",
                "tags": {"env": "dev"},
                "environment": {"A": "1"},
                "data_mounts": [{"name": "cache", "path": "/data", "read_only": true}],
                "cpus": 0.5,
                "ram_mb": 2048,
                "storage_gb": 10,
                "port": 8080
            })))
            .respond_with(ResponseTemplate::new(201).set_body_json(wire_box("web", "running"))),
    );
    let dir = sandbox();
    let out = zomg(dir.path())
        .args([
            "create",
            "web",
            "--base",
            "box-base:v1",
            "-t",
            "env=dev",
            "-e",
            "A=1",
            "-d",
            "cache=/data:ro",
            "--cpu",
            "500m",
            "--memory",
            "2G",
            "--storage",
            "10",
            "--port",
            "8080",
            "-j",
            "--url",
        ])
        .arg(fake.url())
        .assert()
        .success();
    let v: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v["name"], "web");
}

#[test]
fn update_merges_settings_and_env() {
    let fake = Fake::start();
    fake.mount(
        Mock::given(method("PUT"))
            .and(path("/v1/projects/default/boxes/web"))
            .and(wiremock::matchers::body_json(json!({
                "environment": {"PORT": "9090", "CPU": "2"},
                "tags": {"tier": "web"}
            })))
            .respond_with(ResponseTemplate::new(200).set_body_json(wire_box("web", "running"))),
    );
    fake.mount(
        Mock::given(method("PUT"))
            .and(path("/v1/projects/default/boxes/web"))
            .and(wiremock::matchers::body_json(
                json!({"environment": {"FOO": "1"}, "tags": {}}),
            ))
            .respond_with(api_error(400, "no_updates", "no updates provided")),
    );
    let dir = sandbox();
    zomg(dir.path())
        .args([
            "update",
            "web",
            "PORT=9090",
            "--env",
            "CPU=2",
            "--tag",
            "tier=web",
        ])
        .args(["--url", &fake.url()])
        .assert()
        .success();
    assert_error(
        zomg(dir.path()).args(["update", "web", "FOO=1", "--url", &fake.url()]),
        "no updates provided",
    );
}

#[test]
fn stop_and_resume_print_the_new_status() {
    let fake = Fake::start();
    fake.mount(
        Mock::given(method("POST"))
            .and(path("/v1/projects/default/boxes/web/stop"))
            .respond_with(ResponseTemplate::new(200).set_body_json(wire_box("web", "stopped"))),
    );
    fake.mount(
        Mock::given(method("POST"))
            .and(path("/v1/projects/default/boxes/web/resume"))
            .respond_with(ResponseTemplate::new(200).set_body_json(wire_box("web", "running"))),
    );
    let dir = sandbox();
    zomg(dir.path())
        .args(["stop", "web", "--url", &fake.url()])
        .assert()
        .success()
        .stdout("web: stopped\n");
    zomg(dir.path())
        .args(["resume", "web", "--url", &fake.url()])
        .assert()
        .success()
        .stdout("web: running\n");
}

#[test]
fn base_list_table() {
    let fake = Fake::start();
    fake.mount(
        Mock::given(method("GET"))
            .and(path("/v1/bases"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"bases": [
                {"alias": "box-base", "tag": "latest", "created_at": "2026-11-28T09:00:00Z",
                 "source": "debootstrap bookworm"}
            ]}))),
    );
    let dir = sandbox();
    zomg(dir.path())
        .args(["base", "list", "--url", &fake.url()])
        .assert()
        .success()
        .stdout(
            "\
BASE             CREATED               SOURCE
box-base:latest  2026-11-28T09:00:00Z  debootstrap bookworm
",
        );
}
