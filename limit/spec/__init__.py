"""The study spec: its pydantic models (study.py) and the YAML loader that names file, line and field (loader.py)."""
