"""Phases ``beaters`` and ``routers``: the batched run with the senders on one and on two Beaters,
and through one router worker, two joined by rlinks, and one behind two proxy workers."""

from __future__ import annotations

import copy
import json
import subprocess
from functools import partial
from typing import TYPE_CHECKING

from twisted.internet import threads

from bench.common import ALL_QUERIES, PORTS, until
from dev.stack import Stack
from estrom import api
from estrom.clients import wamp_session
from router.configure import permission

if TYPE_CHECKING:
    from bench.run import Bench


async def beaters(bench: Bench, count: int) -> None:
    """The batched throughput run with the senders on one Beater, then shared between two:
    documents/s, and CPU per document of the Beaters and the router together."""
    index = f"bench-{count}"
    figures = {}
    for name, urls in (
        ("1", [bench.urls["batched"]]),
        ("2", [bench.urls["batched"], bench.urls["batched-2"]]),
    ):
        figures[name] = await bench.repeated(urls, index, count)
    bench.results["beaters"] = {"queries": count, **figures}
    print(f"bench: 1 vs 2 Beaters: {json.dumps(bench.results['beaters'])}", flush=True)


async def routers(bench: Bench, count: int) -> None:
    """The batched throughput run through one router worker, then through two joined by
    crossbar's router-to-router links (rlinks): two Beaters, and two subscribers of every
    query; with two workers, each Beater and each subscriber on its own worker, so that
    every event reaches one subscriber on its worker and one across a link. Documents/s,
    and CPU per document of the Beaters, the router node and the engine."""
    index = f"bench-{count}"
    if bench.watching.active:  # count only what the subscribers below receive
        await bench.watching.unsubscribe()
    clients, links = (PORTS.router + 100, PORTS.router + 101), (PORTS.router + 102, PORTS.router + 103)
    proxied = PORTS.router + 104
    await threads.deferToThread(_start_linked_routers, bench.stack, "router-linked", clients, links)
    await threads.deferToThread(_start_proxied_router, bench.stack, "router-proxied", proxied)
    routers = {  # the port each of a topology's two Beaters and two subscribers uses
        "linked": list(clients),
        "proxied": [proxied] * 2,
    }
    beaters: dict[str, list[str]] = {}
    port = PORTS.beater + 4  # after the ones main() starts
    for topology, ports in routers.items():
        beaters[topology] = []
        for n, router in enumerate(ports, 1):
            start = partial(
                bench.stack.start_beater,
                f"beater-{topology}-{n}",
                port,
                ESTROM_ROUTER_URL=f"rs://127.0.0.1:{router}",  # as the stack's Beaters
            )
            beaters[topology].append(await threads.deferToThread(start, **ALL_QUERIES))
            port += 1
    topologies = {
        "1 router worker": (
            "router",
            [bench.urls["batched"], bench.urls["batched-2"]],
            [bench.stack.router_url] * 2,
        ),
        **{
            name: (
                f"router-{topology}",
                beaters[topology],
                [f"ws://127.0.0.1:{p}/ws" for p in routers[topology]],
            )
            for name, topology in (
                ("2 router workers, rlinks", "linked"),
                ("1 router worker, 2 proxy workers", "proxied"),
            )
        },
    }
    figures = {}
    for workers, (node, urls, routers) in topologies.items():
        watchers = [
            await wamp_session(url, {"ticket": {"authid": "watcher", "ticket": bench.stack.watcher}})
            for url in routers
        ]
        for watcher in watchers:
            for sid in bench.ids[index]:
                await watcher.subscribe(bench.count, api.topic(sid))
        await _until_every_query_reaches(bench, urls, index, count, copies=len(watchers))
        figures[workers] = await bench.repeated(urls, index, count, node, copies=len(watchers))
        for watcher in watchers:
            watcher.leave()
    for topology in routers:
        for name in (f"beater-{topology}-1", f"beater-{topology}-2", f"router-{topology}"):
            await threads.deferToThread(bench.stack.stop, name)
    bench.results["routers"] = {"queries": count, "subscribers_per_query": 2, **figures}
    print(f"bench: 1 vs 2 router workers: {json.dumps(bench.results['routers'])}", flush=True)


async def _until_every_query_reaches(
    bench: Bench, urls: list[str], index: str, count: int, copies: int
) -> None:
    """Send one document for every query through each Beater, until every subscriber gets
    all of them (a link forwards a subscription a moment after it is made)."""
    expected = len(urls) * count * copies
    for _ in range(20):
        before = bench.received
        for url in urls:
            response = await bench.http.post(
                f"{url}/api/v0.1/docs/{index}", json=[{"user": f"u{i}"} for i in range(count)]
            )
            await response.content()
        await until(lambda before=before: bench.received - before >= expected, 5)
        if bench.received - before >= expected:
            return
    raise RuntimeError(f"subscribers of {index} still miss documents through {urls}")


def _start_linked_routers(stack: Stack, name: str, clients: tuple[int, int], links: tuple[int, int]) -> None:
    """A crossbar node with estrom's router worker twice, serving clients on ``clients``, each
    linked to the other (an rlink to the other's ``links`` port, WAMP-cryptosign with the
    node's key). Each link forwards to its worker the other worker's events for subscriptions
    made on its own worker, and calls to procedures registered on the other (Beater's
    estrom.register). Events only one way per link: crossbar forwards local events only with
    the publisher disclosed, which estrom's roles do not."""
    cbdir = stack.workdir / name
    cbdir.mkdir(exist_ok=True)
    subprocess.run([stack.crossbar, "keys", "--cbdir", str(cbdir)], check=True, capture_output=True)
    tags = dict(line.split(": ", 1) for line in (cbdir / "key.pub").read_text().splitlines() if ": " in line)
    config = stack.router_config()
    (worker,) = config["workers"]
    workers = []
    for client, link, other in ((clients[0], links[0], links[1]), (clients[1], links[1], links[0])):
        linked = copy.deepcopy(worker)
        (realm,) = linked["realms"]
        (web,) = linked["transports"]
        web["endpoint"]["port"] = client
        linked["transports"].append(
            {
                "type": "websocket",
                "endpoint": {"type": "tcp", "interface": "127.0.0.1", "port": link},
                "serializers": ["cbor"],
                "auth": {
                    "cryptosign": {
                        "type": "static",
                        "principals": {
                            "rlink": {
                                "authorized_keys": [tags["public-key-ed25519"]],
                                "role": "rlink",
                                "realm": realm["name"],
                            }
                        },
                    }
                },
            }
        )
        realm["roles"].append(_RLINK_ROLE)
        realm["rlinks"] = [
            {
                "id": f"to-{other}",
                "realm": realm["name"],
                "authid": "rlink",
                "transport": {
                    "type": "websocket",
                    "endpoint": {"type": "tcp", "host": "127.0.0.1", "port": other},
                    "url": f"ws://127.0.0.1:{other}/",
                    "serializers": ["cbor"],
                },
                "forward_local_events": False,
                "forward_remote_events": True,
                "forward_local_invocations": False,
                "forward_remote_invocations": True,
            }
        ]
        workers.append(linked)
    stack.start_router(name=name, config={**config, "workers": workers}, port=clients[0])


def _start_proxied_router(stack: Stack, name: str, port: int, proxies: int = 2) -> None:
    """A crossbar node with estrom's router worker behind ``proxies`` proxy workers: the
    proxies share ``port`` (the kernel spreads connections over them), authenticate clients
    as the router's transport would, and relay their sessions to the router worker over a
    unix socket (RawSocket, CBOR)."""
    cbdir = stack.workdir / name
    cbdir.mkdir(exist_ok=True)
    config = stack.router_config()
    (worker,) = config["workers"]
    (web,) = worker.pop("transports")
    (realm,) = worker["realms"]
    path = str(cbdir / "router.sock")
    worker["transports"] = [
        {
            "type": "rawsocket",
            "endpoint": {"type": "unix", "path": path},
            "serializers": ["cbor"],
            "options": {"max_message_size": 16 * 1024 * 1024},  # the most a RawSocket frame holds
            "auth": {"anonymous-proxy": {"type": "static"}},
        }
    ]
    web["endpoint"].update(port=port, shared=True)
    # Every role of the realm goes to the router worker, where the dynamic authenticator (the
    # authorizer component) answers for the proxies too: they call it as crossbar's own
    # "trusted" role, which every realm has.
    roles = sorted({role["name"] for role in realm["roles"]} | {"anonymous", "trusted"})
    for service in [*web["web"]["paths"].values(), web["rawsocket"]]:  # a universal transport
        for method in service.get("auth", {}).values():
            if method.get("type") == "dynamic":
                method["authenticator-role"] = "trusted"
    proxy = {
        "type": "proxy",
        "transports": [web],
        "routes": {realm["name"]: dict.fromkeys(roles, "router")},
        "connections": {
            "router": {
                "transport": {
                    "type": "rawsocket",
                    "endpoint": {"type": "unix", "path": path},
                    "serializer": "cbor",
                    "url": "rs://localhost",
                },
                "auth": {"anonymous-proxy": {"type": "static"}},
            }
        },
    }
    workers = [worker] + [copy.deepcopy(proxy) for _ in range(proxies)]
    stack.start_router(name=name, config={**config, "workers": workers}, port=port)


# A link's session may do anything on the worker it joins; only the node's own key opens it.
_RLINK_ROLE = {
    "name": "rlink",
    "permissions": [permission("", "prefix", "call", "register", "publish", "subscribe", disclose=True)],
}
