//! Running code in a box: WebSocket exec and console sessions ([`ExecSession`]), and the
//! run-to-completion and background forms of `POST …/exec` (SPEC §5, §11).
//!
//! A session is driven by one background task that owns the socket. The caller talks to it
//! through bounded channels: [`ExecStdin`] feeds channel 0, [`ExecReader`]s drain channels 1
//! and 2. Reading and writing the socket run concurrently inside the task, so a caller may
//! pump stdin and read output at the same time without deadlock, and a caller that stops
//! reading makes the task stop reading the socket (TCP backpressure) instead of buffering
//! without bound.

use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, Stream, StreamExt};
use http::header::{AUTHORIZATION, HeaderValue, SEC_WEBSOCKET_PROTOCOL, USER_AGENT};
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use tokio_util::sync::PollSender;
use url::Host;

use crate::client::{CONNECT_TIMEOUT, Client, api_error_from_parts, root_cause};
use crate::error::{Error, Result};
use crate::exec_types::{
    CHANNEL_CLOSE, CHANNEL_RESIZE, CHANNEL_STATUS, CHANNEL_STDERR, CHANNEL_STDIN, CHANNEL_STDOUT,
    EXEC_PROTOCOL, ExecExit, ExecRequest, ExecResult, ExecStart, TerminalSize,
};
use crate::names::{BoxName, ProjectName};

/// The largest stdin frame the SDK sends; bigger writes are split, small ones that queue up
/// are joined up to this size.
const MAX_FRAME: usize = 64 * 1024;
/// Stdin chunks queued between the caller and the socket.
const STDIN_QUEUE: usize = 16;
/// Output frames queued per stream between the socket and the caller.
const OUTPUT_QUEUE: usize = 32;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

impl Client {
    /// Opens a WebSocket exec session (`GET …/boxes/{name}/exec/ws`) running `start`.
    ///
    /// Errors of the upgrade itself (404 for a missing box, 409 `box_not_running`, 401) are
    /// [`Error::Api`], exactly as for the HTTP calls. The returned session is already
    /// running: take its [`ExecSession::stdin`], [`ExecSession::stdout`] and
    /// [`ExecSession::stderr`] and finish with [`ExecSession::wait`].
    pub async fn exec(
        &self,
        project: &ProjectName,
        name: &BoxName,
        start: &ExecStart,
    ) -> Result<ExecSession> {
        let segs = Client::box_segments(project.as_str(), name.as_str(), &["exec", "ws"]);
        self.open_session(&segs, start).await
    }

    /// Attaches to a login shell on a terminal in the box (`GET …/boxes/{name}/console`);
    /// `size` is the initial window size.
    pub async fn console(
        &self,
        project: &ProjectName,
        name: &BoxName,
        size: Option<TerminalSize>,
    ) -> Result<ExecSession> {
        let start = ExecStart {
            tty: true,
            size,
            ..Default::default()
        };
        let segs = Client::box_segments(project.as_str(), name.as_str(), &["console"]);
        self.open_session(&segs, &start).await
    }

    /// Runs `start` over a WebSocket session with `stdin` as its input (none: immediate
    /// EOF) and collects its output. Unlike [`Client::exec_run`] the output is bytes and
    /// not capped.
    pub async fn exec_output(
        &self,
        project: &ProjectName,
        name: &BoxName,
        start: &ExecStart,
        stdin: Option<Bytes>,
    ) -> Result<ExecOutput> {
        let mut session = self.exec(project, name, start).await?;
        let (input, stdout, stderr) = session.take_streams();
        let feed = async move {
            if let (Some(mut input), Some(data)) = (input, stdin) {
                // A command may exit without reading its input; that is not an error here.
                let _ = input.write(data).await;
            }
        };
        let (_, stdout, stderr) = tokio::join!(feed, read_all(stdout), read_all(stderr));
        let exit = session.wait().await?;
        Ok(ExecOutput {
            stdout,
            stderr,
            exit,
        })
    }

    /// `POST …/boxes/{name}/exec`: runs `request` to completion (or, with `no_hup`, starts
    /// it in the background and answers its pid).
    pub async fn exec_run(
        &self,
        project: &ProjectName,
        name: &BoxName,
        request: &ExecRequest,
    ) -> Result<ExecResult> {
        let segs = Client::box_segments(project.as_str(), name.as_str(), &["exec"]);
        self.call(self.request(Method::POST, &segs).json(request))
            .await
    }

    /// Starts `request` detached (`no_hup`) and returns its pid in the box; its output goes
    /// to the log that [`Client::logs`] reads.
    pub async fn exec_detached(
        &self,
        project: &ProjectName,
        name: &BoxName,
        request: &ExecRequest,
    ) -> Result<u32> {
        let request = ExecRequest {
            no_hup: true,
            ..request.clone()
        };
        let result = self.exec_run(project, name, &request).await?;
        result.pid.ok_or_else(|| {
            Error::Protocol("the server started a background process but sent no pid".into())
        })
    }

    async fn open_session(&self, segments: &[&str], start: &ExecStart) -> Result<ExecSession> {
        let (mut socket, url) = self.connect_ws(segments).await?;
        let start = serde_json::to_string(start)
            .map_err(|e| Error::Invalid(format!("cannot encode the exec start message: {e}")))?;
        socket
            .send(Message::text(start))
            .await
            .map_err(|e| session_lost(&url, &e))?;
        Ok(ExecSession::spawn(socket, url))
    }

    /// Connects the WebSocket of a route: TCP to the target (or its pinned IP) with
    /// `TCP_NODELAY`, TLS with the client's configuration and the URL's host for SNI, then
    /// the upgrade with the token and the exec subprotocol.
    async fn connect_ws(&self, segments: &[&str]) -> Result<(Socket, String)> {
        let mut url = self.url(segments);
        let tls = url.scheme() == "https";
        url.set_scheme(if tls { "wss" } else { "ws" })
            .expect("http(s) URLs convert to ws(s)");
        let shown = url.to_string();
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| Error::Config(format!("invalid WebSocket URL {shown}: {e}")))?;
        let headers = request.headers_mut();
        headers.insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(EXEC_PROTOCOL),
        );
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("zomg-sdk/", env!("CARGO_PKG_VERSION"))),
        );
        if let Some(token) = &self.target().token {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                Error::Config("the token contains characters not allowed in an HTTP header".into())
            })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let port = url.port_or_known_default().unwrap_or(80);
        let unreachable = |reason: String| Error::Unreachable {
            url: self.display_url(),
            reason,
        };
        let connect = async {
            let stream = match (self.target().ip, url.host()) {
                (Some(ip), _) => TcpStream::connect(SocketAddr::new(ip, port)).await,
                (None, Some(Host::Domain(host))) => TcpStream::connect((host, port)).await,
                (None, Some(Host::Ipv4(ip))) => TcpStream::connect((ip, port)).await,
                (None, Some(Host::Ipv6(ip))) => TcpStream::connect((ip, port)).await,
                (None, None) => return Err(unreachable("the URL has no host".into())),
            }
            .map_err(|e| unreachable(root_cause(&e)))?;
            // Small frames (a keystroke, the status) must not wait for Nagle.
            stream
                .set_nodelay(true)
                .map_err(|e| unreachable(root_cause(&e)))?;
            let connector = Connector::Rustls(self.tls_config());
            tokio_tungstenite::client_async_tls_with_config(request, stream, None, Some(connector))
                .await
                .map_err(|e| match e {
                    tungstenite::Error::Http(response) => {
                        let html = response
                            .headers()
                            .get(http::header::CONTENT_TYPE)
                            .and_then(|v| v.to_str().ok())
                            .is_some_and(|v| v.contains("html"));
                        let status = StatusCode::from_u16(response.status().as_u16())
                            .unwrap_or(StatusCode::BAD_GATEWAY);
                        let body = response.body().as_deref().unwrap_or_default();
                        Error::Api(api_error_from_parts(status, html, error_json(body)))
                    }
                    // TLS failures surface as I/O errors, like refused connections.
                    tungstenite::Error::Io(e) => unreachable(root_cause(&e)),
                    tungstenite::Error::Tls(e) => unreachable(root_cause(&e)),
                    other => {
                        Error::Protocol(format!("WebSocket upgrade at {shown} failed: {other}"))
                    }
                })
        };
        let (socket, _response) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| {
                unreachable(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()))
            })??;
        Ok((socket, shown))
    }
}

/// The JSON object inside a refused upgrade's body, which may still carry chunked framing
/// (`2f\r\n{...}\r\n0\r\n\r\n`) because the upgrade client does not decode bodies.
fn error_json(body: &[u8]) -> &[u8] {
    let start = body.iter().position(|&b| b == b'{');
    let end = body.iter().rposition(|&b| b == b'}');
    match (start, end) {
        (Some(s), Some(e)) if s < e => &body[s..=e],
        _ => body,
    }
}

fn session_lost(url: &str, e: &tungstenite::Error) -> Error {
    Error::SessionLost {
        url: url.to_owned(),
        reason: root_cause(e),
    }
}

async fn read_all(reader: Option<ExecReader>) -> Vec<u8> {
    match reader {
        Some(r) => r.read_all().await,
        None => Vec::new(),
    }
}

/// What [`Client::exec_output`] collected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Everything the command wrote to stdout (with a TTY: the terminal output).
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr (empty with a TTY).
    pub stderr: Vec<u8>,
    /// How it ended.
    pub exit: ExecExit,
}

/// A running command in a box, attached over a WebSocket.
///
/// Take the streams you need (like `tokio::process::Child`), use them from any tasks, then
/// call [`ExecSession::wait`]. Output that nobody reads holds the session up (that is the
/// backpressure), so read both streams, or drop the ones you do not want: output for a
/// dropped reader is discarded.
///
/// Dropping the session closes the connection, which ends the command on the server; keep it
/// until `wait` returns.
pub struct ExecSession {
    /// The command's stdin. Dropping it or calling [`ExecStdin::close`] sends EOF.
    pub stdin: Option<ExecStdin>,
    /// The command's stdout (with a TTY: the terminal's output).
    pub stdout: Option<ExecReader>,
    /// The command's stderr (with a TTY it stays empty).
    pub stderr: Option<ExecReader>,
    resize: mpsc::Sender<TerminalSize>,
    url: String,
    task: Option<JoinHandle<Result<ExecExit>>>,
}

impl fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecSession")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl ExecSession {
    fn spawn(socket: Socket, url: String) -> Self {
        let (stdin_tx, stdin_rx) = mpsc::channel(STDIN_QUEUE);
        let (resize_tx, resize_rx) = mpsc::channel(4);
        let (stdout_tx, stdout_rx) = mpsc::channel(OUTPUT_QUEUE);
        let (stderr_tx, stderr_rx) = mpsc::channel(OUTPUT_QUEUE);
        let task = tokio::spawn(drive(
            socket,
            url.clone(),
            stdin_rx,
            resize_rx,
            stdout_tx,
            stderr_tx,
        ));
        Self {
            stdin: Some(ExecStdin {
                tx: PollSender::new(stdin_tx),
            }),
            stdout: Some(ExecReader::new(stdout_rx)),
            stderr: Some(ExecReader::new(stderr_rx)),
            resize: resize_tx,
            url,
            task: Some(task),
        }
    }

    /// The session's WebSocket URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Takes stdin, stdout and stderr at once (each `None` if taken before).
    pub fn take_streams(&mut self) -> (Option<ExecStdin>, Option<ExecReader>, Option<ExecReader>) {
        (self.stdin.take(), self.stdout.take(), self.stderr.take())
    }

    /// Tells the terminal of a TTY session its new size (channel 4).
    pub async fn resize(&self, cols: u16, rows: u16) -> Result<()> {
        self.resize
            .send(TerminalSize { cols, rows })
            .await
            .map_err(|_| Error::SessionLost {
                url: self.url.clone(),
                reason: "the session has ended".into(),
            })
    }

    /// Waits for the command's exit status.
    ///
    /// Streams still held by the session are dropped first: stdin gets EOF, untaken output
    /// is discarded. Fails with [`Error::SessionLost`] when the connection ends without a
    /// status.
    pub async fn wait(mut self) -> Result<ExecExit> {
        drop(self.take_streams());
        let task = self.task.take().expect("the task is only taken here");
        match task.await {
            Ok(result) => result,
            Err(e) => Err(Error::SessionLost {
                url: self.url.clone(),
                reason: format!("the session task failed: {e}"),
            }),
        }
    }
}

impl Drop for ExecSession {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Owns the socket: writes stdin and resizes, reads output until the status arrives.
async fn drive(
    socket: Socket,
    url: String,
    stdin: mpsc::Receiver<Bytes>,
    resize: mpsc::Receiver<TerminalSize>,
    stdout: mpsc::Sender<Bytes>,
    stderr: mpsc::Sender<Bytes>,
) -> Result<ExecExit> {
    let (sink, stream) = socket.split();
    let writer = write_loop(sink, stdin, resize);
    let reader = read_loop(stream, &url, stdout, stderr);
    tokio::pin!(writer, reader);
    let mut writing = true;
    loop {
        tokio::select! {
            exit = &mut reader => return exit,
            // A failed write means a broken connection, which the reader reports; finishing
            // the writer drops the stdin channel so that further writes fail.
            _ = &mut writer, if writing => writing = false,
        }
    }
}

async fn write_loop(
    mut sink: futures_util::stream::SplitSink<Socket, Message>,
    mut stdin: mpsc::Receiver<Bytes>,
    mut resize: mpsc::Receiver<TerminalSize>,
) -> Result<(), tungstenite::Error> {
    let (mut stdin_open, mut resize_open) = (true, true);
    while stdin_open || resize_open {
        tokio::select! {
            biased;
            size = resize.recv(), if resize_open => match size {
                Some(size) => {
                    let json = serde_json::to_vec(&size).expect("sizes serialize");
                    sink.send(frame(CHANNEL_RESIZE, &[&json])).await?;
                }
                None => resize_open = false,
            },
            chunk = stdin.recv(), if stdin_open => match chunk {
                Some(first) => {
                    // Join whatever else is already queued into one frame.
                    let mut parts = vec![first];
                    let mut len = parts[0].len();
                    while len < MAX_FRAME {
                        match stdin.try_recv() {
                            Ok(next) => {
                                len += next.len();
                                parts.push(next);
                            }
                            Err(_) => break,
                        }
                    }
                    let parts: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
                    sink.send(frame(CHANNEL_STDIN, &parts)).await?;
                }
                None => {
                    stdin_open = false;
                    sink.send(frame(CHANNEL_CLOSE, &[&[CHANNEL_STDIN]])).await?;
                }
            },
        }
    }
    Ok(())
}

/// A binary message: the channel byte, then the parts.
fn frame(channel: u8, parts: &[&[u8]]) -> Message {
    let len = parts.iter().map(|p| p.len()).sum::<usize>();
    let mut buf = BytesMut::with_capacity(1 + len);
    buf.put_u8(channel);
    for p in parts {
        buf.extend_from_slice(p);
    }
    Message::Binary(buf.freeze())
}

async fn read_loop(
    mut stream: futures_util::stream::SplitStream<Socket>,
    url: &str,
    stdout: mpsc::Sender<Bytes>,
    stderr: mpsc::Sender<Bytes>,
) -> Result<ExecExit> {
    let (mut stdout, mut stderr) = (Some(stdout), Some(stderr));
    while let Some(message) = stream.next().await {
        match message.map_err(|e| session_lost(url, &e))? {
            Message::Binary(data) => {
                let Some(&channel) = data.first() else {
                    continue;
                };
                let payload = data.slice(1..);
                match channel {
                    CHANNEL_STDOUT => forward(&mut stdout, payload).await,
                    CHANNEL_STDERR => forward(&mut stderr, payload).await,
                    CHANNEL_STATUS => {
                        return serde_json::from_slice(&payload).map_err(|e| {
                            Error::Protocol(format!(
                                "invalid exit status from the server ({e}): {}",
                                String::from_utf8_lossy(&payload)
                            ))
                        });
                    }
                    // Channels this SDK does not know are skipped, so servers can add some.
                    _ => {}
                }
            }
            Message::Close(frame) => return Err(closed(url, frame)),
            _ => {}
        }
    }
    Err(closed(url, None))
}

/// Hands output to its reader; once the reader is gone, output for it is dropped.
async fn forward(to: &mut Option<mpsc::Sender<Bytes>>, payload: Bytes) {
    if payload.is_empty() {
        return;
    }
    if let Some(tx) = to {
        if tx.send(payload).await.is_err() {
            *to = None;
        }
    }
}

fn closed(url: &str, frame: Option<CloseFrame>) -> Error {
    let reason = match frame {
        Some(f) if !f.reason.is_empty() => format!("the server closed it: {}", f.reason),
        _ => "the server closed it".to_owned(),
    };
    Error::SessionLost {
        url: url.to_owned(),
        reason,
    }
}

/// The stdin of an exec session.
///
/// Use [`ExecStdin::write`] and [`ExecStdin::close`], or the [`AsyncWrite`] impl (e.g.
/// `tokio::io::copy(&mut file, &mut stdin)`; `shutdown` sends EOF). Dropping it sends EOF
/// too. Writes wait while the queue to the socket is full; after the session ended they
/// fail with [`io::ErrorKind::BrokenPipe`].
pub struct ExecStdin {
    tx: PollSender<Bytes>,
}

impl fmt::Debug for ExecStdin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecStdin")
            .field("closed", &self.tx.is_closed())
            .finish()
    }
}

fn broken_pipe() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the exec session has ended")
}

impl ExecStdin {
    /// Sends `data` to the command's stdin (split into frames of at most 64 KiB).
    pub async fn write(&mut self, data: impl Into<Bytes>) -> Result<()> {
        let mut data: Bytes = data.into();
        while !data.is_empty() {
            let chunk = data.split_to(data.len().min(MAX_FRAME));
            poll_fn(|cx| self.tx.poll_reserve(cx))
                .await
                .map_err(|_| Error::io("writing to the command's stdin", broken_pipe()))?;
            self.tx
                .send_item(chunk)
                .map_err(|_| Error::io("writing to the command's stdin", broken_pipe()))?;
        }
        Ok(())
    }

    /// Sends EOF: the command reads end of input once everything written before has arrived.
    pub fn close(mut self) {
        self.tx.close();
    }
}

impl AsyncWrite for ExecStdin {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let this = self.get_mut();
        ready!(this.tx.poll_reserve(cx)).map_err(|_| broken_pipe())?;
        let n = buf.len().min(MAX_FRAME);
        this.tx
            .send_item(Bytes::copy_from_slice(&buf[..n]))
            .map_err(|_| broken_pipe())?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Written data is already queued for the socket, in order.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().tx.close();
        Poll::Ready(Ok(()))
    }
}

/// The stdout or stderr of an exec session: a [`Stream`] of chunks as they arrive, and an
/// [`AsyncRead`]. It ends when the command has exited (or the session broke off; then
/// [`ExecSession::wait`] says why).
pub struct ExecReader {
    rx: mpsc::Receiver<Bytes>,
    pending: Bytes,
}

impl fmt::Debug for ExecReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecReader")
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl ExecReader {
    fn new(rx: mpsc::Receiver<Bytes>) -> Self {
        Self {
            rx,
            pending: Bytes::new(),
        }
    }

    /// Reads everything until the stream ends.
    pub async fn read_all(mut self) -> Vec<u8> {
        let mut out = self.pending.to_vec();
        while let Some(chunk) = self.rx.recv().await {
            out.extend_from_slice(&chunk);
        }
        out
    }
}

impl Stream for ExecReader {
    type Item = Bytes;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = self.get_mut();
        if !this.pending.is_empty() {
            return Poll::Ready(Some(std::mem::take(&mut this.pending)));
        }
        this.rx.poll_recv(cx)
    }
}

impl AsyncRead for ExecReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.pending.is_empty() {
            match ready!(this.rx.poll_recv(cx)) {
                Some(chunk) => this.pending = chunk,
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = buf.remaining().min(this.pending.len());
        buf.put_slice(&this.pending.split_to(n));
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_start_with_the_channel() {
        let Message::Binary(b) = frame(CHANNEL_STDIN, &[b"ab", b"c"]) else {
            panic!("not binary")
        };
        assert_eq!(&b[..], b"\x00abc");
        let Message::Binary(b) = frame(CHANNEL_CLOSE, &[&[CHANNEL_STDIN]]) else {
            panic!("not binary")
        };
        assert_eq!(&b[..], &[255, 0]);
    }

    #[test]
    fn error_json_strips_chunked_framing() {
        let body = b"2f\r\n{\"error\":\"not_found\",\"message\":\"no box\"}\r\n0\r\n\r\n";
        assert_eq!(
            error_json(body),
            br#"{"error":"not_found","message":"no box"}"#
        );
        assert_eq!(error_json(b"plain"), b"plain");
        assert_eq!(error_json(b""), b"");
    }
}
