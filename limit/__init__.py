"""limit: instruction-tuning studies (LIMIT, Jha et al. 2023) as a plan of content-addressed steps."""

__version__ = "0.1.0"
