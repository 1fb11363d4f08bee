#!/usr/bin/env python3
"""Regenerates the JSON test vectors in this folder.

Every expected value is computed here with hmac, hashlib, base64 and PyNaCl, and every value
that a reference (Pusher docs, pusher-http-node, pusher-http-python, the signature gem) prints
is asserted against that reference before a file is written. Run from anywhere:

    python3 conformance/vectors/generate.py           # rewrite the files
    python3 conformance/vectors/generate.py --check   # fail if a file differs from its output

Needs PyNaCl (`pip install pynacl`) for the secretbox vectors.
"""

import base64
import hashlib
import hmac
import json
import os
import sys

import nacl.secret

HERE = os.path.dirname(os.path.abspath(__file__))

# Credentials of the Pusher docs' worked examples (AUTHSIG, REST).
DOC_KEY = "278d425bdf160c739803"
DOC_SECRET = "7ad3773142a6692b25b8"


def hmac_hex(secret, message):
    if isinstance(message, str):
        message = message.encode("utf-8")
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def check(name, computed, reference):
    if reference is not None and computed != reference:
        sys.exit(f"{name}: computed {computed!r} but the reference says {reference!r}")
    return computed


# --------------------------------------------------------------------------------------------
# Channel authorization


def channel_vector(name, source, key, secret, socket_id, channel, channel_data=None,
                   master_key_base64=None, ref_signature=None, ref_shared_secret=None,
                   note=None):
    string_to_sign = f"{socket_id}:{channel}"
    if channel_data is not None:
        string_to_sign += f":{channel_data}"
    signature = check(name, hmac_hex(secret, string_to_sign), ref_signature)
    auth = f"{key}:{signature}"
    vector = {"name": name, "source": source}
    if note:
        vector["note"] = note
    vector.update(key=key, secret=secret, socket_id=socket_id, channel_name=channel)
    if channel_data is not None:
        vector["channel_data"] = channel_data
    expected = {"string_to_sign": string_to_sign, "signature": signature, "auth": auth}
    response = {"auth": auth}
    if channel_data is not None:
        response["channel_data"] = channel_data
    if master_key_base64 is not None:
        vector["master_key_base64"] = master_key_base64
        master = base64.b64decode(master_key_base64, validate=True)
        assert len(master) == 32
        shared = base64.b64encode(
            hashlib.sha256(channel.encode("utf-8") + master).digest()).decode()
        expected["shared_secret"] = check(name + " shared_secret", shared, ref_shared_secret)
        response["shared_secret"] = expected["shared_secret"]
    expected["response"] = response
    vector["expected"] = expected
    return vector


def channel_auth():
    presence_data = '{"user_id":10,"user_info":{"name":"Mr. Pusher"}}'
    channels_data = '{"user_id":10,"user_info":{"name":"Mr. Channels"}}'
    return {
        "description": "Channel authorization (pusher:subscribe auth): auth = key ':' "
                       "hex(HMAC-SHA256(secret, socket_id ':' channel_name [':' channel_data])). "
                       "channel_data is signed whenever it is present, for every channel kind. "
                       "Encrypted channels add shared_secret = base64(SHA256(channel_name || "
                       "master_key)), which is not signed.",
        "source": "Pusher auth-signatures docs; pusher-http-node tests/integration/pusher/"
                  "authenticate.js; values recomputed with Python hmac/hashlib",
        "vectors": [
            channel_vector(
                "V1 private channel (docs)", "Pusher auth-signatures docs",
                DOC_KEY, DOC_SECRET, "1234.1234", "private-foobar",
                ref_signature="58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"),
            channel_vector(
                "V3 presence channel, Mr. Pusher (docs signature)",
                "Pusher auth-signatures docs",
                DOC_KEY, DOC_SECRET, "1234.1234", "presence-foobar", presence_data,
                ref_signature="afaed3695da2ffd16931f457e338e6c9f2921fa133ce7dac49f529792be6304c"),
            channel_vector(
                "V3 presence channel, Mr. Channels (docs correction)", "computed",
                DOC_KEY, DOC_SECRET, "1234.1234", "presence-foobar", channels_data,
                ref_signature="31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80",
                note="The auth-signatures docs print the Mr. Pusher signature (afaed369...) next "
                     "to this Mr. Channels channel_data; this is the correct value for it."),
            channel_vector(
                "V6 channel test without channel_data (node)", "pusher-http-node tests",
                "aaaa", "tofu", "123.456", "test",
                ref_signature="efa6cf7644a0b35cba36aa0f776f3cbf7bb60e95ea2696bde1dbe8403b61bd7c"),
            channel_vector(
                "V6 channel test with channel_data (node)", "pusher-http-node tests",
                "aaaa", "tofu", "123.456", "test", '{"foo":"bar"}',
                ref_signature="f41faf9ead2ea76772cc6b1168363057459f02499ae4d92e88229dc7f4efa2d4"),
            channel_vector(
                "V6 other socket id (node)", "pusher-http-node tests",
                "aaaa", "tofu", "321.654", "test",
                ref_signature="f6ecb0a17d3e4f68aca28f1673197a7608587c09deb0208faa4b5519aee0a777"),
            channel_vector(
                "V7 UTF-8 channel_data (node)", "pusher-http-node tests",
                "aaaa", "tofu", "1.1", "test", '"ą§¶™€łü€ß£"',
                ref_signature="2a229263e89d9c50524fd80c2e88be2843379f6931e28995e2cc214282c9db0c"),
            channel_vector(
                "V8 private-encrypted channel (node)", "pusher-http-node tests",
                "f00d", "tofu", "123.456", "private-encrypted-bla", '"foo"',
                master_key_base64="zyrm8pvV2C9fJcBfhyXzvxbJVN/H7QLmbe0xJi1GhPU=",
                ref_signature="962c48b78bf93d98ff4c92ee7dff04865821455b7b401e9d60a9e0a90af2c105",
                ref_shared_secret="nlr49ISQHz91yS3cy/yWmW8wFMNeTnNL5tNHnbPJcLQ="),
        ],
    }


# --------------------------------------------------------------------------------------------
# User authentication


def user_vector(name, source, key, secret, socket_id, user_data, ref_signature=None):
    string_to_sign = f"{socket_id}::user::{user_data}"
    signature = check(name, hmac_hex(secret, string_to_sign), ref_signature)
    auth = f"{key}:{signature}"
    return {
        "name": name, "source": source, "key": key, "secret": secret,
        "socket_id": socket_id, "user_data": user_data,
        "expected": {
            "string_to_sign": string_to_sign, "signature": signature, "auth": auth,
            "response": {"auth": auth, "user_data": user_data},
        },
    }


def user_auth():
    return {
        "description": "User authentication (pusher:signin auth): auth = key ':' "
                       "hex(HMAC-SHA256(secret, socket_id '::user::' user_data)), over the "
                       "UTF-8 bytes of the exact user_data string.",
        "source": "Pusher auth-signatures docs; pusher-http-node tests/integration/pusher/"
                  "authenticate.js; values recomputed with Python hmac/hashlib",
        "vectors": [
            user_vector(
                "V2 user auth (docs)", "Pusher auth-signatures docs",
                DOC_KEY, DOC_SECRET, "1234.1234", '{"id":"12345"}',
                ref_signature="4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba"),
            user_vector(
                "V7 user auth (node)", "pusher-http-node tests",
                "aaaa", "tofu", "123.456", '{"id":"45678"}',
                ref_signature="f4b1fdeea7c93e32648c7230e32b172057c5623cace6cfce791c6e7035e0babd"),
            user_vector(
                "V7 user auth with extra field (node)", "pusher-http-node tests",
                "aaaa", "tofu", "123.456", '{"id":"55555","user_name":"test"}',
                ref_signature="b8a9f173455903792ae2b788add0c4c78ad7372b3ae7fb5769479276a1993743"),
            user_vector(
                "V7 UTF-8 user_data (node)", "pusher-http-node tests",
                "aaaa", "tofu", "1.1", '{"id":"ą§¶™€łü€ß£"}',
                ref_signature="620494cee53d6c568b49598313194088afda37218f0d059af03c0c898ed61ff4"),
        ],
    }


# --------------------------------------------------------------------------------------------
# HTTP API request signing


def request_vector(name, source, key, secret, method, path, timestamp, params, body,
                   ref_body_md5=None, ref_string=None, ref_signature=None, note=None):
    body_md5 = None
    all_params = [("auth_key", key), ("auth_timestamp", str(timestamp)), ("auth_version", "1.0")]
    if body is not None:
        body_md5 = check(name + " body_md5", hashlib.md5(body.encode("utf-8")).hexdigest(),
                         ref_body_md5)
        all_params.append(("body_md5", body_md5))
    all_params += [(k, v) for k, v in params]
    pairs = sorted((k.lower(), v) for k, v in all_params if k.lower() != "auth_signature")
    string_to_sign = f"{method.upper()}\n{path}\n" + "&".join(f"{k}={v}" for k, v in pairs)
    check(name + " string_to_sign", string_to_sign, ref_string)
    signature = check(name, hmac_hex(secret, string_to_sign), ref_signature)
    vector = {"name": name, "source": source}
    if note:
        vector["note"] = note
    vector.update(key=key, secret=secret, method=method, path=path, timestamp=timestamp,
                  params=[[k, v] for k, v in params], body=body,
                  expected={"body_md5": body_md5, "string_to_sign": string_to_sign,
                            "auth_signature": signature})
    return vector


def request_signing():
    v4_body = '{"name":"foo","channels":["project-3"],"data":"{\\"some\\":\\"data\\"}"}'
    siggem_string = ("POST\n/some/path\nauth_key=key&auth_timestamp=1234&auth_version=1.0"
                     "&go=here&query=params")
    siggem_sig = "3b237953a5ba6619875cbb2a2d43e8da9ef5824e8a2c689f6284ac85bc1ea0db"
    get_params = [["filter_by_prefix", "presence-"], ["info", "user_count"]]
    return {
        "description": "HTTP API request signing: auth_signature = hex(HMAC-SHA256(secret, "
                       "UPPER(method) '\\n' path '\\n' query)), where query holds auth_key, "
                       "auth_timestamp, auth_version=1.0, body_md5 (hex MD5 of the body, when "
                       "there is one) and every other parameter, keys lower-cased, sorted by "
                       "key, joined as k=v with '&', not URL-escaped.",
        "source": "Pusher HTTP API reference; mloughran/signature spec; values recomputed "
                  "with Python hmac/hashlib",
        "vectors": [
            request_vector(
                "V4 POST event with body (docs)", "Pusher HTTP API reference worked example",
                DOC_KEY, DOC_SECRET, "POST", "/apps/3/events", 1353088179, [], v4_body,
                ref_body_md5="ec365a775a4cd0599faeb73354201b6f",
                ref_string="POST\n/apps/3/events\nauth_key=278d425bdf160c739803"
                           "&auth_timestamp=1353088179&auth_version=1.0"
                           "&body_md5=ec365a775a4cd0599faeb73354201b6f",
                ref_signature="da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"),
            request_vector(
                "V5 signature gem, two params", "mloughran/signature spec",
                "key", "secret", "POST", "/some/path", 1234,
                [["query", "params"], ["go", "here"]], None,
                ref_string=siggem_string, ref_signature=siggem_sig),
            request_vector(
                "V5 signature gem, upper-case keys", "mloughran/signature spec",
                "key", "secret", "POST", "/some/path", 1234,
                [["Query", "params"], ["GO", "here"]], None,
                ref_string=siggem_string, ref_signature=siggem_sig,
                note="Keys are lower-cased before sorting and signing, so this gives the same "
                     "string_to_sign and signature as the lower-case vector."),
            request_vector(
                "V5 signature gem, one param", "mloughran/signature spec",
                "key", "secret", "POST", "/some/path", 1234, [["query", "params"]], None,
                ref_signature="da078fcedd72941b6c873caa40d0d6b2000ebfc700cee802b128dd20f72e74e9"),
            request_vector(
                "V11 GET without body_md5", "computed",
                DOC_KEY, DOC_SECRET, "GET", "/apps/3/channels", 1353088179, get_params, None,
                ref_string="GET\n/apps/3/channels\nauth_key=278d425bdf160c739803"
                           "&auth_timestamp=1353088179&auth_version=1.0"
                           "&filter_by_prefix=presence-&info=user_count",
                ref_signature="16819168891cb5dfd72b5c7a5d3d602605b26c6ba1930033b5e2eeeb65010291"),
            request_vector(
                "GET with body_md5 of the empty body (Python SDK style)", "computed",
                DOC_KEY, DOC_SECRET, "GET", "/apps/3/channels", 1353088179, get_params, "",
                ref_body_md5="d41d8cd98f00b204e9800998ecf8427e",
                note="pusher-http-python adds body_md5 to every request, GET included; a "
                     "server must sign and check it against the empty body, not drop or "
                     "reject it."),
        ],
    }


# --------------------------------------------------------------------------------------------
# Webhooks


def webhook_vector(name, source, key, secret, body, ref_signature=None):
    signature = check(name, hmac_hex(secret, body), ref_signature)
    return {"name": name, "source": source, "key": key, "secret": secret, "body": body,
            "expected": {"signature": signature,
                         "headers": {"X-Pusher-Key": key, "X-Pusher-Signature": signature}}}


def webhook():
    return {
        "description": "Webhook signature: X-Pusher-Signature = hex(HMAC-SHA256(secret, raw "
                       "body bytes)); X-Pusher-Key = app key.",
        "source": "Pusher webhooks docs; pusher-http-node tests/integration/webhook.js; "
                  "values recomputed with Python hmac/hashlib",
        "vectors": [
            webhook_vector(
                "V10 channel_vacated (node)", "pusher-http-node tests",
                "123456789", "tofu",
                '{"time_ms":1403175510755,"events":[{"channel":"test_channel",'
                '"name":"channel_vacated"}]}',
                ref_signature="c17257e92037cd7de407ebc1ed174ceb7b2e518db127f44411b9ffc4f5b28cc5"),
            webhook_vector(
                "channel_occupied (docs body)", "computed",
                DOC_KEY, DOC_SECRET,
                '{"time_ms":1327078148132,"events":[{"name":"channel_occupied",'
                '"channel":"my-channel"}]}'),
            webhook_vector(
                "client_event with UTF-8 data", "computed",
                DOC_KEY, DOC_SECRET,
                '{"time_ms":1700000000000,"events":[{"name":"client_event",'
                '"channel":"presence-room","event":"client-typing",'
                '"data":"{\\"text\\":\\"zażółć €\\"}","socket_id":"123.456","user_id":"42"}]}'),
        ],
    }


# --------------------------------------------------------------------------------------------
# End-to-end encryption


def encryption_vector(name, source, channel, master_key, ref_shared_hex=None,
                      ref_shared_b64=None, nonce=None, plaintext=None, ref_nonce_b64=None,
                      ref_ciphertext_b64=None, note=None):
    assert len(master_key) == 32
    shared = hashlib.sha256(channel.encode("utf-8") + master_key).digest()
    vector = {"name": name, "source": source}
    if note:
        vector["note"] = note
    vector.update(channel_name=channel,
                  master_key_base64=base64.b64encode(master_key).decode())
    expected = {
        "shared_secret_hex": check(name + " hex", shared.hex(), ref_shared_hex),
        "shared_secret_base64": check(name + " b64", base64.b64encode(shared).decode(),
                                      ref_shared_b64),
    }
    if plaintext is not None:
        assert len(nonce) == 24
        vector["nonce_base64"] = check(name + " nonce", base64.b64encode(nonce).decode(),
                                       ref_nonce_b64)
        vector["plaintext"] = plaintext
        box = nacl.secret.SecretBox(shared)
        ciphertext = box.encrypt(plaintext.encode("utf-8"), nonce).ciphertext
        assert box.decrypt(ciphertext, nonce).decode("utf-8") == plaintext
        expected["ciphertext_base64"] = check(
            name + " ciphertext", base64.b64encode(ciphertext).decode(), ref_ciphertext_b64)
        expected["event_data"] = json.dumps(
            {"nonce": vector["nonce_base64"], "ciphertext": expected["ciphertext_base64"]},
            separators=(",", ":"))
    vector["expected"] = expected
    return vector


def encryption():
    py_master = b"OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5"
    node_master = base64.b64decode("zyrm8pvV2C9fJcBfhyXzvxbJVN/H7QLmbe0xJi1GhPU=")
    return {
        "description": "End-to-end encrypted channels: the per-channel key is "
                       "SHA256(channel_name UTF-8 bytes || 32-byte master key) (channel name "
                       "first); shared_secret is its base64. Event data is NaCl secretbox "
                       "(XSalsa20-Poly1305) of the plaintext UTF-8 bytes under that key, sent "
                       "as {\"nonce\": base64(24-byte nonce), \"ciphertext\": base64(box)}.",
        "source": "pusher-http-node tests; pusher-http-python pusher_tests/test_crypto.py; "
                  "values recomputed with Python hashlib/base64 and PyNaCl",
        "vectors": [
            encryption_vector(
                "V8 shared secret (node)", "pusher-http-node tests",
                "private-encrypted-bla", node_master,
                ref_shared_b64="nlr49ISQHz91yS3cy/yWmW8wFMNeTnNL5tNHnbPJcLQ="),
            encryption_vector(
                "V9 secretbox (python)", "pusher-http-python pusher_tests/test_crypto.py",
                "pvUPIk0YG6MnxCEMIUUVFrbDmQwbhICXUcy", py_master,
                ref_shared_hex="709ef3090a24bfa98382cb5d025ca3622c82d31fa27f10b005c0dca27bae6516",
                nonce=b"XAJI0Y6DPBHSAHXTHV3A3ZMF",
                plaintext="kkkT5OOkOkO5kT5TOO5TkOT5TTk5O55T",
                ref_nonce_b64="WEFKSTBZNkRQQkhTQUhYVEhWM0EzWk1G",
                ref_ciphertext_b64="tsYJa2JgGDOpVIYFe4aNVWAvZlpB7z7CjN9mpIdbATE0Yc4izN8aM8D6V"
                                   "igBxnIQ",
                note="The Python test passes the ASCII string OTk5...OTk5 as the raw 32-byte "
                     "master key (it is not base64-decoded); master_key_base64 is the base64 "
                     "of those ASCII bytes. The nonce is the ASCII string "
                     "XAJI0Y6DPBHSAHXTHV3A3ZMF. The plaintext is encrypted as is, not "
                     "JSON-encoded first."),
            encryption_vector(
                "secretbox of a JSON payload with UTF-8 (V8 key)", "computed",
                "private-encrypted-bla", node_master,
                nonce=bytes(range(24)),
                plaintext='{"message":"zażółć gęślą jaźń €"}',
                note="What pusher-http-node would send when triggering "
                     "{message: \"zażółć gęślą jaźń €\"} with this nonce: the plaintext is "
                     "JSON.stringify(data)."),
        ],
    }


FILES = {
    "channel-auth.json": channel_auth,
    "user-auth.json": user_auth,
    "request-signing.json": request_signing,
    "webhook.json": webhook,
    "encryption.json": encryption,
}


def main():
    check_only = "--check" in sys.argv[1:]
    stale = []
    for filename, build in FILES.items():
        text = json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
        path = os.path.join(HERE, filename)
        if check_only:
            with open(path, encoding="utf-8") as f:
                if f.read() != text:
                    stale.append(filename)
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            print("wrote", filename)
    if stale:
        sys.exit("out of date: " + ", ".join(stale))


if __name__ == "__main__":
    main()
