//! TLS: the insecure verifier and the IP override against a real rustls server whose
//! certificate (`fixtures/zomg-test.crt`, for `zomg.test`) no OS trusts.

// tungstenite's handshake callback fixes its (large) error type.
#![allow(clippy::result_large_err)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, mpsc};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use zomg_sdk::{Client, Error, Target};

const CERT: &[u8] = include_bytes!("fixtures/zomg-test.crt");
const KEY: &[u8] = include_bytes!("fixtures/zomg-test.key");

/// Serves `connections` HTTPS connections with a fixed `/version` answer on a thread, sending
/// the SNI name of each completed handshake.
fn serve(connections: usize) -> (u16, mpsc::Receiver<Option<String>>) {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from_pem_slice(CERT).unwrap()],
        PrivateKeyDer::from_pem_slice(KEY).unwrap(),
    )
    .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(connections) {
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, stream.unwrap());
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            let handshake_ok = loop {
                match tls.read(&mut buf) {
                    Ok(0) | Err(_) => break false,
                    Ok(n) => {
                        request.extend_from_slice(&buf[..n]);
                        if request.windows(4).any(|w| w == b"\r\n\r\n") {
                            break true;
                        }
                    }
                }
            };
            if handshake_ok {
                let body = r#"{"version":"9.9.9","backend":"tls-test"}"#;
                let _ = write!(
                    tls,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.flush();
                let _ = tx.send(tls.conn.server_name().map(str::to_owned));
            }
        }
    });
    (port, rx)
}

fn target(port: u16, insecure: bool) -> Target {
    let mut t = Target::new(format!("https://zomg.test:{port}").parse().unwrap());
    t.ip = Some("127.0.0.1".parse().unwrap());
    t.insecure = insecure;
    t
}

#[tokio::test]
async fn insecure_accepts_an_untrusted_certificate_and_keeps_sni() {
    let (port, sni) = serve(1);
    let v = Client::new(&target(port, true))
        .unwrap()
        .version()
        .await
        .unwrap();
    assert_eq!(v.backend, "tls-test");
    assert_eq!(sni.recv().unwrap().as_deref(), Some("zomg.test"));
}

#[tokio::test]
async fn verified_tls_rejects_an_untrusted_certificate() {
    let (port, _sni) = serve(1);
    let e = Client::new(&target(port, false))
        .unwrap()
        .version()
        .await
        .unwrap_err();
    let Error::Unreachable { url, reason } = &e else {
        panic!("expected Unreachable, got {e:?}");
    };
    assert_eq!(url, &format!("https://zomg.test:{port} (at 127.0.0.1)"));
    assert!(reason.contains("invalid peer certificate"), "{reason}");
}

#[test]
fn the_shared_config_is_usable_for_websockets() {
    let client = Client::new(&target(1, true)).unwrap();
    let connector = tokio_tungstenite::Connector::Rustls(client.tls_config());
    assert!(matches!(connector, tokio_tungstenite::Connector::Rustls(_)));
}

/// Serves one WebSocket exec session over TLS on a thread: answers every start message with
/// exit status 7, and sends the SNI name of the handshake.
fn serve_ws() -> (u16, mpsc::Receiver<Option<String>>) {
    use tokio_tungstenite::tungstenite::{self, Message};
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from_pem_slice(CERT).unwrap()],
        PrivateKeyDer::from_pem_slice(KEY).unwrap(),
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let conn = rustls::ServerConnection::new(Arc::new(config)).unwrap();
        let tls = rustls::StreamOwned::new(conn, stream);
        let mut ws = tungstenite::accept_hdr(
            tls,
            |_req: &_, mut resp: tungstenite::handshake::server::Response| {
                resp.headers_mut().insert(
                    "sec-websocket-protocol",
                    "v5.channel.k8s.io".parse().unwrap(),
                );
                Ok(resp)
            },
        )
        .unwrap();
        let _ = tx.send(ws.get_ref().conn.server_name().map(str::to_owned));
        let start = ws.read().unwrap();
        assert!(matches!(start, Message::Text(_)), "{start:?}");
        let mut status = vec![3u8];
        status.extend_from_slice(br#"{"exit_code":7}"#);
        ws.send(Message::Binary(status.into())).unwrap();
        let _ = ws.close(None);
        while ws.read().is_ok() {}
    });
    (port, rx)
}

#[tokio::test]
async fn websocket_exec_uses_the_pinned_ip_the_insecure_verifier_and_sni() {
    let (port, sni) = serve_ws();
    let client = Client::new(&target(port, true)).unwrap();
    let start = zomg_sdk::ExecStart {
        command: vec!["true".into()],
        ..Default::default()
    };
    let out = client
        .exec_output(
            &"default".parse().unwrap(),
            &"web".parse().unwrap(),
            &start,
            None,
        )
        .await
        .unwrap();
    assert_eq!(out.exit.exit_code, 7);
    assert_eq!(sni.recv().unwrap().as_deref(), Some("zomg.test"));
}

#[tokio::test]
async fn websocket_exec_verifies_certificates_unless_insecure() {
    let (port, _sni) = serve(1);
    let e = Client::new(&target(port, false))
        .unwrap()
        .exec(
            &"default".parse().unwrap(),
            &"web".parse().unwrap(),
            &zomg_sdk::ExecStart::default(),
        )
        .await
        .unwrap_err();
    let Error::Unreachable { url, reason } = &e else {
        panic!("expected Unreachable, got {e:?}");
    };
    assert_eq!(url, &format!("https://zomg.test:{port} (at 127.0.0.1)"));
    assert!(reason.contains("invalid peer certificate"), "{reason}");
}
