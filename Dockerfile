# The lab image: one image, three entry points (PDP, document API, MCP server).
#   docker build -t idjag-lab:dev .        (lab up --backend kind does this with the docker SDK)
#   python -m lab.backends.pod pdp|docapi|mcpserver
# Keep PYTHON_IMAGE in step with lab/backends/versions.py.
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LAB_HOME=/var/lib/lab

WORKDIR /app

# Dependencies first: this layer is reused until pyproject.toml changes.
COPY pyproject.toml README.md ./
RUN mkdir lab && touch lab/__init__.py && pip install . && pip uninstall -y idjag-lab && rm -rf lab

# The code and the data files the parts read by relative path (realm, Athenz baseline).
COPY lab ./lab
COPY keycloak ./keycloak
COPY athenz ./athenz

RUN useradd --uid 10001 --user-group --no-create-home --home-dir /var/lib/lab lab \
    && mkdir -p /var/lib/lab \
    && chown lab:lab /var/lib/lab
USER 10001:10001

# Run from /app so `lab` and the data folders resolve from the checkout layout.
ENTRYPOINT ["python", "-m", "lab.backends.pod"]
CMD ["pdp"]
