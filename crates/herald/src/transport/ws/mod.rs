//! Herald's WebSocket codec (RFC 6455, server side): frames in and out of
//! an upgraded connection, with **no per-socket buffer while a socket is
//! idle**.
//!
//! Most realtime sockets are idle most of the time, so what an idle socket
//! holds is what 100,000 sockets cost. Every WebSocket library measured for
//! Herald keeps a read buffer per connection for the life of the
//! connection: tokio-websockets 8 KiB (tokio-util's `FramedRead`, no knob),
//! tungstenite a `read_buffer_size` buffer (128 KiB by default; small sizes
//! cost syscalls and still stay allocated), fastwebsockets an 8 KiB
//! `BytesMut` (see docs/benchmarks.md, "Memory per idle socket", for the
//! figures). None reads into a caller's buffer, so none could do what
//! uWebSockets does; hence this module. It reads
//! into a **buffer per worker thread** ([`read`]): a read hands
//! [`AsyncRead::poll_read`] that thread's 32 KiB scratch buffer, frames are
//! decoded (and unmasked) in place, and only bytes that must outlive the
//! call are copied into the socket: a message's payload (which goes to the
//! caller anyway), an incomplete frame, or frames that arrived behind the
//! one returned. Those per-socket buffers are freed as soon as they are
//! consumed. Over plain TCP, `poll_read` is tokio's readiness API (wait for
//! readable, then `try_read` into the given buffer), so an idle socket
//! costs no buffer at all.
//!
//! Writes ([`write`]) need no buffer either: each frame's header is built
//! on the stack beside the caller's payload (`Bytes`, shared by every
//! subscriber of a publication) and a batch goes out in vectored writes;
//! what the socket keeps across a blocked write is a position in the
//! caller's batch. Control frames owed to the peer (a pong, a close reply)
//! wait in a small box allocated only while one is pending.
//!
//! What it does: text and binary messages, fragmented or not, UTF-8
//! validation that fails fast (also across fragments, [`utf8`]), pings
//! answered, the close handshake from either side, limits on a message's
//! size. What it declines: extensions (`permessage-deflate` is not
//! offered, so every reserved bit must be clear). It passes the Autobahn
//! suite strictly (docs/autobahn.md; `scripts/autobahn.sh` runs it against
//! the echo endpoint built on this very type).
//!
//! TLS: over rustls the same code runs unchanged (`poll_read` into the
//! scratch buffer), but rustls keeps its own per-connection buffers for
//! records (docs/architecture.md gives the cost).

mod frame;
mod read;
mod utf8;
mod write;

use std::io;

use bytes::Bytes;

#[cfg(feature = "test-echo")]
pub(crate) use frame::OpCode;

/// A message (or a control frame) from the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Message {
    /// A text message (valid UTF-8).
    Text(String),
    /// A binary message.
    Binary(Bytes),
    /// A ping (already answered with a pong).
    Ping,
    /// A pong.
    Pong,
    /// The peer's close frame: its code and reason (already answered).
    Close(Option<u16>, String),
}

impl Message {
    /// The text of a text message.
    pub(crate) fn as_text(&self) -> Option<&str> {
        match self {
            Message::Text(t) => Some(t),
            _ => None,
        }
    }

    /// Whether this is a text or a binary message.
    pub(crate) fn is_data(&self) -> bool {
        matches!(self, Message::Text(_) | Message::Binary(_))
    }
}

/// What went wrong on a WebSocket.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WsError {
    /// The peer broke RFC 6455 (answered with close code 1002).
    #[error("WebSocket protocol error: {0}")]
    Protocol(&'static str),
    /// A text message was not UTF-8 (answered with 1007).
    #[error("invalid UTF-8 in a text message")]
    InvalidUtf8,
    /// A message was longer than the limit (answered with 1009).
    #[error("message longer than {max} bytes")]
    TooBig {
        /// The limit.
        max: usize,
    },
    /// A write was abandoned in the middle of a frame, or data was to be
    /// sent after the close: the stream cannot carry more frames.
    #[error("the WebSocket is closed")]
    Closed,
    /// The connection failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl WsError {
    /// The close code that answers this error (none for I/O errors).
    pub(crate) fn close_code(&self) -> Option<u16> {
        match self {
            WsError::Protocol(_) => Some(1002),
            WsError::InvalidUtf8 => Some(1007),
            WsError::TooBig { .. } => Some(1009),
            WsError::Closed | WsError::Io(_) => None,
        }
    }
}

/// Where the close handshake stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Messages flow both ways.
    Open,
    /// We sent a close frame and wait for the peer's.
    ClosedByUs,
    /// The peer closed (or broke the protocol): our close frame goes out,
    /// then the stream ends.
    Closing,
    /// The handshake is over (or the connection is gone).
    Done,
}

/// A WebSocket over an upgraded connection `S`, server side.
pub(crate) struct WebSocket<S> {
    io: S,
    state: State,
    read: read::ReadState,
    write: write::WriteState,
    /// Longest message accepted.
    max_payload: usize,
}

impl<S> WebSocket<S> {
    /// A WebSocket over `io`, whose handshake is done, accepting messages
    /// of at most `max_payload` bytes.
    pub(crate) fn new(io: S, max_payload: usize) -> Self {
        WebSocket {
            io,
            state: State::Open,
            read: read::ReadState::default(),
            write: write::WriteState::default(),
            max_payload,
        }
    }
}

impl<S> std::fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
