"""The scheduling the server had before continuous batching, kept only as serve_speed.py's baseline: a
micro-batch of up to --max-batch-size waiting requests (scoring and generation together, in arrival order)
runs until its longest choice ends, and everything that arrives meanwhile waits for the next micro-batch.
Everything else (prefill, decoding, sampling, scoring) is the real scheduler's, so a comparison measures the
policy alone. Run as a server, with the options `softprompt serve` takes:

    python benchmarks/static_batching.py --prompts-dir DIR --model smollm2-135m --port 8001
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from softprompt.serving.scheduler import Scheduler  # noqa: E402
from softprompt.serving.sequences import ScoreJob  # noqa: E402


class StaticBatchScheduler(Scheduler):
    def admit(self):
        if self.running.sequences:  # the micro-batch is still decoding: nothing joins it
            return [], []
        with self._wakeup:
            taken = [self._waiting.popleft() for _ in range(min(self.max_batch_size, len(self._waiting)))]
        scoring = [work for work in taken if isinstance(work, ScoreJob) and not work.cancelled()]
        return scoring, [work for work in taken if not isinstance(work, ScoreJob) and not work.cancelled]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts-dir", required=True)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--request-timeout", type=float, default=60.0)
    parser.add_argument("--api-key", action="append")
    args = parser.parse_args()
    import uvicorn

    from softprompt.backbones import load_model
    from softprompt.serving.app import create_app

    app = create_app(load_model(args.model), args.prompts_dir, args.max_batch_size, args.max_wait_ms, args.request_timeout,
                     api_keys=args.api_key, scheduler_class=StaticBatchScheduler)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
