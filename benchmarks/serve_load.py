"""serve_speed.py's loopback load parts, each against real servers in their own processes:
(d) batched vs one-at-a-time throughput per workload; (f) a soak run with API keys; (g) continuous batching
vs the old static batcher on a mixed workload, and generation throughput batched vs one-at-a-time."""
from __future__ import annotations

import asyncio
import secrets
import tempfile
import time

from serve_client import Client, describe, drive, rss_kib, save_prompts, server_process

RSS_EVERY_S = 5.0
BAD_CREDENTIALS = [None, "Bearer wrong-key", "Basic {key}", "Bearer {key}x", "{key}"]
PROBED = [("POST", "/v1/completions", {"prompt": "Hello", "max_tokens": 2}), ("POST", "/v1/chat/completions",
          {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 2}), ("POST", "/v1/classify", {"input": "Hello"}),
          ("GET", "/v1/models", None), ("GET", "/metrics", None)]


def load_test(prompts, task, args, report):
    """(d) For each workload: the same clients against a batching server and a one-at-a-time server
    (--max-batch-size 1), each server warmed up by one request per client first."""
    with tempfile.TemporaryDirectory() as folder:
        names, texts = save_prompts(prompts, folder), [e.text for e in task.test]
        for workload in args.workloads.split(","):
            kinds = ["classify", "completions"] if workload == "mixed" else [workload]
            what = f"/v1/{workload}" + (f" ({args.new_tokens} new tokens)" if workload != "classify" else "")
            throughput = {}
            for label, batch_size, requests in (("batched", args.max_batch_size, args.requests),
                                                ("one-at-a-time", 1, args.unbatched_requests)):
                with server_process(folder, args, batch_size, timeout_s=600) as (url, _):
                    asyncio.run(drive(url, names, texts, _rotating(kinds, args.clients, 1), args.new_tokens))
                    result = asyncio.run(drive(url, names, texts, _rotating(kinds, args.clients, requests), args.new_tokens))
                throughput[label] = result["throughput"]
                report(f"(d) {what}, {label} (max batch {batch_size}): {args.clients} clients x {requests} requests over "
                       f"{len(names)} prompts: {describe(result)}")
                _report_failures(result, report)
            report(f"    {workload}: batched / one-at-a-time throughput = "
                   f"{throughput['batched'] / throughput['one-at-a-time']:.2f}   (target >= 3)")


def scheduling_test(prompts, task, args, report):
    """(g) Half the clients each send --short-requests short /v1/classify requests, one after another, while
    the other half each ask for --generations completions of --long-tokens tokens: the same requests to a
    continuous-batching server and to the old static batcher (benchmarks/static_batching.py). Then
    completions alone, batched vs one-at-a-time."""
    with tempfile.TemporaryDirectory() as folder:
        names, texts = save_prompts(prompts, folder), [e.text for e in task.test]
        short = args.clients // 2
        mixed = ([Client(["classify"], args.short_requests) for _ in range(short)]
                 + [Client(["completions"], args.generations) for _ in range(args.clients - short)])
        p99 = {}
        for label, static in (("continuous batching", False), ("old static batcher", True)):
            with server_process(folder, args, args.max_batch_size, 900, static=static) as (url, _):
                asyncio.run(drive(url, names, texts, _rotating(["classify", "completions"], args.clients, 1), 2))
                result = asyncio.run(drive(url, names, texts, mixed, args.long_tokens))
            classify, completions = result["kinds"]["classify"], result["kinds"]["completions"]
            p99[label] = classify["p99"]
            report(f"(g) {label} (max batch {args.max_batch_size}), {short} clients x {args.short_requests} /v1/classify while "
                   f"{args.clients - short} ask for {args.generations} x {args.long_tokens} tokens each: all done in {result['seconds']:.1f} s, "
                   f"{len(result['failed'])} failed: "
                   f"classify {classify['requests']} requests, p50 {1000 * classify['p50']:.0f} ms, p99 {1000 * classify['p99']:.0f} ms; "
                   f"completions {completions['requests']} ({completions['new_tokens']} tokens), p50 {completions['p50']:.1f} s, "
                   f"p99 {completions['p99']:.1f} s, {completions['new_tokens'] / result['seconds']:.1f} tokens/s")
            _report_failures(result, report)
        report(f"    short requests' p99 latency, continuous / old static batcher = "
               f"{p99['continuous batching'] / p99['old static batcher']:.3f}   (target <= 0.5)")
        rates = {}
        for label, batch_size, clients in (("batched", args.max_batch_size, args.clients), ("one-at-a-time", 1, args.unbatched_clients)):
            with server_process(folder, args, batch_size, 900) as (url, _):
                asyncio.run(drive(url, names, texts, _rotating(["completions"], clients, 1), 2))
                result = asyncio.run(drive(url, names, texts, _rotating(["completions"], clients, args.generations), args.long_tokens))
            rates[label] = result["new_tokens"] / result["seconds"]
            report(f"(g) /v1/completions ({args.long_tokens} tokens) alone, {label} (max batch {batch_size}): {clients} clients x "
                   f"{args.generations}: {describe(result)}, {rates[label]:.1f} tokens/s")
            _report_failures(result, report)
        report(f"    completions throughput, batched / one-at-a-time = {rates['batched'] / rates['one-at-a-time']:.2f}   (target >= 4)")


def soak_test(prompts, task, args, report):
    """(f) The server, with an API key, loaded by clients rotating over /v1/classify, /v1/completions and
    /v1/chat/completions: --warmup seconds, then --duration seconds while a prober sends requests with a
    missing or wrong key. Its resident memory (/proc VmRSS) is sampled throughout; growth is measured from
    the end of the warm-up, when the batch sizes and lengths the load reaches have been allocated once."""
    key = f"soak-{secrets.token_hex(8)}"
    with tempfile.TemporaryDirectory() as folder:
        names, texts = save_prompts(prompts, folder), [e.text for e in task.test]
        kinds = ["classify", "completions", "chat"]
        clients = _rotating(kinds, args.clients, None)
        with server_process(folder, args, args.max_batch_size, timeout_s=60, api_key=key) as (url, pid):
            warm, _, warm_samples = asyncio.run(_soak(url, names, texts, clients, args.new_tokens, key, pid, args.warmup, probe=False))
            before = rss_kib(pid)
            result, probes, samples = asyncio.run(_soak(url, names, texts, clients, args.new_tokens, key, pid, args.duration, probe=True))
            after = rss_kib(pid)
    growth = 100 * (after - before) / before
    per_kind = ", ".join(f"{result['kinds'][kind]['requests']} {kind}" for kind in kinds)
    report(f"(f) soak: the server in its own process with --api-key (max batch {args.max_batch_size}, request timeout 60 s), "
           f"{args.clients} clients looping for {args.duration:g} s over {len(names)} prompts, rotating /v1/classify, /v1/completions "
           f"and /v1/chat/completions ({args.new_tokens} new tokens), after a {args.warmup:g} s warm-up of the same load "
           f"({warm['requests']} requests, {len(warm['failed'])} failed)")
    report(f"    {result['requests']} requests ({per_kind}) in {result['seconds']:.1f} s: {describe(result)}   (target: 0 failed)")
    _report_failures(result, report)
    report(f"    missing or wrong key: {probes['sent']} requests, {probes['refused']} answered 401 with no output, "
           f"{probes['sent'] - probes['refused']} otherwise   (target: all 401)")
    for leak in probes["other"][:5]:
        report(f"    not refused: {leak}")
    report(f"    server RSS after warm-up {before / 1024:.1f} MiB, after the run {after / 1024:.1f} MiB: "
           f"growth {growth:+.2f}%   (target < 10%)")
    for phase, series in (("warm-up", warm_samples), ("run", samples)):
        report(f"    RSS during the {phase}, every {RSS_EVERY_S:g} s (MiB): {' '.join(f'{kib / 1024:.0f}' for kib in series)}")


async def _soak(url, names, texts, clients, new_tokens, key, pid, duration, probe: bool):
    """The load for `duration` seconds, RSS samples, and (with `probe`) the key prober alongside."""
    load = asyncio.create_task(drive(url, names, texts, clients, new_tokens, duration=duration, api_key=key))
    samples = asyncio.create_task(_sample_rss(pid, load))
    probes = await _probe_keys(url, key, duration) if probe else None
    return await load, probes, await samples


async def _sample_rss(pid: int, load: asyncio.Task) -> list[int]:
    """The server's RSS every RSS_EVERY_S seconds until the load is done: a leak climbs, a high-water mark levels off."""
    samples = []
    while not load.done():
        samples.append(rss_kib(pid))
        await asyncio.sleep(RSS_EVERY_S)
    return samples


async def _probe_keys(url: str, key: str, duration: float) -> dict:
    """Requests with a missing or wrong key, one after another for `duration` seconds: each must be a 401
    whose body is only an error (never a prompt's output)."""
    import httpx2

    sent, refused, other = 0, 0, []
    end = time.perf_counter() + duration
    async with httpx2.AsyncClient(timeout=120) as http:
        while time.perf_counter() < end:
            credential = BAD_CREDENTIALS[sent % len(BAD_CREDENTIALS)]
            method, path, body = PROBED[sent % len(PROBED)]
            headers = {"Authorization": credential.format(key=key)} if credential else {}
            answer = await http.request(method, f"{url}{path}", json={"model": "sst2-0", **body} if body else None, headers=headers)
            sent += 1
            if answer.status_code == 401 and set(answer.json()) == {"error"}:
                refused += 1
            else:
                other.append(f"{method} {path} with {credential!r}: {answer.status_code} {answer.text[:100]}")
            await asyncio.sleep(0.05)
    return {"sent": sent, "refused": refused, "other": other}


def _rotating(kinds: list[str], clients: int, requests: int | None) -> list[Client]:
    """Clients that each cycle through `kinds`, starting at different ones."""
    return [Client(kinds[c % len(kinds):] + kinds[:c % len(kinds)], requests) for c in range(clients)]


def _report_failures(result: dict, report) -> None:
    for failure in result["failed"][:5]:
        report(f"    failed: {failure}")
