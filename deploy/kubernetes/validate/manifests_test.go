package validate

import (
	"bytes"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
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
	case "kustomize.config.k8s.io/v1beta1, Kustomization":
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
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			return nil, fmt.Errorf("%s#%d: %w", source, i, err)
		}
		typed, err := newTyped(meta.APIVersion, meta.Kind)
		if err != nil {
			return nil, fmt.Errorf("%s#%d: %w", source, i, err)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), typed); err != nil {
			return nil, fmt.Errorf("%s#%d (%s %s): strict decode: %w", source, i, meta.Kind, meta.Metadata.Name, err)
		}
		out = append(out, object{
			source: fmt.Sprintf("%s#%d", source, i), apiVersion: meta.APIVersion, kind: meta.Kind,
			name: meta.Metadata.Name, namespace: meta.Metadata.Namespace, typed: typed,
		})
	}
	return out, nil
}

// manifestFiles lists the YAML files under deploy/kubernetes (not this module).
func manifestFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(manifestsDir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "validate" {
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
		"PodDisruptionBudget", "NetworkPolicy", "HorizontalPodAutoscaler", "ScaledObject", "Secret", "ServiceAccount"} {
		if kinds[k] == 0 {
			t.Errorf("no %s in the manifests (kinds found: %v)", k, kinds)
		}
	}
}

// TestStrictDecodingCatchesMistakes shows the checks have teeth: a misspelt
// field, a duplicate key and an unknown kind all fail.
func TestStrictDecodingCatchesMistakes(t *testing.T) {
	bad := map[string]string{
		"misspelt field": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 1\n",
		"duplicate key":  "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nmetadata: {name: y}\n",
		"unknown kind":   "apiVersion: v1\nkind: Servce\nmetadata: {name: x}\n",
		"keda typo":      "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\nspec:\n  scaleTargetRef: {name: w}\n  minReplicas: 0\n",
		"wrong type":     "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: x}\nspec:\n  selector: worker\n",
	}
	for name, doc := range bad {
		if _, err := decodeAll(name, []byte(doc)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

// render builds an overlay as `kubectl apply -k` would and decodes the result.
func render(t *testing.T, overlay string) []object {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join(manifestsDir, "overlays", overlay))
	if err != nil {
		t.Fatalf("kustomize build overlays/%s: %v", overlay, err)
	}
	out, err := resMap.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeAll("overlays/"+overlay, out)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// find returns the one object of kind and name.
func find[T any](t *testing.T, objs []object, kind, name string) T {
	t.Helper()
	var found []T
	for _, o := range objs {
		if o.kind == kind && o.name == name {
			found = append(found, o.typed.(T))
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one %s %q, found %d", kind, name, len(found))
	}
	return found[0]
}

func count(objs []object, kind string) int {
	n := 0
	for _, o := range objs {
		if o.kind == kind {
			n++
		}
	}
	return n
}

func TestOverlaysRender(t *testing.T) {
	secrets := exampleSecrets(t)
	known := knownEnvNames(t)
	for overlay, autoscaler := range overlays {
		t.Run(overlay, func(t *testing.T) {
			objs := render(t, overlay)
			// One autoscaler, never both.
			for _, kind := range []string{"HorizontalPodAutoscaler", "ScaledObject"} {
				want := 0
				if kind == autoscaler {
					want = 1
				}
				if got := count(objs, kind); got != want {
					t.Errorf("%d %s objects, want %d", got, kind, want)
				}
			}
			for _, o := range objs {
				if o.kind != "Namespace" && o.namespace != namespace {
					t.Errorf("%s %s: namespace %q, want %q", o.kind, o.name, o.namespace, namespace)
				}
			}
			ns := find[*corev1.Namespace](t, objs, "Namespace", namespace)
			if got := ns.Labels["pod-security.kubernetes.io/enforce"]; got != "restricted" {
				t.Errorf("namespace enforces pod security %q, want restricted", got)
			}

			coord := find[*appsv1.Deployment](t, objs, "Deployment", "dragonfly-coordinator")
			worker := find[*appsv1.Deployment](t, objs, "Deployment", "dragonfly-worker")
			for _, d := range []*appsv1.Deployment{coord, worker} {
				checkPod(t, d.Name, &d.Spec.Template.Spec, secrets, known)
				if !selectorMatches(t, d.Spec.Selector, d.Spec.Template.Labels) {
					t.Errorf("%s: selector does not match its pod template", d.Name)
				}
			}
			checkCoordinator(t, objs, coord)
			checkWorker(t, objs, worker, coord)
			checkNetworkPolicies(t, objs, worker, coord)

			pdb := find[*policyv1.PodDisruptionBudget](t, objs, "PodDisruptionBudget", "dragonfly-worker")
			if !selectorMatches(t, pdb.Spec.Selector, worker.Spec.Template.Labels) || selectorMatches(t, pdb.Spec.Selector, coord.Spec.Template.Labels) {
				t.Errorf("worker PDB must select the worker pods and only them")
			}
			if pdb.Spec.MaxUnavailable == nil && pdb.Spec.MinAvailable == nil {
				t.Errorf("worker PDB sets no budget")
			}

			switch autoscaler {
			case "HorizontalPodAutoscaler":
				checkHPA(t, find[*autoscalingv2.HorizontalPodAutoscaler](t, objs, autoscaler, "dragonfly-worker"), worker)
			case "ScaledObject":
				checkKEDA(t, find[*kedav1alpha1.ScaledObject](t, objs, autoscaler, "dragonfly-worker"), worker)
			}
		})
	}
}

// metaSelector is a Service's selector (a plain label set).
func metaSelector(m map[string]string) labels.Selector { return labels.SelectorFromSet(m) }

// checkPod holds both Deployments to the restricted Pod Security Standard and
// to the rule that secrets are only referenced.
func checkPod(t *testing.T, name string, pod *corev1.PodSpec, secrets map[string]map[string]bool, known map[string]bool) {
	t.Helper()
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Errorf("%s: pod runAsNonRoot is not true", name)
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: pod seccomp profile is not RuntimeDefault", name)
	}
	if psc != nil && psc.RunAsUser != nil && *psc.RunAsUser == 0 {
		t.Errorf("%s: runs as root", name)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("%s: mounts a service account token it does not need", name)
	}
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		t.Errorf("%s: uses host namespaces", name)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%s: %d containers, want 1", name, len(pod.Containers))
	}
	for _, c := range pod.Containers {
		if c.Image != image {
			t.Errorf("%s/%s: image %q, want %q (kustomize images)", name, c.Name, c.Image, image)
		}
		sc := c.SecurityContext
		switch {
		case sc == nil:
			t.Errorf("%s/%s: no securityContext", name, c.Name)
			continue
		case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
			t.Errorf("%s/%s: allowPrivilegeEscalation is not false", name, c.Name)
		case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
			t.Errorf("%s/%s: readOnlyRootFilesystem is not true", name, c.Name)
		case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0:
			t.Errorf("%s/%s: capabilities must drop ALL and add none", name, c.Name)
		case sc.Privileged != nil && *sc.Privileged:
			t.Errorf("%s/%s: privileged", name, c.Name)
		}
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := c.Resources.Requests[r]; !ok {
				t.Errorf("%s/%s: no %s request", name, c.Name, r)
			}
		}
		if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
			t.Errorf("%s/%s: no memory limit", name, c.Name)
		}
		for _, e := range c.Env {
			if !known[e.Name] {
				t.Errorf("%s/%s: env %s is not a setting of the dragonfly command", name, c.Name, e.Name)
			}
			if secretLike(e.Name) {
				ref := (*corev1.SecretKeySelector)(nil)
				if e.ValueFrom != nil {
					ref = e.ValueFrom.SecretKeyRef
				}
				if e.Value != "" || ref == nil {
					t.Errorf("%s/%s: %s must come from a secretKeyRef", name, c.Name, e.Name)
					continue
				}
				if !secrets[ref.Name][ref.Key] {
					t.Errorf("%s/%s: %s refers to secret %s key %s, which secret.example.yaml does not define", name, c.Name, e.Name, ref.Name, ref.Key)
				}
			}
		}
		for _, ef := range c.EnvFrom {
			if ef.ConfigMapRef != nil {
				continue
			}
			if ef.SecretRef == nil || secrets[ef.SecretRef.Name] == nil {
				t.Errorf("%s/%s: envFrom a secret that secret.example.yaml does not define", name, c.Name)
			}
		}
	}
}

var secretPattern = regexp.MustCompile(`TOKEN|SECRET|PASSWORD|CLIENT_ID|USERNAME`)

func secretLike(env string) bool { return secretPattern.MatchString(env) }

func envValue(c corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

func mustDuration(t *testing.T, what, s string) time.Duration {
	t.Helper()
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(n) * time.Second
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("%s: %q is not a duration", what, s)
	}
	return d
}

func checkCoordinator(t *testing.T, objs []object, d *appsv1.Deployment) {
	t.Helper()
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
		t.Errorf("coordinator: replicas must be 1")
	}
	if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("coordinator: strategy %q, want Recreate", d.Spec.Strategy.Type)
	}
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	if !slices.Equal(c.Args, []string{"coordinator"}) {
		t.Errorf("coordinator: args %v", c.Args)
	}
	for name, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if p == nil || p.GRPC == nil || p.GRPC.Port != 50051 {
			t.Errorf("coordinator: %s probe must be a native gRPC probe on 50051", name)
		}
	}
	listen, _ := envValue(c, "DRAGONFLY_LISTEN_ADDR")
	if listen != ":50051" {
		t.Errorf("coordinator: DRAGONFLY_LISTEN_ADDR %q, want :50051", listen)
	}
	drain, ok := envValue(c, "DRAGONFLY_DRAIN_TIMEOUT")
	if !ok {
		drain = "30s" // the command's default
	}
	// The coordinator drains for the drain timeout, then stops gRPC within 5s more.
	need := mustDuration(t, "DRAGONFLY_DRAIN_TIMEOUT", drain) + 5*time.Second
	if g := pod.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= need {
		t.Errorf("coordinator: terminationGracePeriodSeconds must exceed %v", need)
	}
	// The outbox lives on the PVC.
	outbox, _ := envValue(c, "DRAGONFLY_OUTBOX_PATH")
	var mounted bool
	for _, m := range c.VolumeMounts {
		if outbox != "" && filepath.Dir(outbox) == m.MountPath {
			for _, v := range pod.Volumes {
				if v.Name == m.Name && v.PersistentVolumeClaim != nil {
					find[*corev1.PersistentVolumeClaim](t, objs, "PersistentVolumeClaim", v.PersistentVolumeClaim.ClaimName)
					mounted = true
				}
			}
		}
	}
	if !mounted {
		t.Errorf("coordinator: DRAGONFLY_OUTBOX_PATH %q is not on a PersistentVolumeClaim", outbox)
	}
	if pod.SecurityContext.FSGroup == nil {
		t.Errorf("coordinator: no fsGroup: the outbox volume may not be writable by the non-root user")
	}
	if len(c.EnvFrom) == 0 {
		t.Errorf("coordinator: API credentials are not taken from a secret (envFrom)")
	}
}

func checkWorker(t *testing.T, objs []object, d, coord *appsv1.Deployment) {
	t.Helper()
	if d.Spec.Replicas != nil {
		t.Errorf("worker: spec.replicas is set; the autoscaler owns it")
	}
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	if !slices.Equal(c.Args, []string{"worker"}) {
		t.Errorf("worker: args %v", c.Args)
	}
	grace, ok := envValue(c, "DRAGONFLY_DRAIN_GRACE")
	if !ok {
		grace = "25s"
	}
	if g := pod.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= mustDuration(t, "DRAGONFLY_DRAIN_GRACE", grace) {
		t.Errorf("worker: terminationGracePeriodSeconds must exceed the drain grace %s", grace)
	}
	metrics, _ := envValue(c, "DRAGONFLY_WORKER_METRICS_ADDR")
	_, port, err := net.SplitHostPort(metrics)
	if err != nil {
		t.Fatalf("worker: DRAGONFLY_WORKER_METRICS_ADDR %q: %v", metrics, err)
	}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.Exec == nil {
			t.Errorf("worker: %s probe must exec dragonfly healthcheck", name)
			continue
		}
		cmd := p.Exec.Command
		i := slices.Index(cmd, "--http")
		if len(cmd) < 4 || cmd[0] != binary || cmd[1] != "healthcheck" || i < 0 || i+1 >= len(cmd) {
			t.Errorf("worker: %s probe %v is not `%s healthcheck --http URL`", name, cmd, binary)
			continue
		}
		u, err := url.Parse(cmd[i+1])
		if err != nil || u.Port() != port || u.Path != "/healthz" {
			t.Errorf("worker: %s probe URL %q does not hit /healthz on the metrics port %s", name, cmd[i+1], port)
		}
		if p.TimeoutSeconds == 0 || p.PeriodSeconds == 0 {
			t.Errorf("worker: %s probe without timeout/period", name)
		}
	}
	// Workers find the coordinator through its Service.
	addr, _ := envValue(c, "DRAGONFLY_COORDINATOR_ADDR")
	host, cport, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("worker: DRAGONFLY_COORDINATOR_ADDR %q: %v", addr, err)
	}
	svc := find[*corev1.Service](t, objs, "Service", host)
	if !metaSelector(svc.Spec.Selector).Matches(labels.Set(coord.Spec.Template.Labels)) ||
		metaSelector(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("service %s must select the coordinator pod and not the workers", host)
	}
	var served bool
	for _, p := range svc.Spec.Ports {
		if strconv.Itoa(int(p.Port)) == cport && p.TargetPort.String() == "grpc" {
			served = true
		}
	}
	if !served {
		t.Errorf("service %s has no port %s to the coordinator's grpc port", host, cport)
	}
	threads, _ := envValue(c, "DRAGONFLY_THREADS")
	n, err := strconv.Atoi(threads)
	if lim := c.Resources.Limits.Cpu(); err != nil || lim == nil || int64(n) > lim.Value() {
		t.Errorf("worker: DRAGONFLY_THREADS %q must be a number no larger than the CPU limit", threads)
	}
	allowed, _ := envValue(c, "DRAGONFLY_ALLOWED_HOSTS")
	if allowed != "files.pythonhosted.org" {
		t.Errorf("worker: DRAGONFLY_ALLOWED_HOSTS %q, want files.pythonhosted.org", allowed)
	}
}

// selectorMatches reports whether a label selector selects a pod with labels set.
func selectorMatches(t *testing.T, sel *metav1.LabelSelector, set map[string]string) bool {
	t.Helper()
	if sel == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatal(err)
	}
	return !s.Empty() && s.Matches(labels.Set(set))
}

func checkNetworkPolicies(t *testing.T, objs []object, worker, coord *appsv1.Deployment) {
	t.Helper()
	np := find[*networkingv1.NetworkPolicy](t, objs, "NetworkPolicy", "dragonfly-worker")
	if !selectorMatches(t, &np.Spec.PodSelector, worker.Spec.Template.Labels) || selectorMatches(t, &np.Spec.PodSelector, coord.Spec.Template.Labels) {
		t.Fatalf("worker NetworkPolicy must select the workers only")
	}
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
		t.Errorf("worker NetworkPolicy does not restrict egress")
	}
	allowed := map[string]bool{"TCP/50051": true, "UDP/53": true, "TCP/53": true, "TCP/443": true}
	var toCoordinator, dns, https bool
	for _, rule := range np.Spec.Egress {
		if len(rule.Ports) == 0 {
			t.Errorf("worker egress rule without ports allows every port")
		}
		for _, p := range rule.Ports {
			key := fmt.Sprintf("%s/%s", *p.Protocol, p.Port.String())
			if !allowed[key] {
				t.Errorf("worker egress allows %s", key)
			}
			for _, peer := range rule.To {
				switch {
				case key == "TCP/50051" && peer.PodSelector != nil && peer.NamespaceSelector == nil:
					toCoordinator = selectorMatches(t, peer.PodSelector, coord.Spec.Template.Labels)
				case key == "UDP/53" && peer.NamespaceSelector != nil:
					dns = true
				case key == "TCP/443" && peer.IPBlock != nil:
					https = true
					if peer.IPBlock.CIDR == "0.0.0.0/0" && !slices.Contains(peer.IPBlock.Except, "10.0.0.0/8") {
						t.Errorf("worker HTTPS egress does not exclude private ranges")
					}
				}
			}
			if len(rule.To) == 0 {
				t.Errorf("worker egress rule for %s allows every destination", key)
			}
		}
	}
	if !toCoordinator || !dns || !https {
		t.Errorf("worker egress: coordinator %v, DNS %v, HTTPS %v; want all", toCoordinator, dns, https)
	}

	cnp := find[*networkingv1.NetworkPolicy](t, objs, "NetworkPolicy", "dragonfly-coordinator")
	if !selectorMatches(t, &cnp.Spec.PodSelector, coord.Spec.Template.Labels) {
		t.Fatalf("coordinator NetworkPolicy does not select the coordinator")
	}
	var fromWorkers bool
	for _, rule := range cnp.Spec.Ingress {
		for _, p := range rule.Ports {
			if p.Port.String() != "50051" {
				continue
			}
			for _, peer := range rule.From {
				if peer.PodSelector != nil && selectorMatches(t, peer.PodSelector, worker.Spec.Template.Labels) {
					fromWorkers = true
				} else {
					t.Errorf("coordinator gRPC is open to more than the workers")
				}
			}
		}
	}
	if !fromWorkers {
		t.Errorf("coordinator NetworkPolicy does not let workers reach 50051")
	}
}

func checkHPA(t *testing.T, h *autoscalingv2.HorizontalPodAutoscaler, worker *appsv1.Deployment) {
	t.Helper()
	ref := h.Spec.ScaleTargetRef
	if ref.Kind != "Deployment" || ref.Name != worker.Name || ref.APIVersion != "apps/v1" {
		t.Errorf("HPA targets %+v, want the worker Deployment", ref)
	}
	if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 1 || h.Spec.MaxReplicas < *h.Spec.MinReplicas {
		t.Errorf("HPA replicas: min %v max %d", h.Spec.MinReplicas, h.Spec.MaxReplicas)
	}
	var cpu bool
	for _, m := range h.Spec.Metrics {
		if m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource != nil && m.Resource.Name == corev1.ResourceCPU &&
			m.Resource.Target.Type == autoscalingv2.UtilizationMetricType && m.Resource.Target.AverageUtilization != nil {
			cpu = true
		}
	}
	if !cpu {
		t.Errorf("HPA does not scale on CPU utilisation")
	}
}

func checkKEDA(t *testing.T, so *kedav1alpha1.ScaledObject, worker *appsv1.Deployment) {
	t.Helper()
	ref := so.Spec.ScaleTargetRef
	if ref == nil || ref.Name != worker.Name || (ref.Kind != "" && ref.Kind != "Deployment") {
		t.Fatalf("ScaledObject targets %+v, want the worker Deployment", ref)
	}
	if so.Spec.MinReplicaCount == nil || *so.Spec.MinReplicaCount != 0 {
		t.Errorf("ScaledObject minReplicaCount must be 0 (scale to zero)")
	}
	if so.Spec.MaxReplicaCount == nil || *so.Spec.MaxReplicaCount < 1 {
		t.Errorf("ScaledObject maxReplicaCount must be at least 1")
	}
	if len(so.Spec.Triggers) != 1 {
		t.Fatalf("ScaledObject has %d triggers, want 1", len(so.Spec.Triggers))
	}
	tr := so.Spec.Triggers[0]
	if tr.Type != "prometheus" {
		t.Errorf("trigger type %q, want prometheus", tr.Type)
	}
	for _, key := range []string{"serverAddress", "query", "threshold"} {
		if tr.Metadata[key] == "" {
			t.Errorf("prometheus trigger has no %s", key)
		}
	}
	if !strings.Contains(tr.Metadata["query"], "dragonfly_fleet_desired_workers") {
		t.Errorf("query %q does not read dragonfly_fleet_desired_workers", tr.Metadata["query"])
	}
	if tr.Metadata["threshold"] != "1" {
		t.Errorf("threshold %q: with the desired-workers metric it must be 1", tr.Metadata["threshold"])
	}
	if so.Spec.Fallback != nil && tr.MetricType != "" && tr.MetricType != autoscalingv2.AverageValueMetricType {
		t.Errorf("KEDA fallback needs metricType AverageValue, got %s", tr.MetricType)
	}
}

// exampleSecrets maps the names of the Secrets in secret.example.yaml to their keys.
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
	known := knownEnvNames(t)
	out := map[string]map[string]bool{}
	for _, o := range objs {
		s, ok := o.typed.(*corev1.Secret)
		if !ok {
			t.Fatalf("secret.example.yaml holds a %s", o.kind)
		}
		out[s.Name] = map[string]bool{}
		for k := range s.StringData {
			out[s.Name][k] = true
			if !known[k] {
				t.Errorf("secret %s key %s is not a setting of the dragonfly command", s.Name, k)
			}
		}
	}
	return out
}

var envLiteral = regexp.MustCompile(`"(DRAGONFLY_[A-Z0-9_]+)"`)

// knownEnvNames are the DRAGONFLY_* names the dragonfly command reads: every
// such string literal in cmd/dragonfly (test files excluded).
func knownEnvNames(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(repoRoot, "cmd", "dragonfly", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range envLiteral.FindAllSubmatch(data, -1) {
			known[string(m[1])] = true
		}
	}
	if len(known) < 20 || !known["DRAGONFLY_FLEET_TOKEN"] {
		t.Fatalf("found only %d DRAGONFLY_* names in cmd/dragonfly; is the repository layout different?", len(known))
	}
	return known
}
