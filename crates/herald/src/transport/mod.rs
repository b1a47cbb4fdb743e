//! The WebSocket transport: the HTTP upgrade and the WebSocket codec.
//!
//! The upgrade is served by axum/hyper, so Herald mounts as one route of an
//! application's router; the upgraded connection is then framed by Herald's
//! own codec ([`ws`]: no per-socket buffer while a socket is idle, vectored
//! batched writes; its module docs say why no library would do). The
//! handshake response is built here (RFC 6455 §4.2.2).

pub(crate) mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use herald_protocol::close;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};

use ws::WebSocket;

use crate::admission::Refused;
use crate::server::Server;
use crate::socket::RequestInfo;

const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

pub(crate) fn router<S: Clone + Send + Sync + 'static>(server: Server) -> axum::Router<S> {
    let path = server.0.config.path.clone();
    let mut router = axum::Router::new().route(&path, get(upgrade));
    // Accept the path with and without its trailing slash.
    let alt = match path.strip_suffix('/') {
        Some(p) if !p.is_empty() => Some(p.to_owned()),
        Some(_) => None,
        None => Some(format!("{path}/")),
    };
    if let Some(alt) = alt {
        router = router.route(&alt, get(upgrade));
    }
    router.with_state(server)
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(WEBSOCKET_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// A copy of the URI that owns its bytes. hyper parses the request as
/// slices of its read buffer; a plain clone would keep that whole buffer
/// (16 KiB) alive for the life of the socket.
fn owned_uri(uri: &http::Uri) -> http::Uri {
    uri.path_and_query()
        .and_then(|pq| http::Uri::try_from(pq.as_str().to_owned()).ok())
        .unwrap_or_default()
}

/// Headers of the WebSocket handshake itself: they mean nothing once the
/// socket is open, and every socket would carry them.
fn handshake_header(name: &header::HeaderName) -> bool {
    name == header::UPGRADE
        || name == header::CONNECTION
        || name == header::SEC_WEBSOCKET_KEY
        || name == header::SEC_WEBSOCKET_VERSION
        || name == header::SEC_WEBSOCKET_EXTENSIONS
}

/// A copy of the headers that owns its bytes (see [`owned_uri`]), without
/// those of the handshake.
fn owned_headers(headers: &HeaderMap) -> HeaderMap {
    let kept = headers.keys().filter(|n| !handshake_header(n)).count();
    let mut owned = HeaderMap::with_capacity(kept);
    for (name, value) in headers.iter().filter(|(n, _)| !handshake_header(n)) {
        let name = header::HeaderName::from_bytes(name.as_str().as_bytes());
        let copy = HeaderValue::from_bytes(value.as_bytes());
        if let (Ok(name), Ok(mut copy)) = (name, copy) {
            copy.set_sensitive(value.is_sensitive());
            owned.append(name, copy);
        }
    }
    owned
}

fn plain(status: StatusCode, msg: &str) -> Response {
    (status, msg.to_owned()).into_response()
}

/// A request that is not a valid WebSocket upgrade.
fn bad_request(status: StatusCode, msg: &str) -> Response {
    crate::metrics::handshake_refused(crate::metrics::Refusal::BadRequest);
    plain(status, msg)
}

/// Checks that `headers` ask for a WebSocket (RFC 6455 §4.2.1) and returns
/// the `Sec-WebSocket-Accept` value, or the response refusing the request.
fn check_upgrade(headers: &HeaderMap) -> Result<String, Box<Response>> {
    if !header_has_token(headers, header::UPGRADE, "websocket")
        || !header_has_token(headers, header::CONNECTION, "upgrade")
    {
        return Err(Box::new(bad_request(
            StatusCode::UPGRADE_REQUIRED,
            "expected a WebSocket upgrade",
        )));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        let mut r = bad_request(StatusCode::BAD_REQUEST, "unsupported WebSocket version");
        r.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return Err(Box::new(r));
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Err(Box::new(bad_request(
            StatusCode::BAD_REQUEST,
            "missing Sec-WebSocket-Key",
        )));
    };
    Ok(accept_key(key.as_bytes()))
}

/// The `101 Switching Protocols` response.
fn switching_protocols(accept: String) -> Response {
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(Body::empty())
        .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "upgrade failed"))
}

/// The WebSocket codec over an upgraded connection, as every Herald socket
/// gets it: inbound messages bounded by `max_payload`. The test-only echo
/// endpoint uses this very function, so the Autobahn suite tests exactly
/// this stack.
fn websocket(
    upgraded: hyper::upgrade::Upgraded,
    max_payload: usize,
) -> WebSocket<TokioIo<hyper::upgrade::Upgraded>> {
    WebSocket::new(TokioIo::new(upgraded), max_payload)
}

async fn upgrade(State(server): State<Server>, mut req: Request) -> Response {
    let inner = &server.0;
    if inner.shutdown.is_cancelled() {
        crate::metrics::handshake_refused(crate::metrics::Refusal::ShuttingDown);
        return plain(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down");
    }
    let accept = match check_upgrade(req.headers()) {
        Ok(accept) => accept,
        Err(refusal) => return *refusal,
    };
    let remote_addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let headers = req.headers();
    let admitted = match inner.admission.admit(headers, remote_addr.map(|a| a.ip())) {
        Ok(admitted) => admitted,
        Err(refused) => {
            crate::metrics::handshake_refused(refused.metric());
            let browser = headers.contains_key(header::ORIGIN);
            return match refused.retry_after() {
                None => plain(StatusCode::FORBIDDEN, "origin not allowed"),
                Some(secs) if browser => refuse_browser(&server, &mut req, accept, secs),
                Some(secs) => {
                    let status = match refused {
                        Refused::PerIp { .. } => StatusCode::TOO_MANY_REQUESTS,
                        _ => StatusCode::SERVICE_UNAVAILABLE,
                    };
                    let mut r = plain(status, "server busy: retry later");
                    r.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                    r
                }
            };
        }
    };
    let info = RequestInfo {
        uri: owned_uri(req.uri()),
        headers: owned_headers(req.headers()),
        remote_addr,
    };
    for m in &inner.middleware {
        if let Err(rejection) = m.upgrade(&info).await {
            crate::metrics::handshake_refused(crate::metrics::Refusal::UpgradeMiddleware);
            return plain(rejection.status, &rejection.message);
        }
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let info = Arc::new(info);
    inner.tasks.spawn(crate::connection::run(
        upgraded(on_upgrade, inner.config.max_payload),
        info,
        server.0.clone(),
        admitted,
    ));
    switching_protocols(accept)
}

/// The WebSocket once the upgrade completes (`None`: it failed).
pub(crate) async fn upgraded(
    on_upgrade: hyper::upgrade::OnUpgrade,
    max_payload: usize,
) -> Option<WebSocket<TokioIo<hyper::upgrade::Upgraded>>> {
    match on_upgrade.await {
        Ok(upgraded) => Some(websocket(upgraded, max_payload)),
        Err(e) => {
            tracing::debug!(error = %e, "WebSocket upgrade failed");
            None
        }
    }
}

/// Admission control's refusal for a browser, which cannot read a refused
/// upgrade's status or headers: the upgrade is accepted and the socket
/// closed at once with 1013 and `retry after N`.
fn refuse_browser(server: &Server, req: &mut Request, accept: String, secs: u64) -> Response {
    let on_upgrade = hyper::upgrade::on(req);
    let max_payload = server.0.config.max_payload;
    server.0.tasks.spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut ws = websocket(upgraded, max_payload);
        let reason = close::retry_after_reason(secs);
        let grace = Duration::from_secs(1);
        let _ = tokio::time::timeout(grace, ws.close(1013, &reason)).await;
        let _ =
            tokio::time::timeout(grace, async { while let Some(Ok(_)) = ws.next().await {} }).await;
    });
    switching_protocols(accept)
}

/// **Test only** (feature `test-echo`): an endpoint that echoes every text
/// and binary message over Herald's own WebSocket stack (the same upgrade
/// checks, the same codec and limits through [`websocket`]), with no
/// SocketCluster protocol on top. It exists for the Autobahn conformance
/// suite (`scripts/autobahn.sh`); `herald serve` never routes it.
#[cfg(feature = "test-echo")]
pub fn echo_router(path: &str, max_payload: usize) -> axum::Router {
    use ws::{Message, OpCode};

    async fn echo(State(max_payload): State<usize>, mut req: Request) -> Response {
        let accept = match check_upgrade(req.headers()) {
            Ok(accept) => accept,
            Err(refusal) => return *refusal,
        };
        let on_upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let mut ws = websocket(upgraded, max_payload);
            while let Some(Ok(message)) = ws.next().await {
                // Pings are answered and closes echoed by the codec itself.
                let sent = match message {
                    Message::Text(t) => ws.send(OpCode::Text, &[bytes::Bytes::from(t)]).await,
                    Message::Binary(b) => ws.send(OpCode::Binary, &[b]).await,
                    _ => Ok(()),
                };
                if sent.is_err() {
                    break;
                }
            }
        });
        switching_protocols(accept)
    }

    axum::Router::new()
        .route(path, get(echo))
        .with_state(max_payload)
}

#[cfg(test)]
mod tests {
    #[test]
    fn handshake_headers_are_not_kept() {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::UPGRADE, "websocket".parse().unwrap());
        h.insert(http::header::CONNECTION, "Upgrade".parse().unwrap());
        h.insert(
            http::header::SEC_WEBSOCKET_KEY,
            "dGhlIHNhbXBsZSBub25jZQ==".parse().unwrap(),
        );
        h.insert(http::header::SEC_WEBSOCKET_VERSION, "13".parse().unwrap());
        h.insert(http::header::COOKIE, "a=1".parse().unwrap());
        h.append(http::header::COOKIE, "b=2".parse().unwrap());
        h.insert("x-app", "yes".parse().unwrap());
        let owned = super::owned_headers(&h);
        assert_eq!(owned.len(), 3);
        assert_eq!(owned.get_all(http::header::COOKIE).iter().count(), 2);
        assert_eq!(owned["x-app"], "yes");
        assert!(owned.get(http::header::SEC_WEBSOCKET_KEY).is_none());
    }

    #[test]
    fn accept_key_matches_rfc6455_example() {
        assert_eq!(
            super::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
