//! WebSocket close codes used on a Herald socket and their reasons.
//!
//! Codes 1000–1015 are RFC 6455; 4000–4009 are SocketCluster's own (the
//! official client reacts to them, e.g. reconnecting sooner after 4000/4001).
//! Codes from 4100 up are Herald's additions; the official client treats them
//! like any abnormal close and reconnects.

/// Normal closure.
pub const NORMAL: u16 = 1000;
/// The server is shutting down (or the client is going away).
pub const GOING_AWAY: u16 = 1001;
/// A WebSocket protocol violation.
pub const PROTOCOL_ERROR: u16 = 1002;
/// The peer kept sending frames that are not valid protocol messages.
pub const INVALID_DATA: u16 = 1003;
/// A message was larger than the configured maximum payload.
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// The server hit an unexpected condition.
pub const INTERNAL_ERROR: u16 = 1011;
/// The server is draining (restarting or stopping): reconnect, to another
/// node or to this one once it is back. Sent to every socket on SIGTERM.
pub const SERVICE_RESTART: u16 = 1012;
/// Admission control refused a browser's connection (a browser cannot read
/// an HTTP 503's `Retry-After`): the reason is `retry after N`, N in
/// seconds. See [`retry_after_reason`] and [`parse_retry_after`].
pub const TRY_AGAIN_LATER: u16 = 1013;
/// Server ping timed out (sent by clients that see no ping).
pub const PING_TIMEOUT: u16 = 4000;
/// No pong (nor any frame) arrived within the ping timeout.
pub const PONG_TIMEOUT: u16 = 4001;
/// The server failed to sign an auth token.
pub const AUTH_SIGN_FAILED: u16 = 4002;
/// The handshake could not be completed.
pub const HANDSHAKE_FAILED: u16 = 4003;
/// No `#handshake` arrived within the handshake timeout.
pub const HANDSHAKE_TIMEOUT: u16 = 4005;
/// Handshake middleware rejected the socket.
pub const HANDSHAKE_REJECTED: u16 = 4008;
/// A frame other than `#handshake` arrived before the handshake.
pub const MESSAGE_BEFORE_HANDSHAKE: u16 = 4009;
/// Herald: the socket's bounded outbound queue overflowed (slow consumer).
pub const SLOW_CONSUMER: u16 = 4100;
/// Herald: the socket kept sending more messages per second than its
/// inbound rate allows (for longer than the throttling grace period).
pub const INBOUND_RATE: u16 = 4101;
/// Herald: the socket's user already holds the most connections a node
/// allows one user.
pub const USER_CONNECTIONS: u16 = 4102;
/// Herald: the backend disconnected the socket's user (the HTTP API's
/// `disconnect` without a code). The official client reconnects, as after
/// any code below 4500; a backend that wants it to stay away sends a code
/// from 4500 to 4999, or refuses the token.
pub const DISCONNECTED_BY_SERVER: u16 = 4104;

/// The close reason of [`TRY_AGAIN_LATER`]: `retry after N`.
pub fn retry_after_reason(seconds: u64) -> String {
    format!("retry after {seconds}")
}

/// The delay in seconds a [`TRY_AGAIN_LATER`] close reason asks for.
pub fn parse_retry_after(reason: &str) -> Option<u64> {
    reason.strip_prefix("retry after ")?.trim().parse().ok()
}

/// The human reason sent with a close code, as socketcluster-server words it
/// (`sc-errors` `socketProtocolErrorStatuses`), plus Herald's own codes.
pub fn reason(code: u16) -> &'static str {
    match code {
        NORMAL => "Socket closed normally",
        GOING_AWAY => "Socket was disconnected",
        PROTOCOL_ERROR => "A WebSocket protocol error was encountered",
        INVALID_DATA => "Server terminated socket because it received invalid data",
        1005 => "Socket closed without status code",
        1006 => "Socket hung up",
        1007 => "Message format was incorrect",
        1008 => "Encountered a policy violation",
        MESSAGE_TOO_BIG => "Message was too big to process",
        1010 => {
            "Client ended the connection because the server did not comply with extension requirements"
        }
        INTERNAL_ERROR => "Server encountered an unexpected fatal condition",
        SERVICE_RESTART => "Server is restarting: reconnect",
        TRY_AGAIN_LATER => "Server is busy: try again later",
        PING_TIMEOUT => "Server ping timed out",
        PONG_TIMEOUT => "Client pong timed out",
        AUTH_SIGN_FAILED => "Server failed to sign auth token",
        HANDSHAKE_FAILED => "Failed to complete handshake",
        4004 => "Client failed to save auth token",
        HANDSHAKE_TIMEOUT => "Did not receive #handshake from client before timeout",
        4006 => "Failed to bind socket to message broker",
        4007 => "Client connection establishment timed out",
        HANDSHAKE_REJECTED => "Server rejected handshake from client",
        MESSAGE_BEFORE_HANDSHAKE => "Server received a message before the client handshake",
        SLOW_CONSUMER => "Slow consumer: the socket's outbound queue overflowed",
        INBOUND_RATE => "Too many messages: the socket exceeded its inbound rate",
        USER_CONNECTIONS => "Too many connections for this user",
        DISCONNECTED_BY_SERVER => "Disconnected by the server",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes_have_reasons() {
        for code in [
            NORMAL,
            PONG_TIMEOUT,
            MESSAGE_TOO_BIG,
            SLOW_CONSUMER,
            INVALID_DATA,
        ] {
            assert!(!reason(code).is_empty(), "{code}");
        }
        assert_eq!(reason(4999), "");
    }

    #[test]
    fn retry_after_reasons_round_trip() {
        assert_eq!(parse_retry_after(&retry_after_reason(7)), Some(7));
        assert_eq!(parse_retry_after("retry after x"), None);
        assert_eq!(parse_retry_after("Socket hung up"), None);
    }
}
