# syntax=docker/dockerfile:1
# outbox-relay container image. Needs BuildKit (Docker 23 or newer, or docker buildx) or Podman.
#
#   make image
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) \
#     --build-arg REVISION=$(git rev-parse HEAD) -t outbox-relay .
#
# The binary is static (CGO_ENABLED=0) and runs as the distroless "nonroot" user (65532), which
# the Helm chart's securityContext expects. Kubernetes probes /healthz and /readyz on port 9090,
# so the image has no HEALTHCHECK.
#
# The build stage runs on the builder's own platform and cross-compiles for the target
# (GOOS/GOARCH from TARGETOS/TARGETARCH), so a multi-platform build never runs the Go toolchain
# under emulation; the runtime stage has no RUN step.
#
# Both base images are pinned by the digest of their multi-platform index, so a tag that moves
# upstream cannot change what ships; the tag beside each digest says what it was. To update one,
# read the new index digest and replace tag and digest together:
#
#   docker buildx imagetools inspect golang:1.26-bookworm         (the "Digest:" line)
#   docker buildx imagetools inspect gcr.io/distroless/static-debian12:nonroot
#
# (or `crane digest IMAGE`). The golang tag needs a Go at least as new as go.mod's go line.

# golang:1.26-bookworm, which was go1.26.8.
FROM --platform=$BUILDPLATFORM golang:1.26.8-bookworm@sha256:a688600ca24f8a4d3ca77f95b0dd40704a9fc787c826660eb7ba0b641b8b175d AS build
WORKDIR /src
# Dependencies first, in their own step: it reruns only when go.mod or go.sum change. The module
# and build caches are BuildKit cache mounts, kept between builds on the same builder and never
# part of a layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/outbox-relay .

# gcr.io/distroless/static-debian12:nonroot
FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="outbox-relay" \
      org.opencontainers.image.description="Reliable, Standard Webhooks-signed webhooks from a PostgreSQL outbox" \
      org.opencontainers.image.source="https://github.com/referralloop/outbox-relay" \
      org.opencontainers.image.url="https://github.com/referralloop/outbox-relay" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.vendor="referralloop"
COPY --from=build /out/outbox-relay /outbox-relay
USER 65532:65532
# 8080: management API (or reverse proxy); 9090: /healthz, /readyz, /metrics.
EXPOSE 8080 9090
ENTRYPOINT ["/outbox-relay"]
CMD ["serve"]
