"""Continuous batching (iteration-level scheduling, as Orca and vLLM): in each iteration every running
choice generates one token, a finished one leaves, waiting choices join (their prompt and text prefilled
then) and waiting scoring requests are answered. The model runs in one worker thread, so the event loop
keeps serving."""
from __future__ import annotations

import logging
import threading
import time
from collections import deque

import torch

from ..backbones import FrozenModel
from ..runtime.generation import stop_ids
from ..runtime.scoring import answer_scores
from .metrics import Metrics
from .mixed import Row, answer_logprobs_of, next_token_logprobs
from .running_batch import RunningBatch, prefill
from .sampling import choose_tokens, token_logprobs
from .sequences import Delta, ScoreJob, Sequence, TokenLogprob

SCORE_SUB_BATCH = 8  # rows per forward when scoring (see _by_length)
log = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, base: FrozenModel, max_batch_size: int = 32, max_wait_ms: float = 5.0, metrics: Metrics | None = None):
        self.base = base
        self.max_batch_size = max_batch_size  # choices in the running batch; also scoring requests per iteration
        self.max_wait = max_wait_ms / 1000
        self.metrics = metrics or Metrics()
        self.running = RunningBatch(base)
        self.batches_run = 0  # iterations that did some work
        self._stop_set = stop_ids(base)
        self._stop_ids = torch.tensor(sorted(self._stop_set))
        self._waiting: deque = deque()  # Sequences and ScoreJobs, in arrival order
        self._wakeup = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def submit(self, *work: Sequence | ScoreJob) -> None:
        """Queue choices to generate or requests to score (from any thread)."""
        with self._wakeup:
            self._waiting.extend(work)
            self._wakeup.notify()

    def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="softprompt-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._wakeup:
            self._stopping = True
            self._wakeup.notify()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        while self._wait_for_work():
            try:
                self.run_iteration()
            except Exception as error:  # noqa: BLE001 -- a bug must not stop the loop: the choices in flight fail, later requests are served
                log.exception("a scheduler iteration failed")
                for seq in self.running.sequences:
                    _report_failure(seq, error)
                self.running.clear()

    def _wait_for_work(self) -> bool:
        """Block until there is work (False: the server is stopping). When nothing runs, the first request
        waits up to max_wait for others, so that they share its forward pass."""
        with self._wakeup:
            while not (self._waiting or self.running.sequences or self._stopping):
                self._wakeup.wait()
            deadline = time.monotonic() + self.max_wait
            while not self.running.sequences and len(self._waiting) < self.max_batch_size and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._wakeup.wait(left)
            return not self._stopping

    def run_iteration(self) -> None:
        """Score what waits to be scored, advance every running choice by one token, then admit waiting choices."""
        scoring, joining = self.admit()
        if scoring:
            self._run_isolated(scoring, self._score)
        self.running.keep([row for row, seq in enumerate(self.running.sequences) if not seq.cancelled])
        if self.running.sequences:
            self._decode()
        # A choice that asks for its prompt's log-probabilities keeps logits at every prompt position: alone.
        plain = [seq for seq in joining if not seq.params.prompt_logprobs]
        for group in [plain] * bool(plain) + [[seq] for seq in joining if seq.params.prompt_logprobs]:
            self._run_isolated(group, self._prefill)
        self.batches_run += 1

    def admit(self) -> tuple[list[ScoreJob], list[Sequence]]:
        """The scheduling policy: the scoring requests to answer and the choices to add to the running batch in
        this iteration, in arrival order, as many as max_batch_size allows; the rest keep waiting."""
        scoring, joining, rest = [], [], deque()
        with self._wakeup:
            room = self.max_batch_size - len(self.running)
            for work in self._waiting:
                if isinstance(work, ScoreJob):
                    (scoring if len(scoring) < self.max_batch_size else rest).append(work)
                elif not work.cancelled:
                    (joining if len(joining) < room else rest).append(work)
            self._waiting = rest
        return [job for job in scoring if not job.cancelled()], joining

    def _decode(self) -> None:
        sequences = self.running.sequences
        try:
            logits = self.running.step()
        except Exception as error:  # noqa: BLE001 -- a failed step fails the choices in it; the server keeps running
            for seq in sequences:
                seq.send(Delta(seq.index, error=error))
            self.running.clear()
            return
        self.metrics.batch_size.labels("decode").observe(len(sequences))
        self._advance(sequences, logits)
        self.running.keep([row for row, seq in enumerate(sequences) if not seq.finished])

    def _prefill(self, sequences: list[Sequence]) -> None:
        keep = max([len(seq.row.ids) for seq in sequences if seq.params.prompt_logprobs], default=1)
        logits, key_values, mask = prefill(self.base, sequences, keep)
        self.metrics.batch_size.labels("prefill").observe(len(sequences))
        for row, seq in enumerate(sequences):
            if seq.params.prompt_logprobs:
                seq.send(Delta(seq.index, prompt_logprobs=_prompt_logprobs(logits[row].float().cpu(), seq)))
        tokens = self._advance(sequences, logits[:, -1])
        self.running.join(sequences, key_values, mask, tokens)
        self.running.keep([row for row, seq in enumerate(self.running.sequences) if not seq.finished])

    def _advance(self, sequences: list[Sequence], logits: torch.Tensor) -> list[int]:
        logits = logits.float().cpu()  # choosing tokens is per-row bookkeeping: on the CPU, whatever the model's device
        """Choose each row's next token and send it to its request; returns the tokens."""
        tokens, entries = choose_tokens(logits, sequences, self._stop_ids)
        now = time.perf_counter()
        for seq, token, entry in zip(sequences, tokens, entries):
            seq.tokens.append(token)
            if len(seq.tokens) == 1:
                self.metrics.first_token.observe(now - seq.submitted)
            ended = token in self._stop_set  # end-of-sequence: part of neither the text nor the log-probabilities
            text = seq.text.finish() if ended else seq.text.add(token)
            reason = "stop" if ended or seq.text.stopped else "length" if len(seq.tokens) >= seq.params.max_tokens else None
            if reason == "length":
                text += seq.text.finish()
            seq.finished = reason is not None
            seq.send(Delta(seq.index, text, [entry] if entry and not ended else [], reason, len(seq.tokens)))
        self.metrics.generated_tokens.inc(len(sequences))
        return tokens

    def _run_isolated(self, work: list, run) -> None:
        """Run the work together; if that fails, each item alone, so one bad row fails only its own request.
        A choice that already sent a token is not run again (its client would see it twice)."""
        try:
            run(work)
        except Exception as error:  # noqa: BLE001 -- the requests get the error; the server keeps running
            retry = [item for item in work if len(work) > 1 and not getattr(item, "tokens", None)]
            for item in work:
                if item not in retry:
                    _report_failure(item, error)
            for item in retry:
                self._run_isolated([item], run)

    def _score(self, jobs: list[ScoreJob]) -> None:
        """Single-token choices: one row per job, read at the next token. Longer ones: one row per choice,
        [text; choice], scored by the choice's summed log-probability."""
        single = [job for job in jobs if all(len(c) == 1 for c in job.choices)]
        for part in _by_length(single, SCORE_SUB_BATCH):
            logprobs = next_token_logprobs(self.base, [job.row for job in part])  # (B, V)
            self.metrics.batch_size.labels("score").observe(len(part))
            for job, row in zip(part, logprobs):
                job.resolve(row[[c[0] for c in job.choices]])
        longer = [job for job in jobs if job not in single]
        if longer:
            rows = [Row(job.row.ids + c, job.row.tuned, job.row.features, len(c)) for job in longer for c in job.choices]
            logprobs, is_answer = answer_logprobs_of(self.base, rows)
            self.metrics.batch_size.labels("score").observe(len(rows))
            sizes = [len(job.choices) for job in longer]
            for job, values, mask in zip(longer, logprobs.split(sizes), is_answer.split(sizes)):
                job.resolve(answer_scores(values, mask, job.length_normalized))


def _prompt_logprobs(logits: torch.Tensor, seq: Sequence) -> list[TokenLogprob]:
    """The log-probability of each prompt token after the ones before it, from the (K, V) logits that end
    at the prompt's last position; the first token has none."""
    ids = seq.row.ids
    predicted = token_logprobs(logits[len(logits) - len(ids):-1], ids[1:], [seq.params.logprobs] * (len(ids) - 1))
    return [TokenLogprob(ids[0], None), *predicted]


def _by_length(jobs: list, size: int) -> list[list]:
    """The jobs sorted by text length, in runs of at most `size`: rows of like length pad little. On the
    CPU a forward costs about its padded tokens, so one 32-row batch of mixed lengths ran no faster than 32
    single rows, and length-sorted runs of 8 took 1.47x less time (SST-2 test rows, smollm2-135m)."""
    ordered = sorted(jobs, key=lambda job: len(job.row.ids))
    return [ordered[i:i + size] for i in range(0, len(ordered), size)]


def _report_failure(item: Sequence | ScoreJob, error: Exception) -> None:
    if isinstance(item, ScoreJob):
        item.fail(error)
    else:
        item.send(Delta(item.index, error=error))
