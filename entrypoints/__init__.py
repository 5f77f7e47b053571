"""Entry points: composition root, REST (FastAPI), CLI."""
