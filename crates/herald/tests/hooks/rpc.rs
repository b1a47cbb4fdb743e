//! RPC forwarding: an invoke no Rust procedure serves goes to the backend,
//! which answers data, an error, or a token for the socket.

use std::time::Duration;

use herald::{ErrorPayload, HookEndpoint, Server};
use serde_json::{Value, json};

use crate::backend::Backend;
use crate::common::*;
use crate::ok;

async fn backend() -> Backend {
    Backend::start(|call| async move {
        assert_eq!(call.body["hook"], "rpc");
        let data = call.body["data"].clone();
        match call.body["procedure"].as_str().unwrap() {
            "add" => ok(json!({"data": data["a"].as_i64().unwrap() + data["b"].as_i64().unwrap()})),
            "login" => ok(json!({"data": {"ok": true}, "claims": {"sub": data["name"]}})),
            "nothing" => ok(json!({})),
            "slow" => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                ok(json!({}))
            }
            _ => ok(json!({"error": {"name": "NoSuchProcedureError", "message": "unknown to the backend"}})),
        }
    })
    .await
}

#[tokio::test]
async fn invokes_no_procedure_serves_are_answered_by_the_backend() {
    bounded(async {
        let backend = backend().await;
        let server = TestServer::start(
            Server::builder()
                .auth_secret(SECRET)
                .procedure("local", |_req| async {
                    Ok::<Value, ErrorPayload>(json!("rust"))
                })
                .configure(|c| {
                    c.hooks.rpc = Some(HookEndpoint::new(backend.url("rpc")));
                    c.hooks.timeout = Duration::from_millis(300);
                }),
        )
        .await;
        let mut client = server.client().await;
        assert_eq!(client.call("add", json!({"a": 2, "b": 3})).await, 5);
        assert_eq!(client.call("local", json!(null)).await, "rust");
        assert_eq!(client.call("nothing", json!(null)).await, Value::Null);
        let e = client.invoke("missing", json!(null)).await.unwrap_err();
        assert_eq!(e["name"], "NoSuchProcedureError");
        assert_eq!(e["message"], "unknown to the backend");
        let e = client.invoke("slow", json!(null)).await.unwrap_err();
        assert_eq!(e["name"], "HookTimeoutError", "{e}");
        // The Rust procedure never reached the backend.
        let procedures: Vec<Value> = backend
            .calls_of("rpc")
            .iter()
            .map(|c| c.body["procedure"].clone())
            .collect();
        assert_eq!(
            procedures,
            [
                json!("add"),
                json!("nothing"),
                json!("missing"),
                json!("slow")
            ]
        );

        // A login through the backend: the socket gets its token.
        let login = client.call("login", json!({"name": "lin"})).await;
        assert_eq!(login, json!({"ok": true}));
        let set = client.expect_event("#setAuthToken").await;
        assert_eq!(
            token_claims(set["data"]["token"].as_str().unwrap())["sub"],
            "lin"
        );
        let call = backend.calls_of("rpc").pop().unwrap();
        assert_eq!(call.body["socket"]["user"], Value::Null);
        assert_eq!(client.call("nothing", json!(null)).await, Value::Null);
        let call = backend.calls_of("rpc").pop().unwrap();
        assert_eq!(call.body["socket"]["user"], "lin");
    })
    .await;
}

#[tokio::test]
async fn without_an_rpc_hook_unknown_procedures_stay_errors() {
    bounded(async {
        let server = crate::server(|c| {
            c.hooks.connect = Some(HookEndpoint::new("http://127.0.0.1:9/never"));
            c.hooks.on_failure = herald::OnFailure::Allow;
        })
        .await;
        let mut client = server.client().await;
        let e = client.invoke("missing", json!(null)).await.unwrap_err();
        assert_eq!(e["name"], "NoSuchProcedureError");
    })
    .await;
}
