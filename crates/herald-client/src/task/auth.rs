//! The auth token: what the handshake said about it, the server's
//! `#setAuthToken` and `#removeAuthToken`, and the reply to `#authenticate`.
//!
//! The token lives in the configured [`crate::TokenStore`] (sent in every
//! handshake) and in the shared status (what [`crate::Client::signed_token`]
//! reads). A token the server calls bad is removed from the store so that
//! the next handshake does not send it again; a token merely not accepted in
//! a handshake stays (the server may accept it later, e.g. once `nbf` has
//! passed). Every change of state is also an event.

use herald_protocol::ErrorPayload;
use herald_protocol::error::names;
use serde_json::Value;

use super::Task;
use crate::connection::HandshakeInfo;
use crate::error::Error;
use crate::events::{ClientEvent, ConnectionState};

impl Task {
    /// A handshake succeeded: record the socket id and whether the token
    /// the handshake carried (`token`) was accepted.
    pub(super) fn on_handshake(&mut self, hs: HandshakeInfo, token: Option<String>) {
        let was_authenticated = self.shared.status.borrow().authenticated;
        let token = token.filter(|_| hs.is_authenticated);
        if let Some(e) = &hs.auth_error
            && e.is_bad_token()
        {
            // The server also pushes #removeAuthToken; do not rely on it.
            if let Err(e) = self.config.token_store.remove() {
                tracing::warn!(error = %e, "cannot remove the refused auth token");
            }
        }
        self.shared.status.send_modify(|s| {
            s.state = ConnectionState::Open;
            s.id = Some(hs.id.clone());
            s.authenticated = hs.is_authenticated;
            s.signed_token = token;
        });
        self.emit(ClientEvent::Open {
            id: hs.id,
            is_authenticated: hs.is_authenticated,
            auth_error: hs.auth_error,
        });
        if hs.is_authenticated {
            self.emit(ClientEvent::Authenticated);
        } else if was_authenticated {
            self.emit(ClientEvent::Deauthenticated);
        }
    }

    /// The server's answer to `#authenticate` with `token`.
    pub(super) fn on_authenticate_reply(
        &mut self,
        token: String,
        result: Result<Value, Error>,
    ) -> Result<Value, Error> {
        match result {
            Ok(status) if status.get("isAuthenticated").and_then(Value::as_bool) != Some(false) => {
                self.set_token(token);
                Ok(status)
            }
            Ok(status) => {
                // Refused softly: {isAuthenticated: false, authError}.
                self.forget_token(false);
                let error = status
                    .get("authError")
                    .filter(|e| !e.is_null())
                    .cloned()
                    .map(ErrorPayload::from_value)
                    .unwrap_or_else(|| {
                        ErrorPayload::new(names::AUTH, "The server did not accept the token")
                    });
                Err(Error::Remote(error))
            }
            Err(e) => {
                // Refused outright (a bad token): the socket is not
                // authenticated any more. (A timeout or a lost connection
                // never reaches this point and changes nothing.)
                self.forget_token(false);
                Err(e)
            }
        }
    }

    /// The socket is authenticated with `token`: store and publish it.
    pub(super) fn set_token(&mut self, token: String) {
        if let Err(e) = self.config.token_store.save(&token) {
            tracing::warn!(error = %e, "cannot save the auth token");
        }
        self.shared.status.send_modify(|s| {
            s.authenticated = true;
            s.signed_token = Some(token);
        });
        self.emit(ClientEvent::Authenticated);
    }

    /// Drops the token from memory and, with `from_store`, from the store.
    pub(super) fn forget_token(&mut self, from_store: bool) {
        if from_store && let Err(e) = self.config.token_store.remove() {
            tracing::warn!(error = %e, "cannot remove the auth token");
        }
        let mut was = false;
        self.shared.status.send_modify(|s| {
            was = s.authenticated;
            s.authenticated = false;
            s.signed_token = None;
        });
        if was {
            self.emit(ClientEvent::Deauthenticated);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::task;
    use super::*;
    use serde_json::json;

    fn handshake(authenticated: bool, auth_error: Option<ErrorPayload>) -> HandshakeInfo {
        HandshakeInfo {
            id: "sock".into(),
            ping_timeout: None,
            is_authenticated: authenticated,
            auth_error,
        }
    }

    #[tokio::test]
    async fn handshake_outcomes_update_status_and_store() {
        let (mut t, _tx) = task();
        t.config.token_store.save("tok").unwrap();
        t.on_handshake(handshake(true, None), Some("tok".into()));
        let s = t.shared.status.borrow().clone();
        assert_eq!(
            (s.id.as_deref(), s.authenticated, s.signed_token.as_deref()),
            (Some("sock"), true, Some("tok"))
        );
        // A bad token is removed from the store; a merely refused one stays.
        let not_before = ErrorPayload::new(names::AUTH_TOKEN_NOT_BEFORE, "later");
        t.on_handshake(handshake(false, Some(not_before)), Some("tok".into()));
        assert_eq!(t.config.token_store.load().unwrap().as_deref(), Some("tok"));
        assert!(t.shared.status.borrow().signed_token.is_none());
        let bad = ErrorPayload::new(names::AUTH_TOKEN_INVALID, "x").with("isBadToken", true);
        t.on_handshake(handshake(false, Some(bad)), Some("tok".into()));
        assert_eq!(t.config.token_store.load().unwrap(), None);
    }

    #[tokio::test]
    async fn authenticate_replies() {
        let (mut t, _tx) = task();
        let ok = t.on_authenticate_reply("t1".into(), Ok(json!({"isAuthenticated": true})));
        assert!(ok.is_ok());
        assert_eq!(t.config.token_store.load().unwrap().as_deref(), Some("t1"));
        let soft = t.on_authenticate_reply(
            "t2".into(),
            Ok(json!({"isAuthenticated": false, "authError": {"name": "X", "message": "m"}})),
        );
        assert_eq!(soft.unwrap_err().remote_name(), Some("X"));
        assert!(!t.shared.status.borrow().authenticated);
        let soft = t.on_authenticate_reply("t3".into(), Ok(json!({"isAuthenticated": false})));
        assert_eq!(soft.unwrap_err().remote_name(), Some(names::AUTH));
        let hard = t.on_authenticate_reply(
            "t4".into(),
            Err(Error::Remote(ErrorPayload::new(
                "AuthTokenInvalidError",
                "bad",
            ))),
        );
        assert!(hard.is_err());
        // Only a success stores a token.
        assert_eq!(t.config.token_store.load().unwrap().as_deref(), Some("t1"));
    }
}
