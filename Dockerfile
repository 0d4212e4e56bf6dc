# automator's daemon in a container, configured only by AUTOMATOR_* environment variables.
# The project (rules/, email_templates/, optional automator.toml) is mounted at /project;
# the SQLite database and the file outbox go there too unless the environment says otherwise.
#
#   docker build -t automator .
#   docker run -d --name automator -v /srv/automator:/project -p 8080:8080 \
#     -e AUTOMATOR_SMTP_URL='smtp://user:pass@mail.example.com:587?starttls=1' \
#     -e AUTOMATOR_SECRET='…' -e AUTOMATOR_BASE_URL='https://shop.example.com' automator
#
# See docs/operations.md.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY automator ./automator
RUN pip install '.[postgres]' && rm -rf /src

# An unprivileged user; the mounted project must be writable by it (uid 10001) for SQLite.
RUN useradd --system --uid 10001 --no-create-home --home-dir /project automator
USER automator
WORKDIR /project
VOLUME /project
EXPOSE 8080

# SIGTERM stops the daemon cleanly within about 20 s: give `docker stop` a longer -t.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4)"

ENTRYPOINT ["automator", "--project", "/project"]
CMD ["run", "--log-format", "json", "--listen", "0.0.0.0:8080"]
