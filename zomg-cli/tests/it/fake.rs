//! A small stand-in for `zomg-server` implementing just the routes that running code needs
//! (WebSocket exec and console, `POST …/exec`, logs, and box create/delete for ephemeral
//! boxes), recording what it was asked in an event log.
//!
//! WebSocket commands (the first word of the start message's command):
//! `cat` echoes stdin to stdout until EOF; `exit N`; `kill` (SIGKILL, 137); `split` writes
//! `to-out` and `to-err` to stdout and stderr; `ps ARGS` prints a table and its arguments;
//! `sleep` runs until the client hangs up; `drop` hangs up without a status; anything else
//! (`bash`, shell strings) prints the start message as JSON. A start message with `tty`
//! (and every console) gets a tiny line-editing shell, see [`shell`]. A `user` is refused
//! with exit code 127 and an error, as the real server does for unknown users.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use futures_util::SinkExt;
use serde_json::{Value, json};
use zomg_sdk::{ExecRequest, ExecStart};

pub const TOKEN: &str = "t0k";

#[derive(Default)]
struct Shared {
    events: Mutex<Vec<String>>,
}

impl Shared {
    fn event(&self, e: impl Into<String>) {
        self.events.lock().unwrap().push(e.into());
    }
}

/// The running fake, on its own runtime.
pub struct Fake {
    _rt: tokio::runtime::Runtime,
    url: String,
    shared: Arc<Shared>,
    dir: tempfile::TempDir,
}

impl Fake {
    pub fn start() -> Self {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/v1/projects/{project}/boxes", post(create_box))
            .route("/v1/projects/{project}/boxes/{name}", delete(delete_box))
            .route("/v1/projects/{project}/boxes/{name}/exec/ws", get(exec_ws))
            .route("/v1/projects/{project}/boxes/{name}/console", get(console))
            .route("/v1/projects/{project}/boxes/{name}/exec", post(exec_post))
            .route("/v1/projects/{project}/boxes/{name}/logs", get(logs))
            .with_state(shared.clone());
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            _rt: rt,
            url,
            shared,
            dir: crate::sandbox(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// A sandbox directory for the commands run against this fake.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Everything recorded so far.
    pub fn events(&self) -> Vec<String> {
        self.shared.events.lock().unwrap().clone()
    }

    /// Waits until an event satisfies `pred`, and returns it.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; events: {:#?}",
                self.events()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The start messages the fake received, in order.
    pub fn starts(&self) -> Vec<ExecStart> {
        self.events()
            .iter()
            .filter_map(|e| e.strip_prefix("start "))
            .map(|j| serde_json::from_str(j).unwrap())
            .collect()
    }
}

fn error(status: u16, code: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        axum::Json(json!({"error": code, "message": message})),
    )
        .into_response()
}

/// Token and box checks shared by every route: the refusal, if any.
fn check(headers: &HeaderMap, name: &str) -> Option<Response> {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {TOKEN}")) {
        return Some(error(401, "unauthorized", "missing or invalid token"));
    }
    match name {
        "missing" => Some(error(404, "not_found", "box \"missing\" not found")),
        "stopped" => Some(error(
            409,
            "box_not_running",
            "box \"stopped\" is not running",
        )),
        _ => None,
    }
}

fn box_json(project: &str, name: &str) -> Value {
    json!({
        "id": format!("b-{name}"),
        "name": name,
        "project": project,
        "status": "running",
        "base": "box-base:latest",
        "created_at": "2026-11-28T10:00:00Z",
        "updated_at": "2026-11-28T10:00:00Z",
        "config": {"cpus": 1.0, "ram_mb": 1024},
        "termination_grace_period_seconds": 10
    })
}

async fn create_box(
    State(st): State<Arc<Shared>>,
    Path(project): Path<String>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    if let Some(r) = check(&headers, "") {
        return r;
    }
    let name = body["name"].as_str().unwrap().to_owned();
    st.event(format!("create {project}:{name} base={}", body["base"]));
    axum::Json(box_json(&project, &name)).into_response()
}

async fn delete_box(
    State(st): State<Arc<Shared>>,
    Path((project, name)): Path<(String, String)>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = check(&headers, "") {
        return r;
    }
    let force = q.get("force").map(String::as_str).unwrap_or("false");
    st.event(format!("delete {project}:{name} force={force}"));
    axum::Json(json!({"name": name, "status": "deleted"})).into_response()
}

async fn exec_post(
    State(st): State<Arc<Shared>>,
    Path((project, name)): Path<(String, String)>,
    headers: HeaderMap,
    axum::Json(req): axum::Json<ExecRequest>,
) -> Response {
    if let Some(r) = check(&headers, &name) {
        return r;
    }
    st.event(format!(
        "post {project}:{name} {}",
        serde_json::to_string(&req).unwrap()
    ));
    if req.no_hup {
        axum::Json(json!({"pid": 4242})).into_response()
    } else {
        axum::Json(json!({"stdout": "", "stderr": "", "exit_code": 0})).into_response()
    }
}

async fn logs(
    Path((_project, name)): Path<(String, String)>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = check(&headers, &name) {
        return r;
    }
    if q.get("pid").map(String::as_str) != Some("7") {
        let pid = q.get("pid").cloned().unwrap_or_default();
        return error(
            404,
            "process_not_found",
            &format!("no background process {pid}"),
        );
    }
    if q.get("follow").map(String::as_str) == Some("true") {
        let chunks = futures_util::stream::unfold(0, |i| async move {
            if i == 3 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
            Some((
                Ok::<_, Infallible>(Bytes::from(format!("tick {i}\n"))),
                i + 1,
            ))
        });
        return Body::from_stream(chunks).into_response();
    }
    let output = match q.get("lines").map(String::as_str) {
        Some("1") => "line2\n",
        _ => "line1\nline2\n",
    };
    axum::Json(json!({"pid": 7, "output": output, "running": true})).into_response()
}

async fn exec_ws(
    State(st): State<Arc<Shared>>,
    Path((_project, name)): Path<(String, String)>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if let Some(r) = check(&headers, &name) {
        return r;
    }
    ws.protocols(["v5.channel.k8s.io"])
        .on_upgrade(move |socket| session(st, socket, false))
}

async fn console(
    State(st): State<Arc<Shared>>,
    Path((_project, name)): Path<(String, String)>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if let Some(r) = check(&headers, &name) {
        return r;
    }
    ws.protocols(["v5.channel.k8s.io"])
        .on_upgrade(move |socket| session(st, socket, true))
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = vec![channel];
    v.extend_from_slice(data);
    Message::Binary(v.into())
}

fn status(exit: Value) -> Message {
    frame(3, exit.to_string().as_bytes())
}

async fn session(st: Arc<Shared>, mut ws: WebSocket, console: bool) {
    let Some(Ok(Message::Text(start))) = ws.recv().await else {
        st.event("no start message");
        return;
    };
    let start: ExecStart = serde_json::from_str(&start).unwrap();
    st.event(format!("start {}", serde_json::to_string(&start).unwrap()));
    if let Some(user) = &start.user {
        let error = format!("user \"{user}\" does not exist in this project");
        return finish(ws, json!({"exit_code": 127, "error": error})).await;
    }
    if console || start.tty {
        return shell(st, ws, start).await;
    }
    let argv: Vec<&str> = start.command.iter().map(String::as_str).collect();
    let shell_string = start.shell.is_some();
    let exit = match argv.as_slice() {
        ["exit", code] if !shell_string => json!({"exit_code": code.parse::<i32>().unwrap()}),
        ["kill"] => json!({"exit_code": 137, "signal": 9}),
        ["split"] => {
            let _ = ws.send(frame(1, b"to-out\n")).await;
            let _ = ws.send(frame(2, b"to-err\n")).await;
            json!({"exit_code": 0})
        }
        ["ps", args @ ..] => {
            let text = format!("PID CMD\n1 tini\nargs: {}\n", args.join(" "));
            let _ = ws.send(frame(1, text.as_bytes())).await;
            json!({"exit_code": 0})
        }
        ["drop"] => {
            let _ = ws.send(frame(1, b"partial\n")).await;
            st.event("dropped");
            return;
        }
        ["sleep"] => {
            while let Some(Ok(_)) = ws.recv().await {}
            st.event("disconnected");
            return;
        }
        ["cat"] => {
            while let Some(Ok(msg)) = ws.recv().await {
                let Message::Binary(data) = msg else { continue };
                match (data[0], &data[1..]) {
                    // A client that went away ends the loop at the next receive.
                    (0, payload) => drop(ws.send(frame(1, payload)).await),
                    (255, [0]) => break,
                    _ => {}
                }
            }
            st.event("eof");
            json!({"exit_code": 0})
        }
        _ => {
            let json = serde_json::to_vec(&start).unwrap();
            let _ = ws.send(frame(1, &json)).await;
            json!({"exit_code": 0})
        }
    };
    finish(ws, exit).await;
}

/// Sends the status and a close frame, then reads until the client goes away. A server must
/// not drop the socket while the client's last frames (stdin EOF, say) are unread: the
/// kernel would answer with a reset, and the client could lose the status.
async fn finish(mut ws: WebSocket, exit: Value) {
    let _ = ws.send(status(exit)).await;
    let _ = ws.close().await;
    while let Some(Ok(_)) = ws.recv().await {}
}

/// A shell on a "terminal": prints `[tty CxR]` and the prompt `fake$ `, echoes what is
/// typed, runs a line at `\r`: `echo WORDS`, `exit [N]`, `drop` (hang up without a status).
/// Ctrl-C (byte 3) prints `^C`; a resize prints `[resized CxR]`; EOF exits 0.
async fn shell(st: Arc<Shared>, mut ws: WebSocket, start: ExecStart) {
    let size = start
        .size
        .map(|s| format!("{}x{}", s.cols, s.rows))
        .unwrap_or_else(|| "none".into());
    let _ = ws
        .send(frame(1, format!("[tty {size}]\r\nfake$ ").as_bytes()))
        .await;
    let mut line = Vec::new();
    let mut code = 0;
    'session: while let Some(Ok(msg)) = ws.recv().await {
        let Message::Binary(data) = msg else { continue };
        match data[0] {
            0 => {
                for &b in &data[1..] {
                    let reply: Vec<u8> = match b {
                        3 => {
                            line.clear();
                            b"^C\r\nfake$ ".to_vec()
                        }
                        b'\r' | b'\n' => {
                            let cmd = String::from_utf8_lossy(&line).into_owned();
                            line.clear();
                            st.event(format!("line {cmd}"));
                            if cmd == "drop" {
                                st.event("dropped");
                                return;
                            }
                            if let Some(rest) = cmd.strip_prefix("exit") {
                                code = rest.trim().parse().unwrap_or(0);
                                let _ = ws.send(frame(1, b"\r\nlogout\r\n")).await;
                                break 'session;
                            }
                            let out = cmd.strip_prefix("echo ").unwrap_or("");
                            format!("\r\n{out}\r\nfake$ ").into_bytes()
                        }
                        _ => {
                            line.push(b);
                            vec![b]
                        }
                    };
                    let _ = ws.send(frame(1, &reply)).await;
                }
            }
            4 => {
                let size: Value = serde_json::from_slice(&data[1..]).unwrap();
                let text = format!("{}x{}", size["cols"], size["rows"]);
                st.event(format!("resize {text}"));
                let _ = ws
                    .send(frame(
                        1,
                        format!("\r\n[resized {text}]\r\nfake$ ").as_bytes(),
                    ))
                    .await;
            }
            255 => break,
            _ => {}
        }
    }
    finish(ws, json!({ "exit_code": code })).await;
}
