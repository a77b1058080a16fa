# syntax=docker/dockerfile:1.7
# One image with the three IAM binaries. Not built in CI (no container engine there); build
# it with BuildKit (the default builder of current Docker):
#   docker build --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) -t iam:0.1.0 .
# and pick the process with the command, e.g. `docker run iam:0.1.0 iam-jwks`. The Helm
# charts in charts/ expect this layout.
#
# Base images are pinned by digest, so a rebuild uses the same bytes until someone moves the
# pin on purpose. These digests were taken from public pins of these tags, not checked on our
# machines (no registry access): before a release, confirm or move them with
#   docker buildx imagetools inspect docker.io/library/rust:1.95-slim-bookworm
#   docker buildx imagetools inspect gcr.io/distroless/cc-debian12:nonroot
# (a digest that does not exist fails the build; it never selects other bytes).

# --- build: the Rust toolchain on Debian 12, linking the system OpenSSL ------------------
FROM docker.io/library/rust:1.95-slim-bookworm@sha256:d7482085ff5b415f84dba5647ae71606650bdef00db7aeb69f4b3d170c3e4082 AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Migrations are embedded in iam-api at compile time; nothing else is needed at run time.
# BuildKit cache mounts keep the crates.io downloads and the compiled dependencies between
# builds (the layer itself changes with every source change, so a layer cache alone would
# rebuild all ~400 crates each time); the binaries are copied out of the cached target.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p iam-api -p iam-jwks -p iam-sidecar \
 && mkdir /out \
 && cp target/release/iam-api target/release/iam-jwks target/release/iam-sidecar /out/

# --- run: distroless (glibc, libssl, CA certificates; no shell, no package manager) --------
FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="iam" \
      org.opencontainers.image.description="Identity and access service: iam-api, iam-jwks, iam-sidecar" \
      org.opencontainers.image.source="https://github.com/iam/iam" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
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
