"""docs/api.md's curl examples, run in order against a real `automator run --listen`, each
answering what the doc shows after it, so that the doc cannot drift from the API.

An example is a ```sh block holding one curl command; the ```json block that follows it, if
any, is its answer (compared as JSON). The doc's address (127.0.0.1:8080) is the daemon's,
`$KEY` a key with events:write and contacts:write, `$PRIVACY_KEY` one with contacts:erase.
tests/test_docs_commands.py runs the doc's other commands and leaves its curl lines to this.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from automator.web import create_app
from tests import test_api_daemon, test_api_keys
from tests.conftest import REPO, all_messages, utc
from tests.test_api_keys import bearer

DOC = REPO / "docs" / "api.md"
ADDRESS = "127.0.0.1:8080"
start_api, client, make_key = (
    test_api_daemon.start_api,
    test_api_keys.client,
    test_api_keys.make_key,
)  # fixtures
FENCE = re.compile(r"^```\s*(\S*)\s*$")


@dataclass(frozen=True)
class Example:
    line: int
    command: str
    answer: str | None  # the JSON the doc shows after it


def blocks(doc: Path) -> list[tuple[int, str, list[str]]]:
    """(first line, language, lines) of each fenced block."""
    found, language, lines, start = [], None, [], 0
    for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
        if fence := FENCE.match(line):
            if language is None:
                language, lines, start = fence.group(1), [], number + 1
            else:
                found.append((start, language, lines))
                language = None
        elif language is not None:
            lines.append(line)
    return found


def examples(doc: Path) -> list[Example]:
    found = []
    fenced = blocks(doc)
    for index, (line, language, lines) in enumerate(fenced):
        command = " ".join(part.rstrip("\\").strip() for part in lines).strip()
        if language != "sh" or not command.startswith("curl "):
            continue
        following = fenced[index + 1] if index + 1 < len(fenced) else None
        answer = "\n".join(following[2]) if following and following[1] == "json" else None
        found.append(Example(line, command, answer))
    return found


def test_every_endpoint_has_an_example() -> None:
    shown = " ".join(example.command for example in examples(DOC))
    for endpoint in (
        "/v1/events",
        "/v1/contacts",
        "/v1/track",
        "/v1/identify",
        "/v1/batch",
        "/v1/openapi.json",
    ):
        assert f"{ADDRESS}{endpoint}" in shown, endpoint
    assert "-X DELETE" in shown


def test_the_docs_curl_examples_answer_what_the_doc_shows(start_api, cli, tmp_path: Path) -> None:
    api = start_api()
    privacy = cli("keys", "create", "privacy-desk", "--scope", "contacts:erase").output.splitlines()[-1]
    env = {**os.environ, "KEY": api.key, "PRIVACY_KEY": privacy}
    address = api.url.removeprefix("http://")
    wrong = []
    for example in examples(DOC):
        done = subprocess.run(
            ["bash", "-c", example.command.replace(ADDRESS, address)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
        )
        if done.returncode != 0:
            wrong.append(f"docs/api.md:{example.line}: exit {done.returncode}: {done.stderr}")
        elif example.answer is not None and json.loads(done.stdout) != json.loads(example.answer):
            wrong.append(f"docs/api.md:{example.line}: answered {done.stdout.strip()}")
    assert wrong == []


def test_the_openapi_document_describes_every_endpoint_its_bodies_and_the_keys(client) -> None:
    document = client.get("/v1/openapi.json").json()

    operations = {(path, method) for path, item in document["paths"].items() for method in item}
    assert operations == {
        ("/v1/events", "post"),
        ("/v1/contacts", "post"),
        ("/v1/contacts/{email}", "delete"),
        ("/v1/track", "post"),
        ("/v1/identify", "post"),
        ("/v1/batch", "post"),
    }
    refs = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(document)))
    assert refs <= set(document["components"]["schemas"])
    events = document["paths"]["/v1/events"]["post"]
    assert events["requestBody"]["content"]["application/json"]["schema"]["oneOf"] == [
        {"$ref": "#/components/schemas/Event"},
        {"$ref": "#/components/schemas/EventBatch"},
    ]
    assert {"200", "207", "401", "403", "413", "422", "429"} <= set(events["responses"])
    assert set(document["components"]["securitySchemes"]) == {"bearer", "basic"}


def test_the_openapi_document_says_what_a_locale_is(client) -> None:
    schemas = client.get("/v1/openapi.json").json()["components"]["schemas"]
    patterns = {
        schemas[name]["properties"]["locale"]["anyOf"][0].get("pattern")
        for name in ("Contact", "SegmentContext")
    }
    assert patterns == {r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$"}


def test_the_readmes_event_brings_the_reminder_it_promises(client, make_key, cli, store) -> None:
    """The README sends one event over HTTP and says that the abandoned-cart reminder goes out
    an hour later: the event must hold what the reminder's template shows."""
    (example,) = [found for found in examples(REPO / "README.md") if "/v1/events" in found.command]
    sent = re.search(r"-d '(.*)'$", example.command)
    assert sent is not None
    answer = client.post("/v1/events", content=sent.group(1), headers=bearer(make_key("events:write")))
    assert answer.json()["accepted"] == 1

    cli("tick", "--now", "2026-11-20T04:00:00Z")

    assert [(message.rule_id, message.status) for message in all_messages(store)] == [
        ("abandoned_cart", "sent")
    ]


@pytest.mark.parametrize("endpoint", ["/v1/track", "/v1/batch"])
def test_the_docs_segment_cart_brings_a_reminder_that_is_sent(
    project, store, make_key, cli, endpoint
) -> None:
    """docs/api.md sends a Segment `Cart Updated` (alone, and in a batch): with the rules
    shipped, the abandoned-cart reminder it brings an hour later must render and go out. A
    call without a timestamp happens when it arrives: here, mid-morning in Hanoi."""
    (example,) = [found for found in examples(DOC) if f"{ADDRESS}{endpoint}" in found.command]
    sent = re.search(r"-d '(.*)'$", example.command)
    assert sent is not None
    key = make_key("events:write", "contacts:write")
    with TestClient(create_app(project, store, clock=lambda: utc("2026-11-20 03:10"))) as client:
        answer = client.post(endpoint, content=sent.group(1), headers=bearer(key))
    assert answer.json()["accepted"] >= 1

    cli("tick", "--now", "2026-11-20T04:15:00Z")

    assert [(message.rule_id, message.status) for message in all_messages(store)] == [
        ("abandoned_cart", "sent")
    ]
