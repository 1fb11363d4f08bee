"""The unchanged official Python server SDK (PyPI `pusher`, pinned in requirements.txt) against
a running server's Pusher HTTP API, with a `websockets` client as the subscriber.

Reads COMNESTOR_URL, COMNESTOR_APP_ID, COMNESTOR_APP_KEY and COMNESTOR_APP_SECRET. Prints
`ok - ...` / `not ok - ...` per check and closes with `N passed, N failed`; exits 1 if any
check failed. Every wait is bounded (WAIT seconds), so a broken server fails instead of hanging.

What it covers, each a trap of the Python SDK (docs/pusher-protocol.md section 3): it signs
body_md5 on every request, GETs included; its presence channel_data and user_data come from
json.dumps, with spaces after ':' and ','; terminate_user_connections posts to
/users/{id}/terminate_connections without the /apps/{id} prefix; any status but 200/202 is an
error and the body must be JSON.
"""

import json
import os
import re
import sys
import time
import traceback
import uuid
from urllib.parse import urlparse

import pusher
import pusher.errors
import pusher.version
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

WAIT = 5.0

url = urlparse(os.environ.get("COMNESTOR_URL", "http://127.0.0.1:6071"))
HOST = url.hostname
PORT = url.port or 80
APP_ID = os.environ.get("COMNESTOR_APP_ID", "100")
KEY = os.environ["COMNESTOR_APP_KEY"]
SECRET = os.environ["COMNESTOR_APP_SECRET"]
WS_URL = "ws://%s:%d/app/%s?protocol=7&client=python-check&version=1.0" % (HOST, PORT, KEY)
RUN = uuid.uuid4().hex[:8]

client = pusher.Pusher(APP_ID, KEY, SECRET, host=HOST, port=PORT, ssl=False)


def channel(name):
    return "%s-py-%s" % (name, RUN)


class Socket:
    """A websockets connection speaking the Pusher protocol, with bounded waits."""

    def __init__(self):
        self.ws = connect(WS_URL, open_timeout=WAIT, close_timeout=1)
        frame = self.next_frame()
        assert frame["event"] == "pusher:connection_established", frame
        data = json.loads(frame["data"])
        self.socket_id = data["socket_id"]
        assert re.match(r"^\d+\.\d+$", self.socket_id), data

    def send(self, event, data):
        self.ws.send(json.dumps({"event": event, "data": data}))

    def next_frame(self, deadline=None):
        """The next frame but pings (answered) and subscription counts."""
        deadline = deadline or time.monotonic() + WAIT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame within %.0f s" % WAIT)
            frame = json.loads(self.ws.recv(timeout=left))
            if frame.get("event") == "pusher:ping":
                self.send("pusher:pong", {})
            elif frame.get("event") == "pusher_internal:subscription_count":
                continue
            else:
                return frame

    def expect(self, event, chan=None):
        """Skips frames until `event` (on `chan`) arrives; fails on pusher:error."""
        deadline = time.monotonic() + WAIT
        while True:
            frame = self.next_frame(deadline)
            if frame.get("event") == "pusher:error":
                raise AssertionError("pusher:error while waiting for %s: %s" % (event, frame))
            if frame.get("event") == event and (chan is None or frame.get("channel") == chan):
                return frame

    def subscribe(self, chan, auth=None, channel_data=None):
        data = {"channel": chan}
        if auth is not None:
            data["auth"] = auth
        if channel_data is not None:
            data["channel_data"] = channel_data
        self.send("pusher:subscribe", data)
        return self.expect("pusher_internal:subscription_succeeded", chan)

    def close(self):
        self.ws.close()


def event_data(frame):
    """`data` of a client event frame is a JSON string holding the SDK's JSON-encoded data."""
    assert isinstance(frame["data"], str), frame
    return json.loads(frame["data"])


def presence_subscribe(sock, chan, user_id, name):
    auth = client.authenticate(
        channel=chan,
        socket_id=sock.socket_id,
        custom_data={"user_id": user_id, "user_info": {"name": name}},
    )
    # json.dumps: '{"user_id": "7", "user_info": {"name": "Py"}}', with the spaces; the server
    # must check the signature over these exact bytes.
    assert ": " in auth["channel_data"], auth
    return sock.subscribe(chan, auth=auth["auth"], channel_data=auth["channel_data"])


# --- the checks ----------------------------------------------------------------------------


def check_trigger_reaches_subscriber():
    """trigger() to one public channel reaches a websockets subscriber"""
    chan = channel("orders")
    sock = Socket()
    try:
        sock.subscribe(chan)
        result = client.trigger(chan, "order.created", {"id": 1})
        assert result == {} or isinstance(result, dict), result
        frame = sock.expect("order.created", chan)
        assert event_data(frame) == {"id": 1}, frame
    finally:
        sock.close()


def check_trigger_several_channels():
    """trigger() to three channels reaches each of them"""
    chans = [channel("multi-%d" % i) for i in range(3)]
    sock = Socket()
    try:
        for chan in chans:
            sock.subscribe(chan)
        client.trigger(chans, "fanned", {"n": 3})
        seen = set()
        deadline = time.monotonic() + WAIT
        while seen != set(chans):
            frame = sock.next_frame(deadline)
            if frame.get("event") == "fanned":
                assert event_data(frame) == {"n": 3}, frame
                seen.add(frame["channel"])
    finally:
        sock.close()


def check_trigger_excludes_socket_id():
    """trigger(socket_id=own) is not delivered to that socket (a marker event fences it)"""
    chan = channel("exclude")
    sock = Socket()
    try:
        sock.subscribe(chan)
        client.trigger(chan, "excluded", {"x": 1}, socket_id=sock.socket_id)
        client.trigger(chan, "marker", {"x": 2})
        frame = sock.next_frame()
        assert frame.get("event") == "marker", "first frame is %s, not the marker" % frame
    finally:
        sock.close()


def check_trigger_batch():
    """trigger_batch() with two events on two channels delivers both"""
    a, b = channel("batch-a"), channel("batch-b")
    sock = Socket()
    try:
        sock.subscribe(a)
        sock.subscribe(b)
        result = client.trigger_batch([
            {"channel": a, "name": "first", "data": {"i": 1}},
            {"channel": b, "name": "second", "data": {"i": 2}},
        ])
        assert isinstance(result, dict), result
        assert event_data(sock.expect("first", a)) == {"i": 1}
        assert event_data(sock.expect("second", b)) == {"i": 2}
    finally:
        sock.close()


def check_channels_info():
    """channels_info(prefix_filter='presence-', attributes=['user_count']) (a GET with body_md5)"""
    chan = channel("presence-list")
    other = channel("public-list")
    sock = Socket()
    try:
        presence_subscribe(sock, chan, "11", "Lister")
        sock.subscribe(other)
        result = client.channels_info(prefix_filter="presence-", attributes=["user_count"])
        assert isinstance(result.get("channels"), dict), result
        assert result["channels"].get(chan) == {"user_count": 1}, result
        assert other not in result["channels"], result
        assert all(name.startswith("presence-") for name in result["channels"]), result
    finally:
        sock.close()


def check_channel_info():
    """channel_info(channel, ['subscription_count']) (a GET with body_md5)"""
    chan = channel("info")
    sock = Socket()
    try:
        sock.subscribe(chan)
        result = client.channel_info(chan, ["subscription_count"])
        assert result.get("occupied") is True, result
        assert result.get("subscription_count") == 1, result
    finally:
        sock.close()
    # Vacated: the channel is unoccupied (the server may take a moment to see the close).
    deadline = time.monotonic() + WAIT
    while True:
        result = client.channel_info(chan)
        if result.get("occupied") is False:
            break
        assert time.monotonic() < deadline, "still occupied after close: %s" % result
        time.sleep(0.05)


def check_presence_with_sdk_auth():
    """presence subscription signed by authenticate(custom_data=...), then users_info() lists it"""
    chan = channel("presence-room")
    sock = Socket()
    try:
        frame = presence_subscribe(sock, chan, "7", "Py")
        presence = json.loads(frame["data"])["presence"]
        assert presence["ids"] == ["7"], presence
        assert presence["hash"]["7"] == {"name": "Py"}, presence
        result = client.users_info(chan)
        assert result == {"users": [{"id": "7"}]}, result
    finally:
        sock.close()


def check_signin_and_terminate():
    """authenticate_user() for pusher:signin, then terminate_user_connections() closes it with 4009"""
    user_id = "py-user-" + RUN
    sock = Socket()
    try:
        auth = client.authenticate_user(sock.socket_id, {"id": user_id, "name": "Py"})
        assert ": " in auth["user_data"], auth
        sock.send("pusher:signin", {"auth": auth["auth"], "user_data": auth["user_data"]})
        frame = sock.expect("pusher:signin_success")
        # Documented as {"user_data": String}, an object; a JSON string of it would do too.
        data = frame["data"] if isinstance(frame["data"], dict) else json.loads(frame["data"])
        assert data["user_data"] == auth["user_data"], frame
        result = client.terminate_user_connections(user_id)
        assert isinstance(result, dict), result
        deadline = time.monotonic() + WAIT
        try:
            while True:
                sock.next_frame(deadline)
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
            assert code == 4009, "closed with %s, not 4009" % code
    finally:
        sock.close()


def check_wrong_secret():
    """a wrong secret gives pusher.errors.PusherBadAuth (trigger and channels_info)"""
    bad = pusher.Pusher(APP_ID, KEY, SECRET + "-wrong", host=HOST, port=PORT, ssl=False)
    for call in (lambda: bad.trigger(channel("bad"), "e", {}), lambda: bad.channels_info()):
        try:
            call()
        except pusher.errors.PusherBadAuth:
            continue
        raise AssertionError("no PusherBadAuth")


CHECKS = [
    check_trigger_reaches_subscriber,
    check_trigger_several_channels,
    check_trigger_excludes_socket_id,
    check_trigger_batch,
    check_channels_info,
    check_channel_info,
    check_presence_with_sdk_auth,
    check_signin_and_terminate,
    check_wrong_secret,
]


def main():
    print("pusher %s against %s (app %s)" % (pusher.version.VERSION, url.geturl(), APP_ID))
    passed = failed = 0
    for check in CHECKS:
        started = time.monotonic()
        try:
            check()
        except Exception as error:  # noqa: BLE001 - a check's failure of any kind is reported
            failed += 1
            print("not ok - %s (%.2fs)" % (check.__doc__, time.monotonic() - started))
            detail = "".join(traceback.format_exception_only(type(error), error)).strip()
            print("  # " + detail.replace("\n", "\n  # "))
        else:
            passed += 1
            print("ok - %s (%.2fs)" % (check.__doc__, time.monotonic() - started))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
