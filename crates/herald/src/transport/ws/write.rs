//! The writing side: batches of frames in vectored writes, control frames,
//! the close.
//!
//! A batch is the caller's slice of payloads (`Bytes`, usually shared by
//! every subscriber of a publication). Each frame's header is built on the
//! stack next to it and up to [`FRAMES_PER_WRITE`] frames go out in one
//! vectored write; a socket that cannot take it all keeps only its
//! position in the batch (in the future of the write) and resumes there.
//! A write abandoned in the middle of a frame leaves the stream unusable,
//! and every later write says so ([`WsError::Closed`]) instead of
//! corrupting it.

use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

use super::frame::{self, MAX_CONTROL_PAYLOAD, MAX_SERVER_HEADER, OpCode};
use super::{State, WebSocket, WsError};

/// Most frames in one vectored write (two slices each, within `IOV_MAX`).
pub(crate) const FRAMES_PER_WRITE: usize = 256;

/// What a socket keeps of its output between writes.
#[derive(Debug, Default)]
pub(super) struct WriteState {
    /// A control frame owed to the peer (a pong, a close), written before
    /// anything else; boxed, as it is rare.
    control: Option<Box<Control>>,
    /// The stream stands inside a frame (a write was abandoned there).
    mid_frame: bool,
}

/// One control frame, header and payload.
#[derive(Debug)]
struct Control {
    bytes: [u8; 2 + MAX_CONTROL_PAYLOAD],
    len: u8,
    written: u8,
}

impl WriteState {
    /// Queues a pong answering a ping with `payload` (a pong still unsent
    /// is replaced: RFC 6455 §5.5.3 lets the last ping be answered alone).
    pub(super) fn queue_pong(&mut self, payload: &[u8]) {
        if self.control.as_ref().is_some_and(|c| c.written > 0) {
            return;
        }
        self.control = Some(control(OpCode::Pong, &[payload]));
    }

    /// Queues a close frame (replacing an unsent pong).
    pub(super) fn queue_close(&mut self, code: Option<u16>, reason: &str) {
        let frame = match code {
            None => control(OpCode::Close, &[]),
            Some(code) => {
                let reason = truncate(reason, MAX_CONTROL_PAYLOAD - 2);
                control(OpCode::Close, &[&code.to_be_bytes(), reason.as_bytes()])
            }
        };
        self.control = Some(frame);
    }
}

fn control(opcode: OpCode, parts: &[&[u8]]) -> Box<Control> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    debug_assert!(len <= MAX_CONTROL_PAYLOAD);
    let mut head = [0u8; MAX_SERVER_HEADER];
    frame::encode_head(opcode, len, &mut head);
    let mut c = Box::new(Control {
        bytes: [0; 2 + MAX_CONTROL_PAYLOAD],
        len: (2 + len) as u8,
        written: 0,
    });
    c.bytes[..2].copy_from_slice(&head[..2]);
    let mut at = 2;
    for p in parts {
        c.bytes[at..at + p.len()].copy_from_slice(p);
        at += p.len();
    }
    c
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The length of a server frame's header for a payload of `len` bytes.
fn head_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// Where a batch's write stands.
#[derive(Debug, Default, Clone, Copy)]
struct Cursor {
    frame: usize,
    /// Bytes of `frame` (header and payload) written.
    offset: usize,
}

/// A batch being written ([`WebSocket::send`]): a future of its own rather
/// than an `async fn`, because every socket's task holds one in its layout
/// while a write waits, and this one is the cursor and two references.
#[must_use = "futures do nothing unless polled"]
pub(crate) struct Send<'a, S> {
    ws: &'a mut WebSocket<S>,
    payloads: &'a [Bytes],
    at: Cursor,
    opcode: OpCode,
    started: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Future for Send<'_, S> {
    type Output = Result<(), WsError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if !this.started {
            if this.ws.state != State::Open || this.ws.write.mid_frame {
                return Poll::Ready(Err(WsError::Closed));
            }
            this.started = true;
        }
        this.ws
            .poll_send(cx, this.opcode, this.payloads, &mut this.at)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Writes `payloads` as text frames, one message each, and flushes.
    pub(crate) fn send_text<'a>(&'a mut self, payloads: &'a [Bytes]) -> Send<'a, S> {
        self.send(OpCode::Text, payloads)
    }

    /// Writes `payloads` as frames of `opcode` (text or binary), one
    /// message each, and flushes.
    pub(crate) fn send<'a>(&'a mut self, opcode: OpCode, payloads: &'a [Bytes]) -> Send<'a, S> {
        debug_assert!(matches!(opcode, OpCode::Text | OpCode::Binary));
        Send {
            ws: self,
            payloads,
            at: Cursor::default(),
            opcode,
            started: false,
        }
    }

    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        opcode: OpCode,
        payloads: &[Bytes],
        at: &mut Cursor,
    ) -> Poll<Result<(), WsError>> {
        if at.frame == 0 && at.offset == 0 {
            ready!(self.poll_control(cx))?;
        }
        while at.frame < payloads.len() {
            let batch = &payloads[at.frame..payloads.len().min(at.frame + FRAMES_PER_WRITE)];
            let mut heads = [[0u8; MAX_SERVER_HEADER]; FRAMES_PER_WRITE];
            let mut lens = [0usize; FRAMES_PER_WRITE];
            for (i, p) in batch.iter().enumerate() {
                lens[i] = frame::encode_head(opcode, p.len(), &mut heads[i]);
            }
            let mut slices = [IoSlice::new(&[]); 2 * FRAMES_PER_WRITE];
            let mut n = 0;
            for (i, p) in batch.iter().enumerate() {
                let head = &heads[i][..lens[i]];
                let skip = if i == 0 { at.offset } else { 0 };
                if skip < head.len() {
                    slices[n] = IoSlice::new(&head[skip..]);
                    n += 1;
                }
                let from = skip.saturating_sub(head.len());
                if from < p.len() {
                    slices[n] = IoSlice::new(&p[from..]);
                    n += 1;
                }
            }
            let written = match Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..n]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(write_zero())),
                Poll::Ready(Ok(w)) => w,
                Poll::Ready(Err(e)) => {
                    self.state = State::Done;
                    return Poll::Ready(Err(e.into()));
                }
                Poll::Pending => return Poll::Pending,
            };
            advance(at, payloads, written);
            self.write.mid_frame = at.offset != 0;
        }
        self.poll_flush_io(cx)
    }

    /// Writes the control frame owed to the peer, if any, and flushes.
    pub(super) fn poll_control(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let Some(c) = self.write.control.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        if self.write.mid_frame {
            self.write.control = None;
            return Poll::Ready(Err(WsError::Closed));
        }
        while c.written < c.len {
            let bytes = &c.bytes[usize::from(c.written)..usize::from(c.len)];
            match ready!(Pin::new(&mut self.io).poll_write(cx, bytes)) {
                Ok(0) => {
                    self.write.control = None;
                    return Poll::Ready(Err(write_zero()));
                }
                Ok(n) => c.written += n as u8,
                Err(e) => {
                    self.write.control = None;
                    self.state = State::Done;
                    return Poll::Ready(Err(e.into()));
                }
            }
        }
        self.write.control = None;
        self.poll_flush_io(cx)
    }

    fn poll_flush_io(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        Pin::new(&mut self.io).poll_flush(cx).map_err(WsError::from)
    }

    /// Writes what is owed to the peer (a pong, a close frame).
    pub(crate) async fn flush(&mut self) -> Result<(), WsError> {
        poll_fn(|cx| self.poll_control(cx)).await
    }

    /// Starts the close handshake: sends a close frame with `code` (one a
    /// peer may receive, else 1000) and `reason` (cut to 123 bytes). The
    /// peer's answer ends [`WebSocket::next`]. Does nothing more than
    /// [`WebSocket::flush`] once the peer closed or the stream failed.
    pub(crate) async fn close(&mut self, code: u16, reason: &str) -> Result<(), WsError> {
        self.flush().await?;
        if self.state == State::Open {
            let code = if frame::valid_close_code(code) {
                code
            } else {
                1000
            };
            self.write.queue_close(Some(code), reason);
            self.state = State::ClosedByUs;
        }
        self.flush().await
    }
}

fn write_zero() -> WsError {
    WsError::Io(io::Error::new(
        io::ErrorKind::WriteZero,
        "connection took no bytes",
    ))
}

/// Moves `at` past `written` bytes of the batch.
fn advance(at: &mut Cursor, payloads: &[Bytes], mut written: usize) {
    while written > 0 {
        let len = payloads[at.frame].len();
        let left = head_len(len) + len - at.offset;
        if written >= left {
            written -= left;
            at.frame += 1;
            at.offset = 0;
        } else {
            at.offset += written;
            written = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_crosses_frames() {
        let payloads = [Bytes::from_static(b"abc"), Bytes::from(vec![0u8; 300])];
        let mut at = Cursor::default();
        advance(&mut at, &payloads, 4);
        assert_eq!((at.frame, at.offset), (0, 4));
        advance(&mut at, &payloads, 1 + 4 + 10);
        assert_eq!((at.frame, at.offset), (1, 14));
        advance(&mut at, &payloads, 290);
        assert_eq!((at.frame, at.offset), (2, 0));
    }

    #[test]
    fn close_reasons_are_cut_on_a_character() {
        let s = "é".repeat(100);
        let cut = truncate(&s, 123);
        assert_eq!(cut.len(), 122);
        let c = control(OpCode::Close, &[&1000u16.to_be_bytes(), cut.as_bytes()]);
        assert_eq!(usize::from(c.len), 2 + 2 + 122);
        assert_eq!(c.bytes[..4], [0x88, 124, 0x03, 0xE8]);
    }
}
