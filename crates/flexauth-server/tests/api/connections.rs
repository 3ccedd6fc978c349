//! Slow and greedy clients, tried as an attacker would over raw TCP: bodies sent a byte at a
//! time, and more connections from one address than the server can hold. Clients bind their own
//! loopback addresses (127.0.0.0/8) so that the server sees several of them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::{TestApp, TestEnv};

/// A connection to `app` from the loopback address 127.0.0.`host`.
async fn connect_from(host: u8, port: u16) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)), 0)).unwrap();
    socket.connect(SocketAddr::from(([127, 0, 0, 1], port))).await.unwrap()
}

fn port_of(app: &TestApp) -> u16 {
    app.address.rsplit(':').next().unwrap().parse().unwrap()
}

/// Sends the head of a login whose body is announced as 200 bytes, then one byte of the body
/// every half second, until the server ends the connection. Returns what the server answered
/// and how long after the head the connection ended.
async fn trickle_a_body(mut stream: TcpStream, head_sent: tokio::sync::oneshot::Sender<()>) -> (String, Duration) {
    let head = "POST /v1/auth/login HTTP/1.1\r\nHost: flexauth\r\nContent-Type: application/json\r\n\
        Content-Length: 200\r\n\r\n{";
    // A connection the server refused may be closed before the head is written.
    let started = Instant::now();
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = head_sent.send(());
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if writer.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    let mut answer = Vec::new();
    // Until the server closes (or resets) the connection.
    let _ = reader.read_to_end(&mut answer).await;
    trickle.abort();
    (String::from_utf8_lossy(&answer).into_owned(), started.elapsed())
}

#[actix_web::test]
async fn five_hundred_slow_bodies_are_cut_off_at_their_deadline_and_health_checks_answer_meanwhile() {
    let env = TestEnv::new().await;
    let app = env.spawn_with(&["--request-body-timeout", "3s"]).await;
    let port = port_of(&app);
    let mut clients = Vec::new();
    let mut heads = Vec::new();
    // Ten client addresses, fifty connections each: within the per-address cap (256).
    for index in 0..500u32 {
        let stream = connect_from(10 + (index % 10) as u8, port).await;
        let (sent, head) = tokio::sync::oneshot::channel();
        heads.push(head);
        clients.push(tokio::spawn(trickle_a_body(stream, sent)));
    }
    for head in heads {
        head.await.unwrap();
    }
    // Every slow client is connected and mid-body: the server still answers everybody else.
    let health = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let reply = health.get(app.url("/healthz")).send().await.expect("/healthz answers while 500 bodies trickle");
    assert_eq!(reply.status(), StatusCode::OK);
    let login = app.post("/v1/auth/login", serde_json::json!({ "email": "a@example.com", "password": "a password" }));
    assert_eq!(login.await.code(), "invalid_credentials", "a whole request is served meanwhile");

    // Each slow body is refused at its deadline (3 s), and its connection closes at the latest
    // when the 5 s the server gives a client to go away after an early answer are over.
    let outcomes = tokio::time::timeout(Duration::from_secs(30), futures_util::future::join_all(clients))
        .await
        .expect("every slow client was cut off");
    for (index, outcome) in outcomes.into_iter().enumerate() {
        let (answer, lasted) = outcome.unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "client {index} got: {answer}");
        assert!(answer.contains("\"code\":\"request_timeout\""), "client {index} got: {answer}");
        assert!(lasted >= Duration::from_millis(2_900), "client {index} cut off early, after {lasted:?}");
        assert!(lasted < Duration::from_secs(12), "client {index} held its connection for {lasted:?}");
    }
    app.stop().await;
}

/// Whether the server closed `stream` (end of file or a reset) within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut byte = [0_u8; 1];
    matches!(tokio::time::timeout(within, stream.read(&mut byte)).await, Ok(Ok(0)) | Ok(Err(_)))
}

/// Which of `streams` the server closed within `within`, checked all at once.
async fn closed_among(streams: &mut [TcpStream], within: Duration) -> Vec<bool> {
    futures_util::future::join_all(streams.iter_mut().map(|stream| closed_within(stream, within))).await
}

#[actix_web::test]
async fn connections_past_an_addresses_cap_are_closed_at_once_and_its_ended_ones_are_given_back() {
    let env = TestEnv::new().await;
    let app = env.spawn_with(&["--max-connections-per-address", "5"]).await;
    let port = port_of(&app);
    let mut streams = Vec::new();
    for _ in 0..7 {
        streams.push(connect_from(40, port).await);
    }
    // Two workers accept them in whatever order: five are held, whichever they are, and the
    // other two closed at once (well within the 5 s a held connection has to send its head).
    let closed = closed_among(&mut streams, Duration::from_secs(2)).await;
    assert_eq!(closed.iter().filter(|closed| **closed).count(), 2, "{closed:?}");
    let mut held: Vec<TcpStream> =
        streams.into_iter().zip(closed).filter(|(_, closed)| !closed).map(|(stream, _)| stream).collect();
    // Another address is unaffected.
    let mut other = vec![connect_from(41, port).await];
    assert_eq!(closed_among(&mut other, Duration::from_millis(500)).await, [false], "another address is admitted");
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    // Connections that end give their place back.
    held.truncate(3);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut again = vec![connect_from(40, port).await, connect_from(40, port).await];
    assert_eq!(
        closed_among(&mut again, Duration::from_millis(500)).await,
        [false, false],
        "freed places are taken again"
    );
    app.stop().await;
}

#[actix_web::test]
async fn under_a_low_open_file_limit_slow_bodies_from_one_address_leave_health_checks_answered() {
    let data_dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    // The real binary, as an operator runs it, under a file limit of 160 (ulimit -n).
    let server = tokio::process::Command::new("bash")
        .arg("-c")
        .arg("ulimit -n 160 && exec \"$0\"")
        .arg(env!("CARGO_BIN_EXE_flexauth"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("FLEXAUTH_BIND", format!("127.0.0.1:{port}"))
        .env("FLEXAUTH_DATA_DIR", data_dir.path())
        .env("FLEXAUTH_REQUEST_BODY_TIMEOUT", "3s")
        .env("RUST_LOG", "warn,flexauth_server::startup=info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let health = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let url = format!("http://127.0.0.1:{port}/healthz");
    let started = Instant::now();
    while health.get(&url).send().await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(60), "the server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // More slow bodies from one address than the process has file descriptors.
    let mut clients = Vec::new();
    let mut heads = Vec::new();
    for _ in 0..300 {
        let stream = connect_from(50, port).await;
        let (sent, head) = tokio::sync::oneshot::channel();
        heads.push(head);
        clients.push(tokio::spawn(trickle_a_body(stream, sent)));
    }
    for head in heads {
        head.await.unwrap();
    }
    let reply = health.get(&url).send().await.expect("/healthz answers during the flood");
    assert_eq!(reply.status(), StatusCode::OK);
    // A quarter of what the limit leaves (120 of 160) is held, until the body deadline; the
    // rest were closed as soon as they were accepted, unanswered.
    let outcomes = tokio::time::timeout(Duration::from_secs(30), futures_util::future::join_all(clients))
        .await
        .expect("every slow client was cut off");
    let (mut refused, mut timed_out) = (0, 0);
    for outcome in outcomes {
        let (answer, lasted) = outcome.unwrap();
        if answer.is_empty() && lasted < Duration::from_secs(2) {
            refused += 1;
        } else if answer.starts_with("HTTP/1.1 408") {
            timed_out += 1;
        }
    }
    assert_eq!((refused, timed_out), (270, 30), "30 of the 300 are held, until their deadline");
    let mut server = server;
    server.start_kill().unwrap();
    let output = server.wait_with_output().await.unwrap();
    let log = String::from_utf8_lossy(&output.stdout);
    assert!(log.contains("connection limits") && log.contains("per_address=30"), "{log}");
}
