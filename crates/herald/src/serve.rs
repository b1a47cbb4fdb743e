//! Serving a [`Server`]: over TCP or TLS, with the status and metrics
//! routes, and stopping it by draining.
//!
//! Draining is what a rolling restart needs: the node stops taking
//! sockets, tells the load balancer it is not ready, lets what is in flight
//! finish, and then asks every client to reconnect (close 1012), which
//! Herald's clients do at once (with jitter) rather than after their usual
//! backoff. Together with admission control on the node they reconnect to,
//! no client waits longer than its backoff and none loses a reply.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use crate::server::Server;

impl Server {
    /// Serves the endpoint on `listener` until `shutdown` completes, then
    /// drains (see [`Server::shutdown`]) and returns. Also serves the status routes
    /// ([`Server::status_router`]) and, once Herald's Prometheus recorder is
    /// installed, `GET /metrics`. The app's own routes can be added by using
    /// [`Server::router`] with `axum::serve` instead.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.serve_with(listener, axum::Router::new(), shutdown)
            .await
    }

    /// [`Server::serve`] with the application's own `routes` beside
    /// Herald's (e.g. a page at `/`; `herald serve --dev` serves its demo
    /// this way).
    pub async fn serve_with(
        self,
        listener: tokio::net::TcpListener,
        routes: axum::Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (app, signal) = self.app(routes, shutdown);
        // Frames are batched by the connection task; Nagle's algorithm would
        // only add delayed-ACK stalls (40 ms) to small writes.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(signal)
        .await?;
        self.0.registry.broker().shutdown().await;
        Ok(())
    }

    /// [`Server::serve`] over TLS: `wss://` for sockets, `https://` for the
    /// status routes and `/metrics`. Each connection's TLS handshake runs
    /// concurrently with the others and must finish within the
    /// `handshake_timeout`.
    pub async fn serve_tls(
        self,
        listener: tokio::net::TcpListener,
        tls: crate::TlsConfig,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.serve_tls_with(listener, tls, axum::Router::new(), shutdown)
            .await
    }

    /// [`Server::serve_tls`] with the application's own `routes` beside
    /// Herald's.
    pub async fn serve_tls_with(
        self,
        listener: tokio::net::TcpListener,
        tls: crate::TlsConfig,
        routes: axum::Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (app, signal) = self.app(routes, shutdown);
        let timeout = self.0.config.handshake_timeout;
        // Frames are batched by the connection task; Nagle's algorithm would
        // only add delayed-ACK stalls. (`tap_io` also gives axum the peer
        // address of each connection.)
        let listener = axum::serve::ListenerExt::tap_io(
            crate::tls::TlsIncoming::new(listener, &tls, timeout),
            |tls| {
                let _ = tls.get_ref().0.set_nodelay(true);
            },
        );
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(signal)
        .await?;
        self.0.registry.broker().shutdown().await;
        Ok(())
    }

    /// The routes [`Server::serve`] answers (Herald's and `routes`), and
    /// the signal that ends it (after closing every socket).
    fn app(
        &self,
        routes: axum::Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> (axum::Router, impl Future<Output = ()> + Send + 'static) {
        let mut app = self
            .router::<()>()
            .merge(self.status_router())
            .merge(routes);
        if let Some(prometheus) = crate::metrics::Prometheus::installed() {
            app = app.merge(prometheus.router());
        }
        let token = self.0.shutdown.clone();
        let this = self.clone();
        let signal = async move {
            tokio::select! {
                _ = shutdown => {},
                _ = token.cancelled() => {},
            }
            let grace = this.0.config.drain_timeout;
            this.close_sockets(grace).await;
        };
        (app, signal)
    }

    /// Binds a listener for [`Server::serve`] with a long accept backlog
    /// (4096, capped by the kernel's `somaxconn`), so that thousands of
    /// clients reconnecting at once after a restart wait in the queue instead
    /// of in TCP retransmission timeouts.
    pub fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
        Self::bind_with(addr, false)
    }

    /// [`Server::bind`] with `SO_REUSEPORT`: several processes (the workers
    /// of `herald serve --workers N`) each bind a listener to the same
    /// address and the kernel spreads incoming connections over them. Every
    /// socket bound to the port must set it, under the same user.
    #[cfg(unix)]
    pub fn bind_reuseport(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
        Self::bind_with(addr, true)
    }

    fn bind_with(addr: SocketAddr, reuseport: bool) -> std::io::Result<tokio::net::TcpListener> {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        #[cfg(unix)]
        if reuseport {
            socket.set_reuseport(true)?;
        }
        #[cfg(not(unix))]
        let _ = reuseport;
        socket.bind(addr)?;
        socket.listen(4096)
    }

    /// Stops the server by draining it: new upgrades are refused with 503
    /// (and `/herald/ready` answers 503, so a load balancer stops sending
    /// any), each socket's running procedures may finish and their replies
    /// and what was queued go out, then every socket is closed with 1012
    /// ([`herald_protocol::close::SERVICE_RESTART`]: reconnect, elsewhere or
    /// here once back). Waits for the sockets at most `grace` (their
    /// procedures get the configured `drain_timeout`, within it).
    pub async fn shutdown(&self, grace: Duration) {
        self.close_sockets(grace).await;
        self.0.registry.broker().shutdown().await;
    }

    async fn close_sockets(&self, grace: Duration) {
        let sockets = self.0.sockets.lock().len();
        tracing::info!(sockets, ?grace, "draining: closing every socket with 1012");
        self.0.shutdown.cancel();
        // Each socket's task is woken through its queue (one waiter per
        // socket for all its wake-ups, `crate::queue`). A socket registering
        // meanwhile sees the cancelled token itself (`connection::run`).
        for socket in self.sockets() {
            socket.0.queue.signal(crate::queue::Signals::SHUTDOWN);
        }
        self.0.tasks.close();
        // Each socket waits up to the drain timeout for its procedures, then
        // up to two close grace periods for its writes and close handshake.
        let grace = grace + Duration::from_secs(2);
        if tokio::time::timeout(grace, self.0.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = self.0.tasks.len(),
                "shutdown grace period elapsed with sockets still open"
            );
        }
    }
}
