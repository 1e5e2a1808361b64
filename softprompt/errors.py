"""The one exception type users see: every bad input is reported through it."""


class SoftPromptError(Exception):
    """A problem with the user's input (name, file, data, option), worded for the user."""


def unknown_choice(kind: str, name: str, choices) -> SoftPromptError:
    return SoftPromptError(f"unknown {kind} {name!r}; choose one of: {', '.join(sorted(choices))}")
