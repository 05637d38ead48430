{{/*
Names. The fullname is the release name when it already contains the chart
name (helm install dragonfly-fleet ...), else "<release>-<chart>".
*/}}
{{- define "dragonfly-fleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dragonfly-fleet.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "dragonfly-fleet.coordinator.fullname" -}}
{{- printf "%s-coordinator" (include "dragonfly-fleet.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dragonfly-fleet.worker.fullname" -}}
{{- printf "%s-worker" (include "dragonfly-fleet.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dragonfly-fleet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object; the component is added per object. */}}
{{- define "dragonfly-fleet.labels" -}}
helm.sh/chart: {{ include "dragonfly-fleet.chart" . }}
app.kubernetes.io/name: {{ include "dragonfly-fleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: dragonfly-fleet
app.kubernetes.io/version: {{ (.Values.image.tag | default .Chart.AppVersion) | toString | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: call with (dict "ctx" $ "component" "worker"). */}}
{{- define "dragonfly-fleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dragonfly-fleet.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "dragonfly-fleet.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion | toString }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Where the Secret volumes are mounted (read-only tmpfs). */}}
{{- define "dragonfly-fleet.secretsDir" -}}/run/secrets/dragonfly{{- end }}

{{/*
The coordinator Service's name, which workers dial and which the
coordinator's certificate must name (DNS SAN) unless tls.serverName is set.
*/}}
{{- define "dragonfly-fleet.coordinator.address" -}}
{{- printf "%s:%d" (include "dragonfly-fleet.coordinator.fullname" .) (int .Values.coordinator.service.grpcPort) }}
{{- end }}

{{/* The API credential settings that api.credentials (and api.auth0GrantType) read. */}}
{{- define "dragonfly-fleet.apiCredentialNames" -}}
{{- $c := .Values.api.credentials }}
{{- if eq $c "cloudflare" }}DRAGONFLY_CF_ACCESS_CLIENT_ID DRAGONFLY_CF_ACCESS_CLIENT_SECRET
{{- else if and (eq $c "auth0") (eq .Values.api.auth0GrantType "client_credentials") }}DRAGONFLY_CLIENT_ID DRAGONFLY_CLIENT_SECRET
{{- else if eq $c "auth0" }}DRAGONFLY_CLIENT_ID DRAGONFLY_CLIENT_SECRET DRAGONFLY_USERNAME DRAGONFLY_PASSWORD
{{- else if ne $c "none" }}
{{- fail (printf "api.credentials must be cloudflare, auth0 or none, not %q" $c) }}
{{- end }}
{{- end }}

{{/*
Whole seconds of a duration value, as the binary reads it: a number of
seconds ("25") or a Go duration of whole hours, minutes and seconds ("1m30s").
Call with (dict "name" "worker.drainGrace" "value" .Values.worker.drainGrace).
*/}}
{{- define "dragonfly-fleet.seconds" -}}
{{- $v := toString .value }}
{{- if regexMatch "^[0-9]+$" $v }}
{{- $v }}
{{- else if and $v (regexMatch "^([0-9]+h)?([0-9]+m)?([0-9]+s)?$" $v) }}
{{- $h := regexFind "[0-9]+h" $v | trimSuffix "h" | default "0" | atoi }}
{{- $m := regexFind "[0-9]+m" $v | trimSuffix "m" | default "0" | atoi }}
{{- $s := regexFind "[0-9]+s" $v | trimSuffix "s" | default "0" | atoi }}
{{- add (mul $h 3600) (mul $m 60) $s }}
{{- else }}
{{- fail (printf "%s: %q is not seconds (25) or a duration of whole hours, minutes and seconds (1m30s)" .name $v) }}
{{- end }}
{{- end }}

{{/*
Whole mebibytes of a Kubernetes memory quantity: bytes ("2147483648", or a
number from a values file, which YAML reads as a float) or a number, with
a decimal fraction or not ("2.5Gi"), with a binary (Ki, Mi, Gi, Ti, Pi, Ei)
or decimal (k, M, G, T, P, E) suffix.
Call with (dict "name" "worker.resources.limits.memory" "value" ...).
*/}}
{{- define "dragonfly-fleet.mebibytes" -}}
{{- $v := toString .value }}
{{- if or (kindIs "float64" .value) (kindIs "int64" .value) (kindIs "int" .value) }}
{{- /* toString of a large float is "2.147483648e+09": use the number. */}}
{{- floor (divf .value 1048576) | int64 }}
{{- else if regexMatch "^([0-9]+(\\.[0-9]*)?|\\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$" $v }}
{{- $n := regexFind "^[0-9.]+" $v | float64 }}
{{- $unit := dict "" 1.0 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "Pi" 1125899906842624.0 "Ei" 1152921504606846976.0 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "P" 1e15 "E" 1e18 }}
{{- floor (divf (mulf $n (get $unit (regexFind "[A-Za-z]*$" $v))) 1048576) | int64 }}
{{- else }}
{{- fail (printf "%s: %q is not a memory quantity the chart reads (bytes, or a number of Ki, Mi, Gi, Ti, Pi, Ei, k, M, G, T, P or E)" .name $v) }}
{{- end }}
{{- end }}

{{/*
The scanner threads of a worker: worker.threads, or unset (the worker then
runs one per CPU, GOMAXPROCS: the CPU limit rounded up, at least 2 below the
node's CPUs) the whole or milli CPUs of worker.resources.limits.cpu.
*/}}
{{- define "dragonfly-fleet.workerThreads" -}}
{{- $t := .Values.worker.threads }}
{{- if and (not (kindIs "invalid" $t)) (ne (toString $t) "") }}
{{- int $t }}
{{- else }}
{{- $cpu := toString (dig "resources" "limits" "cpu" "" .Values.worker) }}
{{- if regexMatch "^[0-9]+(\\.[0-9]*)?$" $cpu }}
{{- max 2 (ceil (float64 $cpu) | int) }}
{{- else if regexMatch "^[0-9]+m$" $cpu }}
{{- max 2 (div (add (trimSuffix "m" $cpu | atoi) 999) 1000) }}
{{- else }}
{{- fail "worker.threads: set it (unset, a worker runs one scanner thread per CPU, and without a whole or milli CPU limit in worker.resources.limits.cpu the chart cannot tell how much memory they need)" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Checks of the values that the templates alone cannot express; each fails the
render with a message that names the value.
*/}}
{{- define "dragonfly-fleet.validate" -}}
{{- $mode := .Values.autoscaling.mode | toString }}
{{- if not (has $mode (list "hpa" "keda" "none")) }}
{{- fail (printf "autoscaling.mode must be hpa, keda or none (one autoscaler per Deployment: KEDA makes an HPA of its own), not %q" $mode) }}
{{- end }}
{{- if not .Values.fleetToken.existingSecret }}
{{- fail "fleetToken.existingSecret: name the Secret holding the fleet token (the chart never creates secret values)" }}
{{- end }}
{{- if and (ne .Values.api.credentials "none") (not .Values.api.existingSecret) }}
{{- fail "api.existingSecret: name the Secret holding the API credentials, or set api.credentials: none" }}
{{- end }}
{{- if .Values.tls.enabled }}
{{- if not .Values.tls.existingSecret }}
{{- fail "tls.existingSecret: name the kubernetes.io/tls Secret of the coordinator's certificate (tls.crt, tls.key)" }}
{{- end }}
{{- if and .Values.tls.mutual.enabled (not .Values.tls.mutual.workerSecret) }}
{{- fail "tls.mutual.workerSecret: name the kubernetes.io/tls Secret of the workers' client certificate" }}
{{- end }}
{{- if .Values.fleetInsecure }}
{{- fail "fleetInsecure is for a development cluster without TLS: with tls.enabled leave it false" }}
{{- end }}
{{- else if not .Values.fleetInsecure }}
{{- fail "tls.enabled is false: the fleet token would cross the network in plaintext. Enable TLS (production), or set fleetInsecure: true on a development cluster" }}
{{- end }}
{{- if and .Values.tls.mutual.enabled (not .Values.tls.enabled) }}
{{- fail "tls.mutual.enabled needs tls.enabled" }}
{{- end }}
{{- if not (has .Values.api.auth0GrantType (list "password" "client_credentials")) }}
{{- fail (printf "api.auth0GrantType must be password or client_credentials, not %q" .Values.api.auth0GrantType) }}
{{- end }}
{{- if and (eq $mode "keda") (not .Values.autoscaling.keda.serverAddress) }}
{{- fail "autoscaling.keda.serverAddress: the Prometheus that scrapes the coordinator" }}
{{- end }}
{{- /* A pod killed before its drain ends loses what the drain was for. */}}
{{- $drain := include "dragonfly-fleet.seconds" (dict "name" "coordinator.drainTimeout" "value" .Values.coordinator.drainTimeout) | atoi }}
{{- /* The binaries refuse a drain of 0 at start (it ran as their default). */}}
{{- if le $drain 0 }}
{{- fail "coordinator.drainTimeout must be positive: the coordinator refuses 0 at start" }}
{{- end }}
{{- if le (int .Values.coordinator.terminationGracePeriodSeconds) (add $drain 20) }}
{{- fail (printf "coordinator.terminationGracePeriodSeconds (%v) must exceed coordinator.drainTimeout (%ds) plus the final flush of reports (15s) and the gRPC server's stop (5s)" .Values.coordinator.terminationGracePeriodSeconds $drain) }}
{{- end }}
{{- $grace := include "dragonfly-fleet.seconds" (dict "name" "worker.drainGrace" "value" .Values.worker.drainGrace) | atoi }}
{{- if le $grace 0 }}
{{- fail "worker.drainGrace must be positive: the worker refuses 0 at start" }}
{{- end }}
{{- /* The scan timeout is the binary's default unless worker.extraEnv sets
DRAGONFLY_SCAN_TIMEOUT (libyara counts whole seconds, rounded up). */}}
{{- $scan := 10 }}
{{- range .Values.worker.extraEnv }}
{{- if eq (toString .name) "DRAGONFLY_SCAN_TIMEOUT" }}
{{- $scan = include "dragonfly-fleet.seconds" (dict "name" "worker.extraEnv DRAGONFLY_SCAN_TIMEOUT" "value" .value) | atoi }}
{{- end }}
{{- end }}
{{- if le (int .Values.worker.terminationGracePeriodSeconds) (add $grace $scan) }}
{{- fail (printf "worker.terminationGracePeriodSeconds (%v) must exceed worker.drainGrace (%ds) plus the scan timeout (%ds) a file still in libyara may take before its task is handed back" .Values.worker.terminationGracePeriodSeconds $grace $scan) }}
{{- end }}
{{- include "dragonfly-fleet.validateExtraEnv" (dict "role" "coordinator" "env" .Values.coordinator.extraEnv) }}
{{- include "dragonfly-fleet.validateExtraEnv" (dict "role" "worker" "env" .Values.worker.extraEnv) }}
{{- /* A crafted release can make a worker hold about 512 MiB per scanner
thread (README, "Sizing a worker"); past its limit the kernel kills it, and
the release's retries kill the next ones. */}}
{{- /* dig: worker.resources.limits may be unset (no limit, nothing to check). */}}
{{- with dig "resources" "limits" "memory" "" .Values.worker }}
{{- $limit := include "dragonfly-fleet.mebibytes" (dict "name" "worker.resources.limits.memory" "value" .) | atoi }}
{{- $threads := include "dragonfly-fleet.workerThreads" $ | atoi }}
{{- $need := add 512 (mul 512 $threads) }}
{{- if lt $limit $need }}
{{- fail (printf "worker.resources.limits.memory (%v) is under the %dMi that %d scanner threads (worker.threads) may hold with the default limits: 512Mi per thread (a download of 128 MB scanning, one ahead and a zip's names copied from it, an xz or LZMA window of 64 MiB, 64 MiB of libyara matches) plus 512Mi (README, \"Sizing a worker\")" . $need $threads) }}
{{- end }}
{{- end }}
{{- end }}


{{/*
Checks one role's extraEnv: call with (dict "role" "worker" "env" ...). The
entries come after the chart's own, and of two with one name the kubelet
keeps the last: an entry naming a setting the chart computes would replace
it past the checks above (a drain longer than the grace period). Secrets
are never environment values (they would sit in the Deployment, readable by
whoever may read it), and the fleet's TLS is set by tls.* and fleetInsecure
only.
*/}}
{{- define "dragonfly-fleet.validateExtraEnv" -}}
{{- $chart := dict
  "DRAGONFLY_LOG_FORMAT" "logFormat" "DRAGONFLY_LOG_LEVEL" "logLevel"
  "DRAGONFLY_FLEET_INSECURE" "fleetInsecure"
  "DRAGONFLY_TLS" "tls.enabled" "DRAGONFLY_TLS_CA" "tls.caKey" "DRAGONFLY_TLS_CERT" "tls.existingSecret"
  "DRAGONFLY_TLS_KEY" "tls.existingSecret" "DRAGONFLY_TLS_SERVER_NAME" "tls.serverName" }}
{{- if eq .role "coordinator" }}
{{- $_ := merge $chart (dict
  "DRAGONFLY_BASE_URL" "api.baseURL" "DRAGONFLY_LISTEN_ADDR" "coordinator.service.grpcPort"
  "DRAGONFLY_METRICS_ADDR" "coordinator.service.metricsPort" "DRAGONFLY_OUTBOX_PATH" "coordinator.persistence"
  "DRAGONFLY_DRAIN_TIMEOUT" "coordinator.drainTimeout" "DRAGONFLY_MAX_WORKER_SLOTS" "coordinator.maxWorkerSlots"
  "DRAGONFLY_MAX_WORKERS" "coordinator.maxWorkers" "DRAGONFLY_VERIFY_RATE" "coordinator.verifyRate"
  "DRAGONFLY_AUTOSCALE_MAX_WORKERS" "autoscaling.maxReplicas" "DRAGONFLY_GRANT_TYPE" "api.auth0GrantType") }}
{{- else }}
{{- $_ := merge $chart (dict
  "DRAGONFLY_COORDINATOR_ADDR" "coordinator.service.grpcPort" "DRAGONFLY_ALLOWED_HOSTS" "worker.allowedHosts"
  "DRAGONFLY_THREADS" "worker.threads" "DRAGONFLY_DRAIN_GRACE" "worker.drainGrace"
  "DRAGONFLY_MEMORY_LIMIT" "worker.memoryLimit" "DRAGONFLY_WORKER_METRICS_ADDR" "worker.metricsPort"
  "DRAGONFLY_WORKER_ID" "the pod's name") }}
{{- end }}
{{- $role := .role }}
{{- range .env }}
{{- $name := toString (get (kindIs "map" . | ternary . dict) "name") }}
{{- if not $name }}
{{- fail (printf "%s.extraEnv: an entry without a name" $role) }}
{{- else if eq $name "DRAGONFLY_INSECURE" }}
{{- fail (printf "%s.extraEnv: DRAGONFLY_INSECURE accepts workers without a fleet token, on a loopback listen address only, which no pod's worker reaches: the chart always uses fleetToken (fleetInsecure is plaintext gRPC, another setting)" $role) }}
{{- else if hasKey $chart $name }}
{{- fail (printf "%s.extraEnv: %s is set by the chart, and a second entry would replace it unchecked: set %s instead" $role $name (get $chart $name)) }}
{{- else if regexMatch "(TOKEN|SECRET|PASSWORD|CLIENT_ID|USERNAME)(_FILE)?$" $name }}
{{- fail (printf "%s.extraEnv: %s is a secret: never an environment value (the chart mounts secrets as files from the Secrets fleetToken, api and statusToken name)" $role $name) }}
{{- end }}
{{- end }}
{{- end }}
