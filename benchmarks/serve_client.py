"""Loopback load for serve_speed.py: a server in its own process (`softprompt serve`, or the static-batching
baseline), and concurrent HTTP clients that time every request by kind."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Client:
    """One client loop: it cycles through `kinds` ("classify", "completions", "chat"). It sends `requests`
    requests, or with None goes on until the timed run ends (at least one)."""

    kinds: list[str]
    requests: int | None = None


def request(kind: str, name: str, text: str, new_tokens: int) -> tuple[str, dict]:
    """Path and body of one request. Generation is held to exactly `new_tokens` (min_tokens), so every run
    generates what it says."""
    if kind == "classify":
        return "/v1/classify", {"model": name, "input": text}
    if kind == "chat":
        return "/v1/chat/completions", {"model": name, "messages": [{"role": "user", "content": text}],
                                        "max_tokens": new_tokens, "min_tokens": new_tokens}
    return "/v1/completions", {"model": name, "prompt": text, "max_tokens": new_tokens, "min_tokens": new_tokens}


async def drive(url: str, names: list[str], texts: list[str], clients: list[Client], new_tokens: int,
                duration: float = 0.0, api_key: str | None = None) -> dict:
    """Run the clients concurrently; a request started before the end is waited for. Returns failures, the
    run's length and throughput, and per kind: requests, latencies' p50/p99, tokens generated."""
    import httpx2

    latencies = {kind: [] for client in clients for kind in client.kinds}
    failures, produced = [], dict.fromkeys(latencies, 0)
    end = time.perf_counter() + duration
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def more(client: Client, i: int) -> bool:
        return i < client.requests if client.requests is not None else i == 0 or time.perf_counter() < end

    async def loop(index: int, client: Client, http):
        i = 0
        while more(client, i):
            kind = client.kinds[i % len(client.kinds)]
            path, body = request(kind, names[(index + i) % len(names)], texts[(index * 7 + i) % len(texts)], new_tokens)
            start = time.perf_counter()
            try:
                answer = await http.post(f"{url}{path}", json=body, headers=headers)
                if answer.status_code != 200:
                    failures.append(f"{kind} {answer.status_code} {answer.text[:200]}")
                elif kind != "classify":
                    produced[kind] += answer.json()["usage"]["completion_tokens"]
            except httpx2.HTTPError as error:
                failures.append(f"{kind} {type(error).__name__} {error}")
            latencies[kind].append(time.perf_counter() - start)
            i += 1

    async with httpx2.AsyncClient(timeout=900, limits=httpx2.Limits(max_connections=len(clients))) as http:
        start = time.perf_counter()
        await asyncio.gather(*(loop(i, c, http) for i, c in enumerate(clients)))
        elapsed = time.perf_counter() - start
    total = sum(len(v) for v in latencies.values())
    kinds = {kind: {"requests": len(values), "new_tokens": produced[kind], "throughput": len(values) / elapsed, **percentiles(values)}
             for kind, values in latencies.items()}
    return {"requests": total, "failed": failures, "seconds": elapsed, "throughput": total / elapsed,
            "new_tokens": sum(produced.values()), "kinds": kinds, **percentiles([x for v in latencies.values() for x in v])}


def percentiles(latencies: list[float]) -> dict:
    """p50 and p99 of request latencies (nan when none finished)."""
    ordered = sorted(latencies)
    if not ordered:
        return {"p50": float("nan"), "p99": float("nan")}
    return {"p50": ordered[len(ordered) // 2], "p99": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]}


def describe(result: dict) -> str:
    made = f", {result['new_tokens']} tokens generated" if result["new_tokens"] else ""
    return (f"{len(result['failed'])} failed of {result['requests']}{made}, p50 {1000 * result['p50']:.0f} ms, "
            f"p99 {1000 * result['p99']:.0f} ms, {result['throughput']:.2f} requests/s")


def save_prompts(prompts, folder) -> list[str]:
    """Write the prompts into a server's prompts folder; returns their model names."""
    names = [f"sst2-{index}" for index in range(len(prompts))]
    for name, prompt in zip(names, prompts):
        prompt.save(Path(folder) / f"{name}.safetensors")
    return names


def rss_kib(pid: int) -> int:
    """Resident memory of a process, from /proc (Linux), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def server_process(folder, args, max_batch_size: int, timeout_s: int, static: bool = False, api_key: str | None = None):
    """`softprompt serve` (or, with `static`, the old static-batching scheduler) in its own process on
    127.0.0.1, so the clients in this one never hold its interpreter; yields (url, pid) once /health
    answers, and stops the server on the way out."""
    import httpx2

    port = args.port or free_port()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
    entry = [str(ROOT / "benchmarks" / "static_batching.py")] if static else \
        ["-c", "import sys; from softprompt.cli import main; sys.exit(main())", "serve"]
    command = [sys.executable, *entry, "--prompts-dir", str(folder), "--model", args.model, "--host", "127.0.0.1", "--port", str(port),
               "--max-batch-size", str(max_batch_size), "--max-wait-ms", str(args.max_wait_ms), "--request-timeout", str(timeout_s),
               *(["--api-key", api_key] if api_key else [])]
    server = subprocess.Popen(command, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1200):  # up to 10 minutes for the model to load on a busy machine
            if server.poll() is not None:
                raise RuntimeError(f"the server exited with status {server.returncode} before answering")
            try:
                if httpx2.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise RuntimeError("the server did not answer /health within 10 minutes")
        yield url, server.pid
    finally:
        server.terminate()
        server.wait(timeout=60)
