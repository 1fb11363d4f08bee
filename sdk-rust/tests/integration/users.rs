//! Signing in as a user: server-to-user events and terminated connections.

use comnestor::{
    BoxError, ConnectionState, ErrorKind, LocalAuthorizer, SignIn, UserAuth, UserData,
};
use serde_json::json;

use crate::support::{APP_ID, APP_KEY, Server, credentials, next_named, within};

#[tokio::test]
async fn send_to_user_reaches_the_signed_in_connection_and_terminate_closes_it() {
    let server = Server::start().await;
    let user = LocalAuthorizer::new(credentials()).user(UserData::new("u7"));
    let subscriber = server
        .client()
        .subscriber()
        .sign_in(user)
        .connect()
        .await
        .expect("connects");
    let mut inbox = subscriber
        .subscribe_user()
        .await
        .expect("signed in and subscribed");
    assert_eq!(
        subscriber.sign_in_state(),
        SignIn::SignedIn {
            user_id: "u7".into()
        }
    );

    let client = server.client();
    client
        .send_to_user("u7", "note", json!({"text": "hi"}))
        .await
        .expect("send_to_user");
    assert_eq!(
        next_named(&mut inbox, "note").await.data,
        json!({"text": "hi"})
    );

    client
        .terminate_user_connections("u7")
        .await
        .expect("terminate");
    let mut states = subscriber.states();
    let closed = states.wait_for(|s| matches!(s, ConnectionState::Closed { .. }));
    let state = within("the connection to close", closed)
        .await
        .unwrap()
        .clone();
    assert!(
        matches!(
            state,
            ConnectionState::Closed {
                code: Some(4009),
                ..
            }
        ),
        "4009 is final: {state:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_refused_sign_in_fails_subscribe_user() {
    let server = Server::start().await;
    let forged = |socket_id: String| async move {
        let wrong = comnestor::Credentials::new(APP_ID, APP_KEY, "wrong-secret");
        Ok::<UserAuth, BoxError>(wrong.authenticate_user(&socket_id, &UserData::new("u8"))?)
    };
    let subscriber = server
        .client()
        .subscriber()
        .sign_in(forged)
        .connect()
        .await
        .expect("connects");
    let error = subscriber.subscribe_user().await.unwrap_err();
    assert!(
        matches!(error.kind(), ErrorKind::SignInFailed(_)),
        "{error}"
    );

    let plain = server
        .client()
        .subscriber()
        .connect()
        .await
        .expect("connects");
    let error = plain.subscribe("#server-to-user-u8").await.unwrap_err();
    assert!(
        matches!(error.kind(), ErrorKind::InvalidArgument(_)),
        "{error}"
    );
    server.shutdown().await;
}
