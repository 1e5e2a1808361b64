"""Backbones: how inputs become embeddings, where a prompt goes, how the output is read. Two kinds: the causal
LM (`causal_lm`, text) and the ViT (`vision`, images), siblings that read the same `Injection` contract."""
from .causal_lm import FrozenModel, prefix_key_values, prompted_forward
from .hooks import weight_hooks
from .injection import BatchInputs, Injection, masked_mean
from .loading import DEFAULT_MODEL, EMBEDDED_MODELS, home, load_model, weights_fingerprint
from .vision import FrozenViT, class_logits, image_batch

__all__ = ["DEFAULT_MODEL", "EMBEDDED_MODELS", "BatchInputs", "FrozenModel", "FrozenViT", "Injection", "class_logits",
           "home", "image_batch", "load_model", "masked_mean", "prefix_key_values", "prompted_forward", "weight_hooks",
           "weights_fingerprint"]
