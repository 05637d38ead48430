package validate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	kusttypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

const (
	manifestsDir = ".."       // deploy/kubernetes
	repoRoot     = "../../.." // the repository
	namespace    = "dragonfly"
	image        = "dragonfly-fleet:dev"
	binary       = "/usr/local/bin/dragonfly"
)

// overlays are the alternatives a user applies, each with its one autoscaler.
var overlays = map[string]string{"hpa": "HorizontalPodAutoscaler", "keda": "ScaledObject"}

// object is one decoded YAML document.
type object struct {
	source     string // file (and document index) or overlay it came from
	apiVersion string
	kind       string
	name       string
	namespace  string
	labels     map[string]string
	typed      any
}

// newTyped returns an empty value of the Go type for apiVersion and kind.
func newTyped(apiVersion, kind string) (any, error) {
	switch apiVersion + ", " + kind {
	case "v1, Namespace":
		return &corev1.Namespace{}, nil
	case "v1, ServiceAccount":
		return &corev1.ServiceAccount{}, nil
	case "v1, Service":
		return &corev1.Service{}, nil
	case "v1, PersistentVolumeClaim":
		return &corev1.PersistentVolumeClaim{}, nil
	case "v1, Secret":
		return &corev1.Secret{}, nil
	case "apps/v1, Deployment":
		return &appsv1.Deployment{}, nil
	case "policy/v1, PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "networking.k8s.io/v1, NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, nil
	case "autoscaling/v2, HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, nil
	case "keda.sh/v1alpha1, ScaledObject":
		return &kedav1alpha1.ScaledObject{}, nil
	case "monitoring.coreos.com/v1, ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}, nil
	case "monitoring.coreos.com/v1, PodMonitor":
		return &monitoringv1.PodMonitor{}, nil
	case "kustomize.config.k8s.io/v1beta1, Kustomization", "kustomize.config.k8s.io/v1alpha1, Component":
		return &kusttypes.Kustomization{}, nil
	}
	return nil, fmt.Errorf("no Go type for apiVersion %q kind %q", apiVersion, kind)
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decodeAll strictly decodes every document of a YAML stream: unknown fields,
// duplicate keys and kinds without a Go type are errors.
func decodeAll(source string, data []byte) ([]object, error) {
	var out []object
	for i, doc := range docSeparator.Split(string(data), -1) {
		js, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("%s#%d: %w", source, i, err)
		}
		if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
			continue // only comments
		}
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name      string            `json:"name"`
				Namespace string            `json:"namespace"`
				Labels    map[string]string `json:"labels"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			return nil, fmt.Errorf("%s#%d: %w", source, i, err)
		}
		typed, err := newTyped(meta.APIVersion, meta.Kind)
		if err != nil {
			return nil, fmt.Errorf("%s#%d: %w", source, i, err)
		}
		body := []byte(doc)
		if isPatch(source) {
			// A strategic-merge patch: its directives ($patch: delete) are no
			// fields of the type; everything else must be.
			if body, err = stripDirectives(body); err != nil {
				return nil, fmt.Errorf("%s#%d: %w", source, i, err)
			}
		}
		if err := yaml.UnmarshalStrict(body, typed); err != nil {
			return nil, fmt.Errorf("%s#%d (%s %s): strict decode: %w", source, i, meta.Kind, meta.Metadata.Name, err)
		}
		out = append(out, object{
			source: fmt.Sprintf("%s#%d", source, i), apiVersion: meta.APIVersion, kind: meta.Kind,
			name: meta.Metadata.Name, namespace: meta.Metadata.Namespace, labels: meta.Metadata.Labels, typed: typed,
		})
	}
	return out, nil
}

// isPatch reports whether a manifest file is a component's strategic-merge
// patch (every file of a component but its kustomization and resources).
func isPatch(source string) bool {
	dir, file := filepath.Split(filepath.ToSlash(source))
	return strings.Contains(dir, "/components/") && file != "kustomization.yaml" && file != "monitors.yaml"
}

// patchDirectives are the strategic-merge patch keys that are not fields.
var patchDirectives = []string{"$patch", "$setElementOrder", "$retainKeys", "$deleteFromPrimitiveList"}

// stripDirectives removes strategic-merge directives from a YAML document
// (duplicate keys still fail) and returns it as JSON.
func stripDirectives(doc []byte) ([]byte, error) {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, err
	}
	var v any
	if err := json.Unmarshal(js, &v); err != nil {
		return nil, err
	}
	var strip func(any)
	strip = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, sub := range v {
				if slices.ContainsFunc(patchDirectives, func(d string) bool { return strings.HasPrefix(k, d) }) {
					delete(v, k)
					continue
				}
				strip(sub)
			}
		case []any:
			for _, sub := range v {
				strip(sub)
			}
		}
	}
	strip(v)
	return json.Marshal(v)
}

// manifestFiles lists the YAML files under deploy/kubernetes (not this module).
func manifestFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(manifestsDir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "validate" || d.Name() == "helm") {
			return filepath.SkipDir
		}
		if !d.IsDir() && (strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	if len(files) < 10 {
		t.Fatalf("found only %d manifest files under %s: %v", len(files), manifestsDir, files)
	}
	return files
}

// TestEveryFileDecodesStrictly decodes every document of every manifest file,
// kustomizations included, into its real Go type.
func TestEveryFileDecodesStrictly(t *testing.T) {
	kinds := map[string]int{}
	for _, f := range manifestFiles(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decodeAll(f, data)
		if err != nil {
			t.Error(err)
			continue
		}
		if len(objs) == 0 {
			t.Errorf("%s: no objects", f)
		}
		for _, o := range objs {
			kinds[o.kind]++
		}
	}
	for _, k := range []string{"Kustomization", "Namespace", "Deployment", "Service", "PersistentVolumeClaim",
		"PodDisruptionBudget", "NetworkPolicy", "HorizontalPodAutoscaler", "ScaledObject", "Secret", "ServiceAccount",
		"ServiceMonitor", "PodMonitor"} {
		if kinds[k] == 0 {
			t.Errorf("no %s in the manifests (kinds found: %v)", k, kinds)
		}
	}
}

// TestStrictDecodingCatchesMistakes shows the checks have teeth: a misspelt
// field, a duplicate key and an unknown kind all fail.
func TestStrictDecodingCatchesMistakes(t *testing.T) {
	bad := map[string]string{
		"misspelt field":  "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 1\n",
		"duplicate key":   "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nmetadata: {name: y}\n",
		"unknown kind":    "apiVersion: v1\nkind: Servce\nmetadata: {name: x}\n",
		"keda typo":       "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\nspec:\n  scaleTargetRef: {name: w}\n  minReplicas: 0\n",
		"wrong type":      "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: x}\nspec:\n  selector: worker\n",
		"monitor typo":    "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: x}\nspec:\n  selector: {}\n  endpoint: [{port: metrics}]\n",
		"podmonitor typo": "apiVersion: monitoring.coreos.com/v1\nkind: PodMonitor\nmetadata: {name: x}\nspec:\n  selector: {}\n  podMetricsEndpoints: [{prot: metrics}]\n",
	}
	for name, doc := range bad {
		if _, err := decodeAll(name, []byte(doc)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
	// In a component's patch the merge directives are allowed, typos are not.
	const patch = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      containers:\n        - name: c\n          env:\n            - name: A\n              $patch: delete\n"
	if _, err := decodeAll("../components/c/patch.yaml", []byte(patch)); err != nil {
		t.Errorf("a patch with $patch: delete: %v", err)
	}
	if _, err := decodeAll("../components/c/patch.yaml", []byte(strings.Replace(patch, "env:", "evn:", 1))); err == nil {
		t.Errorf("a patch with a misspelt field decoded without error")
	}
	if _, err := decodeAll("../base/worker.yaml", []byte(patch)); err == nil {
		t.Errorf("$patch outside a component's patch decoded without error")
	}
}

// kustomizeRender builds a kustomization directory as `kubectl apply -k`
// would and decodes the result.
func kustomizeRender(t *testing.T, dir string) []object {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := resMap.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeAll(dir, out)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// withComponents writes a kustomization (in a temporary directory) that
// renders overlay with the components under deploy/kubernetes/components,
// as a user's own kustomization would, and returns its directory.
func withComponents(t *testing.T, overlay string, components ...string) string {
	t.Helper()
	dir := t.TempDir()
	abs, err := filepath.Abs(manifestsDir)
	if err != nil {
		t.Fatal(err)
	}
	rel := func(p string) string {
		r, err := filepath.Rel(dir, filepath.Join(abs, p))
		if err != nil {
			t.Fatal(err)
		}
		return filepath.ToSlash(r)
	}
	var b strings.Builder
	b.WriteString("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n")
	fmt.Fprintf(&b, "  - %s\ncomponents:\n", rel(filepath.Join("overlays", overlay)))
	for _, c := range components {
		fmt.Fprintf(&b, "  - %s\n", rel(filepath.Join("components", c)))
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestKustomize renders each overlay alone and with the optional components,
// and holds each result to the same checks as the Helm chart's renders.
func TestKustomize(t *testing.T) {
	secrets := exampleSecrets(t)
	base := fleetWant{
		namespace: namespace, image: image, namespaceObject: true,
		tls: true, workerCA: true, pvc: true, networkPolicies: true, pdb: true, podAnnotations: true,
		apiCredentials: []string{"DRAGONFLY_CF_ACCESS_CLIENT_ID", "DRAGONFLY_CF_ACCESS_CLIENT_SECRET"},
		secrets:        secrets,
	}
	cases := []struct {
		name       string
		dir        string
		components []string
		edit       func(*fleetWant)
	}{
		{name: "hpa", dir: "hpa", edit: func(w *fleetWant) { w.autoscaler = "HorizontalPodAutoscaler" }},
		{name: "keda", dir: "keda", edit: func(w *fleetWant) { w.autoscaler = "ScaledObject" }},
		{name: "hpa+servicemonitor", dir: "hpa", components: []string{"servicemonitor"}, edit: func(w *fleetWant) {
			w.autoscaler, w.serviceMonitor, w.podMonitor = "HorizontalPodAutoscaler", true, true
		}},
		{name: "keda+servicemonitor+mtls", dir: "keda", components: []string{"servicemonitor", "mtls"}, edit: func(w *fleetWant) {
			w.autoscaler, w.serviceMonitor, w.podMonitor, w.mutualTLS = "ScaledObject", true, true, true
		}},
		{name: "hpa+auth0", dir: "hpa", components: []string{"auth0"}, edit: func(w *fleetWant) {
			w.autoscaler = "HorizontalPodAutoscaler"
			w.apiCredentials = []string{"DRAGONFLY_CLIENT_ID", "DRAGONFLY_CLIENT_SECRET", "DRAGONFLY_USERNAME", "DRAGONFLY_PASSWORD"}
		}},
		{name: "keda+statustoken", dir: "keda", components: []string{"statustoken"}, edit: func(w *fleetWant) {
			w.autoscaler, w.statusToken = "ScaledObject", true
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := base
			tc.edit(&want)
			dir := filepath.Join(manifestsDir, "overlays", tc.dir)
			if len(tc.components) > 0 {
				dir = withComponents(t, tc.dir, tc.components...)
			}
			checkFleet(t, kustomizeRender(t, dir), want)
		})
	}
}

// TestKustomizeBaseHasNoMonitors: the base must apply on clusters without
// the Prometheus Operator's CRDs, so its monitors live in a component.
func TestKustomizeBaseHasNoMonitors(t *testing.T) {
	for overlay := range overlays {
		objs := kustomizeRender(t, filepath.Join(manifestsDir, "overlays", overlay))
		for _, o := range objs {
			if strings.HasPrefix(o.apiVersion, "monitoring.coreos.com/") {
				t.Errorf("overlays/%s renders a %s: the Prometheus Operator's kinds belong in components/servicemonitor", overlay, o.kind)
			}
		}
	}
}

// exampleSecrets maps the names of the Secrets in secret.example.yaml to
// their keys. Every key named after a setting must be a secret setting of
// the dragonfly command.
func exampleSecrets(t *testing.T) map[string]map[string]bool {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(manifestsDir, "secret.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeAll("secret.example.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	secretSettings := secretEnvNames(t)
	out := map[string]map[string]bool{}
	for _, o := range objs {
		s, ok := o.typed.(*corev1.Secret)
		if !ok {
			t.Fatalf("secret.example.yaml holds a %s", o.kind)
		}
		out[s.Name] = map[string]bool{}
		for k := range s.StringData {
			out[s.Name][k] = true
			if strings.HasPrefix(k, "DRAGONFLY_") && !secretSettings[k] {
				t.Errorf("secret %s key %s is not a secret setting of the dragonfly command", s.Name, k)
			}
		}
		for k := range s.Data {
			out[s.Name][k] = true
		}
	}
	return out
}

var envLiteral = regexp.MustCompile(`"(DRAGONFLY_[A-Z0-9_]+)"`)

// commandSources returns the non-test Go files of cmd/dragonfly.
func commandSources(t *testing.T) [][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, "cmd", "dragonfly", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, data)
	}
	return out
}

// knownEnvNames are the DRAGONFLY_* names the dragonfly command reads: every
// such string literal in cmd/dragonfly (test files excluded), and the _FILE
// form of every secret setting.
func knownEnvNames(t *testing.T) map[string]bool {
	t.Helper()
	known := commandNames(t, envLiteral)
	if len(known) < 20 || !known["DRAGONFLY_FLEET_TOKEN"] {
		t.Fatalf("found only %d DRAGONFLY_* names in cmd/dragonfly; is the repository layout different?", len(known))
	}
	for name := range secretEnvNames(t) {
		known[name+"_FILE"] = true
	}
	return known
}

// secretCall is a setting registered as a secret on one line:
// s.Var(..., "DRAGONFLY_X", "help").MarkSecret().
var secretCall = regexp.MustCompile(`"(DRAGONFLY_[A-Z0-9_]+)"[^\n]*\.MarkSecret\(\)`)

// secretEnvNames are the settings cmd/dragonfly marks secret: the ones that
// also read DRAGONFLY_<NAME>_FILE.
func secretEnvNames(t *testing.T) map[string]bool {
	t.Helper()
	out := commandNames(t, secretCall)
	for _, must := range []string{"DRAGONFLY_FLEET_TOKEN", "DRAGONFLY_STATUS_TOKEN", "DRAGONFLY_CF_ACCESS_CLIENT_SECRET", "DRAGONFLY_PASSWORD"} {
		if !out[must] {
			t.Fatalf("cmd/dragonfly does not mark %s secret (found %v); has the way settings are registered changed?", must, keys(out))
		}
	}
	return out
}

// commandNames are the first submatches of re in the sources of
// cmd/dragonfly.
func commandNames(t *testing.T, re *regexp.Regexp) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, data := range commandSources(t) {
		for _, m := range re.FindAllSubmatch(data, -1) {
			out[string(m[1])] = true
		}
	}
	return out
}
