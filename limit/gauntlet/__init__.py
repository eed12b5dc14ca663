"""MosaicML's Eval Gauntlet on lm-eval: benchmarks, data locations, task configs, composer's ICL metrics."""
