# syntax=docker/dockerfile:1
#
# One image with both binaries: /usr/local/bin/portico-operator and /usr/local/bin/portico-proxy.
# The Helm chart (charts/portico) picks the binary with `command:`, so there is no ENTRYPOINT.
#
# The chart's default image is `portico:<appVersion>` (portico:0.1.0) with pullPolicy
# IfNotPresent: no registry serves it, it is what this file builds and what you load into a
# local cluster (README.md, "On Kubernetes"):
#
#   docker build -t portico:0.1.0 .
#   kind load docker-image portico:0.1.0          # or: k3d image import portico:0.1.0
#   helm install portico charts/portico -n portico-system --create-namespace
#
# For a real cluster, tag and push it to your registry and set image.repository / image.tag.
#
# Needs BuildKit (the default builder of Docker >= 23; `podman build` / buildah work too) for the
# cache mounts. Not built by the project's CI: its machines cannot pull base images. What CI does
# instead (scripts/test-image.sh): it builds Containerfile.local, FROM scratch out of the
# host-built binaries and the libraries ldd lists, and runs both binaries from it under chroot as
# 65532 with an empty environment (versions, the CRDs, the proxy serving the mobile-backend
# example), which shows they need nothing but glibc, libm and libgcc_s, all in distroless/cc.
# What this file relies on besides: the operator's kube client uses rustls + ring (no OpenSSL to
# link; ring and mimalloc need the C compiler the rust image has), and no crate has a build.rs or
# include_str! of files outside the directories copied below.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# --- build ---------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src

# Only what the workspace needs (Cargo.toml lists config, crds, operator, proxy, tests and vtl as
# members: cargo refuses to build with one of them missing). .dockerignore keeps the host's
# multi-GB target/ and .git/ out of the build context.
COPY Cargo.toml Cargo.lock ./
COPY config ./config
COPY crds ./crds
COPY operator ./operator
COPY proxy ./proxy
COPY tests ./tests
COPY vtl ./vtl

# Release profile from Cargo.toml (fat LTO, one codegen unit, debug = 1 for symbolised backtraces;
# debug info stripped below to keep the image small). The registry and target caches persist
# between builds on one builder.
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
