"""Backbones: how inputs become embeddings, where a prompt goes, how the output is read. Today one, the
causal LM (`causal_lm`); a ViT or an encoder-decoder joins as a sibling module implementing the same
`Injection` contract."""
from .causal_lm import FrozenModel, prefix_key_values, prompted_forward, weight_hooks
from .injection import BatchInputs, Injection, masked_mean
from .loading import DEFAULT_MODEL, EMBEDDED_MODELS, home, load_model, weights_fingerprint

__all__ = ["DEFAULT_MODEL", "EMBEDDED_MODELS", "BatchInputs", "FrozenModel", "Injection", "home", "load_model",
           "masked_mean", "prefix_key_values", "prompted_forward", "weight_hooks", "weights_fingerprint"]
