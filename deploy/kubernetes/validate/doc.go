// Package validate checks the Kubernetes manifests in deploy/kubernetes (and
// the environment names of docker-compose.yml) without a cluster:
//
//   - every kustomization renders (kustomize's krusty, as `kubectl apply -k` does);
//   - every object, rendered or not, decodes strictly (unknown or duplicate
//     fields fail) into the real API types: k8s.io/api for the built-in kinds,
//     github.com/kedacore/keda/v2/apis/keda/v1alpha1 for the ScaledObject,
//     kustomize's types for the kustomizations;
//   - the settings that matter hold: restricted security contexts, grace
//     periods longer than the drain times, probes, secrets by reference,
//     selectors that match, one autoscaler per overlay, and DRAGONFLY_*
//     names that the dragonfly command knows.
//
// It is its own module so that the Kubernetes and KEDA modules stay out of the
// main module's dependencies. Run: cd deploy/kubernetes/validate && go test ./...
package validate
