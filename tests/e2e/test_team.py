"""Run for a team: who may send and who may read (issue 11), with a token file.

The stack's router, Beater and Tailor are restarted with ``ESTROM_TOKENS`` for this module, and
without it after. Every client is a real one with right and wrong credentials: treq as a shipper
(bearer, basic auth, Elasticsearch API key), Tailor's stream, autobahn sessions over both of the
router's transports, ``estrom tail``, and ``estrom token`` itself.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallOptions
from playwright.sync_api import expect
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread

from dev.stack import ROOT, Stack
from estrom import api, tokens
from estrom.clients import (
    HttpStream,
    ProcessLines,
    eventually,
    get,
    http,
    post,
    scrape,
    subscribers,
    wamp_attempt,
    wamp_refusal,
    wamp_session,
)
from tests.conftest import _STORED, STORE
from tests.router.test_page import browser, page, tail  # noqa: F401 (fixtures)
from tests.shippers import PROGRAM, Shipper, syslog_lines
from tests.shippers.test_rsyslog import rsyslogd

# Who may do what does not depend on the engine: run on one.
pytestmark = pytest.mark.parametrize("stack", ["opensearch"], indirect=True)

ESTROM = str(Path(sys.executable).parent / "estrom")


ALL = '{"match_all": {}}'


async def _run(argv: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a command to its end, off the reactor."""
    return await deferToThread(
        subprocess.run, argv, check=False, capture_output=True, text=True, timeout=60, env=env, cwd=ROOT
    )


@dataclass
class Team:
    stack: Stack
    path: Path
    secrets: dict[str, str]  # token by name
    mine: str  # an index alice may read and the shipper may send to
    theirs: str  # one bob may read, and the shipper may send to
    foreign: str  # one nobody may read or send to

    def bearer(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secrets[name]}"}

    def ticket(self, name: str) -> dict:
        return {"ticket": {"authid": name, "ticket": self.secrets[name]}}


def _restart(stack: Stack) -> None:
    for name in ("tailor", "beater", "router"):
        stack.stop(name)
    stack.start_router()
    stack.start_beater(**(STORE if _STORED.get(id(stack)) else {}))
    stack.start_tailor()


@pytest.fixture(scope="module")
def team(stack):
    run = uuid.uuid4().hex[:8]
    secrets = {name: tokens.new_token() for name in ("tailor", "shipper", "alice", "bob", "prometheus")}
    path = stack.workdir / "tokens.toml"
    path.write_text(
        tokens.entry("tailor", secrets["tailor"], read=["*"])
        + tokens.entry("shipper", secrets["shipper"], send=["team-*"])
        + tokens.entry("alice", secrets["alice"], read=["team-a-*"])
        + tokens.entry("bob", secrets["bob"], read=["team-b-*"])
        + tokens.entry("prometheus", secrets["prometheus"], read=["*"])
    )
    before = stack.env
    stack.env = {**before, "ESTROM_TOKENS": str(path), "ESTROM_TAILOR_TOKEN": secrets["tailor"]}
    _restart(stack)
    yield Team(stack, path, secrets, f"team-a-{run}", f"team-b-{run}", f"other-{run}")
    stack.env = before
    _restart(stack)


def _basic(name: str, secret: str, scheme: str = "Basic") -> dict[str, str]:
    return {"Authorization": f"{scheme} " + base64.b64encode(f"{name}:{secret}".encode()).decode()}


# --- who may send -------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_sender_without_a_valid_token_gets_401_and_nothing_is_published(team):
    beater = team.stack.beater_url
    stream = await HttpStream.open(team.stack.tailor_url, team.bearer("alice"), i=team.mine, q=ALL)
    await stream.wait_for_head()
    wrong = [
        {},
        {"Authorization": "Bearer " + tokens.new_token()},
        {"Authorization": "Bearer"},
        {"Authorization": "Token " + team.secrets["shipper"]},  # an unknown scheme
        _basic("alice", team.secrets["shipper"]),  # the right token under another's name
        _basic("shipper", "x"),
        {"Authorization": "Basic !!notbase64"},
    ]
    for headers in wrong:
        status, answer = await post(f"{beater}/api/v0.1/docs/{team.mine}", [{"n": 1}], headers=headers)
        assert status == 401, headers
        assert "token" in answer["error"]
        status, answer = await post(
            f"{beater}/_bulk",
            b'{"index": {"_index": "%s"}}\n{"n": 2}\n' % team.mine.encode(),
            "application/x-ndjson",
            headers=headers,
        )
        assert status == 401, headers
    response = await _raw_get(f"{beater}/")
    assert response.code == 401
    assert b"Bearer" in response.headers.getRawHeaders(b"WWW-Authenticate")[0]
    # The stream saw nothing; a good request after all of them is the first hit.
    status, _ = await post(f"{beater}/api/v0.1/docs/{team.mine}", [{"n": 3}], headers=team.bearer("shipper"))
    assert status == 200
    hits = await stream.wait_for_hits(1)
    assert [hit["_source"] for hit in hits] == [{"n": 3}]
    stream.close()


async def _raw_get(url: str, headers: dict | None = None):
    response = await http.get(url, headers=headers)
    await response.content()
    return response


@pytest_twisted.ensureDeferred
async def test_a_sender_token_is_taken_as_bearer_basic_auth_and_api_key(team):
    stream = await HttpStream.open(team.stack.tailor_url, team.bearer("alice"), i=team.mine, q=ALL)
    await stream.wait_for_head()
    shipper = team.secrets["shipper"]
    url = f"{team.stack.beater_url}/api/v0.1/docs/{team.mine}"
    for n, headers in enumerate(
        [team.bearer("shipper"), _basic("shipper", shipper), _basic("shipper", shipper, "ApiKey")]
    ):
        status, answer = await post(url, [{"n": n}], headers=headers)
        assert (status, answer["accepted"]) == (200, 1), headers
    # What Elasticsearch shippers ask first, with their credentials.
    response = await _raw_get(f"{team.stack.beater_url}/", _basic("shipper", shipper))
    assert response.code == 200
    hits = await stream.wait_for_hits(3)
    assert sorted(hit["_source"]["n"] for hit in hits) == [0, 1, 2]
    stream.close()


@pytest_twisted.ensureDeferred
async def test_a_sender_may_send_only_to_its_index_patterns(team):
    beater = team.stack.beater_url
    status, answer = await post(
        f"{beater}/api/v0.1/docs/{team.foreign}", [{"n": 1}], headers=team.bearer("shipper")
    )
    assert status == 403
    assert answer["error"] == f"the token 'shipper' may not send to the index '{team.foreign}'"
    # A reader's token is not a sender's.
    status, _ = await post(f"{beater}/api/v0.1/docs/{team.mine}", [{"n": 1}], headers=team.bearer("alice"))
    assert status == 403
    # _bulk: refused item by item, as the engine refuses an index a user may not write.
    body = b"".join(
        b'{"index": {"_index": "%s"}}\n{"n": %d}\n' % (index.encode(), n)
        for n, index in enumerate([team.mine, team.foreign, team.theirs])
    )
    status, answer = await post(f"{beater}/_bulk", body, "application/x-ndjson", team.bearer("shipper"))
    assert status == 200
    assert answer["errors"] is True
    items = [item["index"] for item in answer["items"]]
    assert [item["status"] for item in items] == [201, 403, 201]
    assert items[1]["error"]["type"] == "security_exception"


# --- who may read: Tailor -----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_reader_needs_a_token_and_reads_only_its_index_patterns(team):
    tailor = team.stack.tailor_url
    status, answer = await get(f"{tailor}/api/v0.1/docs", {"i": team.mine, "q": ALL})
    assert status == 401
    status, _ = await get(
        f"{tailor}/api/v0.1/docs", {"i": team.mine, "q": ALL}, {"Authorization": "Bearer nope"}
    )
    assert status == 401
    status, answer = await get(f"{tailor}/api/v0.1/docs", {"i": team.theirs, "q": ALL}, team.bearer("alice"))
    assert status == 403
    assert answer["error"] == f"the token 'alice' may not read the index '{team.theirs}'"
    # Bob's stream: alice may not open it by its ID either.
    bobs = await HttpStream.open(tailor, team.bearer("bob"), i=team.theirs, q="level:error")
    sid = await bobs.wait_for_head()
    status, answer = await get(f"{tailor}/api/v0.1/docs", {"s": sid}, team.bearer("alice"))
    assert status == 403
    assert team.theirs not in answer["error"] and "level" not in answer["error"]
    # Basic auth reads too (a browser's own prompt sends it).
    status, _ = await post(
        f"{team.stack.beater_url}/api/v0.1/docs/{team.theirs}",
        [{"level": "error"}],
        headers=team.bearer("shipper"),
    )
    assert status == 200
    again = await HttpStream.open(tailor, _basic("bob", team.secrets["bob"]), s=sid, limit=1)
    await again.wait_for_head()
    hits = await bobs.wait_for_hits(1)
    assert hits[0]["_source"] == {"level": "error"}
    bobs.close()
    again.close()


@pytest_twisted.ensureDeferred
async def test_a_tailor_whose_own_token_reads_less_than_its_client_answers_500_and_logs_why(team):
    # Tailor checks its client's token, then registers with its own: when Beater refuses that,
    # the server is misconfigured (a 403 would blame the client, who may read the index).
    stack = team.stack
    # Without ESTROM_TAILOR_SECRET, Tailor joins the router with its token, as a reader.
    url = stack.start_tailor(
        "tailor-narrow",
        port=stack.ports.tailor + 8,
        ESTROM_TAILOR_SECRET="",
        ESTROM_TAILOR_TOKEN=team.secrets["alice"],
    )
    try:
        status, answer = await get(f"{url}/api/v0.1/docs", {"i": team.theirs, "q": ALL}, team.bearer("bob"))
        assert status == 500
        assert "misconfiguration" in answer["error"] and "'alice' may not read" in answer["error"]
        assert "ESTROM_TAILOR_TOKEN must read every index" in stack.log_path("tailor-narrow").read_text()
    finally:
        stack.stop("tailor-narrow")


@pytest_twisted.ensureDeferred
async def test_health_answers_without_a_token(team):
    for url in (team.stack.beater_url, team.stack.tailor_url):
        assert (await get(f"{url}/healthz"))[0] == 200
        status, answer = await get(f"{url}/readyz")
        assert (status, answer["ready"]) == (200, True)


# --- who may read: the router -------------------------------------------------------------------


@pytest.fixture(params=["websocket", "rawsocket"])
def router_url(team, request):
    return team.stack.router_url if request.param == "websocket" else team.stack.router_rawsocket_url


@pytest_twisted.ensureDeferred
async def test_the_router_admits_readers_by_token_only(team, router_url):
    reason, message = await wamp_refusal(router_url)
    assert reason == api.NOT_AUTHENTICATED
    assert "token" in message
    for authentication in (
        {"ticket": {"authid": "alice", "ticket": tokens.new_token()}},
        {"ticket": {"authid": "bob", "ticket": team.secrets["alice"]}},
        {"ticket": {"authid": "beater", "ticket": team.secrets["alice"]}},
    ):
        reason, _ = await wamp_refusal(router_url, authentication)
        assert reason == api.NOT_AUTHENTICATED, authentication
    session = await wamp_session(router_url, team.ticket("alice"))
    assert (session.authid, session.authrole) == ("alice", "client")
    session.leave()


@pytest_twisted.ensureDeferred
async def test_a_wamp_reader_registers_looks_up_and_subscribes_only_within_its_patterns(team, router_url):
    alice = await wamp_session(router_url, team.ticket("alice"))
    bob = await wamp_session(router_url, team.ticket("bob"))
    try:
        mine = await alice.call(api.REGISTER, team.mine, "level:error")
        theirs = await bob.call(api.REGISTER, team.theirs, "level:error")
        for call in (
            alice.call(api.REGISTER, team.theirs, "level:error"),
            alice.call(api.REGISTER, team.foreign, "level:error"),
            alice.call(api.LOOKUP, theirs),
        ):
            with pytest.raises(ApplicationError) as refused:
                await call
            assert refused.value.error == api.NOT_AUTHORIZED
        assert (await alice.call(api.LOOKUP, mine))["index"] == team.mine
        with pytest.raises(ApplicationError) as refused:
            await alice.subscribe(lambda *hits: None, api.topic(theirs))
        assert refused.value.error == "wamp.error.not_authorized"
        hits: list = []
        arrived: Deferred = Deferred()

        def received(*batch):
            hits.extend(batch)
            if not arrived.called:
                arrived.callback(None)

        await alice.subscribe(received, api.topic(mine))
        status, _ = await post(
            f"{team.stack.beater_url}/api/v0.1/docs/{team.mine}",
            [{"level": "error", "n": 1}],
            headers=team.bearer("shipper"),
        )
        assert status == 200
        await arrived.addTimeout(20, reactor)
        assert [hit["_source"] for hit in hits] == [{"level": "error", "n": 1}]
    finally:
        alice.leave()
        bob.leave()


@pytest_twisted.ensureDeferred
async def test_a_reader_cannot_pass_for_another_caller_with_forward_for(team, router_url):
    # crossbar discloses a call's first "forward_for" entry as its caller (router-to-router
    # links): a reader naming Beater's role, or Tailor's token, must not get their rights.
    alice = await wamp_session(router_url, team.ticket("alice"))
    try:
        for forged in (
            {"session": 1, "authid": "beater", "authrole": "beater"},
            {"session": 1, "authid": "tailor", "authrole": "client"},
            {"session": 1, "authid": "x", "authrole": "authorizer"},
        ):
            for call in (
                alice.call(
                    api.REGISTER, team.theirs, "level:error", options=CallOptions(forward_for=[forged])
                ),
                alice.call(api.LOOKUP, "0123456789abcdef", options=CallOptions(forward_for=[forged])),
            ):
                with pytest.raises(ApplicationError) as refused:
                    await call
                assert refused.value.error == "wamp.error.not_authorized", forged
        # Her own calls still go through.
        await alice.call(api.REGISTER, team.mine, "level:error")
    finally:
        alice.leave()


# --- the token file -----------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_tokens_added_and_removed_with_estrom_token_work_within_seconds(team):
    environment = {**os.environ, "ESTROM_TOKENS": str(team.path)}
    added = await _run([ESTROM, "token", "add", "carol", "--read", "team-*"], environment)
    assert added.returncode == 0, added.stderr
    carol = added.stdout.strip()
    assert "not shown again" in added.stderr
    assert carol not in team.path.read_text()  # only its digest is kept
    listed = await _run([ESTROM, "token", "list"], environment)
    assert "carol\tsend: -\tread: team-*" in listed.stdout.splitlines()
    url = f"{team.stack.tailor_url}/api/v0.1/docs"
    headers = {"Authorization": f"Bearer {carol}"}

    async def tailor_answers(status: int) -> bool:
        return (await get(url, {"s": "0", "limit": "1"}, headers))[0] == status

    await eventually(lambda: tailor_answers(404), what="Tailor taking the new token")  # known, no ID 0
    session = await eventually(
        lambda: _joins(team.stack.router_url, {"ticket": {"authid": "carol", "ticket": carol}}),
        what="the router taking the new token",
    )
    left: Deferred = Deferred()
    session.on("leave", lambda _, details: left.callback(details.reason) if not left.called else None)
    stream = await HttpStream.open(team.stack.tailor_url, headers, i=team.mine, q="level:carol")
    await stream.wait_for_head()
    assert (await _run([ESTROM, "token", "remove", "carol"], environment)).returncode == 0
    # What was opened with it is cut off: the stream ends saying why, the session is closed.
    ended = await stream.wait_for_end()
    assert ended["error"] == "the token was removed or changed"
    assert await left.addTimeout(20, reactor) == api.NOT_AUTHENTICATED
    await eventually(lambda: tailor_answers(401), what="Tailor refusing the removed token")

    async def router_refuses() -> bool:
        outcome = await wamp_attempt(team.stack.router_url, {"ticket": {"authid": "carol", "ticket": carol}})
        if not isinstance(outcome, tuple):
            outcome.leave()
            return False
        return outcome[0] == api.NOT_AUTHENTICATED

    await eventually(router_refuses, what="the router refusing the removed token")


async def _joins(router_url: str, authentication: dict):
    outcome = await wamp_attempt(router_url, authentication)
    return None if isinstance(outcome, tuple) else outcome


# --- estrom tail --------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_estrom_tail_reads_with_a_token_and_says_when_it_has_none(team):
    def command(index: str) -> list[str]:
        return [ESTROM, "tail", "--url", team.stack.tailor_url, "-i", index, "n:7", "--limit", "1", "--json"]

    refused = await _run(command(team.mine))
    assert refused.returncode == 2
    assert "needs a token" in refused.stderr
    refused = await _run(command(team.theirs), {**os.environ, "ESTROM_TOKEN": team.secrets["alice"]})
    assert refused.returncode == 2
    assert "may not read" in refused.stderr
    tail = ProcessLines()
    process = reactor.spawnProcess(
        tail, ESTROM, [*command(team.mine), "--token", team.secrets["alice"]], env=None
    )
    alice = await wamp_session(team.stack.router_url, team.ticket("alice"))
    meta = await wamp_session(
        team.stack.router_url, {"ticket": {"authid": "beater", "ticket": team.stack.secret}}
    )
    try:
        sid = await alice.call(api.REGISTER, team.mine, "n:7")  # the command's query, so its ID
        await eventually(lambda: subscribers(meta, sid), what="estrom tail's stream subscribed")
        status, _ = await post(
            f"{team.stack.beater_url}/api/v0.1/docs/{team.mine}", [{"n": 7}], headers=team.bearer("shipper")
        )
        assert status == 200
        await tail.wait_for(lambda: tail.ended, what="estrom tail ending after its one hit")
        assert tail.status == 0, tail.stderr
        assert json.loads(tail.lines[0])["_source"] == {"n": 7}
    finally:
        if not tail.ended:
            process.signalProcess("KILL")
        alice.leave()
        meta.leave()


# --- start-up -----------------------------------------------------------------------------------


def _start(module: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ESTROM_")}
    return subprocess.run(
        [sys.executable, "-m", module],
        check=False,
        env={**environment, "ESTROM_BEATER_SECRET": "x", **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_a_service_without_tokens_does_not_listen_beyond_loopback(team):
    for module, variable in (("beater", "ESTROM_BEATER_HOST"), ("tailor", "ESTROM_TAILOR_HOST")):
        ended = _start(module, **{variable: "0.0.0.0"})
        assert ended.returncode != 0
        assert "without ESTROM_TOKENS" in ended.stdout + ended.stderr


def test_tailor_with_tokens_needs_a_token_of_its_own(team):
    ended = _start("tailor", ESTROM_TOKENS=str(team.path))
    assert ended.returncode != 0
    assert "ESTROM_TAILOR_TOKEN must be a token" in ended.stdout + ended.stderr
    ended = _start("beater", ESTROM_TOKENS=str(team.path.with_name("missing.toml")))
    assert ended.returncode != 0
    assert "cannot read the token file" in ended.stdout + ended.stderr


# --- metrics and logs ---------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_metrics_need_a_token_and_count_documents_hits_answers_and_streams(team):
    beater, tailor = team.stack.beater_url, team.stack.tailor_url
    for url in (beater, tailor):
        assert (await get(f"{url}/metrics"))[0] == 401
        # Its counts name indexes: a token that reads only some may not see them.
        status, answer = await get(f"{url}/metrics", headers=team.bearer("alice"))
        assert status == 403 and "reads '*'" in answer["error"]
    index = team.mine + "-metrics"
    stream = await HttpStream.open(tailor, team.bearer("alice"), i=index, q="level:error")
    await stream.wait_for_head()
    before = await scrape(beater, team.bearer("prometheus"))
    for _ in range(3):
        await post(f"{beater}/api/v0.1/docs/{index}", [{"level": "error"}, {"level": "info"}], headers={})
    status, _ = await post(
        f"{beater}/api/v0.1/docs/{index}",
        [{"level": "error"}, {"level": "info"}],
        headers=team.bearer("shipper"),
    )
    assert status == 200
    await stream.wait_for_hits(1)
    after = await scrape(beater, team.bearer("prometheus"))

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert grew("estrom_documents_accepted_total", index=index) == 2
    assert grew("estrom_hits_published_total", index=index) == 1
    assert grew("estrom_http_responses_total", status="401") >= 3
    assert grew("estrom_http_responses_total", status="200") >= 1
    assert grew("estrom_batch_documents_count") >= 1 and grew("estrom_percolation_seconds_count") >= 1
    assert after[("estrom_router_joined", ())] == 1
    assert ("estrom_queue_documents", ()) in after
    # The router's own counts, asked of it when scraped: Beater and Tailor, Tailor's subscription.
    assert after[("estrom_router_sessions", ())] >= 2
    assert after[("estrom_router_subscriptions", ())] >= 1
    streams = await scrape(tailor, team.bearer("prometheus"))
    assert streams[("estrom_streams_open", ())] >= 1
    assert streams[("estrom_hits_sent_total", ())] >= 1
    assert streams[("estrom_streams_total", ())] >= streams[("estrom_streams_open", ())]
    stream.close()


def test_json_logs_are_one_object_per_line(team):
    stack = team.stack
    port = stack.ports.beater + 6
    try:
        stack.start_beater("beater-json", port=port, ESTROM_LOG_FORMAT="json")
    finally:
        stack.stop("beater-json")
    lines = stack.log_path("beater-json").read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line
    assert all(set(record) >= {"time", "level", "logger", "message"} for record in records)
    assert any("Beater joined realm estrom" in record["message"] for record in records)
    assert not any(team.stack.secret in line for line in lines)  # Beater's own secret is masked
    ended = _start("beater", ESTROM_LOG_FORMAT="xml")
    assert ended.returncode != 0
    assert "ESTROM_LOG_FORMAT must be one of text, json" in ended.stdout + ended.stderr


# --- the page -----------------------------------------------------------------------------------


def test_the_page_asks_for_a_token_and_tails_only_what_it_may_read(team, page):  # noqa: F811
    url = f"http://127.0.0.1:{team.stack.ports.router}/"
    page.goto(url)
    expect(page.locator("#sign-in")).to_be_visible()
    expect(page.locator("#sign-in-reason")).to_have_text("this estrom needs a token")
    expect(page.locator("#connection")).to_have_text("needs a token")
    page.fill("#token", tokens.new_token())
    page.click("#sign-in button[type=submit]")
    expect(page.locator("#sign-in-reason")).to_have_text("the token was refused")
    page.fill("#token", team.secrets["alice"])
    page.click("#sign-in button[type=submit]")
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    expect(page.locator("#sign-in")).to_be_hidden()

    page.fill("#index", team.theirs)
    page.fill("#query", "level:page")
    page.click("#new-tail button[type=submit]")
    expect(page.locator("#form-error")).to_contain_text("may not read")
    section = tail(page, team.mine, "level:page")
    _post_sync(team, team.mine, [{"level": "page", "n": 1}])
    expect(section.locator(".docs li")).to_have_count(1)

    # The tab keeps its token: a reload signs in again, and "Sign out" forgets it.
    page.reload()
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    page.click("#sign-out")
    expect(page.locator("#sign-in-reason")).to_have_text("this estrom needs a token")


def _post_sync(team: Team, index: str, documents: list) -> None:
    import urllib.request

    request = urllib.request.Request(
        f"{team.stack.beater_url}/api/v0.1/docs/{index}",
        data=json.dumps(documents).encode(),
        headers={"Content-Type": "application/json", **team.bearer("shipper")},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


# --- a real shipper with credentials ------------------------------------------------------------


def _rsyslog(team: Team, directory: Path, index: str, password: str) -> Shipper:
    directory.mkdir()
    return rsyslogd(directory, team.stack.ports.beater, index, f'uid="shipper" pwd="{password}"')


@pytest_twisted.ensureDeferred
async def test_rsyslog_ships_with_its_basic_auth_credentials_and_a_wrong_password_gets_nothing_in(
    team, tmp_path
):
    right, wrong = team.mine + "-rsyslog", team.mine + "-rsyslog-wrong"
    streams = {}
    for index in (right, wrong):
        streams[index] = await HttpStream.open(
            team.stack.tailor_url, team.bearer("alice"), i=index, q=f"program:{PROGRAM}"
        )
        await streams[index].wait_for_head()
    before = await scrape(team.stack.beater_url, team.bearer("prometheus"))
    shippers = [
        _rsyslog(team, tmp_path / "right", right, team.secrets["shipper"]),
        _rsyslog(team, tmp_path / "wrong", wrong, tokens.new_token()),
    ]
    try:
        for shipper in shippers:
            await shipper.listening()
            await shipper.send(syslog_lines(1000))
        hits = await streams[right].wait_for_hits(1000)
        assert sorted(int(hit["_source"]["message"].strip().removeprefix("seq=")) for hit in hits) == list(
            range(1000)
        )

        async def refused_again() -> bool:
            after = await scrape(team.stack.beater_url, team.bearer("prometheus"))
            key = ("estrom_http_responses_total", (("status", "401"),))
            return after.get(key, 0) - before.get(key, 0) >= 2  # rsyslog asks, and keeps asking

        await eventually(refused_again, timeout=30, what="the wrong password refused")
        assert streams[wrong].hits == []
    finally:
        for shipper in shippers:
            shipper.stop()
        for stream in streams.values():
            stream.close()


# --- with the store (last: Beater restarts with it) ---------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_backlog_and_a_summary_are_read_only_within_the_readers_patterns(team, stored):
    alice = await wamp_session(team.stack.router_url, team.ticket("alice"))
    bob = await wamp_session(team.stack.router_url, team.ticket("bob"))
    try:
        status, _ = await post(
            f"{team.stack.beater_url}/api/v0.1/docs/{team.theirs}",
            [{"level": "secret"}],
            headers=team.bearer("shipper"),
        )
        assert status == 200
        theirs = await bob.call(api.REGISTER, team.theirs, "level:secret")
        assert [hit["_source"] for hit in (await bob.call(api.BACKLOG, theirs, {"last": 5}))["hits"]] == [
            {"level": "secret"}
        ]
        with pytest.raises(ApplicationError) as refused:
            await alice.call(api.BACKLOG, theirs, {"last": 5})
        assert refused.value.error == api.NOT_AUTHORIZED
        # Nor its summary.
        assert (await bob.call(api.SUMMARY, theirs, {"by": ["level"]}))["top"]["level"]["values"] == [
            ["secret", 1]
        ]
        with pytest.raises(ApplicationError) as refused:
            await alice.call(api.SUMMARY, theirs, {"by": ["level"]})
        assert refused.value.error == api.NOT_AUTHORIZED
        # Nor through Tailor.
        status, _ = await get(
            f"{team.stack.tailor_url}/api/v0.1/docs", {"s": theirs, "backlog": "5"}, team.bearer("alice")
        )
        assert status == 403
        status, _ = await get(
            f"{team.stack.tailor_url}/api/v0.1/aggs", {"s": theirs, "since": "1h"}, team.bearer("alice")
        )
        assert status == 403
    finally:
        alice.leave()
        bob.leave()
