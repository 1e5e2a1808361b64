"""The prompts a server offers: every `*.safetensors` file in one directory, loaded on first use and
reloaded when its file changes; files added later are seen without a restart."""
from __future__ import annotations

import re
import threading
from pathlib import Path

from ..backbones import FrozenModel
from ..errors import SoftPromptError
from ..tuned import TunedPrompt, load_prompt

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
SUFFIX = ".safetensors"


class UnknownModel(SoftPromptError):
    """The requested model names neither a prompt in the directory nor the base model."""


class PromptStore:
    def __init__(self, directory: str | Path, base: FrozenModel, shares_batches: bool = True):
        self.directory = Path(directory).resolve()
        if not self.directory.is_dir():
            raise SoftPromptError(f"prompts directory {str(directory)!r} does not exist")
        self.base = base
        self.shares_batches = shares_batches  # prompts run together in mixed batches: none may change the weights
        self._loaded: dict[str, tuple[int, TunedPrompt, int]] = {}  # name -> (file mtime_ns, prompt, its length)
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        """Prompt names (file stems), read from the directory now: new files count at once."""
        return sorted(p.name[: -len(SUFFIX)] for p in self.directory.glob(f"*{SUFFIX}") if NAME.fullmatch(p.name[: -len(SUFFIX)]))

    def get(self, name: str) -> TunedPrompt | None:
        """The prompt called `name` (None for the bare base model), (re)loaded if its file changed."""
        return self._entry(name)[1]

    def prompt_length(self, name: str) -> int:
        """Positions the prompt adds before a text (0 for the base model)."""
        return self._entry(name)[2]

    def _entry(self, name: str) -> tuple[int, TunedPrompt | None, int]:
        if name == self.base.name:
            return 0, None, 0
        path = self._path(name)
        if not path.is_file():
            raise UnknownModel(f"unknown model {name!r}; available: {', '.join([*self.names(), self.base.name])}")
        mtime = path.stat().st_mtime_ns
        with self._lock:
            loaded = self._loaded.get(name)
            if loaded is None or loaded[0] != mtime:
                prompt = load_prompt(path, self.base)
                if self.shares_batches and "weight_updates" in prompt.method.injects:  # it would change every row of a shared batch
                    raise SoftPromptError(f"model {name!r} is a {prompt.method.name!r} file: it changes the model's weights, "
                                          "so it cannot be served beside other prompts in mixed batches")
                loaded = (mtime, prompt, prompt.method.prompt_length())
                self._loaded[name] = loaded
        return loaded

    def _path(self, name: str) -> Path:
        """The file of prompt `name`, refusing any name that could leave the directory."""
        path = self.directory / f"{name}{SUFFIX}"
        # The name is checked before it touches the file system: resolve() raises on a NUL byte.
        if not NAME.fullmatch(name) or path.resolve().parent != self.directory:
            raise SoftPromptError(f"invalid model name {name!r}: use letters, digits, '.', '_' or '-' (a file name in the prompts directory)")
        return path
