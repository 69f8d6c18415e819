FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY planner ./planner
COPY workers ./workers
COPY examples ./examples
RUN pip install --no-cache-dir . && useradd --create-home chordal
# Celery refuses nothing as root but warns; workers have no reason to be root.
USER chordal
ENTRYPOINT ["chordal"]
CMD ["worker"]
