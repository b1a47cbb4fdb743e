//! Herald under hostile input, end to end: forged and oversized auth tokens
//! through real sockets ([`jwt`]), random frame sequences against the
//! socket's state machine with invariants checked after every case
//! ([`state_machine`]), property tests of the broker envelope
//! ([`envelope`]) and the reserved `#herald/` channels ([`reserved`]).
//!
//! One test binary (one link); the harness is the e2e suite's
//! `tests/common/mod.rs`.

#[path = "../common/mod.rs"]
mod common;

mod envelope;
mod jwt;
mod reserved;
mod state_machine;
