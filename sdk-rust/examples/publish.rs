//! Publishes an event through Comnestor's event log, reads back its stages, and publishes one
//! through the Pusher HTTP API.
//!
//! ```sh
//! COMNESTOR_URL=http://127.0.0.1:6001 COMNESTOR_APP_ID=100 COMNESTOR_APP_KEY=app-key \
//! COMNESTOR_APP_SECRET=app-secret cargo run -p comnestor --example publish
//! ```

use comnestor::{Client, Event, Trigger};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), comnestor::Error> {
    let client = Client::from_env()?;

    let event = Event::new("orders", "order.created", json!({"id": 42}))
        .idempotency_key("order-42-created");
    let accepted = client.send_event(&event).await?;
    println!("accepted event {} ({:?})", accepted.id, accepted.status);

    let record = client.event(&accepted.id).await?;
    println!("stages: {:?}", record.stages);

    let trigger = Trigger::new(["orders", "audit"], "order.created", json!({"id": 42}));
    client.trigger(&trigger).await?;
    println!("triggered through the Pusher HTTP API");
    Ok(())
}
