# socketlab: one image for every node of the docker-compose demo.
#   docker build -t socketlab . && docker run --rm -p 127.0.0.1:8000:8000 -e SOCKETLAB_TOKEN=... socketlab

# Build the wheel (templates and static assets inside it) and the wheels of its dependencies.
FROM python:3.11-slim AS build
# A C compiler for the fast paths (app/native), compiled into the wheel.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY templates ./templates
COPY static ./static
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SOCKETLAB_DATA=/data
COPY --from=build /wheels /wheels
# A fixed numeric uid, so orchestrators can verify "not root" without reading /etc/passwd.
RUN pip install --no-cache-dir --no-index /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --user-group --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin socketlab \
    && mkdir /data \
    && chown socketlab:socketlab /data
USER 10001:10001
WORKDIR /data
# A named volume mounted here starts with this directory's owner, so the lab can write.
VOLUME ["/data"]
# Dashboard and API; the default echo listeners.
EXPOSE 8000/tcp 9000/tcp 9000/udp
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/health', timeout=2)"]
ENTRYPOINT ["socketlab"]
CMD ["serve", "--web", "0.0.0.0:8000", "--listen", "tcp://0.0.0.0:9000?mode=echo", "--listen", "udp://0.0.0.0:9000?mode=echo"]
