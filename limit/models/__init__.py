"""Base models: where they are and how they load, the tiny builders, MPT's attention, vLLM adapters."""
