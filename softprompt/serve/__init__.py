"""Serving many soft prompts from one frozen model: mixed batches (`batch`), the HTTP server (`app`)."""
