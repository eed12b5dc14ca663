"""Finetuning pieces the finetune step puts together: examples with response-only labels, the paper's
optimizers, and the Trainer's batching, arguments and DeepSpeed configuration."""
