//! Protocol defaults, matching socketcluster-server 20 (`server.js`), so that
//! a client tuned for SocketCluster behaves the same against Herald.

use std::time::Duration;

/// Interval between two server pings (an empty text frame).
pub const PING_INTERVAL: Duration = Duration::from_millis(8_000);
/// A socket that sends no pong (and no other frame) for this long is closed
/// with [`crate::close::PONG_TIMEOUT`]. Also sent to the client in the
/// handshake reply so that it can detect a dead server.
pub const PING_TIMEOUT: Duration = Duration::from_millis(30_000);
/// Time a fresh socket has to send `#handshake`.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(10_000);
/// Time the server waits for the client's reply to a server-side invoke.
pub const ACK_TIMEOUT: Duration = Duration::from_millis(10_000);
/// Default lifetime of a token the server signs, in seconds (24 h).
pub const AUTH_DEFAULT_EXPIRY_SECS: u64 = 86_400;
/// Largest accepted inbound message. Larger ones close the socket with
/// [`crate::close::MESSAGE_TOO_BIG`].
pub const MAX_PAYLOAD: usize = 1024 * 1024;
/// The WebSocket path the official client connects to.
pub const PATH: &str = "/socketcluster/";
