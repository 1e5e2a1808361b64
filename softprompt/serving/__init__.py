"""Serving many soft prompts from one frozen model: the HTTP app (`app`), the request scheduler
(`scheduler`), mixed batches of rows with different prompts (`mixed`) and the prompt directory (`store`)."""
