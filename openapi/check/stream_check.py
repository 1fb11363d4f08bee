"""Checks GET /api/stream, which fuzz.sh leaves out (its Server-Sent Events never end):
it answers a missing credential with the declared problem document, and with credentials it
streams the metadata of each accepted event, as the spec's EventMetadata says, filtered by
channel.

    COMNESTOR_URL=... COMNESTOR_APP_KEY=... COMNESTOR_APP_SECRET=... python3 stream_check.py

Prints `ok - ...` or `not ok - ...` per check; exits 1 when any failed.
"""

import json
import os
import pathlib
import queue
import sys
import threading
import time
import uuid

import httpx

SPEC = json.loads((pathlib.Path(__file__).parent.parent / "openapi.json").read_text())
URL = os.environ["COMNESTOR_URL"].rstrip("/") + "/api"
AUTH = httpx.BasicAuth(os.environ["COMNESTOR_APP_KEY"], os.environ["COMNESTOR_APP_SECRET"])
PATIENCE = 10.0
TYPES = {"string": str, "integer": int, "array": list, "object": dict, "boolean": bool}

failed = 0


def check(name, problems):
    global failed
    if problems:
        failed += 1
        print(f"not ok - {name}")
        for problem in problems:
            print(f"    {problem}")
    else:
        print(f"ok - {name}")


def schema(name):
    return SPEC["components"]["schemas"][name]


def of_type(value, type_):
    if type_ is None:
        return True
    # bool is an int in Python, but not an integer in JSON.
    return isinstance(value, TYPES[type_]) and (type_ == "boolean" or not isinstance(value, bool))


def mismatches(value, name):
    """Where `value` breaks the spec's object schema `name` (required, types, no extras)."""
    s = schema(name)
    if not isinstance(value, dict):
        return [f"{name}: not an object: {value!r}"]
    found = [f"{name}: `{k}` is missing" for k in s.get("required", []) if k not in value]
    for key, item in value.items():
        prop = s["properties"].get(key)
        if prop is None:
            found.append(f"{name}: `{key}` is not in the schema")
        elif not of_type(item, prop.get("type")):
            found.append(f"{name}: `{key}` is {item!r}, not {prop['type']}")
    return found


def declared(status, content_type):
    responses = SPEC["paths"]["/stream"]["get"]["responses"]
    return content_type in responses.get(str(status), {}).get("content", {})


def publish(http, channel, event, data):
    response = http.post(f"{URL}/events", json={"channel": channel, "event": event, "data": data})
    if response.status_code != 202:
        raise RuntimeError(f"publish answered {response.status_code}: {response.text}")
    return response.json()["id"]


def unauthenticated():
    response = httpx.get(f"{URL}/stream", timeout=PATIENCE)
    content_type = response.headers.get("content-type", "").split(";")[0]
    problems = []
    if response.status_code != 401:
        problems.append(f"answered {response.status_code}, not 401")
    if not declared(response.status_code, content_type):
        problems.append(f"{response.status_code} {content_type} is not declared for GET /stream")
    if content_type == "application/problem+json":
        problems += mismatches(response.json(), "Problem")
    check("GET /api/stream without credentials: a declared 401 problem document", problems)


def streamed():
    """Opens the stream for one channel, publishes to another channel and then to it, and
    expects only the second event's metadata."""
    run = uuid.uuid4().hex[:12]
    watched, other = f"openapi-stream-{run}", f"openapi-other-{run}"
    lines = queue.Queue()
    problems = []
    with httpx.Client(auth=AUTH, timeout=PATIENCE) as http:
        with http.stream("GET", f"{URL}/stream", params={"channel": watched}) as response:
            content_type = response.headers.get("content-type", "").split(";")[0]
            if response.status_code != 200 or not declared(200, content_type):
                check(
                    "GET /api/stream streams event metadata",
                    [f"answered {response.status_code} {content_type}: {response.read()!r}"],
                )
                return

            def read():
                try:
                    for line in response.iter_lines():
                        lines.put(line)
                except Exception as error:  # the stream is closed when the check ends
                    lines.put(error)

            threading.Thread(target=read, daemon=True).start()
            publish(http, other, "ignored", "x")
            data = {"run": run, "text": "héllo"}
            id = publish(http, watched, "openapi.stream", data)
            metadata = None
            deadline = time.monotonic() + PATIENCE
            while metadata is None and time.monotonic() < deadline:
                try:
                    line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if isinstance(line, Exception):
                    problems.append(f"the stream broke: {line!r}")
                    break
                if line.startswith("data:"):
                    metadata = json.loads(line[len("data:"):])
            if metadata is None:
                problems.append(f"no event within {PATIENCE} s")
            else:
                problems += mismatches(metadata, "EventMetadata")
                if metadata.get("id") != id:
                    problems.append(f"the first event is {metadata}, not {id} (the channel filter?)")
                if metadata.get("channels") != [watched] or metadata.get("event") != "openapi.stream":
                    problems.append(f"wrong channels or event: {metadata}")
                if metadata.get("size") != len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()):
                    problems.append(f"size {metadata.get('size')} is not the data's byte length")
    check("GET /api/stream streams the metadata of accepted events, filtered by channel", problems)


def main():
    unauthenticated()
    streamed()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
