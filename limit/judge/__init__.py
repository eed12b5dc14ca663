"""Pairwise judging: win-rate arithmetic, the judge backends (alpaca-eval + openai, a local LM), the replay
judge server, and the `judge-pair` / `reproduce-winrates` commands."""
