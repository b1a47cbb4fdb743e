//! Connection hooks, shutdown, and mounting Herald in an axum application.

use std::time::{Duration, Instant};

use herald::SocketState;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use crate::common::*;

#[tokio::test]
async fn on_connection_fires_after_the_handshake() {
    bounded(async {
        let (tx, mut connected) = mpsc::unbounded_channel();
        let server = TestServer::start(fixture().on_connection(move |socket| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((socket.id().to_owned(), socket.state()));
            }
        }))
        .await;
        let mut early = server.connect().await; // upgraded, no handshake yet
        let c = server.client().await;
        let (id, state) = within("on_connection", connected.recv()).await.unwrap();
        assert_eq!(id, c.id, "the first hook is for the first handshake");
        assert_eq!(state, SocketState::Open);
        assert!(
            connected.try_recv().is_err(),
            "no hook for a socket without handshake"
        );

        early.handshake(None).await;
        let (id, _) = within("on_connection", connected.recv()).await.unwrap();
        assert_eq!(id, early.id);
    })
    .await
}

#[tokio::test]
async fn on_disconnection_reports_the_close_code() {
    bounded(async {
        let (tx, mut closed) = mpsc::unbounded_channel();
        let server = TestServer::start(fixture().on_disconnection(move |socket, code, reason| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((socket.id().to_owned(), code, reason, socket.state()));
            }
        }))
        .await;

        // Closed by the client.
        let a = server.client().await;
        let a_id = a.id.clone();
        a.close(4321, "client bye").await;
        let event = within("on_disconnection", closed.recv()).await.unwrap();
        assert_eq!(
            event,
            (a_id, 4321, "client bye".to_owned(), SocketState::Closed)
        );

        // Closed by server code.
        let mut b = server.client().await;
        server
            .server
            .socket(&b.id)
            .unwrap()
            .disconnect(4567, "server bye");
        assert_eq!(b.expect_close().await, (4567, "server bye".to_owned()));
        let (id, code, reason, _) = within("on_disconnection", closed.recv()).await.unwrap();
        assert_eq!(
            (id, code, reason.as_str()),
            (b.id.clone(), 4567, "server bye")
        );

        // A socket that never completed its handshake fires no hook: close
        // one, wait for its task to finish, then close a handshaken one.
        let early = server.connect().await;
        eventually("the early socket to register", || {
            server.server.sockets().len() == 1
        })
        .await;
        early.close(1000, "").await;
        eventually("the early socket to go", || {
            server.server.sockets().is_empty()
        })
        .await;
        let d = server.client().await;
        let d_id = d.id.clone();
        d.close(1000, "").await;
        let (id, code, _, _) = within("on_disconnection", closed.recv()).await.unwrap();
        assert_eq!((id, code), (d_id, 1000));
    })
    .await
}

#[tokio::test]
async fn shutdown_drains_sockets_with_1012_and_serve_returns() {
    bounded(async {
        let (tx, mut closed) = mpsc::unbounded_channel();
        let mut server = TestServer::start(fixture().on_disconnection(move |_socket, code, _| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(code);
            }
        }))
        .await;
        let mut a = server.client().await;
        a.subscribe("x").await;
        let mut b = server.client().await;
        let mut pending = server.connect().await; // no handshake

        let grace = Duration::from_secs(5);
        let start = Instant::now();
        let handle = server.server.clone();
        let shutdown = tokio::spawn(async move { handle.shutdown(grace).await });
        for c in [&mut a, &mut b, &mut pending] {
            assert_eq!(c.expect_close().await.0, 1012);
        }
        within("Server::shutdown", shutdown).await.unwrap();
        server.join().await.expect("serve returns Ok");
        assert!(
            start.elapsed() < grace,
            "shutdown waited for the grace period"
        );
        assert_eq!(within("hook", closed.recv()).await, Some(1012));
        assert_eq!(within("hook", closed.recv()).await, Some(1012));
        assert!(server.server.sockets().is_empty());
        assert_eq!(server.server.channel_count(), 0);
        // The listener is gone.
        assert!(Client::try_connect(&server.url()).await.is_err());
    })
    .await
}

#[tokio::test]
async fn serve_shutdown_future_drains_sockets_with_1012() {
    bounded(async {
        let server = TestServer::fixture().await;
        let mut a = server.client().await;
        let mut b = server.client().await;
        let url = server.url();
        let stopping = tokio::spawn(server.stop());
        assert_eq!(a.expect_close().await.0, 1012);
        assert_eq!(b.expect_close().await.0, 1012);
        within("serve to return", stopping)
            .await
            .unwrap()
            .expect("serve returns Ok");
        assert!(Client::try_connect(&url).await.is_err());
    })
    .await
}

#[tokio::test]
async fn router_mounts_in_an_axum_app_beside_its_own_routes() {
    bounded(async {
        let server = fixture().build();
        let app = axum::Router::new()
            .route("/health", axum::routing::get(|| async { "ok" }))
            .merge(server.router());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });

        let health = http_request(
            addr,
            "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        assert!(health.ends_with("\r\n\r\nok"), "{health}");

        let mut c = Client::connect(&format!("ws://{addr}/socketcluster/")).await;
        c.handshake(None).await;
        assert_eq!(c.call("echo", json!("via axum")).await, json!("via axum"));
        // The endpoint is also served without its trailing slash.
        let mut c2 = Client::connect(&format!("ws://{addr}/socketcluster")).await;
        c2.handshake(None).await;
        c.subscribe("both").await;
        c2.publish("both", json!(1)).await;
        assert_eq!(Client::publication(&c.recv().await).0, "both");
        assert_eq!(server.client_count(), 2);

        // A plain GET of the endpoint is not an upgrade; other paths are 404.
        let plain = http_request(
            addr,
            "GET /socketcluster/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(plain.starts_with("HTTP/1.1 426"), "{plain}");
        let missing = http_request(
            addr,
            "GET /nope HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");

        // Shutting Herald down closes its sockets; the app then stops.
        let handle = server.clone();
        let shutdown = tokio::spawn(async move { handle.shutdown(Duration::from_secs(5)).await });
        assert_eq!(c.expect_close().await.0, 1012);
        assert_eq!(c2.expect_close().await.0, 1012);
        within("Server::shutdown", shutdown).await.unwrap();
        let _ = stop.send(());
        within("axum::serve", serving).await.unwrap().unwrap();
    })
    .await
}
