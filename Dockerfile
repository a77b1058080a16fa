# One image with the three IAM binaries. Not built in CI (no container engine there); build
# it with `docker build -t iam:0.1.0 .` and pick the process with the command, e.g.
# `docker run iam:0.1.0 iam-jwks`. The Helm charts in charts/ expect this layout.

# --- build: the Rust toolchain on Debian 12, linking the system OpenSSL ------------------
FROM docker.io/library/rust:1.95-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Migrations are embedded in iam-api at compile time; nothing else is needed at run time.
RUN cargo build --release --locked -p iam-api -p iam-jwks -p iam-sidecar \
 && mkdir /out \
 && cp target/release/iam-api target/release/iam-jwks target/release/iam-sidecar /out/

# --- run: distroless (glibc, libssl, CA certificates; no shell, no package manager) --------
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
# The numeric id of distroless's "nonroot" user, so Kubernetes can check runAsNonRoot.
USER 65532:65532
# Listen on every interface inside the container; the binaries default to 127.0.0.1.
ENV HOST=0.0.0.0 \
    LOG_FORMAT=json
# iam-api, iam-jwks, iam-sidecar and its admin port.
EXPOSE 8000 8001 8080 8081
# Nothing is written to disk: the root filesystem can be mounted read-only.
ENTRYPOINT []
CMD ["iam-api", "--config=prod"]
