//! Subscribes to channels and prints every publication.
//!
//! ```text
//! cargo run -p herald-client --example subscribe -- ws://127.0.0.1:8000/socketcluster/ news [more channels...]
//! ```
//!
//! Connection events (reconnects, kicks, lost publications) are printed to
//! stderr. On a channel with history (Herald's extension) each line starts
//! with the publication's offset, and publications missed while
//! reconnecting are recovered before the live ones. Stop with Ctrl-C.

use futures_util::StreamExt as _;
use futures_util::stream::SelectAll;
use herald_client::Client;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(url), channels) = (args.next(), args.collect::<Vec<_>>()) else {
        eprintln!("usage: subscribe <ws://host:port/socketcluster/> <channel>...");
        std::process::exit(2);
    };
    if channels.is_empty() {
        eprintln!("usage: subscribe <ws://host:port/socketcluster/> <channel>...");
        std::process::exit(2);
    }

    let builder = Client::builder(url);
    let mut events = builder.events();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            eprintln!("event: {event:?}");
        }
    });
    let client = builder.connect().await?;

    let mut all = SelectAll::new();
    for channel in &channels {
        all.push(client.subscribe(channel.as_str()).await?);
    }
    eprintln!("subscribed to {}", channels.join(", "));

    loop {
        tokio::select! {
            item = all.next() => match item {
                Some(Ok(p)) => match p.offset() {
                    Some(offset) => println!("{} #{offset} {}", p.channel, p.data),
                    None => println!("{} {}", p.channel, p.data),
                },
                Some(Err(e)) => eprintln!("{e}"),
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    client.close().await;
    Ok(())
}
