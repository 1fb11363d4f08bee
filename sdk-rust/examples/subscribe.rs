//! Subscribes to channels and prints their events until interrupted.
//!
//! Private, presence and encrypted channels are authorized by the auth endpoint in
//! `AUTH_ENDPOINT` (the `authorize` example's, say), or else signed locally with the app
//! secret from the environment.
//!
//! ```sh
//! COMNESTOR_URL=http://127.0.0.1:6001 COMNESTOR_APP_ID=100 COMNESTOR_APP_KEY=app-key \
//! COMNESTOR_APP_SECRET=app-secret \
//! cargo run -p comnestor --example subscribe -- orders private-orders
//! ```

use comnestor::{Client, HttpAuthorizer, LocalAuthorizer, PresenceUser, Subscriber};
use futures_util::StreamExt;
use futures_util::stream::select_all;

#[tokio::main]
async fn main() -> Result<(), comnestor::Error> {
    let credentials = Client::from_env()?.credentials().clone();
    let url = std::env::var("COMNESTOR_URL").unwrap_or_default();
    let builder = Subscriber::builder(url, credentials.key());
    let builder = match std::env::var("AUTH_ENDPOINT") {
        Ok(endpoint) => builder.authorizer(HttpAuthorizer::new(endpoint)?.header("X-User-Id", "1")),
        Err(_) => builder.authorizer(
            LocalAuthorizer::new(credentials).presence_user(PresenceUser::new("example")),
        ),
    };
    let subscriber = builder.connect().await?;
    println!("connected as {:?}", subscriber.socket_id());

    let mut channels: Vec<String> = std::env::args().skip(1).collect();
    if channels.is_empty() {
        channels.push("orders".into());
    }
    let mut subscriptions = Vec::new();
    for channel in &channels {
        subscriptions.push(subscriber.subscribe(channel).await?);
    }

    let mut events = select_all(subscriptions);
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(event) => println!("{} {}: {}", event.channel, event.event, event.data),
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    println!("final state: {:?}", subscriber.state());
    Ok(())
}
