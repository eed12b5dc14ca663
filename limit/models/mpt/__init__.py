"""MPT at scale: document-local ALiBi attention (eager, sdpa, flex) for transformers' MptForCausalLM."""
