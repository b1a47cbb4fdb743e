//! The SocketCluster v2 wire protocol as pure code.
//!
//! This crate knows the shape of every frame that crosses a Herald socket and
//! nothing else: it never touches a socket, a clock or a task. The server
//! (`herald`) and the client (`herald-client`) both build on it, which keeps
//! the two sides of the wire in agreement and lets the codec be tested and
//! benchmarked on its own.
//!
//! * [`inbound`] parses one WebSocket text message (a single frame or a batch)
//!   into [`inbound::Packet`]s, borrowing payloads so that a publication's data
//!   is never re-serialized.
//! * [`outbound`] builds the frames a peer sends, as ready-to-write bytes.
//! * [`error`] is the `{name, message, ...}` error object both sides exchange.
//! * [`ext`] holds Herald's extensions: history, recovery, presence.
//! * [`close`] lists the close codes and their reasons.
//! * [`defaults`] holds the timing defaults of socketcluster-server 20.
//!
//! See `docs/protocol.md` in the repository for the whole exchange.

#![warn(missing_docs)]

pub mod close;
pub mod defaults;
pub mod error;
pub mod ext;
pub mod inbound;
pub mod outbound;

pub use error::ErrorPayload;
pub use inbound::{Cid, Packet, ParseError, Position};
