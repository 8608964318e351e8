# outbox-relay container image.
#
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) -t outbox-relay .
#
# The binary is static (CGO_ENABLED=0) and runs as the distroless "nonroot" user (65532), which
# the Helm chart's securityContext expects. Kubernetes probes /healthz and /readyz on port 9090,
# so the image has no HEALTHCHECK.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Dependencies in their own layer: it is rebuilt only when go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/outbox-relay .

FROM gcr.io/distroless/static-debian12:nonroot
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
