"""Chordal workers: the Celery app, the step task and the tools."""
