//! The API listener in front of a network: clients that never finish their
//! headers or bodies are dropped, one source cannot take every connection,
//! and `/healthz` keeps answering meanwhile.

use std::time::{Duration, Instant};

use steward_host::serve::{ServeConfig, Server};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;

const OWNER: &str = "stw_owner_token_for_listen_tests_0123456789";

/// A connection from `source` (a loopback address) to `addr`.
async fn connect_from(source: &str, addr: std::net::SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Reads until the server closes the connection (or `within` passes):
/// whether it closed, and what it sent.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> (bool, String) {
    let mut got = Vec::new();
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (true, String::from_utf8_lossy(&got).into()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (false, String::from_utf8_lossy(&got).into()),
        }
    }
}

async fn healthz(addr: std::net::SocketAddr) -> reqwest::StatusCode {
    reqwest::Client::new()
        .get(format!("http://{addr}/healthz"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map(|r| r.status())
        .unwrap_or(reqwest::StatusCode::SERVICE_UNAVAILABLE)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_dropped_and_one_source_cannot_hold_every_connection() {
    let dir = tempfile::tempdir().unwrap();
    let config: ServeConfig = toml::from_str(&format!(
        "data-dir = {:?}\nlisten = \"127.0.0.1:0\"\nowner-token = {OWNER:?}\n\
         [api-limits]\nheader-timeout-seconds = 2\nbody-timeout-seconds = 2\n\
         max-connections-per-source = 5\n",
        dir.path().display().to_string()
    ))
    .unwrap();
    let server = Server::open(&config).await.unwrap();
    let addr = server.api_addr().unwrap();
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(server.run(rx));

    // Five clients from 127.0.0.2 that start a request and never finish
    // its headers hold that source's five connections; a sixth is closed
    // at once, while another source is served.
    let mut slow = Vec::new();
    for _ in 0..5 {
        let mut s = connect_from("127.0.0.2", addr).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut sixth = connect_from("127.0.0.2", addr).await;
    let _ = sixth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let (closed, sent) = closed_within(&mut sixth, Duration::from_secs(5)).await;
    assert!(closed && sent.is_empty(), "the sixth is refused: {sent:?}");
    assert_eq!(healthz(addr).await, reqwest::StatusCode::OK);

    // The slow ones are dropped after the header timeout, without an
    // answer to their unfinished request.
    for s in &mut slow {
        let (closed, _) = closed_within(s, Duration::from_secs(20)).await;
        assert!(closed, "a client that never finished its headers was kept");
    }

    // A body that stops arriving is dropped too.
    let mut body = connect_from("127.0.0.3", addr).await;
    body.write_all(
        b"POST /api/v1/tenants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer stw_x\r\n\
          Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":",
    )
    .await
    .unwrap();
    let (closed, _) = closed_within(&mut body, Duration::from_secs(20)).await;
    assert!(closed, "a request whose body stopped was kept open");

    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("steward_api_connections_refused_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(refused >= 1, "{metrics}");
    assert!(
        metrics.contains("steward_api_connection_limit "),
        "{metrics}"
    );
    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
}
