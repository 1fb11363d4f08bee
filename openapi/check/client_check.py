"""Drives the server through a client generated from openapi/openapi.json by
openapi-python-client: publish an event, then read its status until it is delivered."""

import base64
import os
import sys
import time

from comnestor_realtime_api_client import AuthenticatedClient
from comnestor_realtime_api_client.api.events import get_event, list_events, publish_event
from comnestor_realtime_api_client.models import Accepted, EventRecord, EventStatus, Problem, PublishRequest

url = os.environ["COMNESTOR_URL"]
credentials = f"{os.environ['COMNESTOR_KEY']}:{os.environ['COMNESTOR_SECRET']}"
token = base64.b64encode(credentials.encode()).decode()
client = AuthenticatedClient(base_url=f"{url}/api", token=token, prefix="Basic")


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


body = PublishRequest(
    event="App\\Events\\OrderShipped",
    channels=["orders", "audit"],
    data={"order": 42, "items": ["a", "b"]},
)
response = publish_event.sync_detailed(client=client, body=body, idempotency_key="generated-client-1")
if response.status_code != 202 or not isinstance(response.parsed, Accepted):
    fail(f"publish answered {response.status_code}: {response.content!r}")
accepted = response.parsed
print(f"published {accepted.id} ({accepted.status.value}), status at {accepted.status_url}")

deadline = time.monotonic() + 20
while True:
    record = get_event.sync(client=client, id=accepted.id)
    if not isinstance(record, EventRecord):
        fail(f"get_event answered {record!r}")
    if record.status == EventStatus.DELIVERED:
        break
    if time.monotonic() > deadline:
        fail(f"event still {record.status.value} after 20 s")
    time.sleep(0.05)

if record.channels != ["audit", "orders"] or record.event != "App\\Events\\OrderShipped":
    fail(f"unexpected record {record.to_dict()}")
if record.stages.acknowledged_at is None or record.attempts != 1:
    fail(f"stages not recorded: {record.to_dict()}")
print(f"delivered after {record.stages.acknowledged_at - record.stages.received_at} ms")

bad = publish_event.sync_detailed(client=client, body=PublishRequest(event="", channel="orders", data=1))
if bad.status_code != 422 or not isinstance(bad.parsed, Problem) or "`event`" not in bad.parsed.detail:
    fail(f"a bad event name answered {bad.status_code}: {bad.content!r}")

page = list_events.sync(client=client, channel="orders", limit=10)
if page is None or isinstance(page, Problem) or accepted.id not in [e.id for e in page.events]:
    fail(f"list_events does not show the event: {page!r}")
print("generated client: publish, status, errors and list work")
