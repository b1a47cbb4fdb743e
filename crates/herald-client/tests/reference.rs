//! The scenarios against the real socketcluster-server 20
//! (`tests/node/reference/sc-server.js`, needs `node` and
//! `npm ci --prefix tests/node`).

#[macro_use]
mod common;

use common::TargetKind;

scenario_tests!(TargetKind::Reference;
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
