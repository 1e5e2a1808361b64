"""Serving many soft prompts from one frozen model: the HTTP app (`app`, `generation_routes`, `schemas`,
`responses`, `access`, `metrics`), continuous batching (`scheduler`, `running_batch`, `sampling`, `text`,
`sequences`), mixed batches of rows with different prompts (`mixed`) and the prompt directory (`store`)."""
