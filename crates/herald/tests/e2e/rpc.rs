//! Procedures (client invokes), receivers (client transmits), and the server
//! transmitting to and invoking the client.

use std::time::{Duration, Instant};

use herald::ErrorPayload;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::common::*;

fn explode() -> Result<Value, ErrorPayload> {
    panic!("secret detail of a failing procedure")
}

/// The fixture plus procedures for the error paths.
async fn rpc_server() -> TestServer {
    #[derive(Deserialize)]
    struct Add {
        a: i64,
        b: i64,
    }
    TestServer::start(
        fixture()
            .configure(|c| c.ack_timeout = Duration::from_millis(300))
            .procedure("boom", |_req| async move { explode() })
            .procedure("add", |req| async move {
                let add: Add = req.parse()?;
                Ok::<_, ErrorPayload>(add.a + add.b)
            })
            .procedure("askClient", |req| async move {
                // Uses the server's ack timeout (300 ms here).
                req.socket
                    .invoke("question", &req.data)
                    .await
                    .map_err(|e| e.to_payload())
            }),
    )
    .await
}

#[tokio::test]
async fn echo_procedure_replies_with_its_data() {
    bounded(async {
        let server = rpc_server().await;
        let mut c = server.client().await;
        c.send_text(r#"{"event":"echo","data":{"x":[1,"two",null,{"y":true}]},"cid":12}"#)
            .await;
        assert_eq!(
            c.recv().await,
            r#"{"rid":12,"data":{"x":[1,"two",null,{"y":true}]}}"#
        );
        // Any JSON number is a call id and is echoed as sent.
        c.send_text(r#"{"event":"echo","data":"f","cid":7.5}"#)
            .await;
        assert_eq!(c.recv().await, r#"{"rid":7.5,"data":"f"}"#);
        // Without data, the procedure sees null.
        c.send_text(r#"{"event":"echo","cid":13}"#).await;
        assert_eq!(c.recv().await, r#"{"rid":13,"data":null}"#);
        assert_eq!(c.call("add", json!({"a": 2, "b": 40})).await, json!(42));
    })
    .await
}

#[tokio::test]
async fn failing_procedure_replies_its_named_error() {
    bounded(async {
        let server = rpc_server().await;
        let mut c = server.client().await;
        c.send_text(r#"{"event":"fail","data":{},"cid":3}"#).await;
        assert_eq!(
            c.recv().await,
            r#"{"rid":3,"error":{"message":"nope","name":"MyError"}}"#
        );
    })
    .await
}

#[tokio::test]
async fn unknown_procedure_gets_no_such_procedure_error() {
    bounded(async {
        let server = rpc_server().await;
        let mut c = server.client().await;
        let error = c.invoke("nosuch", json!({})).await.unwrap_err();
        assert_eq!(error["name"], "NoSuchProcedureError", "{error}");
        assert!(
            error["message"].as_str().unwrap().contains("nosuch"),
            "{error}"
        );
        assert_eq!(c.call("echo", json!(1)).await, json!(1));
    })
    .await
}

#[tokio::test]
async fn unknown_procedure_is_left_unanswered_with_the_ignore_policy() {
    bounded(async {
        let server =
            TestServer::start(fixture().unknown_procedures(herald::UnknownProcedures::Ignore))
                .await;
        let mut c = server.client().await;
        // Frames of a socket are handled in order and the error reply would
        // be sent before the next frame is read: the first reply is rid 2.
        c.send_text(r#"{"event":"nosuch","data":{},"cid":1}"#).await;
        c.send_text(r#"{"event":"echo","data":"after","cid":2}"#)
            .await;
        assert_eq!(c.recv().await, r#"{"rid":2,"data":"after"}"#);
        // Reserved procedures keep their error: they are Herald's own.
        let error = c.invoke("#herald/nosuch", json!({})).await.unwrap_err();
        assert_eq!(error["name"], "NoSuchProcedureError", "{error}");
    })
    .await
}

#[tokio::test]
async fn panicking_procedure_gets_internal_server_error_and_server_keeps_running() {
    bounded(async {
        let server = rpc_server().await;
        let mut c = server.client().await;
        let error = c.invoke("boom", Value::Null).await.unwrap_err();
        assert_eq!(error["name"], "InternalServerError", "{error}");
        assert!(
            !error.to_string().contains("secret detail"),
            "panic details must stay in the server log: {error}"
        );
        // The same socket and new sockets keep working.
        assert_eq!(
            c.call("echo", json!("still here")).await,
            json!("still here")
        );
        let error = c.invoke("boom", Value::Null).await.unwrap_err();
        assert_eq!(error["name"], "InternalServerError");
        let mut other = server.client().await;
        assert_eq!(other.call("echo", json!(2)).await, json!(2));
    })
    .await
}

#[tokio::test]
async fn procedure_with_invalid_arguments_gets_invalid_arguments_error() {
    bounded(async {
        let server = rpc_server().await;
        let mut c = server.client().await;
        for bad in [
            json!("not an object"),
            json!({"a": 1}),
            json!({"a": "1", "b": 2}),
        ] {
            let error = c.invoke("add", bad.clone()).await.unwrap_err();
            assert_eq!(error["name"], "InvalidArgumentsError", "{bad}: {error}");
            assert!(
                error["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("Invalid arguments for add"),
                "{error}"
            );
        }
        // A fixture procedure too.
        let error = c.invoke("login", json!(5)).await.unwrap_err();
        assert_eq!(error["name"], "InvalidArgumentsError", "{error}");
    })
    .await
}

#[tokio::test]
async fn tell_transmit_is_answered_with_told() {
    bounded(async {
        let server = rpc_server().await;
        let mut c = server.client().await;
        c.send_text(r#"{"event":"tell","data":{"n":[1,2]}}"#).await;
        assert_eq!(c.recv().await, r#"{"event":"told","data":{"n":[1,2]}}"#);
        // A transmit nobody listens to is ignored.
        c.send_text(r#"{"event":"nobodyListens","data":1}"#).await;
        assert_eq!(c.call("echo", json!("ok")).await, json!("ok"));
    })
    .await
}

#[tokio::test]
async fn server_transmit_reaches_the_client() {
    bounded(async {
        let server = rpc_server().await;
        let mut c = server.client().await;
        c.send_text(
            r#"{"event":"serverTransmit","data":{"event":"news","data":[1,{"a":"b"}]},"cid":4}"#,
        )
        .await;
        // Transmitted by the procedure before it returned.
        assert_eq!(c.recv().await, r#"{"event":"news","data":[1,{"a":"b"}]}"#);
        assert_eq!(c.recv().await, r#"{"rid":4}"#);

        // From server code, outside any procedure.
        let socket = server.server.socket(&c.id).unwrap();
        socket.transmit("direct", &json!({"k": 1})).unwrap();
        assert_eq!(c.recv().await, r#"{"event":"direct","data":{"k":1}}"#);
    })
    .await
}

/// Reads the server's invoke of the client and returns its cid.
async fn server_invoke(c: &mut Client, procedure: &str, data: Value) -> u64 {
    let frame = c.recv_json().await;
    assert_eq!(frame["event"], procedure, "{frame}");
    assert_eq!(frame["data"], data, "{frame}");
    frame["cid"]
        .as_u64()
        .unwrap_or_else(|| panic!("server invoke without cid: {frame}"))
}

#[tokio::test]
async fn server_invoke_gets_the_client_reply() {
    bounded(async {
        let server = rpc_server().await;
        let mut c = server.client().await;
        c.send_text(
            r#"{"event":"serverInvoke","data":{"procedure":"ask","data":{"q":1}},"cid":20}"#,
        )
        .await;
        let cid = server_invoke(&mut c, "ask", json!({"q": 1})).await;
        c.send_json(json!({"rid": cid, "data": {"answer": 42}}))
            .await;
        assert_eq!(
            c.recv_json().await,
            json!({"rid": 20, "data": {"answer": 42}})
        );

        // Directly from server code, concurrently with other traffic.
        let socket = server.server.socket(&c.id).unwrap();
        let call = tokio::spawn(async move { socket.invoke("direct", &json!("hi")).await });
        let cid = server_invoke(&mut c, "direct", json!("hi")).await;
        assert_eq!(c.call("echo", json!("meanwhile")).await, json!("meanwhile"));
        c.send_json(json!({"rid": cid, "data": [1, 2]})).await;
        assert_eq!(
            within("invoke result", call).await.unwrap().unwrap(),
            json!([1, 2])
        );
    })
    .await
}

#[tokio::test]
async fn server_invoke_propagates_the_client_error() {
    bounded(async {
        let server = rpc_server().await;
        let mut c = server.client().await;
        c.send_text(r#"{"event":"serverInvoke","data":{"procedure":"ask","data":null},"cid":21}"#)
            .await;
        let cid = server_invoke(&mut c, "ask", Value::Null).await;
        c.send_json(
            json!({"rid": cid, "error": {"message": "no", "name": "ClientError", "code": 5}}),
        )
        .await;
        assert_eq!(
            c.recv_json().await,
            json!({"rid": 21, "error": {"message": "no", "name": "ClientError", "code": 5}})
        );
    })
    .await
}

#[tokio::test]
async fn server_invoke_without_reply_times_out() {
    bounded(async {
        let server = rpc_server().await;
        let mut c = server.client().await;
        let start = Instant::now();
        c.send_text(r#"{"event":"askClient","data":"anyone?","cid":22}"#)
            .await;
        let cid = server_invoke(&mut c, "question", json!("anyone?")).await;
        // No reply: the server gives up after its ack timeout (300 ms).
        let reply = c.recv_json().await;
        assert_eq!(reply["rid"], 22, "{reply}");
        assert_eq!(reply["error"]["name"], "TimeoutError", "{reply}");
        assert!(start.elapsed() >= Duration::from_millis(300));
        // A late reply is ignored and the socket keeps working.
        c.send_json(json!({"rid": cid, "data": "too late"})).await;
        assert_eq!(c.call("echo", json!("ok")).await, json!("ok"));
    })
    .await
}

#[tokio::test]
async fn server_invoke_fails_promptly_when_the_client_disconnects() {
    bounded(async {
        // A long ack timeout: the failure must come from the disconnect.
        let server = TestServer::fixture_with(|c| c.ack_timeout = Duration::from_secs(30)).await;
        let mut c = server.client().await;
        let socket = server.server.socket(&c.id).unwrap();
        let call = tokio::spawn(async move { socket.invoke("question", &json!(1)).await });
        server_invoke(&mut c, "question", json!(1)).await;
        c.close(1000, "").await;
        let result = within("the pending invoke to fail", call).await.unwrap();
        assert!(
            matches!(result, Err(herald::SendError::Closed)),
            "{result:?}"
        );
    })
    .await
}
