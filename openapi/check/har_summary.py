"""Summarizes what schemathesis got back (its HAR report), per operation of the spec, and
fails when the run did not really exercise the API: an operation that never answered with
success, or rate limiting (429) answering so often that it may have hidden other answers.

    python3 har_summary.py schemathesis.har openapi.json
"""

import collections
import json
import sys
import urllib.parse

# More 429s than this share of an operation's answers means the fuzzer mostly met the rate
# limiter, not the handler.
MAX_RATE_LIMITED = 0.05


def operations(spec):
    """(method, template segments, label) for every operation under the spec's server."""
    base = spec.get("servers", [{}])[0].get("url", "").rstrip("/")
    for path, item in spec["paths"].items():
        for method in item:
            segments = (base + path).strip("/").split("/")
            yield method.upper(), segments, f"{method.upper()} {path}"


def match(ops, method, url):
    segments = urllib.parse.urlsplit(url).path.strip("/").split("/")
    for op_method, template, label in ops:
        if op_method != method or len(template) != len(segments):
            continue
        if all(t.startswith("{") or t == s for t, s in zip(template, segments)):
            return label
    return None


def main(har_path, spec_path):
    with open(spec_path) as f:
        spec = json.load(f)
    with open(har_path) as f:
        entries = json.load(f)["log"]["entries"]
    ops = list(operations(spec))
    counts = collections.defaultdict(collections.Counter)
    for entry in entries:
        label = match(ops, entry["request"]["method"], entry["request"]["url"])
        counts[label or "(undeclared method or path)"][entry["response"]["status"]] += 1

    problems = []
    print(f"{len(entries)} requests; answers per operation:")
    for label, statuses in sorted(counts.items()):
        total = sum(statuses.values())
        shown = ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items()))
        print(f"  {label:40} {total:5}  ({shown})")
        if any(s >= 500 for s in statuses):
            problems.append(f"{label} answered 5xx")
        if statuses[429] > MAX_RATE_LIMITED * total:
            problems.append(
                f"{label}: {statuses[429]} of {total} answers were 429; the rate limit hid "
                "the rest (raise COMNESTOR_APP_INTAKE_RATE for this run)"
            )
    for _, _, label in ops:
        if label in counts and not any(200 <= s < 300 for s in counts[label]):
            problems.append(f"{label} never answered with success")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
