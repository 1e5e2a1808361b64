"""The hooks through which a backbone applies a method's `Injection` inside its layers: `before_layer` rewrites the
hidden states entering each block, `weight_updates` add to named modules' outputs. Shared by every backbone."""
from __future__ import annotations

from contextlib import contextmanager

import torch

from .injection import Injection


@contextmanager
def injection_hooks(base, injection: Injection):
    """The injection's layer hooks and weight updates, for one pass. With gradient checkpointing the backward
    pass runs the blocks again, so the hooks must still be there: they are kept until the next pass."""
    handles = _layer_hooks(base, injection.before_layer) + _weight_hooks(base, injection.weight_updates)
    try:
        yield
    finally:
        if handles and base.checkpointing and torch.is_grad_enabled():
            base._pending_hooks.extend(handles)
        else:
            for handle in handles:
                handle.remove()


@contextmanager
def weight_hooks(base, updates: dict | None):
    """A method's weight updates (see Injection) for the passes run inside the block: decoding steps."""
    handles = _weight_hooks(base, updates)
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _weight_hooks(base, updates: dict | None) -> list:
    """Add `updates[path](input)` to the output of each named module."""
    if not updates:
        return []
    modules = dict(base.model.named_modules())
    return [modules[path].register_forward_hook(lambda module, args, output, update=update: output + update(args[0]))
            for path, update in updates.items()]


def _layer_hooks(base, before_layer) -> list:
    """Let `before_layer(i, hidden)` replace the hidden states entering each decoder layer."""
    if before_layer is None:
        return []

    def hook_for(index):
        def hook(module, args, kwargs):
            if "hidden_states" in kwargs:
                return args, {**kwargs, "hidden_states": before_layer(index, kwargs["hidden_states"])}
            return (before_layer(index, args[0]), *args[1:]), kwargs
        return hook

    return [layer.register_forward_pre_hook(hook_for(i), with_kwargs=True) for i, layer in enumerate(base.layers)]
