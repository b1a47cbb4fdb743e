//! What the broker relies on from the NATS server (v2.9.10 on this
//! machine), checked against the shared server with raw `async_nats` calls,
//! so that an upgrade or a downgrade that changes one of them fails here,
//! with a name saying which, rather than deep inside a broker test.
//!
//! * a stream's **RePublish** with a `{{wildcard(1)}}` destination hands
//!   each stored message, headers and payload, to the mapped core subject,
//!   in stream order;
//! * `Nats-Expected-Last-Subject-Sequence: 0` is enforced (it means "the
//!   subject has no message", not "no check");
//! * **direct get** of a subject's last message, in its URL form
//!   (`$JS.API.DIRECT.GET.<stream>.<subject>`), answers 404 for an empty
//!   subject (and goes unanswered on a stream that does not exist);
//! * `max_age` below the default duplicate window is accepted and expires
//!   messages;
//! * a pull consumer with `LastPerSubject` and a wildcard filter reports,
//!   at creation, how many subjects it will deliver (`num_pending`), which
//!   is how a KV prefix is listed without waiting for a timeout.

mod common;

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, context::PublishErrorKind, stream};
use common::{STEP, shared_url, within};
use futures_util::StreamExt;

fn name() -> String {
    format!("probe{:016x}", rand::random::<u64>())
}

async fn context() -> (async_nats::Client, jetstream::Context) {
    let client = async_nats::connect(shared_url())
        .await
        .expect("shared NATS");
    (client.clone(), jetstream::new(client))
}

struct Cleanup(jetstream::Context, String);

impl Cleanup {
    async fn run(self) {
        let _ = self.0.delete_stream(&self.1).await;
    }
}

#[tokio::test]
async fn republish_maps_a_wildcard_in_stream_order() {
    within(STEP * 2, "the probe", async {
        let (client, js) = context().await;
        let prefix = name();
        let stream_name = name();
        js.create_stream(stream::Config {
            name: stream_name.clone(),
            subjects: vec![format!("{prefix}.h.ns.*")],
            max_messages_per_subject: 10,
            allow_direct: true,
            republish: Some(stream::Republish {
                source: format!("{prefix}.h.ns.*"),
                destination: format!("{prefix}.{{{{wildcard(1)}}}}"),
                headers_only: false,
            }),
            ..Default::default()
        })
        .await
        .expect("a stream with a wildcard RePublish");
        let cleanup = Cleanup(js.clone(), stream_name.clone());
        let mut live = client
            .subscribe(format!("{prefix}.chan"))
            .await
            .expect("subscribe");
        client.flush().await.expect("flush");
        for i in 0..100u32 {
            let mut headers = HeaderMap::new();
            headers.insert("Herald-Probe", i.to_string().as_str());
            js.publish_with_headers(format!("{prefix}.h.ns.chan"), headers, i.to_string().into())
                .await
                .expect("publish")
                .await
                .expect("ack");
        }
        for i in 0..100u32 {
            let m = live.next().await.expect("republished");
            assert_eq!(&m.payload[..], i.to_string().as_bytes());
            let h = m.headers.expect("headers");
            assert_eq!(
                h.get("Herald-Probe").map(|v| v.as_str()),
                Some(i.to_string().as_str())
            );
            assert_eq!(
                h.get("Nats-Sequence").map(|v| v.as_str()),
                Some((i + 1).to_string().as_str())
            );
            assert_eq!(
                h.get("Nats-Subject").map(|v| v.as_str()),
                Some(format!("{prefix}.h.ns.chan").as_str())
            );
        }
        cleanup.run().await;
    })
    .await;
}

#[tokio::test]
async fn expected_last_subject_sequence_zero_is_enforced() {
    within(STEP * 2, "the probe", async {
        let (_client, js) = context().await;
        let stream_name = name();
        let subject = format!("{}.x", name());
        js.create_stream(stream::Config {
            name: stream_name.clone(),
            subjects: vec![subject.clone()],
            allow_direct: true,
            ..Default::default()
        })
        .await
        .expect("stream");
        let cleanup = Cleanup(js.clone(), stream_name.clone());
        let expect = |seq: u64| {
            let mut h = HeaderMap::new();
            h.insert(
                "Nats-Expected-Last-Subject-Sequence",
                seq.to_string().as_str(),
            );
            h
        };
        let first = js
            .publish_with_headers(subject.clone(), expect(0), "a".into())
            .await
            .expect("publish")
            .await
            .expect("first write on an empty subject");
        let again = js
            .publish_with_headers(subject.clone(), expect(0), "b".into())
            .await
            .expect("publish")
            .await
            .expect_err("0 means: no message yet");
        assert_eq!(again.kind(), PublishErrorKind::WrongLastSequence);
        js.publish_with_headers(subject.clone(), expect(first.sequence), "c".into())
            .await
            .expect("publish")
            .await
            .expect("the right last sequence");

        // Direct get of the last message, and 404 on an empty subject.
        let stream = js.get_stream(&stream_name).await.expect("stream");
        let last = stream
            .direct_get_last_for_subject(subject.clone())
            .await
            .expect("direct get");
        assert_eq!(&last.payload[..], b"c");
        assert_eq!(last.sequence, 2);
        stream.purge().filter(subject.clone()).await.expect("purge");
        let gone = stream
            .direct_get_last_for_subject(subject.clone())
            .await
            .expect_err("purged");
        assert_eq!(
            gone.kind(),
            async_nats::jetstream::stream::DirectGetErrorKind::NotFound
        );
        // After a purge, the subject counts as empty again.
        js.publish_with_headers(subject.clone(), expect(0), "d".into())
            .await
            .expect("publish")
            .await
            .expect("0 after a purge");
        cleanup.run().await;
        // A direct get on a stream that is gone fails; on 2.9 it is not
        // answered at all (no "no responders" either: the request lands in
        // the JetStream API import), so the broker bounds it by its request
        // timeout and then ensures the stream again.
        let (client, _) = context().await;
        let impatient = jetstream::ContextBuilder::new()
            .timeout(Duration::from_millis(500))
            .build(client);
        let stream = impatient
            .get_stream_no_info(&stream_name)
            .await
            .expect("a handle");
        let gone = stream
            .direct_get_last_for_subject(subject.clone())
            .await
            .expect_err("no stream");
        eprintln!("direct get without a stream: {:?}", gone.kind());
    })
    .await;
}

#[tokio::test]
async fn short_max_age_expires_messages() {
    within(STEP * 2, "the probe", async {
        let (_client, js) = context().await;
        let stream_name = name();
        let subject = format!("{}.x", name());
        js.create_stream(stream::Config {
            name: stream_name.clone(),
            subjects: vec![subject.clone()],
            max_age: Duration::from_millis(1500),
            allow_direct: true,
            ..Default::default()
        })
        .await
        .expect("a stream with max_age below the duplicate window");
        let cleanup = Cleanup(js.clone(), stream_name.clone());
        js.publish(subject.clone(), "a".into())
            .await
            .expect("publish")
            .await
            .expect("ack");
        let stream = js.get_stream(&stream_name).await.expect("stream");
        let started = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            match stream.direct_get_last_for_subject(subject.clone()).await {
                Ok(_) => assert!(started.elapsed() < Duration::from_secs(10)),
                Err(_) => break,
            }
        }
        eprintln!("expired after {:?}", started.elapsed());
        assert!(started.elapsed() >= Duration::from_millis(1400));
        cleanup.run().await;
    })
    .await;
}

#[tokio::test]
async fn last_per_subject_consumer_counts_its_subjects() {
    within(STEP * 2, "the probe", async {
        let (_client, js) = context().await;
        let stream_name = name();
        let base = name();
        js.create_stream(stream::Config {
            name: stream_name.clone(),
            subjects: vec![format!("{base}.>")],
            max_messages_per_subject: 1,
            allow_direct: true,
            ..Default::default()
        })
        .await
        .expect("stream");
        let cleanup = Cleanup(js.clone(), stream_name.clone());
        for (key, n) in [("a.1", 3), ("a.2", 1), ("b.1", 2), ("a.3", 1)] {
            for i in 0..n {
                js.publish(format!("{base}.{key}"), i.to_string().into())
                    .await
                    .expect("publish")
                    .await
                    .expect("ack");
            }
        }
        let stream = js.get_stream(&stream_name).await.expect("stream");
        let consumer = stream
            .create_consumer(consumer::pull::Config {
                deliver_policy: consumer::DeliverPolicy::LastPerSubject,
                ack_policy: consumer::AckPolicy::None,
                filter_subject: format!("{base}.a.*"),
                inactive_threshold: Duration::from_secs(5),
                memory_storage: true,
                ..Default::default()
            })
            .await
            .expect("consumer");
        let pending = consumer.cached_info().num_pending;
        assert_eq!(pending, 3, "one per subject a.1, a.2, a.3");
        let mut batch = consumer
            .fetch()
            .max_messages(10)
            .messages()
            .await
            .expect("fetch");
        let mut got = Vec::new();
        while let Some(m) = batch.next().await {
            let m = m.expect("message");
            let info = m.info().expect("info");
            got.push((m.subject.to_string(), info.pending));
            if info.pending == 0 {
                break;
            }
        }
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got.last().map(|g| g.1), Some(0));
        let empty = stream
            .create_consumer(consumer::pull::Config {
                deliver_policy: consumer::DeliverPolicy::LastPerSubject,
                ack_policy: consumer::AckPolicy::None,
                filter_subject: format!("{base}.c.*"),
                inactive_threshold: Duration::from_secs(5),
                memory_storage: true,
                ..Default::default()
            })
            .await
            .expect("consumer");
        assert_eq!(empty.cached_info().num_pending, 0);
        cleanup.run().await;
    })
    .await;
}
