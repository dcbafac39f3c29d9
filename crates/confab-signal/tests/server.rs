//! The server doing its job: relay, health, TLS, shutdown.

mod common;

use common::checks::on_nodes;
use common::{http_get, pair, start, Client, Ended, WAIT};
use confab_signal::TlsFiles;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

// Shared with the cluster tests (`tests/cluster.rs` runs it on three nodes).
on_nodes!(1; relay_of_offer_answer_and_candidates_is_byte_for_byte, a_room_sees_joins_signals_and_leaves);

#[tokio::test]
async fn healthz_and_plain_http() {
    let server = start(|_| {}).await;
    let health = http_get(server.local_addr(), "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("ok\n"));
    let ws = http_get(server.local_addr(), "/ws").await;
    assert!(ws.starts_with("HTTP/1.1 426"), "{ws}");
    let page = http_get(server.local_addr(), "/").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("content-type: text/html"), "{page}");
    assert!(
        page.contains("content-security-policy: default-src 'self'"),
        "{page}"
    );
    assert!(page.contains("<script src=\"client.js\"></script>"));
    for (path, marker) in [
        ("/client.js", "confabWeb"),
        ("/callcore.js", "ConfabCallCore"),
        ("/measure.js", "ConfabMeasure"),
        ("/notices.js", "ConfabNotices"),
        ("/pattern.js", "ConfabPattern"),
        ("/style.css", ".tile"),
        ("/logo.svg", "<svg"),
    ] {
        let r = http_get(server.local_addr(), path).await;
        assert!(
            r.starts_with("HTTP/1.1 200") && r.contains(marker),
            "{path}: {}",
            &r[..r.len().min(300)]
        );
    }
    let missing = http_get(server.local_addr(), "/nope").await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
}

#[tokio::test]
async fn graceful_shutdown_says_going_away() {
    let server = start(|_| {}).await;
    let (mut a, _, mut b, _) = pair(&server, "r").await;
    let addr = server.local_addr();
    let stopped = tokio::spawn(server.shutdown(Duration::from_secs(5)));
    assert_eq!(
        a.ended(WAIT).await,
        Ended::Closed(1001, "server shutting down".into())
    );
    assert!(matches!(b.ended(WAIT).await, Ended::Closed(1001, _)));
    tokio::time::timeout(WAIT, stopped)
        .await
        .expect("every task ends")
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}

#[tokio::test]
async fn wss_with_a_certificate() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = std::env::temp_dir().join(format!("confab-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let server = start(|c| {
        c.tls = Some(TlsFiles {
            cert: cert_path.clone(),
            key: key_path.clone(),
        })
    })
    .await;
    assert!(server.ws_url().starts_with("wss://"));
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let client = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let url = format!("wss://localhost:{}/ws", server.local_addr().port());
    let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        url,
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(Arc::new(client))),
    )
    .await
    .expect("wss connects");
    let mut c = Client { ws };
    let w = c.join("secure", "Ada").await;
    assert_eq!(w["room"], "secure");
    // Plain ws to a TLS port fails the handshake instead of hanging.
    let plain = format!("ws://127.0.0.1:{}/ws", server.local_addr().port());
    assert!(
        tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(plain))
            .await
            .unwrap()
            .is_err()
    );
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn bad_tls_files_are_a_clear_error() {
    let config = confab_signal::SignalConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: Some(TlsFiles {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
        }),
        ..Default::default()
    };
    let err = confab_signal::SignalServer::start(config)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
}

#[tokio::test]
async fn client_config_says_whether_test_hooks_are_on() {
    let server = start(|_| {}).await;
    let r = http_get(server.local_addr(), "/client-config.json").await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("content-type: application/json"), "{r}");
    assert!(r.contains("cache-control: no-store"), "{r}");
    assert!(r.ends_with(r#"{"testHooks":false}"#), "{r}");
    let hooked = start(|c| c.test_hooks = true).await;
    let r = http_get(hooked.local_addr(), "/client-config.json").await;
    assert!(r.ends_with(r#"{"testHooks":true}"#), "{r}");
    // The shared rules are served for the web client too.
    let rules = http_get(server.local_addr(), "/rules.js").await;
    assert!(
        rules.starts_with("HTTP/1.1 200") && rules.contains("ConfabRules"),
        "{}",
        &rules[..rules.len().min(300)]
    );
}

/// The app's "Host on this computer" preset: a handful of people on a LAN.
#[tokio::test]
async fn lan_preset_has_small_limits() {
    let lan = confab_signal::SignalConfig::lan();
    assert!(lan.limits.max_connections <= 64 && lan.limits.max_rooms <= 8);
    assert!(lan.max_handshakes <= 32 && lan.limits.tracked_addresses <= 1024);
    assert!(!lan.test_hooks && lan.allowed_origins.is_empty());
    let server = confab_signal::SignalServer::start(confab_signal::SignalConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..lan.clone()
    })
    .await
    .unwrap();
    let mut held = Vec::new();
    for i in 0..lan.max_connections_per_ip {
        let mut c = Client::connect(&server).await;
        c.join("lan", &format!("P{i}")).await;
        held.push(c);
    }
    assert!(
        tokio_tungstenite::connect_async(server.ws_url())
            .await
            .is_err(),
        "one more from the same address is refused"
    );
}
