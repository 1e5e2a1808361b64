"""The server's Prometheus metrics, in a registry of its own (two apps in one process keep theirs apart)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily

from ..runtime.prefix_cache import PrefixCache

SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80)
ROWS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        within = {"registry": self.registry}
        self.requests = Counter("softprompt_requests", "HTTP requests by endpoint and status code", ["endpoint", "status"], **within)
        self.latency = Histogram("softprompt_request_latency_seconds", "time from a request's arrival to its last byte, by endpoint",
                                 ["endpoint"], buckets=SECONDS, **within)
        self.first_token = Histogram("softprompt_time_to_first_token_seconds", "time from a choice's submission to its first token",
                                     buckets=SECONDS, **within)
        self.batch_size = Histogram("softprompt_batch_size", "rows per forward pass: decode (a step of the running batch), "
                                    "prefill (rows joining it) or score (classification)", ["kind"], buckets=ROWS, **within)
        self.generated_tokens = Counter("softprompt_generated_tokens", "tokens generated, end-of-sequence included", **within)
        self.queue_length = Gauge("softprompt_queue_length", "choices and scoring requests waiting to join the running batch", **within)
        self.running = Gauge("softprompt_running_sequences", "choices in the running batch", **within)

    def watch(self, scheduler, prefix_cache: PrefixCache) -> None:
        """Read the queue and batch from the scheduler, and hits and misses from the prompt KV cache, when scraped."""
        self.queue_length.set_function(lambda: scheduler.waiting)
        self.running.set_function(lambda: len(scheduler.running))
        self.registry.register(_PrefixCacheCounts(prefix_cache))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _PrefixCacheCounts:
    def __init__(self, cache: PrefixCache):
        self.cache = cache

    def collect(self):
        yield CounterMetricFamily("softprompt_prefix_cache_hits", "prompt keys/values served from the prompt KV cache",
                                  value=self.cache.hits)
        yield CounterMetricFamily("softprompt_prefix_cache_misses", "prompt keys/values computed (not in the prompt KV cache)",
                                  value=self.cache.misses)
