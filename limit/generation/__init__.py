"""Sampling responses for judge prompts: the transformers backend (CPU/GPU, batched) and vLLM (GPU)."""
