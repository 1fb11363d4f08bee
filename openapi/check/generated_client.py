"""Generates a Python client from the checked-in openapi/openapi.json with
openapi-python-client, into a temporary directory, and drives a running server with it:
publish an event (HTTP Basic), read its status until it is delivered, list events, page, read
a channel's history, replay, and get the declared problem documents back for errors.

    COMNESTOR_URL=... COMNESTOR_APP_KEY=... COMNESTOR_APP_SECRET=... python3 generated_client.py

Expects openapi-python-client next to this Python (run.sh's venv). A generator that fails or
warns fails the check: that is a bug in the spec, to fix in the poem-openapi annotations.
Prints `ok - ...` or `not ok - ...` per check; exits 1 when any failed.
"""

import base64
import importlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
import traceback
import uuid

SPEC = pathlib.Path(__file__).resolve().parent.parent / "openapi.json"
URL = os.environ["COMNESTOR_URL"].rstrip("/")
KEY = os.environ["COMNESTOR_APP_KEY"]
SECRET = os.environ["COMNESTOR_APP_SECRET"]
PATIENCE = 20.0
PACKAGE = "comnestor_api"

failed = 0


def check(name):
    """Runs the decorated function as a check at once: an exception fails it."""

    def run(fn):
        global failed
        try:
            fn()
            print(f"ok - {name}")
        except Exception:
            failed += 1
            print(f"not ok - {name}")
            for line in traceback.format_exc().rstrip().splitlines():
                print(f"    {line}")
        return fn

    return run


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def generate(out):
    bin_dir = pathlib.Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    result = subprocess.run(
        [str(bin_dir / "openapi-python-client"), "generate", "--path", str(SPEC),
         "--output-path", str(out / PACKAGE), "--meta", "none", "--overwrite"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    output = (result.stdout + result.stderr).strip()
    expect(result.returncode == 0, f"the generator failed ({result.returncode}):\n{output}")
    expect("warning" not in output.lower() and "error" not in output.lower(),
           f"the generator complained about the spec:\n{output}")


def main():
    with tempfile.TemporaryDirectory(prefix="comnestor-client-") as out:
        out = pathlib.Path(out)
        check("openapi-python-client generates a client from the spec, without warnings")(
            lambda: generate(out)
        )
        if failed:
            return 1
        sys.path.insert(0, str(out))
        drive()
    return 1 if failed else 0


def drive():
    api = importlib.import_module(PACKAGE)
    from comnestor_api.api.events import get_event, list_events, publish_event, replay_event
    from comnestor_api.api.history import channel_history
    from comnestor_api.models import (
        Accepted, ChannelHistory, EventPage, EventRecord, EventStatus, Problem, PublishRequest,
    )
    from comnestor_api.types import UNSET

    def client(secret=SECRET):
        token = base64.b64encode(f"{KEY}:{secret}".encode()).decode()
        return api.AuthenticatedClient(base_url=f"{URL}/api", token=token, prefix="Basic",
                                       raise_on_unexpected_status=True, timeout=None)

    http = client()
    run = uuid.uuid4().hex[:12]
    channel = f"openapi-client-{run}"
    state = {}

    def undeclared_fields(model):
        """Fields the server sent that the spec does not declare, at any depth."""
        found = dict(getattr(model, "additional_properties", {}))
        for name in getattr(type(model), "__attrs_attrs__", []):
            value = getattr(model, name.name)
            for item in value if isinstance(value, list) else [value]:
                if hasattr(item, "additional_properties"):
                    found.update(undeclared_fields(item))
        return found

    @check("publishEvent: 202 with the event id, its status URL in Location; a retried Idempotency-Key gives the same event")
    def _():
        body = PublishRequest(event="App\\Events\\OrderShipped", channels=[channel, f"{channel}-b"],
                              data={"order": 42, "items": ["a", "b"]})
        key = f"openapi-{run}"
        response = publish_event.sync_detailed(client=http, body=body, idempotency_key=key)
        expect(response.status_code == 202 and isinstance(response.parsed, Accepted),
               f"{response.status_code}: {response.content!r}")
        accepted = response.parsed
        expect(response.headers.get("location") == accepted.status_url == f"/api/events/{accepted.id}",
               f"Location {response.headers.get('location')!r}, status_url {accepted.status_url!r}")
        again = publish_event.sync(client=http, body=body, idempotency_key=key)
        expect(isinstance(again, Accepted) and again.id == accepted.id, f"the retry gave {again!r}")
        state["id"] = accepted.id

    @check("getEvent: the status goes to delivered, with its stages and attempt log")
    def _():
        deadline = time.monotonic() + PATIENCE
        while True:
            record = get_event.sync(client=http, id=state["id"])
            expect(isinstance(record, EventRecord), f"getEvent gave {record!r}")
            if record.status == EventStatus.DELIVERED or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        expect(record.status == EventStatus.DELIVERED, f"still {record.status} after {PATIENCE} s")
        expect(record.channels == sorted([channel, f"{channel}-b"]), record.channels)
        expect(json.loads(record.data) == {"order": 42, "items": ["a", "b"]}, record.data)
        stages = record.stages
        expect(stages.received_at <= stages.logged_at <= stages.queued_at <= stages.sent_at
               <= stages.acknowledged_at, stages.to_dict())
        expect(record.attempt_log is not UNSET and len(record.attempt_log) == record.attempts >= 1,
               record.to_dict())
        expect(record.replay_of is UNSET, f"replay_of is {record.replay_of!r}")
        expect(not undeclared_fields(record), f"undeclared fields: {undeclared_fields(record)}")

    @check("listEvents: the event is listed; `limit` pages with next_cursor, absent on the last page")
    def _():
        page = list_events.sync(client=http, channel=channel)
        expect(isinstance(page, EventPage), repr(page))
        expect([e.id for e in page.events] == [state["id"]], [e.id for e in page.events])
        expect(page.next_cursor is UNSET, f"next_cursor {page.next_cursor!r} on the only page")
        second = publish_event.sync(client=http, body=PublishRequest(event="second", channel=channel, data="2"))
        expect(isinstance(second, Accepted), repr(second))
        first = list_events.sync(client=http, channel=channel, limit=1)
        expect(isinstance(first, EventPage) and len(first.events) == 1
               and isinstance(first.next_cursor, str), repr(first))
        rest = list_events.sync(client=http, channel=channel, limit=1, cursor=first.next_cursor)
        expect(isinstance(rest, EventPage) and [e.id for e in rest.events] == [second.id], repr(rest))
        expect(not undeclared_fields(page), f"undeclared fields: {undeclared_fields(page)}")

    @check("channelHistory: the channel's events, oldest first")
    def _():
        history = channel_history.sync(client=http, channel=channel)
        expect(isinstance(history, ChannelHistory), repr(history))
        expect(history.channel == channel and history.events[0].id == state["id"]
               and len(history.events) == 2, history.to_dict())

    @check("replayEvent: a new event whose replay_of names the original")
    def _():
        replay = replay_event.sync(client=http, id=state["id"])
        expect(isinstance(replay, Accepted) and replay.id != state["id"], repr(replay))
        record = get_event.sync(client=http, id=replay.id)
        expect(isinstance(record, EventRecord) and record.replay_of == state["id"], repr(record))

    @check("errors are the declared problem documents: 401 wrong secret, 404 unknown event, 422 bad event name")
    def _():
        wrong = get_event.sync_detailed(client=client("not-the-secret"), id=state["id"])
        expect(wrong.status_code == 401 and isinstance(wrong.parsed, Problem)
               and wrong.parsed.status == 401, f"{wrong.status_code}: {wrong.content!r}")
        missing = get_event.sync_detailed(client=http, id=f"no-such-event-{run}")
        expect(missing.status_code == 404 and isinstance(missing.parsed, Problem),
               f"{missing.status_code}: {missing.content!r}")
        bad = publish_event.sync_detailed(client=http, body=PublishRequest(event="", channel=channel, data=1))
        expect(bad.status_code == 422 and isinstance(bad.parsed, Problem) and "`event`" in bad.parsed.detail,
               f"{bad.status_code}: {bad.content!r}")


if __name__ == "__main__":
    sys.exit(main())
