// Package compose tests docker-compose.yml end to end on this machine's
// Docker. TestComposeDevFleet builds the image (and checks that `dragonfly
// version` in it reports the commit passed as DRAGONFLY_REVISION), runs the
// dev profile (devapi with a few hundred synthetic releases, a coordinator and
// three workers, plaintext gRPC with DRAGONFLY_FLEET_INSECURE), SIGKILLs one
// worker mid-run and checks that every job is reported to the API exactly
// once. TestComposeProductionTLS runs the settings of .env.example instead: a
// secrets directory of files, TLS on gRPC with a test CA and a certificate for
// "coordinator", and no plaintext token; two workers report every release.
//
// It needs Docker and Docker Compose (v2 `docker compose` or docker-compose
// 1.29) and is skipped unless DRAGONFLY_COMPOSE_TEST=1. Where no image can be
// pulled, the builder stage's image is made by scripts/builder-image (cached);
// set DRAGONFLY_BUILDER_IMAGE to use another one (golang:1.26-bookworm).
//
//	DRAGONFLY_COMPOSE_TEST=1 go test -count=1 -v ./deploy/compose/
package compose
