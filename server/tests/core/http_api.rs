//! The signed HTTP API under `/apps/{id}`: triggers, channel queries, and request signing.

use comnestor_protocol::signing;
use comnestor_server::apps::NewApp;
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::support::{Api, Client, member, now, server, server_with};

/// The credentials of the worked examples in pusher-protocol.md §7.
const DOC_KEY: &str = "278d425bdf160c739803";
const DOC_SECRET: &str = "7ad3773142a6692b25b8";
const DOC_BODY: &str = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;

/// HMAC-SHA256 in lowercase hex, computed here rather than by `comnestor-protocol`.
fn hmac_hex(secret: &str, message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn md5_hex(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// The string to sign, spelled out as the reference does: the method, the path, then every
/// parameter but `auth_signature` sorted by key and joined as `k=v` with `&`, unescaped.
fn hand_string_to_sign(method: &str, path: &str, params: &[(&str, &str)]) -> String {
    let mut params = params.to_vec();
    params.sort();
    let joined: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{method}\n{path}\n{}", joined.join("&"))
}

/// A query string signed by hand, with values written into the URL as given.
fn hand_signed_query(secret: &str, method: &str, path: &str, params: &[(&str, &str)]) -> String {
    let signature = hmac_hex(secret, &hand_string_to_sign(method, path, params));
    let mut query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    query.push(format!("auth_signature={signature}"));
    query.join("&")
}

#[test]
fn the_hand_signer_reproduces_the_documented_vectors() {
    // V1: a private channel signature.
    assert_eq!(
        hmac_hex(DOC_SECRET, "1234.1234:private-foobar"),
        "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
    );
    // V4: the REST worked example.
    let md5 = md5_hex(DOC_BODY.as_bytes());
    assert_eq!(md5, "ec365a775a4cd0599faeb73354201b6f");
    let params = [
        ("auth_key", DOC_KEY),
        ("auth_timestamp", "1353088179"),
        ("auth_version", "1.0"),
        ("body_md5", md5.as_str()),
    ];
    let string = hand_string_to_sign("POST", "/apps/3/events", &params);
    assert_eq!(
        string,
        "POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f"
    );
    assert_eq!(
        hmac_hex(DOC_SECRET, &string),
        "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
    );
    // V11: a GET with extra parameters.
    let params = [
        ("info", "user_count"),
        ("filter_by_prefix", "presence-"),
        ("auth_key", DOC_KEY),
        ("auth_timestamp", "1353088179"),
        ("auth_version", "1.0"),
    ];
    assert_eq!(
        hmac_hex(
            DOC_SECRET,
            &hand_string_to_sign("GET", "/apps/3/channels", &params)
        ),
        "16819168891cb5dfd72b5c7a5d3d602605b26c6ba1930033b5e2eeeb65010291"
    );
    // V12.
    assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(md5_hex(b"{}"), "99914b932bd37a50b983c5e7c90ae93b");

    // The shared signer the other tests use agrees with the documented example too.
    let query = signing::sign_request(
        DOC_KEY,
        DOC_SECRET,
        "POST",
        "/apps/3/events",
        &[],
        Some(DOC_BODY.as_bytes()),
        1353088179,
    );
    assert!(query.ends_with(
        "auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
    ));
}

#[tokio::test]
async fn requests_signed_by_hand_as_documented_are_accepted() {
    let server = server().await;
    let app = server
        .create_app(NewApp {
            id: Some("3".into()),
            key: Some(DOC_KEY.into()),
            secret: Some(DOC_SECRET.into()),
            enabled: true,
            ..NewApp::default()
        })
        .await;
    let api = Api::for_app(&server, &app);
    let url = format!("ws://{}/app/{DOC_KEY}?protocol=7", server.addr);
    let mut client = Client::connect_to(&url).await;
    client.subscribe_public("project-3").await;
    // V1's formula over this connection's socket id.
    let signature = hmac_hex(DOC_SECRET, &format!("{}:private-foobar", client.socket_id));
    let auth = format!("{DOC_KEY}:{signature}");
    client
        .send(json!({"event": "pusher:subscribe", "data": {"channel": "private-foobar", "auth": auth}}))
        .await;
    client
        .expect_on("pusher_internal:subscription_succeeded", "private-foobar")
        .await;

    // V4's request with a fresh timestamp.
    let timestamp = now().to_string();
    let md5 = md5_hex(DOC_BODY.as_bytes());
    let params = [
        ("auth_key", DOC_KEY),
        ("auth_timestamp", timestamp.as_str()),
        ("auth_version", "1.0"),
        ("body_md5", md5.as_str()),
    ];
    let query = hand_signed_query(DOC_SECRET, "POST", "/apps/3/events", &params);
    let reply = api
        .raw(
            "POST",
            "/apps/3/events",
            &query,
            DOC_BODY.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(reply.ok(), json!({}));
    let event = client.expect_on("foo", "project-3").await;
    assert_eq!(event.raw_data, Some(json!(r#"{"some":"data"}"#)));

    // V11's request, with the comma of a Node-style `info` list left unescaped.
    for info in ["user_count", "user_count,subscription_count"] {
        let params = [
            ("auth_key", DOC_KEY),
            ("auth_timestamp", timestamp.as_str()),
            ("auth_version", "1.0"),
            ("filter_by_prefix", "presence-"),
            ("info", info),
        ];
        let query = hand_signed_query(DOC_SECRET, "GET", "/apps/3/channels", &params);
        let reply = api.raw("GET", "/apps/3/channels", &query, Vec::new()).await;
        assert_eq!(reply.ok(), json!({"channels": {}}));
    }
}

#[tokio::test]
async fn python_style_body_md5_on_get_is_accepted_and_a_wrong_one_refused() {
    let server = server().await;
    let api = Api::new(&server);
    let path = api.path("/channels");
    let query = signing::sign_request(&api.key, &api.secret, "GET", &path, &[], Some(b""), now());
    assert!(query.contains("body_md5=d41d8cd98f00b204e9800998ecf8427e"));
    let reply = api.raw("GET", &path, &query, Vec::new()).await;
    assert_eq!(reply.ok(), json!({"channels": {}}));

    // body_md5 of a body that was not sent.
    let query = signing::sign_request(&api.key, &api.secret, "GET", &path, &[], Some(b"x"), now());
    api.raw("GET", &path, &query, Vec::new()).await.refused(401);

    // A POST whose body differs from the one its body_md5 was computed over.
    let path = api.path("/events");
    let signed_body = json!({"name": "e", "channel": "c", "data": "1"}).to_string();
    let sent_body = json!({"name": "e", "channel": "c", "data": "2"}).to_string();
    let query = signing::sign_request(
        &api.key,
        &api.secret,
        "POST",
        &path,
        &[],
        Some(signed_body.as_bytes()),
        now(),
    );
    let error = api
        .raw("POST", &path, &query, sent_body.into_bytes())
        .await
        .refused(401);
    assert!(error.contains("body_md5"), "{error}");

    // A POST with a body and no body_md5 at all.
    let query = signing::sign_request(&api.key, &api.secret, "POST", &path, &[], None, now());
    api.raw("POST", &path, &query, signed_body.into_bytes())
        .await
        .refused(401);
}

#[tokio::test]
async fn timestamps_must_be_within_600_seconds() {
    let server = server().await;
    let api = Api::new(&server);
    let path = api.path("/channels");
    let sign = |timestamp: u64| {
        signing::sign_request(&api.key, &api.secret, "GET", &path, &[], None, timestamp)
    };
    for accepted in [now() - 590, now() + 590] {
        api.raw("GET", &path, &sign(accepted), Vec::new())
            .await
            .ok();
    }
    for expired in [now() - 605, now() + 605, 1353088179] {
        let error = api
            .raw("GET", &path, &sign(expired), Vec::new())
            .await
            .refused(401);
        assert!(error.contains("Timestamp"), "{error}");
    }
}

#[tokio::test]
async fn bad_signatures_and_credentials_get_401_with_a_json_body() {
    let server = server().await;
    let api = Api::new(&server);
    let path = api.path("/channels");
    let good = signing::sign_request(&api.key, &api.secret, "GET", &path, &[], None, now());

    let tampered = {
        let (rest, signature) = good.rsplit_once("auth_signature=").unwrap();
        let first = if signature.starts_with('0') { '1' } else { '0' };
        format!("{rest}auth_signature={first}{}", &signature[1..])
    };
    let error = api
        .raw("GET", &path, &tampered, Vec::new())
        .await
        .refused(401);
    assert!(error.contains("Invalid signature"), "{error}");
    assert!(
        error.contains(&format!("GET\\n{path}\\n")) || error.contains(&format!("GET\n{path}\n"))
    );

    let wrong_secret = signing::sign_request(&api.key, "wrong", "GET", &path, &[], None, now());
    api.raw("GET", &path, &wrong_secret, Vec::new())
        .await
        .refused(401);
    let wrong_key = signing::sign_request("wrong-key", &api.secret, "GET", &path, &[], None, now());
    api.raw("GET", &path, &wrong_key, Vec::new())
        .await
        .refused(401);
    // Signed for another path.
    let other = signing::sign_request(
        &api.key,
        &api.secret,
        "GET",
        "/apps/100/x",
        &[],
        None,
        now(),
    );
    api.raw("GET", &path, &other, Vec::new()).await.refused(401);
    // Signed with an extra parameter that was then dropped.
    let extra = signing::sign_request(
        &api.key,
        &api.secret,
        "GET",
        &path,
        &[("filter_by_prefix", "presence-")],
        None,
        now(),
    );
    let dropped = extra.replace("&filter_by_prefix=presence-", "");
    api.raw("GET", &path, &dropped, Vec::new())
        .await
        .refused(401);

    let without_signature = good.split("&auth_signature=").next().unwrap().to_owned();
    api.raw("GET", &path, &without_signature, Vec::new())
        .await
        .refused(401);
    api.raw("GET", &path, "", Vec::new()).await.refused(401);
    let version_2 = good.replace("auth_version=1.0", "auth_version=2.0");
    api.raw("GET", &path, &version_2, Vec::new())
        .await
        .refused(401);
}

#[tokio::test]
async fn unknown_apps_get_404_and_disabled_apps_403() {
    let server = server().await;
    let mut api = Api::new(&server);
    api.app_id = "999".into();
    let error = api.get("/channels", &[]).await.refused(404);
    assert!(error.contains("999"), "{error}");
    api.post("/events", &json!({"name": "e", "channel": "c", "data": ""}))
        .await
        .refused(404);

    let disabled = server
        .create_app(NewApp {
            id: Some("201".into()),
            key: Some("off-key".into()),
            secret: Some("off-secret".into()),
            enabled: false,
            ..NewApp::default()
        })
        .await;
    let api = Api::for_app(&server, &disabled);
    api.get("/channels", &[]).await.refused(403);
    api.post("/events", &json!({"name": "e", "channel": "c", "data": ""}))
        .await
        .refused(403);
}

#[tokio::test]
async fn trigger_accepts_channel_or_channels_and_excludes_the_given_socket() {
    let server = server().await;
    let api = Api::new(&server);
    let mut a = Client::connect(&server).await;
    let mut b = Client::connect(&server).await;
    for client in [&mut a, &mut b] {
        client.subscribe_public("one").await;
        client.subscribe_public("two").await;
    }

    // PHP's single `channel`.
    api.trigger("one", "single", "1").await;
    // Node's and Python's `channels`, here naming both.
    let body = json!({"name": "multi", "channels": ["one", "two"], "data": "2"});
    assert_eq!(api.post("/events", &body).await.ok(), json!({}));
    for client in [&mut a, &mut b] {
        client.expect_on("single", "one").await;
        client.expect_on("multi", "one").await;
        client.expect_on("multi", "two").await;
    }

    // Excluding `a`, as Laravel's toOthers() does.
    let body = json!({"name": "others", "channel": "one", "data": "3", "socket_id": a.socket_id});
    api.post("/events", &body).await.ok();
    b.expect_on("others", "one").await;
    api.trigger("one", "marker", "{}").await;
    a.expect_on("marker", "one").await;
    b.expect_on("marker", "one").await;

    // `data` sent as an object is delivered as its JSON text.
    let body = json!({"name": "object", "channel": "two", "data": {"k": [1]}});
    api.post("/events", &body).await.ok();
    let event = a.expect_on("object", "two").await;
    assert_eq!(event.data, json!({"k": [1]}));
}

#[tokio::test]
async fn trigger_reports_the_requested_info_per_channel() {
    let server = server().await;
    let api = Api::new(&server);
    let app = &server.app;
    let mut alice1 = Client::connect(&server).await;
    alice1
        .subscribe_presence(app, "presence-p", &member("alice", "A"))
        .await;
    let mut alice2 = Client::connect(&server).await;
    alice2
        .subscribe_presence(app, "presence-p", &member("alice", "A"))
        .await;
    alice1.subscribe_public("public-p").await;

    let body = json!({
        "name": "e",
        "channels": ["presence-p", "public-p", "empty-p"],
        "data": "{}",
        "info": "user_count,subscription_count",
    });
    let reply = api.post("/events", &body).await.ok();
    assert_eq!(
        reply,
        json!({"channels": {
            "presence-p": {"user_count": 1, "subscription_count": 2},
            "public-p": {"subscription_count": 1},
            "empty-p": {"subscription_count": 0},
        }})
    );
    let body =
        json!({"name": "e", "channel": "public-p", "data": "{}", "info": "subscription_count"});
    let reply = api.post("/events", &body).await.ok();
    assert_eq!(
        reply,
        json!({"channels": {"public-p": {"subscription_count": 1}}})
    );
}

#[tokio::test]
async fn invalid_triggers_are_refused() {
    let server = server_with(|s| s.max_event_size = 10_240).await;
    let api = Api::new(&server);
    let mut client = Client::connect(&server).await;
    client.subscribe_public("c").await;
    let many: Vec<String> = (0..101).map(|n| format!("c{n}")).collect();
    let bad_requests = [
        json!({"name": "e", "data": "x"}),
        json!({"name": "e", "channels": [], "data": "x"}),
        json!({"name": "e", "channels": many, "data": "x"}),
        json!({"channel": "c", "data": "x"}),
        json!({"name": "", "channel": "c", "data": "x"}),
        json!({"name": "e".repeat(201), "channel": "c", "data": "x"}),
        json!({"name": "e", "channel": "bad channel", "data": "x"}),
        json!({"name": "e", "channel": "c", "data": "x", "socket_id": "abc"}),
        json!({"name": "e", "channel": "c", "data": "x", "socket_id": "1.2.3"}),
        json!({"name": "e", "channel": "c", "data": "x", "info": "nonsense"}),
        json!({"name": "e", "channel": "c"}),
    ];
    for body in bad_requests {
        let reply = api.post("/events", &body).await;
        assert_eq!(reply.status, 400, "{body}: {:?}", reply.body);
        assert!(reply.body["error"].is_string());
    }
    api.post_path(&api.path("/events"), b"{not json")
        .await
        .refused(400);

    // The data limit: 10240 bytes pass, one more is 413.
    let body = json!({"name": "e", "channel": "c", "data": "d".repeat(10_240)});
    api.post("/events", &body).await.ok();
    client.expect_on("e", "c").await;
    let body = json!({"name": "e", "channel": "c", "data": "d".repeat(10_241)});
    api.post("/events", &body).await.refused(413);
    // A body over the server's ceiling.
    let body = json!({"name": "e", "channel": "c", "data": "d".repeat(2 * 1024 * 1024)});
    api.post("/events", &body).await.refused(413);
    let name = "n".repeat(200);
    api.trigger("c", &name, "{}").await;
    client.expect_on(&name, "c").await;
}

#[tokio::test]
async fn batch_events_deliver_in_order_and_report_info_per_item() {
    let server = server().await;
    let api = Api::new(&server);
    let mut client = Client::connect(&server).await;
    client.subscribe_public("b1").await;
    client
        .subscribe_presence(&server.app, "presence-b", &member("u", "U"))
        .await;

    let body = json!({"batch": [
        {"name": "first", "channel": "b1", "data": "1"},
        {"name": "second", "channel": "presence-b", "data": "2"},
    ]});
    assert_eq!(api.post("/batch_events", &body).await.ok(), json!({}));
    client.expect_on("first", "b1").await;
    client.expect_on("second", "presence-b").await;

    let body = json!({"batch": [
        {"name": "a", "channel": "presence-b", "data": "1", "info": "user_count,subscription_count"},
        {"name": "b", "channel": "b1", "data": "2"},
        {"name": "c", "channel": "b1", "data": "3", "info": "subscription_count"},
    ]});
    let reply = api.post("/batch_events", &body).await.ok();
    assert_eq!(
        reply,
        json!({"batch": [{"user_count": 1, "subscription_count": 1}, {}, {"subscription_count": 1}]})
    );
    client.expect_on("a", "presence-b").await;
    client.expect_on("b", "b1").await;
    client.expect_on("c", "b1").await;

    // The socket given in an item is excluded from that item only.
    let body = json!({"batch": [
        {"name": "skipped", "channel": "b1", "data": "1", "socket_id": client.socket_id},
        {"name": "kept", "channel": "b1", "data": "2"},
    ]});
    api.post("/batch_events", &body).await.ok();
    client.expect_on("kept", "b1").await;
}

#[tokio::test]
async fn invalid_batches_are_refused_and_publish_nothing() {
    let server = server().await;
    let api = Api::new(&server);
    let mut client = Client::connect(&server).await;
    client.subscribe_public("b").await;
    let eleven: Vec<Value> = (0..11)
        .map(|n| json!({"name": "e", "channel": "b", "data": n.to_string()}))
        .collect();
    let error = api
        .post("/batch_events", &json!({"batch": eleven}))
        .await
        .refused(400);
    assert!(error.contains("10"), "{error}");
    let bad_item = json!({"batch": [
        {"name": "ok", "channel": "b", "data": "1"},
        {"name": "bad", "channel": "no spaces", "data": "2"},
    ]});
    api.post("/batch_events", &bad_item).await.refused(400);
    api.post("/batch_events", &json!({"events": []}))
        .await
        .refused(400);

    api.trigger("b", "marker", "{}").await;
    client.expect_on("marker", "b").await;
}

#[tokio::test]
async fn channels_lists_occupied_channels_as_an_object() {
    let server = server().await;
    let api = Api::new(&server);
    let app = &server.app;

    let path = api.path("/channels");
    let query = signing::sign_request(&api.key, &api.secret, "GET", &path, &[], None, now());
    let raw = reqwest::get(format!("{}{path}?{query}", api.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(raw, r#"{"channels":{}}"#);

    let mut client = Client::connect(&server).await;
    client.subscribe_public("news").await;
    client.subscribe_private(app, "private-inbox").await;
    client
        .subscribe_presence(app, "presence-lobby", &member("1", "One"))
        .await;
    let mut other = Client::connect(&server).await;
    other
        .subscribe_presence(app, "presence-lobby", &member("2", "Two"))
        .await;
    other
        .subscribe_presence(app, "presence-empty-soon", &member("2", "Two"))
        .await;
    other
        .send(json!({"event": "pusher:unsubscribe", "data": {"channel": "presence-empty-soon"}}))
        .await;
    other.assert_alive().await;

    assert_eq!(
        api.get("/channels", &[]).await.ok(),
        json!({"channels": {"news": {}, "private-inbox": {}, "presence-lobby": {}}})
    );
    assert_eq!(
        api.get("/channels", &[("filter_by_prefix", "private-")])
            .await
            .ok(),
        json!({"channels": {"private-inbox": {}}})
    );
    assert_eq!(
        api.get(
            "/channels",
            &[("filter_by_prefix", "presence-"), ("info", "user_count")]
        )
        .await
        .ok(),
        json!({"channels": {"presence-lobby": {"user_count": 2}}})
    );
    assert_eq!(
        api.get("/channels", &[("filter_by_prefix", "nothing-")])
            .await
            .ok(),
        json!({"channels": {}})
    );
    api.get("/channels", &[("info", "user_count")])
        .await
        .refused(400);
    api.get(
        "/channels",
        &[("filter_by_prefix", "private-"), ("info", "user_count")],
    )
    .await
    .refused(400);
    api.get("/channels", &[("info", "members")])
        .await
        .refused(400);
}

#[tokio::test]
async fn a_channel_reports_its_state_and_the_requested_attributes() {
    let server = server().await;
    let api = Api::new(&server);
    let app = &server.app;

    let path = api.path("/channels/nobody-here");
    let query = signing::sign_request(&api.key, &api.secret, "GET", &path, &[], None, now());
    let raw = reqwest::get(format!("{}{path}?{query}", api.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(raw, r#"{"occupied":false}"#);

    let mut one = Client::connect(&server).await;
    one.subscribe_presence(app, "presence-info", &member("1", "One"))
        .await;
    let mut two = Client::connect(&server).await;
    two.subscribe_presence(app, "presence-info", &member("1", "One"))
        .await;
    one.subscribe_public("public-info").await;

    assert_eq!(
        api.get("/channels/presence-info", &[]).await.ok(),
        json!({"occupied": true})
    );
    assert_eq!(
        api.get(
            "/channels/presence-info",
            &[("info", "user_count,subscription_count")]
        )
        .await
        .ok(),
        json!({"occupied": true, "user_count": 1, "subscription_count": 2})
    );
    assert_eq!(
        api.get("/channels/public-info", &[("info", "subscription_count")])
            .await
            .ok(),
        json!({"occupied": true, "subscription_count": 1})
    );
    api.get("/channels/public-info", &[("info", "user_count")])
        .await
        .refused(400);
    api.get("/channels/public-info", &[("info", "cache")])
        .await
        .refused(400);
    api.get("/channels/public-info", &[("info", "bogus")])
        .await
        .refused(400);
    api.get("/channels/bad%20name", &[]).await.refused(400);
}

#[tokio::test]
async fn a_path_is_accepted_signed_before_or_after_percent_encoding() {
    let server = server().await;
    let api = Api::new(&server);
    let mut client = Client::connect(&server).await;
    client.signin(&server.app, r#"{"id":"a"}"#).await;
    client.subscribe_public("#server-to-user-a").await;
    let encoded = api.path("/channels/%23server-to-user-a");
    let decoded = api.path("/channels/#server-to-user-a");
    for signed in [&encoded, &decoded] {
        let query = signing::sign_request(
            &api.key,
            &api.secret,
            "GET",
            signed,
            &[("info", "subscription_count")],
            None,
            now(),
        );
        let reply = api.raw("GET", &encoded, &query, Vec::new()).await.ok();
        assert_eq!(reply, json!({"occupied": true, "subscription_count": 1}));
    }
}

#[tokio::test]
async fn cache_channels_report_their_cached_event() {
    let server = server().await;
    let api = Api::new(&server);
    assert_eq!(
        api.get("/channels/cache-state", &[("info", "cache")])
            .await
            .ok(),
        json!({"occupied": false, "cache": null})
    );
    api.trigger("cache-state", "state", r#"{"v":3}"#).await;
    let reply = api
        .get("/channels/cache-state", &[("info", "cache")])
        .await
        .ok();
    assert_eq!(reply["occupied"], false);
    assert_eq!(reply["cache"]["data"], r#"{"v":3}"#);
    let ttl = reply["cache"]["ttl"].as_u64().unwrap();
    assert!((1..=1800).contains(&ttl), "{ttl}");
}

#[tokio::test]
async fn users_lists_presence_members_only() {
    let server = server().await;
    let api = Api::new(&server);
    let app = &server.app;
    assert_eq!(
        api.get("/channels/presence-none/users", &[]).await.ok(),
        json!({"users": []})
    );
    let mut client = Client::connect(&server).await;
    client
        .subscribe_presence(app, "presence-users", &member("7", "Seven"))
        .await;
    assert_eq!(
        api.get("/channels/presence-users/users", &[]).await.ok(),
        json!({"users": [{"id": "7"}]})
    );
    client.subscribe_public("public-users").await;
    api.get("/channels/public-users/users", &[])
        .await
        .refused(400);
    api.get("/channels/private-users/users", &[])
        .await
        .refused(400);
}

#[tokio::test]
async fn up_reports_health() {
    let server = server().await;
    let response = reqwest::get(format!("{}/up", server.http_url()))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["health"], "OK");

    let response = reqwest::get(format!("{}/no/such/route", server.http_url()))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"].is_string());
}
