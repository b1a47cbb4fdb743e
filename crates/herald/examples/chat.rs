//! A chat server: rooms are channels, messages go through a procedure that
//! stamps them with the sender's nickname before publishing.
//!
//! ```text
//! cargo run --example chat
//! ```
//!
//! Then, from node with the official client (`npm i socketcluster-client`):
//!
//! ```js
//! const socket = require('socketcluster-client').create({hostname: '127.0.0.1', port: 8000});
//! const room = socket.subscribe('room/lobby');
//! (async () => { for await (const msg of room) console.log(msg); })();
//! await socket.invoke('nick', 'ada');
//! await socket.invoke('say', {room: 'lobby', text: 'hello'});
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use herald::{ErrorPayload, Server};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Say {
    room: String,
    text: String,
}

fn bad_request(message: &str) -> ErrorPayload {
    ErrorPayload::new("BadRequestError", message)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    // Nicknames by socket id.
    let nicks: Arc<Mutex<HashMap<String, String>>> = Arc::default();

    let server = Server::builder()
        .procedure("nick", {
            let nicks = nicks.clone();
            move |req| {
                let nicks = nicks.clone();
                async move {
                    let nick: String = req.parse()?;
                    let nick = nick.trim().to_owned();
                    if nick.is_empty() || nick.len() > 32 {
                        return Err(bad_request("a nickname has 1 to 32 characters"));
                    }
                    nicks
                        .lock()
                        .insert(req.socket.id().to_owned(), nick.clone());
                    Ok(json!({ "nick": nick }))
                }
            }
        })
        .procedure("say", {
            let nicks = nicks.clone();
            move |req| {
                let nicks = nicks.clone();
                async move {
                    let say: Say = req.parse()?;
                    if say.text.is_empty() || say.text.len() > 2000 {
                        return Err(bad_request("a message has 1 to 2000 characters"));
                    }
                    let nick =
                        nicks.lock().get(req.socket.id()).cloned().ok_or_else(|| {
                            bad_request("choose a nickname first (invoke 'nick')")
                        })?;
                    req.socket
                        .exchange()
                        .publish(
                            &format!("room/{}", say.room),
                            &json!({ "nick": nick, "text": say.text }),
                        )
                        .await
                        .map_err(|e| ErrorPayload::new("BrokerError", e.to_string()))?;
                    Ok(Value::Null)
                }
            }
        })
        .on_disconnection({
            let nicks = nicks.clone();
            move |socket, _code, _reason| {
                let nicks = nicks.clone();
                async move {
                    nicks.lock().remove(socket.id());
                }
            }
        })
        .build();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
    println!(
        "chat listening on ws://{}/socketcluster/ (procedures: nick, say; channels: room/<name>)",
        listener.local_addr()?
    );
    server
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
