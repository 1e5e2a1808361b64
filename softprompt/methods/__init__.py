"""The method registries: name -> class. Adding a method is one file and one line here.

METHODS are the soft-prompt methods; BASELINES train through the same Trainer and files but change the
model rather than prompt it (LoRA), so the comparison runs them alike. VISION_METHODS and VISION_BASELINES are
their counterparts on a ViT. Tests and docs cover all of them from here."""
from __future__ import annotations

from ..configs import from_options
from ..errors import unknown_choice
from ..backbones import FrozenModel
from .base import MethodConfig, PromptMethod
from .capt import CapsulePromptTuning
from .context_tuning import ContextTuning
from .dept import DecomposedPromptTuning
from .full_finetune import FullFinetune
from .idpg import InstanceDependentPromptGeneration
from .linear_probe import LinearProbe
from .lopa import LowRankPromptAdaptation
from .lora import LowRankAdaptation
from .multitask import MultitaskPromptTuning
from .p_tuning import PTuning
from .prefix_tuning import PrefixTuning
from .prompt_tuning import PromptTuning
from .pt_moe import PromptTuningMixtureOfExperts
from .vpt import VisualPromptTuningDeep, VisualPromptTuningShallow

METHODS: dict[str, type[PromptMethod]] = {cls.name: cls for cls in (
    PromptTuning, PTuning, PrefixTuning, CapsulePromptTuning, LowRankPromptAdaptation,
    InstanceDependentPromptGeneration, PromptTuningMixtureOfExperts, DecomposedPromptTuning, MultitaskPromptTuning,
    ContextTuning)}
BASELINES: dict[str, type[PromptMethod]] = {cls.name: cls for cls in (LowRankAdaptation,)}
# For a ViT (`--model dinov2-s`): prompts, and baselines, that train a classifier head on the CLS state. The lora
# baseline above runs on both kinds.
VISION_METHODS: dict[str, type[PromptMethod]] = {cls.name: cls for cls in (VisualPromptTuningShallow, VisualPromptTuningDeep)}
VISION_BASELINES: dict[str, type[PromptMethod]] = {cls.name: cls for cls in (LinearProbe, FullFinetune)}


def all_methods() -> dict[str, type[PromptMethod]]:
    """Every registry at once, read now (a test may register a method at run time)."""
    return {**METHODS, **BASELINES, **VISION_METHODS, **VISION_BASELINES}


def method_class(name: str) -> type[PromptMethod]:
    known = all_methods()
    if name not in known:
        raise unknown_choice("method", name, known)
    return known[name]


def make_config(name: str, options: dict | None = None) -> MethodConfig:
    """The method's typed config from a plain dict, refusing keys it does not have."""
    return from_options(method_class(name).config_class, options or {}, f"method {name!r}")


def methods_for(kind: str) -> list[str]:
    """The registered methods and baselines that run on a backbone of this kind ("text", "vision")."""
    return sorted(name for name, cls in all_methods().items() if kind in cls.kinds)


def build_method(name: str, base: FrozenModel, options: dict | None = None) -> PromptMethod:
    """An uninitialised method (shapes only), e.g. to load saved tensors into: float32 parameters (master
    weights, whatever the model's dtype) on the model's device."""
    return method_class(name)(make_config(name, options), base).to(base.device)


__all__ = ["BASELINES", "METHODS", "VISION_BASELINES", "VISION_METHODS", "MethodConfig", "PromptMethod", "build_method", "make_config", "all_methods", "method_class", "methods_for"]
