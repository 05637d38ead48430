package validate

import (
	"fmt"
	"maps"
	"net"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The ports every example uses: the coordinator's HTTP port
// (coordinator.DefaultMetricsPort) and the workers' metrics port. Both lie
// above the exporter range of Prometheus's default port allocations.
const (
	grpcPort          = 50051
	coordinatorHTTP   = 10179
	workerMetricsPort = 10180
	componentLabel    = "app.kubernetes.io/component"
	// systemRoots is the image's CA bundle.
	systemRoots = "/etc/ssl/certs/ca-certificates.crt"
)

// fleetWant is what one rendering (a kustomize overlay with components, or
// the Helm chart with a set of values) must hold.
type fleetWant struct {
	namespace       string
	image           string
	namespaceObject bool   // the rendering creates the Namespace (kustomize)
	autoscaler      string // HorizontalPodAutoscaler, ScaledObject, or "" (fixed replicas)
	workerReplicas  int32  // with no autoscaler
	serviceMonitor  bool
	podMonitor      bool
	podAnnotations  bool // prometheus.io/* annotations on the pods
	tls             bool // TLS on the fleet's gRPC (else DRAGONFLY_FLEET_INSECURE on both roles)
	mutualTLS       bool
	workerCA        bool   // workers verify the coordinator with a CA file (else the system roots)
	pvc             bool   // the outbox on a PersistentVolumeClaim the rendering makes
	existingClaim   string // the outbox on this claim, not made here (else, without pvc, an emptyDir)
	networkPolicies bool
	pdb             bool
	statusToken     bool
	// apiCredentials are the settings the coordinator reads from files.
	apiCredentials []string
	// secrets maps the Secrets the rendering may mount to their keys.
	secrets map[string]map[string]bool
}

// checkFleet holds a rendering to everything the deployment promises.
func checkFleet(t *testing.T, objs []object, want fleetWant) {
	t.Helper()
	known := knownEnvNames(t)
	secretSettings := secretEnvNames(t)

	allowedKinds := map[string]bool{"Deployment": true, "Service": true, "ServiceAccount": true, "PersistentVolumeClaim": true,
		"PodDisruptionBudget": true, "NetworkPolicy": true, "Namespace": want.namespaceObject,
		"HorizontalPodAutoscaler": want.autoscaler == "HorizontalPodAutoscaler", "ScaledObject": want.autoscaler == "ScaledObject",
		"ServiceMonitor": want.serviceMonitor, "PodMonitor": want.podMonitor}
	for _, o := range objs {
		if !allowedKinds[o.kind] {
			t.Errorf("unexpected %s %s (%s)", o.kind, o.name, o.source)
		}
		if o.kind == "Secret" {
			t.Errorf("%s renders a Secret: secrets are referenced, never created", o.source)
		}
		if o.kind != "Namespace" && o.namespace != want.namespace {
			t.Errorf("%s %s: namespace %q, want %q", o.kind, o.name, o.namespace, want.namespace)
		}
	}
	if want.namespaceObject {
		ns := find[*corev1.Namespace](t, objs, "Namespace", want.namespace)
		if got := ns.Labels["pod-security.kubernetes.io/enforce"]; got != "restricted" {
			t.Errorf("namespace enforces pod security %q, want restricted", got)
		}
	}
	for kind, n := range map[string]int{
		"HorizontalPodAutoscaler": b2i(want.autoscaler == "HorizontalPodAutoscaler"),
		"ScaledObject":            b2i(want.autoscaler == "ScaledObject"),
		"ServiceMonitor":          b2i(want.serviceMonitor),
		"PodMonitor":              b2i(want.podMonitor),
		"NetworkPolicy":           2 * b2i(want.networkPolicies),
		"PodDisruptionBudget":     b2i(want.pdb),
		"Deployment":              2,
	} {
		if got := count(objs, kind); got != n {
			t.Errorf("%d %s objects, want %d", got, kind, n)
		}
	}

	coord := component[*appsv1.Deployment](t, objs, "Deployment", "coordinator")
	worker := component[*appsv1.Deployment](t, objs, "Deployment", "worker")
	for _, d := range []*appsv1.Deployment{coord, worker} {
		checkPod(t, d.Name, &d.Spec.Template.Spec, want, known, secretSettings)
		if !selectorMatches(t, d.Spec.Selector, d.Spec.Template.Labels) {
			t.Errorf("%s: selector does not match its pod template", d.Name)
		}
		if sa := d.Spec.Template.Spec.ServiceAccountName; sa != "" {
			find[*corev1.ServiceAccount](t, objs, "ServiceAccount", sa)
		}
	}
	if selectorMatches(t, coord.Spec.Selector, worker.Spec.Template.Labels) || selectorMatches(t, worker.Spec.Selector, coord.Spec.Template.Labels) {
		t.Errorf("the coordinator's and the workers' selectors overlap")
	}
	checkCoordinator(t, objs, coord, want)
	svc := checkWorker(t, objs, worker, coord, want)
	checkTLS(t, coord, worker, want)
	checkMetrics(t, objs, coord, worker, svc, want)
	if want.networkPolicies {
		checkNetworkPolicies(t, objs, worker, coord)
	}
	if want.pdb {
		pdb := component[*policyv1.PodDisruptionBudget](t, objs, "PodDisruptionBudget", "worker")
		if !selectorMatches(t, pdb.Spec.Selector, worker.Spec.Template.Labels) || selectorMatches(t, pdb.Spec.Selector, coord.Spec.Template.Labels) {
			t.Errorf("worker PDB must select the worker pods and only them")
		}
		if pdb.Spec.MaxUnavailable == nil && pdb.Spec.MinAvailable == nil {
			t.Errorf("worker PDB sets no budget")
		}
	}
	switch want.autoscaler {
	case "HorizontalPodAutoscaler":
		checkHPA(t, component[*autoscalingv2.HorizontalPodAutoscaler](t, objs, want.autoscaler, "worker"), worker)
	case "ScaledObject":
		checkKEDA(t, component[*kedav1alpha1.ScaledObject](t, objs, want.autoscaler, "worker"), worker, want.namespace)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
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

// component returns the one object of kind labelled with the component.
func component[T any](t *testing.T, objs []object, kind, comp string) T {
	t.Helper()
	var found []T
	for _, o := range objs {
		if o.kind == kind && o.labels[componentLabel] == comp {
			found = append(found, o.typed.(T))
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one %s labelled %s=%s, found %d", kind, componentLabel, comp, len(found))
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

// checkPod holds both Deployments to the restricted Pod Security Standard,
// to known settings, and to secrets as files on Secret volumes.
func checkPod(t *testing.T, name string, pod *corev1.PodSpec, want fleetWant, known, secretSettings map[string]bool) {
	t.Helper()
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Errorf("%s: pod runAsNonRoot is not true", name)
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: pod seccomp profile is not RuntimeDefault", name)
	}
	if psc == nil || psc.RunAsUser == nil || *psc.RunAsUser != 65532 {
		t.Errorf("%s: pod does not run as the image's user 65532", name)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("%s: mounts a service account token it does not need", name)
	}
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		t.Errorf("%s: uses host namespaces", name)
	}
	if len(pod.Containers) != 1 || len(pod.InitContainers) != 0 {
		t.Fatalf("%s: %d containers and %d init containers, want 1 and 0", name, len(pod.Containers), len(pod.InitContainers))
	}
	c := pod.Containers[0]
	if c.Image != want.image {
		t.Errorf("%s/%s: image %q, want %q", name, c.Name, c.Image, want.image)
	}
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Errorf("%s/%s: no securityContext", name, c.Name)
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Errorf("%s/%s: allowPrivilegeEscalation is not false", name, c.Name)
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Errorf("%s/%s: readOnlyRootFilesystem is not true", name, c.Name)
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		t.Errorf("%s/%s: capabilities must drop ALL and add none", name, c.Name)
	case sc.Privileged != nil && *sc.Privileged:
		t.Errorf("%s/%s: privileged", name, c.Name)
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Errorf("%s/%s: runAsNonRoot is not true", name, c.Name)
	case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Errorf("%s/%s: seccomp profile is not RuntimeDefault", name, c.Name)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[r]; !ok {
			t.Errorf("%s/%s: no %s request", name, c.Name, r)
		}
	}
	if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
		t.Errorf("%s/%s: no memory limit", name, c.Name)
	}
	if len(c.EnvFrom) > 0 {
		t.Errorf("%s/%s: envFrom: every setting is named (secrets as files)", name, c.Name)
	}
	seen := map[string]bool{}
	for _, e := range c.Env {
		if seen[e.Name] {
			t.Errorf("%s/%s: env %s set twice", name, c.Name, e.Name)
		}
		seen[e.Name] = true
		if !known[e.Name] {
			t.Errorf("%s/%s: env %s is not a setting of the dragonfly command", name, c.Name, e.Name)
		}
		if secretSettings[e.Name] {
			t.Errorf("%s/%s: %s is a secret: mount it as a file and set %s_FILE", name, c.Name, e.Name, e.Name)
		}
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			t.Errorf("%s/%s: %s comes from a secretKeyRef: secrets are files", name, c.Name, e.Name)
		}
		base, isFile := strings.CutSuffix(e.Name, "_FILE")
		if isFile && secretSettings[base] {
			secretFile(t, name, pod, c, e.Name, want.secrets)
		}
	}
	for _, v := range pod.Volumes {
		s := v.Secret
		if s == nil {
			continue
		}
		mode := int32(0o644) // the API's default
		if s.DefaultMode != nil {
			mode = *s.DefaultMode
		}
		if mode&0o002 != 0 {
			t.Errorf("%s: secret volume %s is world-writable (mode %#o); dragonfly refuses such files", name, v.Name, mode)
		}
		if mode&^0o644 != 0 {
			// Also catches a mode written in decimal (440 is 0o670).
			t.Errorf("%s: secret volume %s mode %#o: secrets need no execute or group/other write bit", name, v.Name, mode)
		}
		if mode&0o004 == 0 && (psc == nil || psc.FSGroup == nil || *psc.FSGroup != 65532 || mode&0o040 == 0) {
			t.Errorf("%s: secret volume %s (mode %#o) is not readable by 65532 (set fsGroup 65532 and a group-readable mode)", name, v.Name, mode)
		}
		if _, ok := want.secrets[s.SecretName]; !ok {
			t.Errorf("%s: volume %s mounts Secret %q, not one of %v", name, v.Name, s.SecretName, keys(want.secrets))
		}
		for _, it := range s.Items {
			if !want.secrets[s.SecretName][it.Key] {
				t.Errorf("%s: volume %s projects key %q, which Secret %s does not have", name, v.Name, it.Key, s.SecretName)
			}
		}
	}
	for _, m := range c.VolumeMounts {
		for _, v := range pod.Volumes {
			if v.Name == m.Name && v.Secret != nil && !m.ReadOnly {
				t.Errorf("%s: secret volume %s mounted writable", name, v.Name)
			}
		}
	}
}

// secretFile checks that the file an env var names is a key of a Secret
// mounted in the container, and returns the Secret's name and key.
func secretFile(t *testing.T, name string, pod *corev1.PodSpec, c corev1.Container, env string, secrets map[string]map[string]bool) (secret, key string) {
	t.Helper()
	file, _ := envValue(c, env)
	if !path.IsAbs(file) {
		t.Errorf("%s: %s=%q is not an absolute path", name, env, file)
		return "", ""
	}
	for _, m := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name != m.Name || v.Secret == nil {
				continue
			}
			key = rel
			if len(v.Secret.Items) > 0 {
				key = ""
				for _, it := range v.Secret.Items {
					if it.Path == rel {
						key = it.Key
					}
				}
			}
			if key == "" || !secrets[v.Secret.SecretName][key] {
				t.Errorf("%s: %s=%s is no key of Secret %s (keys %v)", name, env, file, v.Secret.SecretName, keys(secrets[v.Secret.SecretName]))
				return "", ""
			}
			return v.Secret.SecretName, key
		}
	}
	t.Errorf("%s: %s=%s is not on a Secret volume", name, env, file)
	return "", ""
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

// containerPort resolves a probe's or a monitor's port (a name or a number)
// against the container's ports.
func containerPort(c corev1.Container, p intstr.IntOrString) int32 {
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	return 0
}

// checkProbe checks an HTTP probe on the container's metrics address.
func checkProbe(t *testing.T, who, kind string, p *corev1.Probe, c corev1.Container, port int32, wantPath string) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s: %s probe must GET %s", who, kind, wantPath)
		return
	}
	if p.HTTPGet.Path != wantPath {
		t.Errorf("%s: %s probe GETs %s, want %s", who, kind, p.HTTPGet.Path, wantPath)
	}
	if got := containerPort(c, p.HTTPGet.Port); got != port {
		t.Errorf("%s: %s probe on port %s (%d), want the metrics port %d", who, kind, p.HTTPGet.Port.String(), got, port)
	}
	if p.HTTPGet.Scheme != "" && p.HTTPGet.Scheme != corev1.URISchemeHTTP {
		t.Errorf("%s: %s probe scheme %s; the metrics address serves plain HTTP", who, kind, p.HTTPGet.Scheme)
	}
	if p.PeriodSeconds == 0 {
		t.Errorf("%s: %s probe without a period", who, kind)
	}
}

// metricsPort returns the port of an address setting (":10179") and checks
// the container exposes it as the port named metrics.
func metricsPort(t *testing.T, who string, c corev1.Container, env string, want int32) int32 {
	t.Helper()
	addr, _ := envValue(c, env)
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s: %s %q: %v", who, env, addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil || int32(n) != want {
		t.Errorf("%s: %s %q, want port %d", who, env, addr, want)
	}
	if got := containerPort(c, intstr.FromString("metrics")); got != int32(n) {
		t.Errorf("%s: container port metrics is %d, %s listens on %d", who, got, env, n)
	}
	return int32(n)
}

func checkCoordinator(t *testing.T, objs []object, d *appsv1.Deployment, want fleetWant) {
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
	if listen, _ := envValue(c, "DRAGONFLY_LISTEN_ADDR"); listen != ":50051" {
		t.Errorf("coordinator: DRAGONFLY_LISTEN_ADDR %q, want :50051", listen)
	}
	if got := containerPort(c, intstr.FromString("grpc")); got != grpcPort {
		t.Errorf("coordinator: container port grpc is %d, want %d", got, grpcPort)
	}
	port := metricsPort(t, "coordinator", c, "DRAGONFLY_METRICS_ADDR", coordinatorHTTP)
	checkProbe(t, "coordinator", "startup", c.StartupProbe, c, port, "/healthz")
	checkProbe(t, "coordinator", "liveness", c.LivenessProbe, c, port, "/healthz")
	checkProbe(t, "coordinator", "readiness", c.ReadinessProbe, c, port, "/readyz")

	drain, ok := envValue(c, "DRAGONFLY_DRAIN_TIMEOUT")
	if !ok {
		drain = "30s" // the command's default
	}
	// The coordinator drains for the drain timeout, flushes its reports for
	// up to 15s, then stops gRPC within 5s more.
	need := mustDuration(t, "DRAGONFLY_DRAIN_TIMEOUT", drain) + 20*time.Second
	if g := pod.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= need {
		t.Errorf("coordinator: terminationGracePeriodSeconds must exceed %v", need)
	}
	// The outbox lives on the volume at its directory.
	outbox, _ := envValue(c, "DRAGONFLY_OUTBOX_PATH")
	var claim string
	var onEmptyDir bool
	for _, m := range c.VolumeMounts {
		if outbox == "" || path.Dir(outbox) != m.MountPath {
			continue
		}
		for _, v := range pod.Volumes {
			switch {
			case v.Name != m.Name:
			case v.PersistentVolumeClaim != nil:
				claim = v.PersistentVolumeClaim.ClaimName
			case v.EmptyDir != nil:
				onEmptyDir = true
			}
		}
	}
	switch {
	case want.pvc:
		if claim == "" {
			t.Errorf("coordinator: DRAGONFLY_OUTBOX_PATH %q is not on a PersistentVolumeClaim", outbox)
		} else {
			find[*corev1.PersistentVolumeClaim](t, objs, "PersistentVolumeClaim", claim)
		}
	case want.existingClaim != "":
		if claim != want.existingClaim || count(objs, "PersistentVolumeClaim") != 0 {
			t.Errorf("coordinator: outbox on claim %q (%d claims made), want the existing claim %q and none made", claim, count(objs, "PersistentVolumeClaim"), want.existingClaim)
		}
	default:
		if !onEmptyDir || count(objs, "PersistentVolumeClaim") != 0 {
			t.Errorf("coordinator: without persistence the outbox %q must be on an emptyDir and no claim made", outbox)
		}
	}
	if pod.SecurityContext.FSGroup == nil {
		t.Errorf("coordinator: no fsGroup: the outbox volume may not be writable by the non-root user")
	}
	// The API credentials: exactly the wanted settings, each from a file.
	var creds []string
	for _, e := range c.Env {
		if base, ok := strings.CutSuffix(e.Name, "_FILE"); ok && base != "DRAGONFLY_FLEET_TOKEN" && base != "DRAGONFLY_STATUS_TOKEN" {
			creds = append(creds, base)
		}
	}
	slices.Sort(creds)
	wantCreds := slices.Sorted(slices.Values(want.apiCredentials))
	if !slices.Equal(creds, wantCreds) {
		t.Errorf("coordinator: API credentials from files %v, want %v", creds, wantCreds)
	}
	if _, ok := envValue(c, "DRAGONFLY_FLEET_TOKEN_FILE"); !ok {
		t.Errorf("coordinator: no DRAGONFLY_FLEET_TOKEN_FILE")
	}
	if _, ok := envValue(c, "DRAGONFLY_STATUS_TOKEN_FILE"); ok != want.statusToken {
		t.Errorf("coordinator: DRAGONFLY_STATUS_TOKEN_FILE set %v, want %v", ok, want.statusToken)
	}
	if _, ok := envValue(c, "DRAGONFLY_INSECURE"); ok {
		t.Errorf("coordinator: DRAGONFLY_INSECURE (no fleet token) is for a loopback listener only")
	}
}

// checkWorker checks the worker Deployment and returns the coordinator
// Service the workers dial.
func checkWorker(t *testing.T, objs []object, d, coord *appsv1.Deployment, want fleetWant) *corev1.Service {
	t.Helper()
	switch {
	case want.autoscaler != "" && d.Spec.Replicas != nil:
		t.Errorf("worker: spec.replicas is set; the autoscaler owns it")
	case want.autoscaler == "" && (d.Spec.Replicas == nil || *d.Spec.Replicas != want.workerReplicas):
		t.Errorf("worker: replicas %v, want %d (no autoscaler)", d.Spec.Replicas, want.workerReplicas)
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
	// A file in libyara when the grace ends finishes its scan (up to the scan
	// timeout) before the task is handed back; killed sooner, the task counts
	// as lost by this worker.
	if g := pod.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= workerDrain(t, c) {
		t.Errorf("worker: terminationGracePeriodSeconds must exceed the drain grace %s plus the scan timeout", grace)
	}
	port := metricsPort(t, "worker", c, "DRAGONFLY_WORKER_METRICS_ADDR", workerMetricsPort)
	checkProbe(t, "worker", "liveness", c.LivenessProbe, c, port, "/healthz")
	checkProbe(t, "worker", "readiness", c.ReadinessProbe, c, port, "/readyz")
	if c.StartupProbe != nil && c.StartupProbe.HTTPGet != nil && c.StartupProbe.HTTPGet.Path == "/readyz" {
		t.Errorf("worker: a startup probe on /readyz would kill workers while the coordinator is down")
	}
	if _, ok := envValue(c, "DRAGONFLY_FLEET_TOKEN_FILE"); !ok {
		t.Errorf("worker: no DRAGONFLY_FLEET_TOKEN_FILE")
	}
	for _, e := range c.Env {
		if strings.HasPrefix(e.Name, "DRAGONFLY_") && strings.HasSuffix(e.Name, "_FILE") && e.Name != "DRAGONFLY_FLEET_TOKEN_FILE" {
			t.Errorf("worker: %s: workers hold no secret but the fleet token", e.Name)
		}
	}
	// Workers find the coordinator through its Service.
	addr, _ := envValue(c, "DRAGONFLY_COORDINATOR_ADDR")
	host, cport, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("worker: DRAGONFLY_COORDINATOR_ADDR %q: %v", addr, err)
	}
	svc := find[*corev1.Service](t, objs, "Service", host)
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(coord.Spec.Template.Labels)) ||
		labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) || len(svc.Spec.Selector) == 0 {
		t.Errorf("service %s must select the coordinator pod and not the workers", host)
	}
	var served bool
	for _, p := range svc.Spec.Ports {
		if strconv.Itoa(int(p.Port)) == cport && containerPort(coord.Spec.Template.Spec.Containers[0], p.TargetPort) == grpcPort {
			served = true
		}
	}
	if !served {
		t.Errorf("service %s has no port %s to the coordinator's gRPC port", host, cport)
	}
	threads, _ := envValue(c, "DRAGONFLY_THREADS")
	n, err := strconv.Atoi(threads)
	if lim := c.Resources.Limits.Cpu(); err != nil || n < 1 || lim == nil || int64(n) > lim.Value() {
		t.Errorf("worker: DRAGONFLY_THREADS %q must be a number from 1 to the CPU limit", threads)
	}
	if allowed, _ := envValue(c, "DRAGONFLY_ALLOWED_HOSTS"); allowed != "files.pythonhosted.org" {
		t.Errorf("worker: DRAGONFLY_ALLOWED_HOSTS %q, want files.pythonhosted.org", allowed)
	}
	return svc
}

// workerDrain is the longest a worker of container c may take to hand back
// its tasks after SIGTERM: its drain grace (DRAGONFLY_DRAIN_GRACE), then the
// scan of a file still in libyara, which cancelling does not stop
// (DRAGONFLY_SCAN_TIMEOUT).
func workerDrain(t *testing.T, c corev1.Container) time.Duration {
	t.Helper()
	grace, ok := envValue(c, "DRAGONFLY_DRAIN_GRACE")
	if !ok {
		grace = "25s" // worker.DefaultGrace
	}
	scan, ok := envValue(c, "DRAGONFLY_SCAN_TIMEOUT")
	if !ok {
		scan = "10s" // limit.DefaultScanTimeout
	}
	return mustDuration(t, "DRAGONFLY_DRAIN_GRACE", grace) + mustDuration(t, "DRAGONFLY_SCAN_TIMEOUT", scan)
}

// checkTLS: production renderings serve the fleet's gRPC over TLS with
// certificates from Secrets; development ones say DRAGONFLY_FLEET_INSECURE on
// both roles, and nothing else does.
func checkTLS(t *testing.T, coord, worker *appsv1.Deployment, want fleetWant) {
	t.Helper()
	cp, wp := &coord.Spec.Template.Spec, &worker.Spec.Template.Spec
	cc, wc := cp.Containers[0], wp.Containers[0]
	onSecret := func(who string, pod *corev1.PodSpec, c corev1.Container, env string, wantSet bool) {
		t.Helper()
		v, ok := envValue(c, env)
		if !wantSet && v == systemRoots {
			return
		}
		if ok != wantSet {
			t.Errorf("%s: %s set %v, want %v (tls %v, mutual %v)", who, env, ok, wantSet, want.tls, want.mutualTLS)
			return
		}
		if ok {
			secretFile(t, who, pod, c, env, want.secrets)
		}
	}
	onSecret("coordinator", cp, cc, "DRAGONFLY_TLS_CERT", want.tls)
	onSecret("coordinator", cp, cc, "DRAGONFLY_TLS_KEY", want.tls)
	onSecret("coordinator", cp, cc, "DRAGONFLY_TLS_CA", want.mutualTLS)
	// The chart turns a worker's TLS on by setting a TLS file: without a CA
	// of the fleet's own it must name the image's system roots.
	onSecret("worker", wp, wc, "DRAGONFLY_TLS_CA", want.tls && want.workerCA)
	if ca, _ := envValue(wc, "DRAGONFLY_TLS_CA"); want.tls && !want.workerCA && ca != systemRoots {
		t.Errorf("worker: DRAGONFLY_TLS_CA %q, want the image's system roots %s (else the worker speaks plaintext)", ca, systemRoots)
	}
	onSecret("worker", wp, wc, "DRAGONFLY_TLS_CERT", want.mutualTLS)
	onSecret("worker", wp, wc, "DRAGONFLY_TLS_KEY", want.mutualTLS)
	for who, c := range map[string]corev1.Container{"coordinator": cc, "worker": wc} {
		v, ok := envValue(c, "DRAGONFLY_FLEET_INSECURE")
		insecure := ok && v != "" && v != "false"
		if insecure == want.tls {
			t.Errorf("%s: DRAGONFLY_FLEET_INSECURE=%q with tls %v: plaintext tokens only without TLS (development)", who, v, want.tls)
		}
	}
}

// checkMetrics: annotations, Service port and monitors all point at the
// metrics ports.
func checkMetrics(t *testing.T, objs []object, coord, worker *appsv1.Deployment, svc *corev1.Service, want fleetWant) {
	t.Helper()
	for _, d := range []*appsv1.Deployment{coord, worker} {
		a := d.Spec.Template.Annotations
		port := containerPort(d.Spec.Template.Spec.Containers[0], intstr.FromString("metrics"))
		if !want.podAnnotations {
			if a["prometheus.io/scrape"] != "" {
				t.Errorf("%s: prometheus.io annotations present", d.Name)
			}
			continue
		}
		if a["prometheus.io/scrape"] != "true" || a["prometheus.io/port"] != strconv.Itoa(int(port)) || a["prometheus.io/path"] != "/metrics" {
			t.Errorf("%s: prometheus.io annotations %v do not point at /metrics on %d", d.Name, a, port)
		}
	}
	var svcMetrics string
	for _, p := range svc.Spec.Ports {
		if containerPort(coord.Spec.Template.Spec.Containers[0], p.TargetPort) == coordinatorHTTP {
			svcMetrics = p.Name
			if p.Port != coordinatorHTTP {
				t.Errorf("service %s: metrics port %d, want %d", svc.Name, p.Port, coordinatorHTTP)
			}
		}
	}
	if svcMetrics == "" {
		t.Errorf("service %s has no port to the coordinator's metrics", svc.Name)
	}
	if want.serviceMonitor {
		sm := component[*monitoringv1.ServiceMonitor](t, objs, "ServiceMonitor", "coordinator")
		if !selectorMatches(t, &sm.Spec.Selector, svc.Labels) {
			t.Errorf("ServiceMonitor %s does not select Service %s (labels %v)", sm.Name, svc.Name, svc.Labels)
		}
		for _, o := range objs {
			if o.kind == "Service" && o.name != svc.Name && selectorMatches(t, &sm.Spec.Selector, o.labels) {
				t.Errorf("ServiceMonitor %s also selects Service %s", sm.Name, o.name)
			}
		}
		if ns := sm.Spec.NamespaceSelector; !ns.Any && len(ns.MatchNames) > 0 && !slices.Contains(ns.MatchNames, want.namespace) {
			t.Errorf("ServiceMonitor %s looks in namespaces %v, not %s", sm.Name, ns.MatchNames, want.namespace)
		}
		if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != svcMetrics || sm.Spec.Endpoints[0].Path != "/metrics" {
			t.Errorf("ServiceMonitor %s endpoints %+v, want port %q path /metrics", sm.Name, sm.Spec.Endpoints, svcMetrics)
		}
	}
	if want.podMonitor {
		pm := component[*monitoringv1.PodMonitor](t, objs, "PodMonitor", "worker")
		if !selectorMatches(t, &pm.Spec.Selector, worker.Spec.Template.Labels) || selectorMatches(t, &pm.Spec.Selector, coord.Spec.Template.Labels) {
			t.Errorf("PodMonitor %s must select the worker pods only", pm.Name)
		}
		if ns := pm.Spec.NamespaceSelector; !ns.Any && len(ns.MatchNames) > 0 && !slices.Contains(ns.MatchNames, want.namespace) {
			t.Errorf("PodMonitor %s looks in namespaces %v, not %s", pm.Name, ns.MatchNames, want.namespace)
		}
		eps := pm.Spec.PodMetricsEndpoints
		if len(eps) != 1 || eps[0].Port == nil || containerPort(worker.Spec.Template.Spec.Containers[0], intstr.FromString(*eps[0].Port)) != workerMetricsPort || eps[0].Path != "/metrics" {
			t.Errorf("PodMonitor %s endpoints %+v, want the worker's metrics port and /metrics", pm.Name, eps)
		}
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
	np := component[*networkingv1.NetworkPolicy](t, objs, "NetworkPolicy", "worker")
	if !selectorMatches(t, &np.Spec.PodSelector, worker.Spec.Template.Labels) || selectorMatches(t, &np.Spec.PodSelector, coord.Spec.Template.Labels) {
		t.Fatalf("worker NetworkPolicy must select the workers only")
	}
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
		t.Errorf("worker NetworkPolicy does not restrict both ingress and egress")
	}
	allowed := map[string]bool{"TCP/50051": true, "UDP/53": true, "TCP/53": true, "TCP/443": true}
	var toCoordinator, dns, https bool
	for _, rule := range np.Spec.Egress {
		if len(rule.Ports) == 0 {
			t.Errorf("worker egress rule without ports allows every port")
		}
		if len(rule.To) == 0 {
			t.Errorf("worker egress rule allows every destination")
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
		}
	}
	if !toCoordinator || !dns || !https {
		t.Errorf("worker egress: coordinator %v, DNS %v, HTTPS %v; want all", toCoordinator, dns, https)
	}
	checkIngressPorts(t, "worker", np, map[string]bool{strconv.Itoa(workerMetricsPort): true})

	cnp := component[*networkingv1.NetworkPolicy](t, objs, "NetworkPolicy", "coordinator")
	if !selectorMatches(t, &cnp.Spec.PodSelector, coord.Spec.Template.Labels) || selectorMatches(t, &cnp.Spec.PodSelector, worker.Spec.Template.Labels) {
		t.Fatalf("coordinator NetworkPolicy must select the coordinator only")
	}
	var fromWorkers bool
	for _, rule := range cnp.Spec.Ingress {
		for _, p := range rule.Ports {
			if p.Port.String() != strconv.Itoa(grpcPort) {
				continue
			}
			for _, peer := range rule.From {
				if peer.PodSelector != nil && peer.NamespaceSelector == nil && peer.IPBlock == nil && selectorMatches(t, peer.PodSelector, worker.Spec.Template.Labels) {
					fromWorkers = true
				} else {
					t.Errorf("coordinator gRPC is open to more than the workers")
				}
			}
		}
	}
	if !fromWorkers {
		t.Errorf("coordinator NetworkPolicy does not let workers reach %d", grpcPort)
	}
	checkIngressPorts(t, "coordinator", cnp, map[string]bool{strconv.Itoa(grpcPort): true, strconv.Itoa(coordinatorHTTP): true})
}

// checkIngressPorts: a policy's ingress opens exactly the ports given.
func checkIngressPorts(t *testing.T, who string, np *networkingv1.NetworkPolicy, want map[string]bool) {
	t.Helper()
	got := map[string]bool{}
	for _, rule := range np.Spec.Ingress {
		if len(rule.Ports) == 0 {
			t.Errorf("%s ingress rule without ports opens every port", who)
		}
		if len(rule.From) == 0 {
			t.Errorf("%s ingress rule without from admits every source, outside the cluster too", who)
		}
		for _, p := range rule.Ports {
			got[p.Port.String()] = true
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("%s ingress opens ports %v, want %v", who, keys(got), keys(want))
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
	if _, ok := worker.Spec.Template.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU]; !ok {
		t.Errorf("HPA on CPU utilisation needs a CPU request on the worker")
	}
}

func checkKEDA(t *testing.T, so *kedav1alpha1.ScaledObject, worker *appsv1.Deployment, ns string) {
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
	if q := tr.Metadata["query"]; !strings.Contains(q, "dragonfly_fleet_desired_workers") || !strings.Contains(q, fmt.Sprintf("namespace=%q", ns)) {
		t.Errorf("query %q does not read dragonfly_fleet_desired_workers of namespace %s", q, ns)
	}
	if tr.Metadata["threshold"] != "1" {
		t.Errorf("threshold %q: with the desired-workers metric it must be 1", tr.Metadata["threshold"])
	}
	if so.Spec.Fallback != nil && tr.MetricType != "" && tr.MetricType != autoscalingv2.AverageValueMetricType {
		t.Errorf("KEDA fallback needs metricType AverageValue, got %s", tr.MetricType)
	}
}
