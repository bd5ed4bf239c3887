# syntax=docker/dockerfile:1
#
# One image with both binaries: /usr/local/bin/portico-operator and /usr/local/bin/portico-proxy.
# The Helm chart (charts/portico) picks the binary with `command:`, so there is no ENTRYPOINT.
#
#   docker build -t registry.example.com/portico:0.1.0 .
#   helm install portico charts/portico -n portico-system --create-namespace \
#     --set image.repository=registry.example.com/portico
#
# NOT BUILT HERE: the project's machines have no container engine (no docker, podman or
# buildah), so this file has never been built by CI. It needs BuildKit (the default builder of
# Docker >= 23) for the cache mounts. What it relies on was checked by reading the workspace:
# the operator's kube client uses rustls + ring (no OpenSSL to link; ring needs the C compiler
# the rust image has), the binaries need only glibc and libgcc_s at run time, and no crate has a
# build.rs or include_str! of files outside the directories copied below.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# --- build ---------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src

# Only what the workspace needs (Cargo.toml lists config, crds, operator, proxy, tests as members);
# with BuildKit only these paths are sent, so the host's multi-GB target/ never enters the context.
COPY Cargo.toml Cargo.lock ./
COPY config ./config
COPY crds ./crds
COPY operator ./operator
COPY proxy ./proxy
COPY tests ./tests

# Release profile from Cargo.toml (thin LTO, debug = 1 for symbolised backtraces; stripped below
# to keep the image small). The registry and target caches persist between builds on one builder.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p portico-operator -p portico-proxy \
 && mkdir -p /out \
 && cp target/release/portico-operator target/release/portico-proxy /out/ \
 && strip --strip-debug /out/portico-operator /out/portico-proxy

# --- runtime -------------------------------------------------------------------------------------
# distroless/cc: glibc, libgcc_s, CA certificates and tzdata, no shell and no package manager.
# The :nonroot tag runs as uid/gid 65532, which the chart's securityContext also requires.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/portico-operator /out/portico-proxy /usr/local/bin/
USER 65532:65532
# 8080: the proxy's public listener and the operator's admin listener; 9901: the proxy's admin.
EXPOSE 8080 9901
LABEL org.opencontainers.image.title="portico" \
      org.opencontainers.image.description="Portico operator and proxy (AWS API Gateway on Kubernetes)" \
      org.opencontainers.image.licenses="Apache-2.0"
