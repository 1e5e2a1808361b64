"""What every endpoint shares: the frozen model, the prompts directory, the scheduler, the time limit, and
turning a request's input into a batch row."""
from __future__ import annotations

from dataclasses import dataclass

from ..backbones import FrozenModel
from ..errors import SoftPromptError
from .metrics import Metrics
from .mixed import Row
from .scheduler import Scheduler
from .store import PromptStore


@dataclass
class Serving:
    base: FrozenModel
    store: PromptStore
    scheduler: Scheduler
    metrics: Metrics
    request_timeout_s: float

    @property
    def vocabulary(self) -> int:
        return self.base.model.get_input_embeddings().num_embeddings

    def row(self, name: str, text: str, ids: list[int], room: int) -> Row:
        """The input as a batch row under prompt `name`, refusing one that is empty or would not fit the
        model's context with `room` more tokens (to generate or score). Loads the prompt file: call it off
        the event loop."""
        if not ids:
            raise SoftPromptError("the input is empty: give at least one token")
        tuned = self.store.get(name)
        prompt_tokens = self.store.prompt_length(name)
        limit = self.base.max_length
        if len(ids) + prompt_tokens + room > limit:
            raise SoftPromptError(f"input is {len(ids)} tokens; with the prompt's {prompt_tokens} and {room} to generate or score "
                                  f"it exceeds the model's context of {limit} tokens")
        return Row(ids, tuned, tuned.features([text]) if tuned is not None else None)
