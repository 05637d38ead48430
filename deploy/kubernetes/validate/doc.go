// Package validate checks the Kubernetes deployment (deploy/kubernetes and
// the Helm chart deploy/helm/dragonfly-fleet) and the environment of
// docker-compose.yml without a cluster:
//
//   - every kustomization renders (kustomize's krusty, as `kubectl apply -k`
//     does): both overlays alone and with the optional components
//     (servicemonitor, mtls);
//   - the Helm chart renders (Helm v4 as a library, as `helm template` does)
//     and passes `helm lint --strict` with its default values and with
//     non-default ones; values that would make a broken or unsafe fleet fail;
//   - every object, rendered or not, decodes strictly (unknown or duplicate
//     fields fail) into the real API types: k8s.io/api for the built-in kinds,
//     KEDA's for the ScaledObject, the Prometheus Operator's for the
//     ServiceMonitor and PodMonitor, kustomize's for the kustomizations;
//   - every render holds the same checks: restricted security contexts,
//     grace periods longer than the drain times, HTTP probes on /readyz and
//     /healthz at the metrics ports (10179, 10180), secrets only as files of
//     referenced Secrets, TLS (DRAGONFLY_FLEET_INSECURE only without it),
//     selectors that match, one autoscaler, monitors that select the right
//     Service and pods, and DRAGONFLY_* names that the dragonfly command knows.
//
// It is its own module so that the Kubernetes, KEDA, Prometheus Operator and
// Helm modules stay out of the main module's dependencies. Run:
//
//	cd deploy/kubernetes/validate && go vet ./... && go test ./...
package validate
