"""softprompt: learn, evaluate, save and use soft prompts on frozen language models.

The public names load on first use, so `import softprompt` (and `softprompt list`) stays light."""
from __future__ import annotations

import importlib

_PUBLIC = {
    "METHODS": "softprompt.methods", "PromptMethod": "softprompt.methods",
    "FrozenModel": "softprompt.backbones", "load_model": "softprompt.backbones",
    "SoftPromptError": "softprompt.errors",
    "TunedPrompt": "softprompt.tuned", "load_prompt": "softprompt.tuned",
    "zero_shot": "softprompt.evaluation",
    "load_task": "softprompt.tasks",
    "TrainConfig": "softprompt.training", "train": "softprompt.training",
}


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'softprompt' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)


__all__ = sorted(_PUBLIC)
