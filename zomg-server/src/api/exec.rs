//! Running code: the WebSocket exec and console (`v5.channel.k8s.io` framing, see
//! `zomg_sdk::exec_types`), run-to-completion exec, and background-process logs.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use zomg_sdk::exec_types::{
    CHANNEL_CLOSE, CHANNEL_RESIZE, CHANNEL_STATUS, CHANNEL_STDERR, CHANNEL_STDIN, CHANNEL_STDOUT,
    EXEC_OUTPUT_LIMIT, EXEC_PROTOCOL,
};
use zomg_sdk::{
    BoxName, ExecExit, ExecRequest, ExecResult, ExecStart, LogOutput, ProjectName, TerminalSize,
};

use super::{ApiError, AppState, NamedPath, json_body};
use crate::core::{BoxService, CoreError, LogSource};
use crate::runtime::{ExecProcess, ExitStatus, OutputStream};

/// How long output may keep arriving after the command exited: a background child that
/// inherited stdout would otherwise hold the session open forever.
const OUTPUT_DRAIN: Duration = Duration::from_millis(250);

/// `GET …/boxes/{name}/exec/ws`.
pub(super) async fn exec_ws(
    State(state): State<AppState>,
    Path(p): Path<NamedPath>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    upgrade(state, p, ws, Kind::Exec).await
}

/// `GET …/boxes/{name}/console`.
pub(super) async fn console_ws(
    State(state): State<AppState>,
    Path(p): Path<NamedPath>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    upgrade(state, p, ws, Kind::Console).await
}

/// Upgrades to a WebSocket session of `kind` on a running box.
async fn upgrade(
    state: AppState,
    p: NamedPath,
    ws: WebSocketUpgrade,
    kind: Kind,
) -> Result<Response, ApiError> {
    let (project, name): (ProjectName, BoxName) = p.parse()?;
    // Answer "not found"/"not running" as a plain HTTP error, before the upgrade.
    state.service.running_box(&project, &name).await?;
    let service = state.service.clone();
    Ok(ws
        .protocols([EXEC_PROTOCOL])
        .on_upgrade(move |socket| session(socket, service, project, name, kind)))
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Exec,
    Console,
}

fn frame(channel: u8, payload: &[u8]) -> Message {
    let mut v = Vec::with_capacity(payload.len() + 1);
    v.push(channel);
    v.extend_from_slice(payload);
    Message::Binary(v.into())
}

fn exit_of(status: ExitStatus) -> ExecExit {
    match status {
        ExitStatus::Code(c) => ExecExit {
            exit_code: c,
            signal: None,
            error: None,
        },
        ExitStatus::Signal(s) => ExecExit {
            exit_code: 128 + s,
            signal: Some(s),
            error: None,
        },
    }
}

fn failed(message: String) -> ExecExit {
    ExecExit {
        exit_code: 127,
        signal: None,
        error: Some(message),
    }
}

/// One WebSocket session: read the start message, run, pump the channels, send the status.
async fn session(
    socket: WebSocket,
    service: BoxService,
    project: ProjectName,
    name: BoxName,
    kind: Kind,
) {
    let (mut tx, mut rx) = socket.split();
    let start = loop {
        match rx.next().await {
            Some(Ok(Message::Text(t))) => match serde_json::from_str::<ExecStart>(&t) {
                Ok(s) => break s,
                Err(e) => {
                    let exit = failed(format!("invalid start message: {e}"));
                    send_status(&mut tx, &exit).await;
                    return;
                }
            },
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            _ => return, // the client went away before saying what to run
        }
    };
    let process = match kind {
        Kind::Exec => service.exec(&project, &name, start).await,
        Kind::Console => {
            let size = start.size.map_or((80, 24), |s| (s.cols, s.rows));
            service.console(&project, &name, size).await
        }
    };
    let process = match process {
        Ok(p) => p,
        Err(e) => {
            if let CoreError::Internal { public, detail } = &e {
                tracing::error!(error = %detail, "{public}");
            }
            send_status(&mut tx, &failed(e.public_message())).await;
            drain_until_hangup(&mut rx).await;
            return;
        }
    };
    if let Some(exit) = pump(process, &mut tx, &mut rx).await {
        send_status(&mut tx, &exit).await;
        drain_until_hangup(&mut rx).await;
    }
}

/// Reads until the client hangs up (at most a few seconds): closing with its frames (a late
/// stdin EOF) still unread would make the kernel reset the connection, and the client could
/// lose the status.
async fn drain_until_hangup<R>(rx: &mut R)
where
    R: futures_util::Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = rx.next().await {}
    })
    .await;
}

async fn send_status<S>(tx: &mut S, exit: &ExecExit)
where
    S: futures_util::Sink<Message> + Unpin,
{
    let json = serde_json::to_vec(exit).expect("ExecExit serialises");
    let _ = tx.send(frame(CHANNEL_STATUS, &json)).await;
    let _ = tx.send(Message::Close(None)).await;
    let _ = tx.flush().await;
}

/// Copies stdin from the socket into the process and stdout/stderr back, until the process
/// exits and its output is drained. `None` when the client left first (the command is then
/// stopped).
async fn pump<S, R>(process: ExecProcess, tx: &mut S, rx: &mut R) -> Option<ExecExit>
where
    S: futures_util::Sink<Message> + Unpin,
    R: futures_util::Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let ExecProcess {
        stdin,
        stdout,
        stderr,
        resizer,
        wait,
    } = process;

    // Output readers feed one channel so that a single writer owns the socket.
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(16);
    let readers: Vec<_> = [(CHANNEL_STDOUT, stdout), (CHANNEL_STDERR, stderr)]
        .into_iter()
        .filter_map(|(ch, s)| s.map(|s| tokio::spawn(read_into(ch, s, out_tx.clone()))))
        .collect();
    drop(out_tx);

    // stdin and resize frames from the client.
    let input = async move {
        let mut stdin = stdin;
        while let Some(msg) = rx.next().await {
            let Ok(Message::Binary(data)) = msg else {
                match msg {
                    Ok(Message::Close(_)) | Err(_) => break,
                    _ => continue,
                }
            };
            let Some((&ch, payload)) = data.split_first() else {
                continue;
            };
            match ch {
                CHANNEL_STDIN => {
                    if let Some(w) = stdin.as_mut() {
                        if w.write_all(payload).await.is_err() {
                            stdin = None;
                        }
                    }
                }
                CHANNEL_RESIZE => {
                    if let (Some(r), Ok(size)) =
                        (&resizer, serde_json::from_slice::<TerminalSize>(payload))
                    {
                        let _ = r.resize(size.cols, size.rows);
                    }
                }
                CHANNEL_CLOSE if payload.first() == Some(&CHANNEL_STDIN) => {
                    if let Some(mut w) = stdin.take() {
                        let _ = w.shutdown().await;
                    }
                }
                _ => {}
            }
        }
    };
    tokio::pin!(input);
    let mut wait = wait;
    let mut exited: Option<ExecExit> = None;
    let mut drain_deadline = None;
    let mut client_gone = false;
    loop {
        tokio::select! {
            biased;
            msg = out_rx.recv() => match msg {
                Some(m) => { if tx.send(m).await.is_err() { break; } }
                None => {
                    // Every output stream ended: the status follows once the process exits.
                    if exited.is_none() {
                        exited = Some(match (&mut wait).await {
                            Ok(s) => exit_of(s),
                            Err(e) => failed(e.to_string()),
                        });
                    }
                    break;
                }
            },
            status = &mut wait, if exited.is_none() => {
                exited = Some(match status {
                    Ok(s) => exit_of(s),
                    Err(e) => failed(e.to_string()),
                });
                drain_deadline = Some(tokio::time::Instant::now() + OUTPUT_DRAIN);
            },
            _ = async { tokio::time::sleep_until(drain_deadline.expect("guarded")).await }, if drain_deadline.is_some() => break,
            _ = &mut input, if !client_gone => {
                client_gone = true;
                if exited.is_none() {
                    // The user went away before the command ended: dropping `wait` stops it.
                    break;
                }
            }
        }
    }
    for r in readers {
        r.abort();
    }
    exited
}

/// Reads one output stream into frames of its channel.
async fn read_into(channel: u8, mut stream: OutputStream, tx: mpsc::Sender<Message>) {
    let mut buf = vec![0u8; 64 * 1024 + 1];
    loop {
        buf[0] = channel;
        match stream.read(&mut buf[1..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let msg = Message::Binary(Bytes::copy_from_slice(&buf[..n + 1]));
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// `POST …/boxes/{name}/exec`: run to completion (bounded output) or detach with `no_hup`.
pub(super) async fn exec_run(
    State(state): State<AppState>,
    Path(p): Path<NamedPath>,
    req: Result<Json<ExecRequest>, JsonRejection>,
) -> Result<Json<ExecResult>, ApiError> {
    let (project, name): (ProjectName, BoxName) = p.parse()?;
    let req = json_body(req)?;
    let start = ExecStart {
        command: req.command,
        env: req.env,
        cwd: req.cwd,
        user: req.user,
        shell: req.shell,
        tty: false,
        size: None,
    };
    if req.no_hup {
        let d = state.service.exec_detached(&project, &name, start).await?;
        return Ok(Json(ExecResult {
            pid: Some(d.pid),
            ..Default::default()
        }));
    }
    let mut process = state.service.exec(&project, &name, start).await?;
    let stdin_data = req.stdin.unwrap_or_default();
    let stdin = process.stdin.take();
    let feed = async move {
        if let Some(mut w) = stdin {
            let _ = w.write_all(stdin_data.as_bytes()).await;
            let _ = w.shutdown().await;
        }
    };
    let (_, (stdout, t1), (stderr, t2), status) = tokio::join!(
        feed,
        collect(process.stdout.take()),
        collect(process.stderr.take()),
        process.wait
    );
    let exit = exit_of(status.map_err(|e| ApiError::from(CoreError::internal("exec failed", e)))?);
    Ok(Json(ExecResult {
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        exit_code: Some(exit.exit_code),
        signal: exit.signal,
        pid: None,
        truncated: t1 || t2,
    }))
}

/// Reads a stream to its end, keeping at most [`EXEC_OUTPUT_LIMIT`] bytes.
async fn collect(stream: Option<OutputStream>) -> (Vec<u8>, bool) {
    let Some(mut s) = stream else {
        return (Vec::new(), false);
    };
    let mut out = Vec::new();
    let mut truncated = false;
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let room = EXEC_OUTPUT_LIMIT - out.len();
        if n > room {
            truncated = true;
        }
        out.extend_from_slice(&buf[..n.min(room)]);
    }
    (out, truncated)
}

#[derive(Debug, Deserialize)]
pub(super) struct LogsQuery {
    pid: u32,
    lines: Option<usize>,
    #[serde(default)]
    follow: bool,
}

/// `GET …/boxes/{name}/logs?pid=N[&lines=N][&follow=true]`.
pub(super) async fn logs(
    State(state): State<AppState>,
    Path(p): Path<NamedPath>,
    q: Result<Query<LogsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let (project, name): (ProjectName, BoxName) = p.parse()?;
    let Query(q) = q.map_err(|e| {
        ApiError::invalid(format!(
            "invalid query: {} (pid is required)",
            e.body_text()
        ))
    })?;
    if !q.follow {
        let out: LogOutput = state.service.logs(&project, &name, q.pid, q.lines).await?;
        return Ok(Json(out).into_response());
    }
    let src = state.service.log_source(&project, &name, q.pid).await?;
    let body = Body::from_stream(follow(src));
    Ok((
        [(http::header::CONTENT_TYPE, "application/octet-stream")],
        body,
    )
        .into_response())
}

/// Streams a log file from its start, then whatever is appended, until the process has
/// exited and everything it wrote was sent.
fn follow(src: LogSource) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> {
    futures_util::stream::unfold(
        (None::<tokio::fs::File>, src, false),
        |(file, src, done)| async move {
            if done {
                return None;
            }
            let mut file = match file {
                Some(f) => f,
                None => match tokio::fs::File::open(&src.path).await {
                    Ok(f) => f,
                    Err(e) => return Some((Err(e), (None, src, true))),
                },
            };
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                // Check before reading, so nothing written before the exit is missed.
                let running = src.running();
                match file.read(&mut buf).await {
                    Ok(0) if !running => return None,
                    Ok(0) => tokio::time::sleep(Duration::from_millis(50)).await,
                    Ok(n) => {
                        return Some((
                            Ok(Bytes::copy_from_slice(&buf[..n])),
                            (Some(file), src, false),
                        ));
                    }
                    Err(e) => return Some((Err(e), (Some(file), src, true))),
                }
            }
        },
    )
}
