# Container image targets. The top-level Makefile includes this file:
#   include deploy/image.mk
#
#   make image                  build $(IMAGE) (dragonfly-fleet:dev) from the Dockerfile
#   make image BUILDER_IMAGE=golang:1.26-bookworm
#                               use the official Go image (a Docker engine that can pull)
#   make builder-image          only make the local builder image (cached)
#   make image-clean            remove $(IMAGE) and the local builder images
#
# By default the Dockerfile's builder stage is a local image made by
# scripts/builder-image (debootstrap bookworm + this machine's Go), so the build
# needs no image registry; it is made once and reused while Go and the package
# list stay the same. Steps and their times are printed.

IMAGE ?= dragonfly-fleet:dev
# Empty: make (or reuse) the local builder image.
BUILDER_IMAGE ?=
DOCKER ?= docker
IMAGE_VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# The commit linked into the binary (`dragonfly version`; the build context
# has no .git): "-dirty" marks uncommitted changes in the working tree.
# Empty outside a git checkout.
IMAGE_REVISION ?= $(shell rev=$$(git rev-parse HEAD 2>/dev/null) && { git diff --quiet HEAD 2>/dev/null || rev=$$rev-dirty; } && echo $$rev)

.PHONY: image builder-image image-clean

builder-image:
	@scripts/builder-image >/dev/null

image:
	@set -euo pipefail; \
	t0=$$(date +%s); \
	builder="$(BUILDER_IMAGE)"; \
	if [ -z "$$builder" ]; then builder=$$(scripts/builder-image); fi; \
	t1=$$(date +%s); \
	echo "image: builder $$builder ($$((t1 - t0))s)"; \
	$(DOCKER) build --force-rm --build-arg BUILDER_IMAGE="$$builder" --build-arg VERSION="$(IMAGE_VERSION)" --build-arg REVISION="$(IMAGE_REVISION)" -t $(IMAGE) . ; \
	t2=$$(date +%s); \
	echo "image: $(IMAGE) built in $$((t2 - t1))s (total $$((t2 - t0))s)"; \
	DOCKER=$(DOCKER) scripts/image-prune; \
	$(DOCKER) image ls $(IMAGE)

image-clean:
	-$(DOCKER) image rm $(IMAGE) dragonfly-fleet-build:cache
	-$(DOCKER) image ls --format '{{.Repository}}:{{.Tag}}' dragonfly-fleet-builder | xargs -r $(DOCKER) image rm
