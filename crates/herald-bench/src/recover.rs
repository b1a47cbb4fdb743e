//! `recover`: what recovering missed publications costs a client (Herald's
//! protocol extension; socketcluster-server has no recovery).
//!
//! Each round, on a fresh channel with history: a client subscribes and
//! learns its position, then leaves; a publisher publishes `missed`
//! publications (the last one acknowledged, so every one is in the history
//! when the client returns); the client reconnects and subscribes with
//! `recover` from its position. Timed: from writing that subscribe to
//! reading its reply, which comes after every missed publication. Checked:
//! exactly the offsets after the position, in order, then
//! `recovered: true`, then a live publication with the next offset.

use std::time::Duration;

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use herald_protocol::inbound::{self, Packet};
use herald_protocol::{Cid, ext, outbound};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::time::Instant;

use crate::common::{Common, Harness};
use crate::stats::median;
use crate::wire::{self, Stamp, Ws};

/// `recover` options.
#[derive(Debug, Clone, clap::Args)]
pub struct RecoverArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Publications missed (and recovered) per round.
    #[arg(long, default_value_t = 1000)]
    pub missed: u64,
    /// Rounds (one fresh channel each).
    #[arg(long, default_value_t = 20)]
    pub rounds: u32,
    /// Size of each publication's data in bytes.
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// Channel names are this prefix and the round's number; the server must
    /// keep at least `missed` publications of history (and allow recovery)
    /// on them, e.g. `[namespaces.hist] history_size = 1000, recover = true`.
    #[arg(long, default_value = "hist:")]
    pub channel_prefix: String,
}

impl RecoverArgs {
    /// The default deadline: generous per round.
    pub fn default_deadline(&self) -> Duration {
        Duration::from_secs(30) + Duration::from_secs(5) * self.rounds
    }
}

/// The result of a `recover` run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecoverResult {
    /// Name of the server under test.
    pub label: String,
    /// Publications recovered per round.
    pub missed: u64,
    /// Rounds.
    pub rounds: u32,
    /// Data size per publication, bytes.
    pub payload_bytes: usize,
    /// Median time from the subscribe to its reply, ms.
    pub median_ms: f64,
    /// Slowest round, ms.
    pub max_ms: f64,
    /// Recovered publications per second (median round).
    pub publications_per_sec: f64,
    /// Whether every round recovered exactly the missed offsets, in order.
    pub clean: bool,
}

/// Reads until the reply to `cid`, collecting the offsets of publications
/// on `channel` that came first. Answers pings.
async fn until_reply(
    ws: &mut Ws,
    channel: &str,
    cid: u64,
    offsets: &mut Vec<u64>,
) -> anyhow::Result<serde_json::Value> {
    loop {
        let msg = ws.next().await.context("connection ended")??;
        if let Some((code, reason)) = msg.as_close() {
            bail!("closed with {} {reason}", u16::from(code));
        }
        let Some(text) = msg.as_text() else { continue };
        if text.is_empty() {
            ws.send(wire::pong()).await?;
            continue;
        }
        for packet in inbound::parse(text)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .into_packets()
        {
            match packet {
                Ok(Packet::Publish {
                    channel: c,
                    position: Some(p),
                    ..
                }) if c == channel => offsets.push(p.offset),
                Ok(Packet::Response { rid, data, error }) if rid.as_u64() == Some(cid) => {
                    if let Some(e) = error {
                        bail!("refused: {}", e.get());
                    }
                    let data = data.map_or("null", RawValue::get);
                    return Ok(serde_json::from_str(data)?);
                }
                _ => {}
            }
        }
    }
}

async fn session(harness: &Harness) -> anyhow::Result<Ws> {
    let mut ws = wire::connect(&harness.target, None).await?;
    wire::handshake(&mut ws).await?;
    Ok(ws)
}

/// One round: returns the time to recover and whether it was exact.
async fn round(args: &RecoverArgs, harness: &Harness, n: u32) -> anyhow::Result<(Duration, bool)> {
    let channel = format!("{}{n}-{}", args.channel_prefix, std::process::id());
    let mut client = session(harness).await?;
    let frame = outbound::subscribe_request(&channel, None, Some(&Cid::from(2)));
    client.send(wire::text(frame)).await?;
    let status: ext::SubscribeStatus =
        serde_json::from_value(until_reply(&mut client, &channel, 2, &mut Vec::new()).await?)
            .context("the channel has no history: configure a namespace for --channel-prefix")?;
    drop(client);

    let mut publisher = session(harness).await?;
    let mut scratch = String::new();
    for seq in 0..args.missed {
        let stamp = Stamp {
            publisher: 0,
            seq,
            sent_ns: 0,
        };
        publisher
            .feed(wire::text(wire::publish_frame(
                &channel,
                stamp,
                args.payload,
                &mut scratch,
            )))
            .await?;
    }
    publisher.flush().await?;
    // Frames are handled in order: the acknowledgement of this last one
    // (recovered too) comes after every publication above was stored.
    let last = RawValue::from_string("\"last\"".into())?;
    let frame = outbound::publish_request(&channel, Some(&last), Some(&Cid::from(9)));
    wire::request(&mut publisher, frame, 9, "publish").await?;

    let mut client = session(harness).await?;
    let frame = outbound::subscribe_request_recover(
        &channel,
        None,
        Some((status.offset, &status.epoch)),
        Some(&Cid::from(2)),
    );
    let mut offsets = Vec::with_capacity(args.missed as usize + 1);
    let started = Instant::now();
    client.send(wire::text(frame)).await?;
    let reply: ext::SubscribeStatus =
        serde_json::from_value(until_reply(&mut client, &channel, 2, &mut offsets).await?)?;
    let took = started.elapsed();
    let expected: Vec<u64> = (status.offset + 1..=status.offset + args.missed + 1).collect();
    let clean = reply.recovered == Some(true) && offsets == expected && reply.epoch == status.epoch;
    Ok((took, clean))
}

/// Runs the scenario.
pub async fn run(args: &RecoverArgs) -> anyhow::Result<RecoverResult> {
    let harness = Harness::open(&args.common).await?;
    let mut times = Vec::with_capacity(args.rounds as usize);
    let mut clean = true;
    for n in 0..args.rounds {
        let outcome = round(args, &harness, n).await;
        let (took, ok) = match outcome {
            Ok(r) => r,
            Err(e) => {
                harness.close().await;
                return Err(e.context(format!("round {n}")));
            }
        };
        clean &= ok;
        times.push(took.as_secs_f64() * 1e3);
    }
    harness.close().await;
    let median_ms = median(&times).unwrap_or(0.0);
    let max_ms = times.iter().copied().fold(0.0, f64::max);
    Ok(RecoverResult {
        label: args.common.label.clone(),
        missed: args.missed,
        rounds: args.rounds,
        payload_bytes: args.payload,
        median_ms,
        max_ms,
        publications_per_sec: if median_ms > 0.0 {
            (args.missed + 1) as f64 / (median_ms / 1e3)
        } else {
            0.0
        },
        clean,
    })
}
