"""The one forward path every caller shares: tokenised batches, answer scoring, generation and the
prompt KV cache. Training, evaluation and serving are built on it and never run the model another way."""
