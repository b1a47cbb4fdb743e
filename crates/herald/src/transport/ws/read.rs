//! The reading side: frames decoded in the worker thread's scratch buffer.
//!
//! A read hands the connection the scratch buffer of the thread the task
//! runs on (32 KiB, one per worker thread, borrowed only inside the
//! synchronous `poll_read` and the decoding that follows it, never across
//! an `.await`). Frames are decoded and unmasked in place; what must
//! outlive the call is copied into the socket's own state:
//!
//! * a message's payload (it is handed to the caller);
//! * bytes behind the first message of the read (a client that pipelines
//!   requests) or an incomplete frame: into `pending`, freed as soon as it
//!   is consumed. A frame larger than the scratch buffer is read straight
//!   into `pending`, which grows with the bytes that actually arrive;
//! * a fragmented message: its fragments so far.
//!
//! A control frame that asks for an answer (a ping, a close) is answered
//! before the next frame is decoded: while the answer cannot be written,
//! the peer is not read either (it is not reading us).

use std::cell::RefCell;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::frame::{self, Head, OpCode};
use super::utf8::Utf8Check;
use super::{Message, State, WebSocket, WsError};

/// The per-thread scratch buffer's size.
pub(crate) const SCRATCH_SIZE: usize = 32 * 1024;

/// The most read at once straight into a socket's buffer (a large frame).
const BIG_READ: usize = 256 * 1024;

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_SIZE].into_boxed_slice());
}

/// What a socket keeps of its input between reads (nothing, when idle).
#[derive(Debug, Default)]
pub(super) struct ReadState {
    /// Bytes received and not consumed yet, from `at` on: an incomplete
    /// frame, or frames behind the message returned last. Unallocated when
    /// empty.
    pending: Vec<u8>,
    at: usize,
    /// Payload bytes of the incomplete frame at the start of `pending`
    /// already unmasked (and, for text, validated).
    unmasked: usize,
    /// A fragmented message being assembled (boxed: rare, and every
    /// socket carries this state).
    message: Option<Box<Assembly>>,
    /// Validation of the text message in progress.
    utf8: Utf8Check,
}

#[derive(Debug)]
struct Assembly {
    text: bool,
    data: Vec<u8>,
}

impl ReadState {
    /// Bytes allocated for input kept between reads (for tests).
    #[cfg(test)]
    pub(super) fn kept_capacity(&self) -> usize {
        self.pending.capacity() + self.message.as_ref().map_or(0, |m| m.data.capacity())
    }

    fn unconsumed(&self) -> usize {
        self.pending.len() - self.at
    }

    /// Keeps `bytes` for later (they follow what is pending).
    fn keep(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.compact();
            self.pending.extend_from_slice(bytes);
        }
    }

    /// Moves what is pending to the start of the buffer.
    fn compact(&mut self) {
        if self.at > 0 {
            self.pending.drain(..self.at);
            self.at = 0;
        }
    }

    /// Marks `n` pending bytes consumed, and frees the buffer once all are.
    fn consume(&mut self, n: usize) {
        self.at += n;
        if self.at >= self.pending.len() {
            self.pending = Vec::new();
            self.at = 0;
        }
    }
}

/// One decoding step at the start of a buffer.
enum Step {
    /// The buffer ends inside a frame; its total length, once known.
    NeedMore(Option<usize>),
    /// A frame was decoded: its length, and what it gives the caller.
    Frame {
        consumed: usize,
        message: Option<Message>,
    },
}

/// What one read from the connection gave.
enum Read {
    /// A message (more bytes may be pending).
    Message(Message),
    /// Bytes, kept or decoded without completing a message.
    Progress,
    /// The peer closed the connection.
    Eof,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// The next message from the peer; `None` once the stream ended (after
    /// the close handshake, after an error, or when the connection closed).
    /// Cancel-safe.
    pub(crate) async fn next(&mut self) -> Option<Result<Message, WsError>> {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    /// See [`WebSocket::next`].
    pub(crate) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Message, WsError>>> {
        loop {
            // An answer owed to the peer goes out before anything else is
            // read.
            match self.poll_control(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => {
                    self.end();
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Pending => return Poll::Pending,
            }
            match self.state {
                State::Open | State::ClosedByUs => {}
                State::Closing | State::Done => {
                    self.end();
                    return Poll::Ready(None);
                }
            }
            let mut frame_len = None;
            if self.read.unconsumed() > 0 {
                let mut pending = std::mem::take(&mut self.read.pending);
                let at = self.read.at;
                let step = self.decode(&mut pending[at..]);
                self.read.pending = pending;
                match step {
                    Err(e) => return Poll::Ready(Some(Err(self.fail(e)))),
                    Ok(Step::Frame { consumed, message }) => {
                        self.read.consume(consumed);
                        match message {
                            Some(m) => return Poll::Ready(Some(Ok(m))),
                            None => continue,
                        }
                    }
                    Ok(Step::NeedMore(len)) => frame_len = len,
                }
            }
            let read = match frame_len {
                Some(len) if len - self.read.unconsumed() >= SCRATCH_SIZE => {
                    self.poll_read_big(cx, len)
                }
                _ => self.poll_read_scratch(cx),
            };
            match read {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(self.fail(e)))),
                Poll::Ready(Ok(Read::Message(m))) => return Poll::Ready(Some(Ok(m))),
                Poll::Ready(Ok(Read::Progress)) => {}
                Poll::Ready(Ok(Read::Eof)) => {
                    self.end();
                    return Poll::Ready(None);
                }
            }
        }
    }

    /// Reads into the thread's scratch buffer and decodes there, up to the
    /// first message; keeps the rest.
    fn poll_read_scratch(&mut self, cx: &mut Context<'_>) -> Poll<Result<Read, WsError>> {
        SCRATCH.with(|cell| {
            let mut scratch = cell.borrow_mut();
            let mut buf = ReadBuf::new(&mut scratch[..]);
            std::task::ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
            let n = buf.filled().len();
            if n == 0 {
                return Poll::Ready(Ok(Read::Eof));
            }
            let bytes = &mut scratch[..n];
            if self.read.unconsumed() > 0 {
                // The rest of a frame begun earlier.
                self.read.keep(bytes);
                return Poll::Ready(Ok(Read::Progress));
            }
            let mut at = 0;
            while at < n {
                match self.decode(&mut bytes[at..])? {
                    Step::NeedMore(_) => break,
                    Step::Frame { consumed, message } => {
                        at += consumed;
                        if let Some(m) = message {
                            if matches!(self.state, State::Open | State::ClosedByUs) {
                                self.read.keep(&bytes[at..]);
                            }
                            return Poll::Ready(Ok(Read::Message(m)));
                        }
                    }
                }
            }
            self.read.keep(&bytes[at..]);
            Poll::Ready(Ok(Read::Progress))
        })
    }

    /// Reads the rest of a frame of `frame_len` bytes (larger than the
    /// scratch buffer) straight into `pending`.
    fn poll_read_big(
        &mut self,
        cx: &mut Context<'_>,
        frame_len: usize,
    ) -> Poll<Result<Read, WsError>> {
        let r = &mut self.read;
        r.compact();
        let old = r.pending.len();
        let want = (frame_len - old).min(BIG_READ);
        if r.pending.capacity() < old + want {
            // Grow geometrically, but never past the frame.
            let target = (2 * r.pending.capacity()).clamp(old + want, frame_len);
            r.pending.reserve_exact(target - old);
        }
        r.pending.resize(old + want, 0);
        let mut buf = ReadBuf::new(&mut r.pending[old..]);
        let polled = Pin::new(&mut self.io).poll_read(cx, &mut buf);
        let n = buf.filled().len();
        self.read.pending.truncate(old + n);
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Err(e.into())),
            Poll::Ready(Ok(())) if n == 0 => Poll::Ready(Ok(Read::Eof)),
            Poll::Ready(Ok(())) => Poll::Ready(Ok(Read::Progress)),
        }
    }

    /// Decodes the frame at the start of `buf` (payload unmasked in place).
    fn decode(&mut self, buf: &mut [u8]) -> Result<Step, WsError> {
        let Some(head) = frame::decode_head(buf, self.max_payload)? else {
            return Ok(Step::NeedMore(None));
        };
        let text = match (head.opcode, &self.read.message) {
            (OpCode::Continuation, None) => {
                return Err(WsError::Protocol("continuation frame without a message"));
            }
            (OpCode::Continuation, Some(m)) => {
                if m.data.len() + head.len > self.max_payload {
                    return Err(WsError::TooBig {
                        max: self.max_payload,
                    });
                }
                m.text
            }
            (OpCode::Text | OpCode::Binary, Some(_)) => {
                return Err(WsError::Protocol("new message inside a fragmented one"));
            }
            (opcode, _) => opcode == OpCode::Text,
        };
        let end = head.frame_len();
        let from = self.read.unmasked;
        if buf.len() < end {
            if text {
                // Fail fast: check the text that is here already.
                let here = &mut buf[head.header_len + from..];
                frame::unmask(here, head.mask, from);
                self.read
                    .utf8
                    .feed(here)
                    .map_err(|_| WsError::InvalidUtf8)?;
                self.read.unmasked += here.len();
            }
            return Ok(Step::NeedMore(Some(end)));
        }
        self.read.unmasked = 0;
        let payload = &mut buf[head.header_len..end];
        frame::unmask(&mut payload[from..], head.mask, from);
        let message = match head.opcode {
            OpCode::Ping => {
                if self.state == State::Open {
                    self.write.queue_pong(payload);
                }
                Some(Message::Ping)
            }
            OpCode::Pong => Some(Message::Pong),
            OpCode::Close => Some(self.on_close(payload)?),
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                self.on_data(&head, text, from, payload)?
            }
        };
        Ok(Step::Frame {
            consumed: end,
            message,
        })
    }

    /// A whole data frame; `from` bytes of it were validated already.
    fn on_data(
        &mut self,
        head: &Head,
        text: bool,
        from: usize,
        payload: &[u8],
    ) -> Result<Option<Message>, WsError> {
        let r = &mut self.read;
        if head.fin && r.message.is_none() {
            // The common case: a message in one frame.
            r.utf8 = Utf8Check::default();
            return Ok(Some(if text {
                Message::Text(
                    String::from_utf8(payload.to_vec()).map_err(|_| WsError::InvalidUtf8)?,
                )
            } else {
                Message::Binary(Bytes::copy_from_slice(payload))
            }));
        }
        if text {
            r.utf8
                .feed(&payload[from..])
                .map_err(|_| WsError::InvalidUtf8)?;
        }
        let assembly = r.message.get_or_insert_with(|| {
            Box::new(Assembly {
                text,
                data: Vec::new(),
            })
        });
        assembly.data.extend_from_slice(payload);
        if !head.fin {
            return Ok(None);
        }
        let Assembly { text, data } = *r.message.take().expect("inserted above");
        if !text {
            return Ok(Some(Message::Binary(Bytes::from(data))));
        }
        let complete = r.utf8.is_complete();
        r.utf8 = Utf8Check::default();
        if !complete {
            return Err(WsError::InvalidUtf8);
        }
        String::from_utf8(data)
            .map(|t| Some(Message::Text(t)))
            .map_err(|_| WsError::InvalidUtf8)
    }

    /// The peer's close frame: answered (with its code) unless we closed
    /// first.
    fn on_close(&mut self, payload: &[u8]) -> Result<Message, WsError> {
        let (code, reason) = match payload {
            [] => (None, String::new()),
            [_] => return Err(WsError::Protocol("close frame of one byte")),
            [a, b, reason @ ..] => {
                let code = u16::from_be_bytes([*a, *b]);
                if !frame::valid_close_code(code) {
                    return Err(WsError::Protocol("invalid close code"));
                }
                let reason = std::str::from_utf8(reason).map_err(|_| WsError::InvalidUtf8)?;
                (Some(code), reason.to_owned())
            }
        };
        match self.state {
            State::Open => {
                self.write.queue_close(code, "");
                self.state = State::Closing;
            }
            State::ClosedByUs => self.state = State::Done,
            State::Closing | State::Done => {}
        }
        self.read = ReadState::default();
        Ok(Message::Close(code, reason))
    }

    /// After a protocol error: the close frame that answers it is queued,
    /// what was received is dropped.
    pub(super) fn fail(&mut self, e: WsError) -> WsError {
        self.read = ReadState::default();
        match (self.state, e.close_code()) {
            (State::Open, Some(code)) => {
                self.write.queue_close(Some(code), &e.to_string());
                self.state = State::Closing;
            }
            _ => self.state = State::Done,
        }
        e
    }

    /// The stream is over: nothing more is read or kept.
    fn end(&mut self) {
        self.state = State::Done;
        self.read = ReadState::default();
    }
}
