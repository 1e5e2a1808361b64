"""softprompt: learn, evaluate, save and use soft prompts on frozen language models."""
from .api import TunedPrompt, load_prompt, zero_shot
from .errors import SoftPromptError
from .methods import METHODS, PromptMethod
from .models import FrozenModel, load_model
from .tasks import load_task
from .train import TrainConfig, train

__all__ = ["METHODS", "FrozenModel", "PromptMethod", "SoftPromptError", "TrainConfig", "TunedPrompt",
           "load_model", "load_prompt", "load_task", "train", "zero_shot"]
