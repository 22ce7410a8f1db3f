"""Fixtures for the real Docker engine, OpenClaw image, mock LLM and Celery worker.

(Filled in by the instances work; kept importable so conftest can load it.)
"""
