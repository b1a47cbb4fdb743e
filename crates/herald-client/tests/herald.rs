//! The scenarios against Herald's `herald-fixture` binary (build it first:
//! `cargo build -p herald-testkit --bin herald-fixture`, or point
//! `HERALD_FIXTURE_BIN` at it).

#[macro_use]
mod common;

use common::TargetKind;

scenario_tests!(TargetKind::Herald;
    pubsub,
    rpc,
    transmit,
    auth_login,
    auth_handshake_token,
    auth_expired_token,
    auth_invalid_token,
    authenticate_api,
    kick_out,
    reconnect_resubscribe,
    close_and_drop,
    file_token_store,
    lazy_start,
);
