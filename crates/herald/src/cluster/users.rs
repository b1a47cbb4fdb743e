//! Operations on every socket of a user, on every node: a node publishes
//! the operation on `#herald/user/<id>`, and each node subscribed there
//! (each holding a socket of that user) applies it to its own sockets.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use super::user_channel;
use crate::publish::{Origin, PublishError};
use crate::server::ServerInner;
use crate::socket::Socket;

/// An operation on every socket of a user, on every node.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
enum UserOp {
    Transmit {
        event: String,
        #[serde(default)]
        data: Option<Value>,
    },
    Disconnect {
        code: u16,
        #[serde(default)]
        reason: String,
    },
    Kick {
        channel: String,
        #[serde(default)]
        message: Option<Value>,
    },
    Subscribe {
        channel: String,
    },
}

/// Applies the operation in `data` to this node's sockets of `user`.
pub(super) fn on_message(server: &Arc<ServerInner>, user: &str, data: &RawValue) {
    match serde_json::from_str::<UserOp>(data.get()) {
        Ok(op) => apply(server, user, op),
        Err(e) => tracing::warn!(error = %e, "ignored a malformed user message"),
    }
}

fn apply(server: &Arc<ServerInner>, user: &str, op: UserOp) {
    let keys = server.cluster.user_sockets(user);
    if keys.is_empty() {
        return;
    }
    let sockets: Vec<Socket> = {
        let all = server.sockets.lock();
        keys.iter().filter_map(|k| all.get(k).cloned()).collect()
    };
    match op {
        UserOp::Transmit { event, data } => {
            // Encode once for every socket of the user.
            let data = data.and_then(|d| serde_json::value::to_raw_value(&d).ok());
            for s in &sockets {
                let _ = s.transmit_raw(&event, data.as_deref());
            }
        }
        UserOp::Disconnect { code, reason } => {
            for s in &sockets {
                s.disconnect(code, reason.clone());
            }
        }
        UserOp::Kick { channel, message } => {
            let message = message.unwrap_or(Value::Null);
            for s in sockets {
                let channel = channel.clone();
                let message = message.clone();
                tokio::spawn(async move { s.kick_out(&channel, &message).await });
            }
        }
        UserOp::Subscribe { channel } => {
            for s in sockets {
                let channel = channel.clone();
                let server = server.clone();
                tokio::spawn(async move {
                    if let Err(e) = server.subscribe_by_server(&s, &channel).await {
                        tracing::warn!(socket = %s.id(), channel, error = %e, "server-side subscribe failed");
                    }
                });
            }
        }
    }
}

/// Operations on users' sockets, on every node of the cluster. From
/// [`Server::users`](crate::Server::users).
#[derive(Clone)]
pub struct Users(pub(crate) Arc<ServerInner>);

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Users")
    }
}

impl Users {
    async fn send(&self, user: &str, op: &UserOp) -> Result<(), PublishError> {
        let raw = serde_json::value::to_raw_value(op)?;
        self.0
            .publish(Origin::Control, &user_channel(user), Some(raw))
            .await?;
        Ok(())
    }

    /// Transmits `event` to every socket of `user`, on every node.
    pub async fn transmit<T: Serialize + ?Sized>(
        &self,
        user: &str,
        event: &str,
        data: &T,
    ) -> Result<(), PublishError> {
        let data = Some(serde_json::to_value(data)?);
        self.send(
            user,
            &UserOp::Transmit {
                event: event.to_owned(),
                data,
            },
        )
        .await
    }

    /// Disconnects every socket of `user`, on every node.
    pub async fn disconnect(
        &self,
        user: &str,
        code: u16,
        reason: &str,
    ) -> Result<(), PublishError> {
        self.send(
            user,
            &UserOp::Disconnect {
                code,
                reason: reason.to_owned(),
            },
        )
        .await
    }

    /// Kicks every socket of `user` out of `channel`, on every node.
    pub async fn kick_out<T: Serialize + ?Sized>(
        &self,
        user: &str,
        channel: &str,
        message: &T,
    ) -> Result<(), PublishError> {
        let message = Some(serde_json::to_value(message)?);
        self.send(
            user,
            &UserOp::Kick {
                channel: channel.to_owned(),
                message,
            },
        )
        .await
    }

    /// Subscribes every socket of `user` to `channel`, on every node, on the
    /// server's authority: the channel's name and namespace are checked
    /// here (a reserved, malformed or refused channel is an error), its
    /// subscribe rule and the subscribe middleware are not. Each socket is
    /// told with a `#herald/subscribed` push and gets the channel's
    /// publications from then on (see docs/protocol.md for what a client
    /// does with them). Sockets that connect later are not subscribed.
    pub async fn subscribe(&self, user: &str, channel: &str) -> Result<(), PublishError> {
        self.0
            .channel_options(channel)
            .map_err(PublishError::Refused)?;
        self.send(
            user,
            &UserOp::Subscribe {
                channel: channel.to_owned(),
            },
        )
        .await
    }

    /// Unsubscribes every socket of `user` from `channel`, on every node;
    /// each socket that was subscribed gets a `#kickOut` (with a `null`
    /// message), which the official client understands.
    pub async fn unsubscribe(&self, user: &str, channel: &str) -> Result<(), PublishError> {
        self.0
            .check_channel_name(channel)
            .map_err(PublishError::Refused)?;
        self.send(
            user,
            &UserOp::Kick {
                channel: channel.to_owned(),
                message: None,
            },
        )
        .await
    }

    /// This node's sockets authenticated as `user`.
    pub fn local_sockets(&self, user: &str) -> Vec<Socket> {
        let keys = self.0.cluster.user_sockets(user);
        let all = self.0.sockets.lock();
        keys.iter().filter_map(|k| all.get(k).cloned()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ops_round_trip() {
        let op = UserOp::Kick {
            channel: "c".into(),
            message: Some(Value::from("bye")),
        };
        let text = serde_json::to_string(&op).unwrap();
        assert_eq!(text, r#"{"op":"kick","channel":"c","message":"bye"}"#);
        assert!(matches!(
            serde_json::from_str::<UserOp>(&text).unwrap(),
            UserOp::Kick { .. }
        ));
        let op = UserOp::Subscribe {
            channel: "c".into(),
        };
        let text = serde_json::to_string(&op).unwrap();
        assert_eq!(text, r#"{"op":"subscribe","channel":"c"}"#);
    }
}
