//! WebSocket exec sessions against an in-test server speaking the `v5.channel.k8s.io`
//! protocol: stdin/stdout/stderr framing, EOF, resize, exit statuses, upgrade errors, and
//! backpressure.

// tungstenite's handshake callback fixes its (large) error type.
#![allow(clippy::result_large_err)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use zomg_sdk::{BoxName, Client, Error, ExecExit, ExecStart, ProjectName, Target, TerminalSize};

const TOKEN: &str = "ws-token";
const PROTOCOL: &str = "v5.channel.k8s.io";

/// What the server saw of one session.
#[derive(Debug, Default, Clone)]
struct Seen {
    path: String,
    start: Option<ExecStart>,
    /// Payloads of channel-4 frames, as text.
    resizes: Vec<String>,
    /// Whether `[255, 0]` arrived.
    eof: bool,
    /// MiB of stdout a `flood` has handed to the socket so far.
    flooded_mib: usize,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// Starts the server; every connection is one session driven by its start message.
async fn server() -> (String, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let log: Log = Arc::default();
    let l = log.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(session(stream, l.clone()));
        }
    });
    (url, log)
}

fn refuse(status: u16, code: &str, message: &str) -> ErrorResponse {
    let body = json!({"error": code, "message": message}).to_string();
    let mut r = ErrorResponse::new(Some(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

fn check_upgrade(req: &Request, mut resp: Response) -> Result<Response, ErrorResponse> {
    let path = req.uri().path();
    if req.headers().get("authorization").map(|v| v.as_bytes())
        != Some(format!("Bearer {TOKEN}").as_bytes())
    {
        return Err(refuse(401, "unauthorized", "missing or invalid token"));
    }
    let offered = req
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !offered.split(',').any(|p| p.trim() == PROTOCOL) {
        return Err(refuse(
            400,
            "invalid",
            "subprotocol v5.channel.k8s.io required",
        ));
    }
    if path.contains("/boxes/missing/") {
        return Err(refuse(404, "not_found", "box \"missing\" not found"));
    }
    if path.contains("/boxes/stopped/") {
        return Err(refuse(
            409,
            "box_not_running",
            "box \"stopped\" is not running",
        ));
    }
    resp.headers_mut()
        .insert("sec-websocket-protocol", HeaderValue::from_static(PROTOCOL));
    Ok(resp)
}

fn out(channel: u8, data: &[u8]) -> Message {
    let mut v = vec![channel];
    v.extend_from_slice(data);
    Message::Binary(v.into())
}

fn status(exit: serde_json::Value) -> Message {
    out(3, exit.to_string().as_bytes())
}

/// One session. Commands: `cat` echoes stdin to stdout until EOF; `split` writes to both
/// streams; `exit N`; `kill` (SIGKILL); `resize` reports resize frames on stdout until EOF;
/// `start` writes the start message; `drop` hangs up without a status; `flood N` writes N
/// MiB to stdout and records how far it got. No command (the console) acts like `resize`.
async fn session(stream: TcpStream, log: Log) {
    let path = Arc::new(Mutex::new(String::new()));
    let p = path.clone();
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, move |req: &Request, resp| {
        *p.lock().unwrap() = req.uri().path().to_owned();
        check_upgrade(req, resp)
    })
    .await
    else {
        return;
    };
    let index = {
        let mut log = log.lock().unwrap();
        log.push(Seen {
            path: path.lock().unwrap().clone(),
            ..Default::default()
        });
        log.len() - 1
    };
    let record = |f: &dyn Fn(&mut Seen)| f(&mut log.lock().unwrap()[index]);
    let Some(Ok(Message::Text(start))) = ws.next().await else {
        panic!("the first message must be the text start message");
    };
    let start: ExecStart = serde_json::from_str(&start).unwrap();
    record(&|s| s.start = Some(start.clone()));
    let argv: Vec<&str> = start.command.iter().map(String::as_str).collect();
    match argv.as_slice() {
        ["exit", code] => {
            let code: i32 = code.parse().unwrap();
            ws.send(status(json!({ "exit_code": code }))).await.unwrap();
        }
        ["kill"] => {
            ws.send(status(json!({"exit_code": 137, "signal": 9})))
                .await
                .unwrap();
        }
        ["split"] => {
            for i in 0..3 {
                ws.send(out(1, format!("out{i}\n").as_bytes()))
                    .await
                    .unwrap();
                ws.send(out(2, format!("err{i}\n").as_bytes()))
                    .await
                    .unwrap();
            }
            ws.send(status(json!({"exit_code": 0}))).await.unwrap();
        }
        ["start"] => {
            let json = serde_json::to_vec(&start).unwrap();
            ws.send(out(1, &json)).await.unwrap();
            ws.send(status(json!({"exit_code": 0}))).await.unwrap();
        }
        ["drop"] => {
            ws.send(out(1, b"partial")).await.unwrap();
            return;
        }
        ["flood", mib] => {
            let mib: usize = mib.parse().unwrap();
            let chunk = vec![b'x'; 64 * 1024];
            for i in 0..mib * 16 {
                ws.send(out(1, &chunk)).await.unwrap();
                if i % 16 == 15 {
                    record(&|s| s.flooded_mib = (i + 1) / 16);
                }
            }
            ws.send(status(json!({"exit_code": 0}))).await.unwrap();
        }
        ["cat"] | ["resize"] | [] => {
            let echo = argv == ["cat"];
            while let Some(msg) = ws.next().await {
                let Message::Binary(data) = msg.unwrap() else {
                    continue;
                };
                match (data[0], &data[1..]) {
                    (0, payload) if echo => ws.send(out(1, payload)).await.unwrap(),
                    (4, payload) => {
                        let text = String::from_utf8(payload.to_vec()).unwrap();
                        record(&|s| s.resizes.push(text.clone()));
                        if !echo {
                            ws.send(out(1, format!("{text}\n").as_bytes()))
                                .await
                                .unwrap();
                        }
                    }
                    (255, [0]) => {
                        record(&|s| s.eof = true);
                        break;
                    }
                    _ => {}
                }
            }
            ws.send(out(2, b"done\n")).await.unwrap();
            ws.send(status(json!({"exit_code": 0}))).await.unwrap();
        }
        other => panic!("unknown test command {other:?}"),
    }
    // The closing handshake: read until the client goes away. Dropping the socket with the
    // client's last frames unread would make the kernel reset the connection, and the
    // client could lose the status.
    let _ = ws.close(None).await;
    while let Some(Ok(_)) = ws.next().await {}
}

fn client(url: &str) -> Client {
    Client::new(&Target::new(url.parse().unwrap()).with_token(TOKEN)).unwrap()
}

fn project() -> ProjectName {
    "default".parse().unwrap()
}

fn name(n: &str) -> BoxName {
    n.parse().unwrap()
}

fn cmd(argv: &[&str]) -> ExecStart {
    ExecStart {
        command: argv.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    }
}

/// Deterministic bytes that are not a repeating short pattern.
fn payload(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[tokio::test]
async fn several_mib_of_stdin_round_trip_byte_exact() {
    let (url, log) = server().await;
    let mut session = client(&url)
        .exec(&project(), &name("web"), &cmd(&["cat"]))
        .await
        .unwrap();
    let (stdin, stdout, stderr) = session.take_streams();
    let (mut stdin, mut stdout, stderr) = (stdin.unwrap(), stdout.unwrap(), stderr.unwrap());
    let data = payload(6 * 1024 * 1024 + 123);
    let sent = data.clone();
    // Writing and reading run concurrently; the echo would deadlock otherwise.
    let writer = tokio::spawn(async move {
        for piece in sent.chunks(100_000) {
            stdin.write_all(piece).await.unwrap();
        }
        stdin.shutdown().await.unwrap();
    });
    let mut echoed = Vec::new();
    stdout.read_to_end(&mut echoed).await.unwrap();
    writer.await.unwrap();
    assert_eq!(stderr.read_all().await, b"done\n");
    let exit = session.wait().await.unwrap();
    assert_eq!(exit.exit_code, 0);
    assert_eq!(echoed.len(), data.len());
    assert!(echoed == data, "echoed bytes differ from stdin");
    let seen = log.lock().unwrap()[0].clone();
    assert!(seen.eof, "stdin EOF ([255, 0]) was not sent");
    assert_eq!(seen.path, "/v1/projects/default/boxes/web/exec/ws");
}

#[tokio::test]
async fn exec_output_collects_stdout_and_stderr_apart() {
    let (url, _log) = server().await;
    let c = client(&url);
    let out = c
        .exec_output(&project(), &name("web"), &cmd(&["split"]), None)
        .await
        .unwrap();
    assert_eq!(out.stdout, b"out0\nout1\nout2\n");
    assert_eq!(out.stderr, b"err0\nerr1\nerr2\n");
    assert_eq!(out.exit.exit_code, 0);

    let input = Bytes::from(payload(300_000));
    let out = c
        .exec_output(
            &project(),
            &name("web"),
            &cmd(&["cat"]),
            Some(input.clone()),
        )
        .await
        .unwrap();
    assert_eq!(out.stdout, input);
    assert_eq!(out.stderr, b"done\n");
}

#[tokio::test]
async fn exit_codes_and_signals() {
    let (url, _log) = server().await;
    let c = client(&url);
    for code in [0, 1, 42] {
        let s = cmd(&["exit", &code.to_string()]);
        let out = c.exec_output(&project(), &name("web"), &s, None).await;
        assert_eq!(
            out.unwrap().exit,
            ExecExit {
                exit_code: code,
                signal: None,
                error: None
            }
        );
    }
    let out = c
        .exec_output(&project(), &name("web"), &cmd(&["kill"]), None)
        .await
        .unwrap();
    assert_eq!((out.exit.exit_code, out.exit.signal), (137, Some(9)));
}

#[tokio::test]
async fn the_start_message_carries_every_option() {
    let (url, _log) = server().await;
    let start = ExecStart {
        command: vec!["start".into()],
        env: [("A".to_owned(), "1".to_owned())].into(),
        cwd: Some("/srv".into()),
        user: Some("alice".into()),
        shell: Some("bash".into()),
        tty: true,
        size: Some(TerminalSize {
            cols: 120,
            rows: 40,
        }),
    };
    let out = client(&url)
        .exec_output(&project(), &name("web"), &start, None)
        .await
        .unwrap();
    let echoed: ExecStart = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(echoed, start);
}

#[tokio::test]
async fn console_starts_a_tty_and_resizes_arrive_as_json() {
    let (url, log) = server().await;
    let mut session = client(&url)
        .console(
            &project(),
            &name("web"),
            Some(TerminalSize { cols: 80, rows: 24 }),
        )
        .await
        .unwrap();
    let mut stdout = session.stdout.take().unwrap();
    session.resize(100, 30).await.unwrap();
    session.resize(132, 43).await.unwrap();
    let mut lines = String::new();
    while lines.lines().count() < 2 {
        let mut buf = [0u8; 256];
        let n = stdout.read(&mut buf).await.unwrap();
        assert!(n > 0, "stdout ended early: {lines:?}");
        lines.push_str(std::str::from_utf8(&buf[..n]).unwrap());
    }
    assert_eq!(
        lines,
        "{\"cols\":100,\"rows\":30}\n{\"cols\":132,\"rows\":43}\n"
    );
    session.stdin.take().unwrap().close();
    assert_eq!(session.wait().await.unwrap().exit_code, 0);
    let seen = log.lock().unwrap()[0].clone();
    assert_eq!(seen.path, "/v1/projects/default/boxes/web/console");
    let start = seen.start.unwrap();
    assert!(start.tty && start.command.is_empty());
    assert_eq!(start.size, Some(TerminalSize { cols: 80, rows: 24 }));
    assert_eq!(seen.resizes.len(), 2);
    assert!(seen.eof);
}

#[tokio::test]
async fn upgrade_errors_are_api_errors() {
    let (url, _log) = server().await;
    let c = client(&url);
    let e = c
        .exec(&project(), &name("missing"), &cmd(&["exit", "0"]))
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
    assert_eq!(e.code(), Some("not_found"));
    assert_eq!(e.to_string(), "box \"missing\" not found");

    let e = c
        .exec(&project(), &name("stopped"), &cmd(&["exit", "0"]))
        .await
        .unwrap_err();
    assert!(e.is_conflict(), "{e:?}");
    assert_eq!(e.code(), Some("box_not_running"));
    assert_eq!(e.to_string(), "box \"stopped\" is not running");

    let anonymous = Client::new(&Target::new(url.parse().unwrap())).unwrap();
    let e = anonymous
        .console(&project(), &name("web"), None)
        .await
        .unwrap_err();
    assert!(e.is_unauthorized(), "{e:?}");
}

#[tokio::test]
async fn an_unreachable_server_names_its_url() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let e = client(&format!("http://127.0.0.1:{port}"))
        .exec(&project(), &name("web"), &cmd(&["exit", "0"]))
        .await
        .unwrap_err();
    let Error::Unreachable { url, reason } = &e else {
        panic!("expected Unreachable, got {e:?}");
    };
    assert_eq!(url, &format!("http://127.0.0.1:{port}"));
    assert!(reason.contains("refused"), "{reason}");
}

#[tokio::test]
async fn a_session_that_breaks_off_is_session_lost() {
    let (url, _log) = server().await;
    let mut session = client(&url)
        .exec(&project(), &name("web"), &cmd(&["drop"]))
        .await
        .unwrap();
    let stdout = session.stdout.take().unwrap();
    assert_eq!(stdout.read_all().await, b"partial");
    let e = session.wait().await.unwrap_err();
    assert!(matches!(e, Error::SessionLost { .. }), "{e:?}");
    assert!(
        e.to_string().contains("ended without an exit status"),
        "{e}"
    );
}

#[tokio::test]
async fn a_slow_reader_holds_the_server_back() {
    let (url, log) = server().await;
    let mut session = client(&url)
        .exec(&project(), &name("web"), &cmd(&["flood", "96"]))
        .await
        .unwrap();
    let mut stdout = session.stdout.take().unwrap();
    // Nobody reads stdout for a while: the server must get stuck far before 96 MiB
    // (what may be in flight: the SDK's queue, socket buffers, the server's own buffer).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stalled_at = log.lock().unwrap()[0].flooded_mib;
    assert!(
        stalled_at < 48,
        "the server pushed {stalled_at} MiB while nobody read"
    );
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = stdout.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        total += n;
    }
    assert_eq!(total, 96 << 20);
    assert_eq!(session.wait().await.unwrap().exit_code, 0);
    assert_eq!(log.lock().unwrap()[0].flooded_mib, 96);
}

#[tokio::test]
async fn writing_after_the_command_exited_is_a_broken_pipe() {
    let (url, _log) = server().await;
    let mut session = client(&url)
        .exec(&project(), &name("web"), &cmd(&["exit", "0"]))
        .await
        .unwrap();
    let mut stdin = session.stdin.take().unwrap();
    assert_eq!(session.wait().await.unwrap().exit_code, 0);
    let e = stdin.write(Bytes::from_static(b"late")).await.unwrap_err();
    let Error::Io { source, .. } = &e else {
        panic!("expected Io, got {e:?}");
    };
    assert_eq!(source.kind(), std::io::ErrorKind::BrokenPipe);
}
