"""Chordal workers: the Celery app and the step task (the tools they run: ``planner.tools``)."""
