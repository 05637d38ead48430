# Dragonfly Fleet: one static `dragonfly` binary (cgo + libyara, linked
# statically) in a FROM scratch image, running as 65532:65532 with no shell.
#
#   docker build -t dragonfly-fleet:dev .              # a machine that can pull golang:1.26-bookworm
#   make image                                         # anywhere: builds a local builder image first if needed
#   docker compose up --build                          # see docker-compose.yml
#
# Works with the classic builder and with BuildKit (no BuildKit-only syntax).
# Build arguments:
#   BUILDER_IMAGE  image of the build stage: Go 1.26 on Debian bookworm. Default
#                  the official golang image; `make image` passes a local one
#                  made by scripts/builder-image where no image can be pulled.
#   VERSION        version string linked into the binary (default: dev).
#   REVISION       VCS revision linked into the binary (`dragonfly version`);
#                  the build context has no .git, so the Go toolchain records
#                  none. `make image` passes `git rev-parse HEAD` (with
#                  "-dirty" for a modified working tree). Default: none.
#   GOPROXY        Go module proxy for the build (default: Go's own default).
#   GOFLAGS        extra go flags; with -mod=vendor the module download is skipped
#                  and vendor/ from the build context is used (offline builds:
#                  run `go mod vendor` in the checkout first; vendor/ is not committed).

ARG BUILDER_IMAGE=golang:1.26-bookworm

FROM ${BUILDER_IMAGE} AS build
# Marks this stage's images, so that stale ones can be pruned (scripts/image-prune).
LABEL org.dragonfly-fleet.stage=build

# The static link needs the .a files of libyara and of what it pulls in, and
# magic.mgc for rules that `import "magic"`. The local builder image has them;
# on the official golang image they are installed here.
RUN set -eu; \
    pkgs="libyara-dev libmagic-dev libmagic-mgc libssl-dev zlib1g-dev liblzma-dev libbz2-dev libjansson-dev pkg-config gcc libc6-dev ca-certificates"; \
    missing=""; \
    for p in $pkgs; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"; done; \
    if [ -n "$missing" ]; then \
      apt-get update; \
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing; \
      rm -rf /var/lib/apt/lists/*; \
    fi; \
    pkg-config --exists yara libmagic

WORKDIR /src
ARG GOPROXY
ARG GOFLAGS
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN case " ${GOFLAGS:-} " in \
      *" -mod=vendor "*) echo "GOFLAGS has -mod=vendor: using vendor/ from the build context" ;; \
      *) go mod download ;; \
    esac

COPY . .
ARG VERSION=dev
ARG REVISION=
RUN set -eu; \
    case "${REVISION}" in *[!0-9a-zA-Z.-]*) echo "REVISION must be a commit hash, got: ${REVISION}" >&2; exit 1 ;; esac; \
    CGO_ENABLED=1 CGO_LDFLAGS="$(pkg-config --static --libs yara libmagic)" \
    go build -trimpath -buildvcs=false \
      -tags yara_static,netgo,osusergo \
      -ldflags "-s -w -linkmode external -extldflags -static -X github.com/dragonfly-fleet/fleet/version.version=${VERSION} -X github.com/dragonfly-fleet/fleet/version.revision=${REVISION}" \
      -o /out/rootfs/usr/local/bin/dragonfly ./cmd/dragonfly; \
    cd /out/rootfs; \
    mkdir -p etc/ssl/certs usr/lib/file etc/dragonfly data tmp; \
    cp /etc/ssl/certs/ca-certificates.crt etc/ssl/certs/; \
    cp "$(readlink -f /usr/lib/file/magic.mgc)" usr/lib/file/magic.mgc; \
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/data:/sbin/nologin\n' > etc/passwd; \
    printf 'root:x:0:\nnonroot:x:65532:\n' > etc/group; \
    chown 65532:65532 data; \
    chmod 1777 tmp

FROM scratch
COPY --from=build /out/rootfs/ /
# libmagic's database (Debian's default path; MAGIC makes it explicit).
ENV MAGIC=/usr/lib/file/magic.mgc
# Proves at build time that the binary is static and runs without a shell or
# libraries (exec form: scratch has no /bin/sh).
RUN ["/usr/local/bin/dragonfly", "version"]
# Config.toml / Config-dev.toml are read from the working directory: mount
# them at /etc/dragonfly. /data is for the coordinator's outbox (a volume).
WORKDIR /etc/dragonfly
USER 65532:65532
# 50051 coordinator gRPC; 10179 coordinator /metrics, /status, /healthz,
# /readyz; 10180 worker /metrics, /healthz, /readyz (as the examples set
# DRAGONFLY_WORKER_METRICS_ADDR); 8000 devapi.
EXPOSE 50051 10179 10180
ENTRYPOINT ["/usr/local/bin/dragonfly"]
CMD ["--help"]
LABEL org.opencontainers.image.title="dragonfly-fleet" \
      org.opencontainers.image.description="Distributed YARA scanning client for the Dragonfly PyPI malware-scanning API" \
      org.opencontainers.image.source="https://github.com/dragonfly-fleet/fleet"
