package validate

import (
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	appsv1 "k8s.io/api/apps/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// chartDir is the Helm chart.
var chartDir = filepath.Join(repoRoot, "deploy", "helm", "dragonfly-fleet")

const (
	release = "dragonfly-fleet"
	// helmNamespace differs from the kustomize namespace on purpose: the
	// chart must follow the release's namespace everywhere.
	helmNamespace = "scanning"
	// kubeVersion is the cluster the renders assume (the chart needs 1.25+).
	kubeVersion = "v1.33.0"
)

// helmRender renders the chart as `helm template` does (client only, no
// cluster) and returns the manifest and the notes.
func helmRender(t *testing.T, vals map[string]any) (manifest, notes string, err error) {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	cfg := action.NewConfiguration()
	cfg.SetLogger(slog.New(slog.NewTextHandler(io.Discard, nil)).Handler())
	inst := action.NewInstall(cfg)
	inst.DryRunStrategy = action.DryRunClient
	inst.ReleaseName = release
	inst.Namespace = helmNamespace
	inst.Replace = true
	kv, err := common.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	inst.KubeVersion = kv
	rel, err := inst.RunWithContext(t.Context(), ch, vals)
	if err != nil {
		return "", "", err
	}
	r, ok := rel.(*releasev1.Release)
	if !ok {
		t.Fatalf("release of type %T", rel)
	}
	if len(r.Hooks) != 0 {
		t.Errorf("the chart has %d hooks; it should have none", len(r.Hooks))
	}
	return r.Manifest, r.Info.Notes, nil
}

// values builds a values tree from dotted paths ("tls.mutual.enabled").
func values(kv map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range kv {
		parts := strings.Split(k, ".")
		m := out
		for _, p := range parts[:len(parts)-1] {
			next, ok := m[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[p] = next
			}
			m = next
		}
		m[parts[len(parts)-1]] = v
	}
	return out
}

// helmSecrets are the Secrets (and keys) that the values of the cases below name.
var helmSecrets = map[string]map[string]bool{
	"dragonfly-fleet":           {"DRAGONFLY_FLEET_TOKEN": true},
	"dragonfly-api":             {"DRAGONFLY_CF_ACCESS_CLIENT_ID": true, "DRAGONFLY_CF_ACCESS_CLIENT_SECRET": true},
	"dragonfly-coordinator-tls": {"tls.crt": true, "tls.key": true, "ca.crt": true},
	"auth0":                     {"DRAGONFLY_CLIENT_ID": true, "DRAGONFLY_CLIENT_SECRET": true, "DRAGONFLY_USERNAME": true, "DRAGONFLY_PASSWORD": true},
	"fleet-certs":               {"tls.crt": true, "tls.key": true, "ca.crt": true},
	"worker-certs":              {"tls.crt": true, "tls.key": true},
	"status":                    {"token": true},
	"my-fleet":                  {"token": true},
}

// helmCases are the value sets rendered, linted and checked: the defaults,
// and non-default ones that switch every option on or off.
var helmCases = []struct {
	name string
	vals map[string]any
	want func(*fleetWant)
}{
	{
		name: "defaults",
		want: func(w *fleetWant) {
			w.autoscaler, w.tls, w.workerCA, w.pvc, w.networkPolicies, w.pdb, w.podAnnotations = "HorizontalPodAutoscaler", true, true, true, true, true, true
			w.apiCredentials = []string{"DRAGONFLY_CF_ACCESS_CLIENT_ID", "DRAGONFLY_CF_ACCESS_CLIENT_SECRET"}
		},
	},
	{
		name: "keda+monitors+mtls+auth0+status-token",
		vals: map[string]any{
			"autoscaling.mode":                "keda",
			"metrics.serviceMonitor.enabled":  true,
			"metrics.serviceMonitor.labels":   map[string]any{"release": "prometheus"},
			"metrics.podMonitor.enabled":      true,
			"metrics.podAnnotations":          false,
			"tls.existingSecret":              "fleet-certs",
			"tls.mutual.enabled":              true,
			"tls.mutual.workerSecret":         "worker-certs",
			"tls.serverName":                  "fleet.example.org",
			"api.credentials":                 "auth0",
			"api.existingSecret":              "auth0",
			"statusToken.existingSecret":      "status",
			"statusToken.key":                 "token",
			"fleetToken.existingSecret":       "my-fleet",
			"fleetToken.key":                  "token",
			"image.repository":                "registry.example.com/dragonfly-fleet",
			"image.tag":                       "v1.2.3",
			"coordinator.persistence.enabled": false,
		},
		want: func(w *fleetWant) {
			w.autoscaler, w.serviceMonitor, w.podMonitor = "ScaledObject", true, true
			w.tls, w.mutualTLS, w.workerCA, w.networkPolicies, w.pdb, w.statusToken = true, true, true, true, true, true
			w.image = "registry.example.com/dragonfly-fleet:v1.2.3"
			w.apiCredentials = []string{"DRAGONFLY_CLIENT_ID", "DRAGONFLY_CLIENT_SECRET", "DRAGONFLY_USERNAME", "DRAGONFLY_PASSWORD"}
		},
	},
	{
		name: "hpa+servicemonitor+public-ca+client-credentials",
		vals: map[string]any{
			"metrics.serviceMonitor.enabled": true,
			"tls.caKey":                      "",
			"api.credentials":                "auth0",
			"api.existingSecret":             "auth0",
			"api.auth0GrantType":             "client_credentials",
			"image.digest":                   "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		},
		want: func(w *fleetWant) {
			w.autoscaler, w.serviceMonitor, w.tls, w.pvc, w.networkPolicies, w.pdb, w.podAnnotations = "HorizontalPodAutoscaler", true, true, true, true, true, true
			w.image = "dragonfly-fleet@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
			w.apiCredentials = []string{"DRAGONFLY_CLIENT_ID", "DRAGONFLY_CLIENT_SECRET"}
		},
	},
	{
		name: "development: no autoscaler, no TLS, no policies",
		vals: map[string]any{
			"autoscaling.mode":                      "none",
			"worker.replicas":                       3,
			"tls.enabled":                           false,
			"fleetInsecure":                         true,
			"networkPolicy.enabled":                 false,
			"worker.podDisruptionBudget.enabled":    false,
			"api.credentials":                       "none",
			"api.baseURL":                           "http://devapi:8000",
			"coordinator.persistence.existingClaim": "outbox",
		},
		want: func(w *fleetWant) {
			w.workerReplicas, w.podAnnotations, w.existingClaim = 3, true, "outbox"
		},
	},
}

// TestHelmChart renders the chart with each value set, decodes every object
// strictly into its API type (Kubernetes, KEDA, Prometheus Operator) and
// holds it to the checks of the kustomize renders.
func TestHelmChart(t *testing.T) {
	for _, tc := range helmCases {
		t.Run(tc.name, func(t *testing.T) {
			manifest, notes, err := helmRender(t, values(tc.vals))
			if err != nil {
				t.Fatalf("helm template: %v", err)
			}
			objs, err := decodeAll("helm "+tc.name, []byte(manifest))
			if err != nil {
				t.Fatal(err)
			}
			want := fleetWant{namespace: helmNamespace, image: "dragonfly-fleet:dev", secrets: helmSecrets}
			tc.want(&want)
			checkFleet(t, objs, want)
			for _, o := range objs {
				if o.labels["app.kubernetes.io/instance"] != release || o.labels["app.kubernetes.io/managed-by"] != "Helm" {
					t.Errorf("%s %s: labels %v lack the release's", o.kind, o.name, o.labels)
				}
			}
			if !strings.Contains(notes, release+"-coordinator") {
				t.Errorf("NOTES.txt does not name the coordinator: %q", notes)
			}
			if !want.tls && !strings.Contains(notes, "WARNING") {
				t.Errorf("NOTES.txt does not warn about plaintext tokens")
			}
		})
	}
}

// TestHelmChartRefuses: values that would make a broken or unsafe fleet fail
// the render with a message naming the value.
func TestHelmChartRefuses(t *testing.T) {
	cases := map[string]struct {
		vals map[string]any
		msg  string
	}{
		"two autoscalers":         {map[string]any{"autoscaling.mode": "hpa,keda"}, "autoscaling.mode"},
		"unknown autoscaler":      {map[string]any{"autoscaling.mode": "vpa"}, "autoscaling.mode"},
		"plaintext token":         {map[string]any{"tls.enabled": false}, "fleetInsecure"},
		"insecure with TLS":       {map[string]any{"fleetInsecure": true}, "fleetInsecure"},
		"no fleet secret":         {map[string]any{"fleetToken.existingSecret": ""}, "fleetToken.existingSecret"},
		"no api secret":           {map[string]any{"api.existingSecret": ""}, "api.existingSecret"},
		"unknown credentials":     {map[string]any{"api.credentials": "basic"}, "api.credentials"},
		"unknown grant":           {map[string]any{"api.credentials": "auth0", "api.auth0GrantType": "implicit"}, "api.auth0GrantType"},
		"no TLS secret":           {map[string]any{"tls.existingSecret": ""}, "tls.existingSecret"},
		"mutual without TLS":      {map[string]any{"tls.enabled": false, "fleetInsecure": true, "tls.mutual.enabled": true}, "tls.mutual.enabled"},
		"mutual without a CA":     {map[string]any{"tls.mutual.enabled": true, "tls.caKey": ""}, "tls.caKey"},
		"mutual without a cert":   {map[string]any{"tls.mutual.enabled": true, "tls.mutual.workerSecret": ""}, "tls.mutual.workerSecret"},
		"keda without prometheus": {map[string]any{"autoscaling.mode": "keda", "autoscaling.keda.serverAddress": ""}, "autoscaling.keda.serverAddress"},
		// A pod killed before its drain ends loses what the drain was for.
		"worker killed mid-drain":      {map[string]any{"worker.drainGrace": "1m"}, "worker.terminationGracePeriodSeconds"},
		"worker killed mid-scan":       {map[string]any{"worker.drainGrace": "30s"}, "worker.terminationGracePeriodSeconds"},
		"coordinator killed mid-drain": {map[string]any{"coordinator.drainTimeout": 55}, "coordinator.terminationGracePeriodSeconds"},
		"drain of fractional seconds":  {map[string]any{"worker.drainGrace": "1.5s"}, "worker.drainGrace"},
		// The binaries refuse a drain of 0 (it ran as their default): the
		// pods rendered and then failed at every start.
		"no worker drain":      {map[string]any{"worker.drainGrace": "0s"}, "worker.drainGrace"},
		"no coordinator drain": {map[string]any{"coordinator.drainTimeout": 0}, "coordinator.drainTimeout"},
		// A worker holds about 512 MiB per scanner thread under a crafted
		// release (README, "Sizing a worker"): past its limit the kernel
		// kills it, and the release's retries kill the next ones.
		"worker threads over its memory":  {map[string]any{"worker.threads": 4}, "worker.resources.limits.memory"},
		"worker memory under its threads": {map[string]any{"worker.resources.limits.memory": "1Gi"}, "worker.resources.limits.memory"},
		"worker memory in bytes, too few": {map[string]any{"worker.resources.limits.memory": "1073741824"}, "worker.resources.limits.memory"},
		"worker memory unreadable":        {map[string]any{"worker.resources.limits.memory": "2 gigs"}, "worker.resources.limits.memory"},
		// worker.threads unset: the worker runs one thread per CPU of its
		// limit (GOMAXPROCS), 8 here, which 2Gi does not hold; the check
		// read 0 threads and needed 512Mi.
		"worker threads unset, 8 CPUs over its memory": {map[string]any{"worker.threads": nil, "worker.resources.limits.cpu": "8"}, "worker.resources.limits.memory"},
		"worker threads unset, 7500m over its memory":  {map[string]any{"worker.threads": "", "worker.resources.limits.cpu": "7500m"}, "worker.resources.limits.memory"},
		"worker threads unset, no CPU limit":           {map[string]any{"worker.threads": nil, "worker.resources.limits.cpu": nil}, "worker.threads"},
		// extraEnv entries come after the chart's, and the kubelet keeps
		// the last of two with one name: they replaced what the chart
		// computes and checks (the drain, TLS) and rendered.
		"extraEnv replaces the worker drain":       {extraEnv("worker", "DRAGONFLY_DRAIN_GRACE", "5m"), "worker.drainGrace"},
		"extraEnv replaces the coordinator drain":  {extraEnv("coordinator", "DRAGONFLY_DRAIN_TIMEOUT", "10m"), "coordinator.drainTimeout"},
		"extraEnv makes the fleet plaintext":       {extraEnv("coordinator", "DRAGONFLY_FLEET_INSECURE", "true"), "fleetInsecure"},
		"extraEnv drops the fleet token":           {extraEnv("coordinator", "DRAGONFLY_INSECURE", "true"), "DRAGONFLY_INSECURE accepts workers without a fleet token"},
		"extraEnv drops the worker's CA":           {extraEnv("worker", "DRAGONFLY_TLS_CA", ""), "tls.caKey"},
		"extraEnv raises the worker threads":       {extraEnv("worker", "DRAGONFLY_THREADS", "16"), "worker.threads"},
		"extraEnv holds the fleet token":           {extraEnv("worker", "DRAGONFLY_FLEET_TOKEN", "hunter2"), "DRAGONFLY_FLEET_TOKEN is a secret"},
		"extraEnv holds an API secret":             {extraEnv("coordinator", "DRAGONFLY_CF_ACCESS_CLIENT_SECRET", "s3cret"), "DRAGONFLY_CF_ACCESS_CLIENT_SECRET is a secret"},
		"extraEnv entry without a name":            {extraEnv("worker", "", "20"), "extraEnv"},
		"extraEnv scan timeout outlasts the grace": {extraEnv("worker", "DRAGONFLY_SCAN_TIMEOUT", "2m"), "worker.terminationGracePeriodSeconds"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, _, err := helmRender(t, values(tc.vals))
			if err == nil {
				t.Fatalf("rendered without error")
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not name %s", err, tc.msg)
			}
		})
	}
}

// TestHelmWorkerMemoryFits: thread counts whose worst case fits the memory
// limit render, however the limit is written (the refusals are in
// TestHelmChartRefuses).
func TestHelmWorkerMemoryFits(t *testing.T) {
	for _, tc := range []struct {
		threads int
		memory  any
	}{
		{2, "2Gi"}, {3, "2Gi"}, {6, "3584Mi"}, {2, "2147483648"}, {2, "2G"}, {2, "1536Mi"}, {1, "1Gi"},
		// Quantities Kubernetes accepts: a decimal fraction, a number
		// (from a values file YAML reads it as a float64, which toString
		// writes as 2.147483648e+09), the peta and exa suffixes.
		{3, "2.5Gi"}, {2, "1.5Gi"}, {2, float64(2147483648)}, {2, int64(2147483648)}, {2, "0.001Pi"}, {2, "1E"},
	} {
		vals := values(map[string]any{"worker.threads": tc.threads, "worker.resources.limits.memory": tc.memory})
		if _, _, err := helmRender(t, vals); err != nil {
			t.Errorf("%d threads in %v: %v", tc.threads, tc.memory, err)
		}
	}
	// No memory limit, or no limits at all: nothing to check.
	for _, kv := range []map[string]any{{"worker.resources.limits.memory": nil}, {"worker.resources.limits": nil}, {"worker.resources": nil}} {
		if _, _, err := helmRender(t, values(kv)); err != nil {
			t.Errorf("%v: %v", kv, err)
		}
	}
	// worker.threads unset: one thread per CPU of the limit, at least 2.
	for _, cpu := range []any{"1500m", "2", float64(1), "500m"} {
		vals := values(map[string]any{"worker.threads": nil, "worker.resources.limits.cpu": cpu, "worker.resources.limits.memory": "1536Mi"})
		if _, _, err := helmRender(t, vals); err != nil {
			t.Errorf("threads unset, %v CPUs in 1536Mi: %v", cpu, err)
		}
	}
}

// TestHelmLint runs `helm lint` (as a library) with the default and every
// non-default value set: no errors, no warnings.
func TestHelmLint(t *testing.T) {
	kv, err := common.ParseKubeVersion(kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range helmCases {
		t.Run(tc.name, func(t *testing.T) {
			l := action.NewLint()
			l.Namespace = helmNamespace
			l.KubeVersion = kv
			l.Strict = true
			res := l.Run([]string{chartDir}, values(tc.vals))
			if res.TotalChartsLinted != 1 {
				t.Errorf("linted %d charts, want 1", res.TotalChartsLinted)
			}
			for _, m := range res.Messages {
				if m.Severity > support.InfoSev {
					t.Errorf("helm lint: %s", m)
				} else {
					t.Logf("helm lint: %s", m)
				}
			}
			for _, err := range res.Errors {
				t.Errorf("helm lint: %v", err)
			}
		})
	}
}

// TestHelmDrainDurations: the grace periods are checked against drain times
// written as the binary reads them (seconds, or whole hours, minutes and
// seconds).
func TestHelmDrainDurations(t *testing.T) {
	for _, vals := range []map[string]any{
		{"worker.drainGrace": "1m", "worker.terminationGracePeriodSeconds": 71},
		{"worker.drainGrace": 90, "worker.terminationGracePeriodSeconds": 101},
		{"coordinator.drainTimeout": "1m30s", "coordinator.terminationGracePeriodSeconds": 111},
		{"coordinator.drainTimeout": "1h", "coordinator.terminationGracePeriodSeconds": 3621},
	} {
		if _, _, err := helmRender(t, values(vals)); err != nil {
			t.Errorf("%v: %v", vals, err)
		}
	}
}

// TestHelmMetricsFromNobody: an empty networkPolicy.metricsFrom admits
// nobody to the metrics ports; a NetworkPolicy rule with an empty from would
// admit every source, outside the cluster included.
func TestHelmMetricsFromNobody(t *testing.T) {
	manifest, _, err := helmRender(t, values(map[string]any{"networkPolicy.metricsFrom": []any{}}))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeAll("helm metricsFrom []", []byte(manifest))
	if err != nil {
		t.Fatal(err)
	}
	for comp, want := range map[string][]string{"worker": nil, "coordinator": {strconv.Itoa(grpcPort)}} {
		np := component[*networkingv1.NetworkPolicy](t, objs, "NetworkPolicy", comp)
		var ports []string
		for _, rule := range np.Spec.Ingress {
			if len(rule.From) == 0 {
				t.Errorf("%s: an ingress rule admits every source", np.Name)
			}
			for _, p := range rule.Ports {
				ports = append(ports, p.Port.String())
			}
		}
		if !slices.Equal(ports, want) {
			t.Errorf("%s: ingress opens ports %v, want %v", np.Name, ports, want)
		}
		if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
			t.Errorf("%s: does not restrict ingress", np.Name)
		}
	}
}

// TestHelmImagePullSecrets: the pull secrets are names, given as names or,
// as most charts take them, as {name: ...}.
func TestHelmImagePullSecrets(t *testing.T) {
	manifest, _, err := helmRender(t, values(map[string]any{"imagePullSecrets": []any{"plain", map[string]any{"name": "regcred"}}}))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeAll("helm imagePullSecrets", []byte(manifest))
	if err != nil {
		t.Fatal(err)
	}
	for _, comp := range []string{"coordinator", "worker"} {
		d := component[*appsv1.Deployment](t, objs, "Deployment", comp)
		var names []string
		for _, r := range d.Spec.Template.Spec.ImagePullSecrets {
			names = append(names, r.Name)
		}
		if want := []string{"plain", "regcred"}; !slices.Equal(names, want) {
			t.Errorf("%s: imagePullSecrets %q, want %q", d.Name, names, want)
		}
	}
}

// extraEnv is the values of one extraEnv entry of role (coordinator or worker).
func extraEnv(role, name, value string) map[string]any {
	return map[string]any{role + ".extraEnv": []any{map[string]any{"name": name, "value": value}}}
}

// TestHelmExtraEnv: settings the chart does not compute pass through
// extraEnv, and a scan timeout set there counts in the worker's grace period
// (the refusals are in TestHelmChartRefuses).
func TestHelmExtraEnv(t *testing.T) {
	for _, tc := range []struct {
		vals       map[string]any
		role, name string
	}{
		{extraEnv("coordinator", "DRAGONFLY_BULK_SIZE", "20"), "coordinator", "DRAGONFLY_BULK_SIZE"},
		{extraEnv("coordinator", "DRAGONFLY_TOKEN_URL", "https://auth.example.org/oauth/token"), "coordinator", "DRAGONFLY_TOKEN_URL"},
		{extraEnv("worker", "DRAGONFLY_SCAN_TIMEOUT", "5s"), "worker", "DRAGONFLY_SCAN_TIMEOUT"},
		// 25s of drain grace and 60s of scan: 86s of grace period.
		{map[string]any{
			"worker.extraEnv":                      []any{map[string]any{"name": "DRAGONFLY_SCAN_TIMEOUT", "value": "1m"}},
			"worker.terminationGracePeriodSeconds": 86,
		}, "worker", "DRAGONFLY_SCAN_TIMEOUT"},
	} {
		manifest, _, err := helmRender(t, values(tc.vals))
		if err != nil {
			t.Errorf("%v: %v", tc.vals, err)
			continue
		}
		objs, err := decodeAll("helm extraEnv", []byte(manifest))
		if err != nil {
			t.Fatal(err)
		}
		d := component[*appsv1.Deployment](t, objs, "Deployment", tc.role)
		if _, ok := envValue(d.Spec.Template.Spec.Containers[0], tc.name); !ok {
			t.Errorf("%v: %s lacks %s", tc.vals, d.Name, tc.name)
		}
	}
}

// TestHelmStatusTokenWarned: without a status token /status and
// /status.json are open to whoever reaches the port, by default every
// namespace; the notes say so, and not when a token is set.
func TestHelmStatusTokenWarned(t *testing.T) {
	for _, tc := range []struct {
		vals map[string]any
		want string
	}{
		{nil, "every namespace"},
		{map[string]any{"networkPolicy.enabled": false}, "every pod in the cluster"},
		{map[string]any{"networkPolicy.metricsFrom": []any{}}, "only port-forward"},
	} {
		_, notes, err := helmRender(t, values(tc.vals))
		if err != nil {
			t.Fatalf("%v: %v", tc.vals, err)
		}
		if !strings.Contains(notes, "WARNING: statusToken.existingSecret is empty") || !strings.Contains(notes, tc.want) {
			t.Errorf("%v: NOTES.txt does not warn that /status is open (%s): %q", tc.vals, tc.want, notes)
		}
	}
	_, notes, err := helmRender(t, values(map[string]any{"statusToken.existingSecret": "status", "statusToken.key": "token"}))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(notes, "statusToken.existingSecret is empty") {
		t.Errorf("NOTES.txt warns of no status token with one set: %q", notes)
	}
}

// TestHelmValuesSchema: values.schema.json refuses misspelt keys, which
// the templates would ignore and keep the default of (a status token never
// mounted, TLS settings dropped), and numbers that make no fleet.
func TestHelmValuesSchema(t *testing.T) {
	for _, tc := range []struct {
		vals map[string]any
		msg  string
	}{
		{map[string]any{"statusToken.existingSecrets": "status"}, "existingSecrets"},
		{map[string]any{"tls.mutual.enable": true}, "enable"},
		{map[string]any{"worker.replica": 5}, "replica"},
		{map[string]any{"workers.replicas": 5}, "workers"},
		{map[string]any{"worker.replicas": -1}, "/worker/replicas"},
		{map[string]any{"worker.replicas": "three"}, "/worker/replicas"},
		{map[string]any{"autoscaling.maxReplicas": 0}, "/autoscaling/maxReplicas"},
		{map[string]any{"worker.terminationGracePeriodSeconds": "40"}, "/worker/terminationGracePeriodSeconds"},
		{map[string]any{"coordinator.service.grpcPort": 70000}, "/coordinator/service/grpcPort"},
		{map[string]any{"logLevel": "verbose"}, "/logLevel"},
	} {
		_, _, err := helmRender(t, values(tc.vals))
		if err == nil {
			t.Errorf("%v: rendered without error", tc.vals)
			continue
		}
		if !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%v: error %q does not name %s", tc.vals, err, tc.msg)
		}
	}
}

// TestHelmValuesSchemaTakesSubchartCondition: a parent chart that lists
// this one as a dependency with "condition: dragonfly-fleet.enabled" (the
// usual switch for a subchart, Helm's chart best practices) sets "enabled"
// in this chart's values; the schema refused the unknown key, so no
// umbrella chart could carry the fleet behind a switch.
func TestHelmValuesSchemaTakesSubchartCondition(t *testing.T) {
	for _, on := range []bool{true, false} {
		if _, _, err := helmRender(t, values(map[string]any{"enabled": on})); err != nil {
			t.Errorf("enabled: %v: %v", on, err)
		}
	}
	if _, _, err := helmRender(t, values(map[string]any{"enabled": "yes"})); err == nil || !strings.Contains(err.Error(), "/enabled") {
		t.Errorf(`enabled: "yes": error %v, want the schema to name /enabled`, err)
	}
}

// TestHelmWorkerMemoryLimitMayBeEmpty: an empty worker.memoryLimit renders
// DRAGONFLY_MEMORY_LIMIT="", which the worker reads as unset (no soft
// memory limit, its default); DRAGONFLY_MEMORY_LIMIT takes no "0" or
// "off", and extraEnv may not name it, so "" is the chart's only way to
// turn the soft limit off. The values schema refused it (minLength 1),
// though the chart rendered it before the schema came.
func TestHelmWorkerMemoryLimitMayBeEmpty(t *testing.T) {
	manifest, _, err := helmRender(t, values(map[string]any{"worker.memoryLimit": ""}))
	if err != nil {
		t.Fatalf("worker.memoryLimit \"\": %v", err)
	}
	objs, err := decodeAll("helm memoryLimit", []byte(manifest))
	if err != nil {
		t.Fatal(err)
	}
	d := component[*appsv1.Deployment](t, objs, "Deployment", "worker")
	if v, ok := envValue(d.Spec.Template.Spec.Containers[0], "DRAGONFLY_MEMORY_LIMIT"); !ok || v != "" {
		t.Errorf("DRAGONFLY_MEMORY_LIMIT = %q (set %v), want \"\"", v, ok)
	}
	// A number is still refused: it renders as 1.5e+09, which no size is.
	if _, _, err := helmRender(t, values(map[string]any{"worker.memoryLimit": 1.5e9})); err == nil || !strings.Contains(err.Error(), "/worker/memoryLimit") {
		t.Errorf("worker.memoryLimit 1.5e9: error %v, want the schema to name /worker/memoryLimit", err)
	}
}
