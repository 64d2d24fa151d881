{{/*
Names, labels and the few values computed from others. Kept in one place so every
template names the same objects the same way.
*/}}

{{- define "ray-queue.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Also the RayCluster's name; KubeRay derives pod and service names from it, so keep
it short enough for "<name>-head-svc" and "<name>-<group>-worker-xxxxx" to fit 63. */}}
{{- define "ray-queue.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains (include "ray-queue.name" .) .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "ray-queue.name" .) | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ray-queue.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ray-queue.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ray-queue.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "ray-queue.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ray-queue
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* rayStartParams as KubeRay wants them: every value a string. */}}
{{- define "ray-queue.rayStartParams" -}}
{{- $params := dict -}}
{{- range $k, $v := (default dict .params) -}}
{{- $text := toString $v -}}
{{- /* YAML numbers arrive as float64: 1000000000 would print as 1e+09, which Ray rejects. */ -}}
{{- if and (kindIs "float64" $v) (eq (float64 (int64 $v)) $v) -}}
{{- $text = toString (int64 $v) -}}
{{- end -}}
{{- $_ := set $params $k $text -}}
{{- end -}}
{{- with .labels -}}
{{- $_ := set $params "labels" . -}}
{{- end -}}
{{- toJson $params -}}
{{- end -}}

{{/* Labels of the head pod: services and network policies select on them. */}}
{{- define "ray-queue.headSelectorLabels" -}}
{{ include "ray-queue.selectorLabels" . }}
app.kubernetes.io/component: head
{{- end -}}

{{- define "ray-queue.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ray-queue.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ray-queue.tokensSecretName" -}}
{{- default (printf "%s-tokens" (include "ray-queue.fullname" .)) .Values.tokens.existingSecret -}}
{{- end -}}

{{/* Ray's token authentication (rayAuth.enabled): the environment of every container that runs
Ray or talks to it, and the mount of the token file that environment points at. KubeRay
copies the Ray container's env and mounts into its wait-gcs-ready init container, whose
`ray health-check` needs them too. A file, not RAY_AUTH_TOKEN: an environment variable
would be copied into every Ray worker process's environment and every child it starts. */}}
{{- define "ray-queue.rayAuthEnv" -}}
- name: RAY_AUTH_MODE
  value: token
- name: RAY_AUTH_TOKEN_PATH
  value: /etc/ray-queue/ray-auth/token
{{- end -}}

{{- /* Capture (values `capture`): the variables, the tenant's token and its volume. */ -}}
{{- define "ray-queue.captureEnv" -}}
- name: RAY_QUEUE_CAPTURE
  value: "1"
- name: RAY_QUEUE_TOKEN_FILE
  value: /etc/ray-queue/capture/token
- name: RAY_QUEUE_QUEUE
  value: {{ .Values.capture.queue | quote }}
{{- with .Values.capture.priorityClass }}
- name: RAY_QUEUE_PRIORITY
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{- define "ray-queue.captureMount" -}}
- {name: capture-token, mountPath: /etc/ray-queue/capture, readOnly: true}
{{- end -}}

{{- define "ray-queue.captureVolume" -}}
- name: capture-token
  secret:
    secretName: {{ include "ray-queue.tokensSecretName" . }}
    defaultMode: 0400
    items: [{key: {{ printf "tenant-%s" .Values.capture.tenant | quote }}, path: token}]
{{- end -}}

{{- define "ray-queue.rayAuthMount" -}}
- {name: ray-auth, mountPath: /etc/ray-queue/ray-auth, readOnly: true}
{{- end -}}

{{- define "ray-queue.rayAuthVolume" -}}
- name: ray-auth
  secret:
    secretName: {{ include "ray-queue.tokensSecretName" . }}
    defaultMode: 0400
    items: [{key: ray, path: token}]
{{- end -}}

{{/* A worker group's maxReplicas; 10 when not given (hasKey: 0 is a valid bound). */}}
{{- define "ray-queue.maxReplicas" -}}
{{- if hasKey . "maxReplicas" -}}{{ int .maxReplicas }}{{- else -}}10{{- end -}}
{{- end -}}

{{- define "ray-queue.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "ray-queue.autoscalerImage" -}}
{{- $repo := default .Values.image.repository .Values.autoscaler.image.repository -}}
{{- $tag := default (default .Chart.AppVersion .Values.image.tag) .Values.autoscaler.image.tag -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}

{{- define "ray-queue.flavorName" -}}
{{- default .name .flavor -}}
{{- end -}}

{{/* Ray node labels of a worker group, which its flavor selects: the user's, plus
ray-queue.io/flavor. Not ray.io/node-group: Ray sets that one to the group's name, and the
autoscaler's per-gang copies of an all-at-once group have names of their own, so a flavor
selecting by it would never find the nodes provisioned for its gangs. The copies do keep
the group's `ray start --labels`, so the flavor's own label goes there. */}}
{{- define "ray-queue.groupLabels" -}}
{{- $labels := dict "ray-queue.io/flavor" (include "ray-queue.flavorName" .) -}}
{{- range $k, $v := (default dict .labels) -}}
{{- $_ := set $labels $k (toString $v) -}}
{{- end -}}
{{- toJson $labels -}}
{{- end -}}

{{/* The --labels value of `ray start`: "k1=v1,k2=v2", sorted for a stable render. */}}
{{- define "ray-queue.rayLabelsArg" -}}
{{- $pairs := list -}}
{{- range $k, $v := (include "ray-queue.groupLabels" . | fromJson) -}}
{{- $pairs = append $pairs (printf "%s=%s" $k (toString $v)) -}}
{{- end -}}
{{- join "," (sortAlpha $pairs) -}}
{{- end -}}

{{/*
Checks JSON Schema cannot express: unique names across list entries, and values that
only make sense together. Each failure names the value to change.
*/}}
{{- define "ray-queue.validate" -}}
{{- $groups := dict -}}
{{- $flavors := dict -}}
{{- range $i, $g := .Values.workerGroups -}}
{{- if hasKey $groups $g.name -}}
{{- fail (printf "workerGroups[%d].name: %q is used by two worker groups; names must be unique" $i $g.name) -}}
{{- end -}}
{{- $_ := set $groups $g.name true -}}
{{- $flavor := include "ray-queue.flavorName" $g -}}
{{- if hasKey $flavors $flavor -}}
{{- fail (printf "workerGroups[%d].flavor: flavor %q is provided by two worker groups; each flavor needs its own group" $i $flavor) -}}
{{- end -}}
{{- $_ := set $flavors $flavor true -}}
{{- $min := int (default 0 $g.minReplicas) -}}
{{- $max := int (include "ray-queue.maxReplicas" $g) -}}
{{- if gt $min $max -}}
{{- fail (printf "workerGroups[%d] (%s): minReplicas %d is above maxReplicas %d" $i $g.name $min $max) -}}
{{- end -}}
{{- range $key, $_ := (default dict $g.labels) -}}
{{- if hasPrefix "ray.io/" $key -}}
{{- fail (printf "workerGroups[%d].labels: %q: Ray reserves the ray.io/ prefix for its own node labels; use another prefix" $i $key) -}}
{{- end -}}
{{- end -}}
{{- $replicas := int (default 0 $g.replicas) -}}
{{- if or (lt $replicas $min) (gt $replicas $max) -}}
{{- fail (printf "workerGroups[%d] (%s): replicas %d is outside [minReplicas %d, maxReplicas %d]" $i $g.name $replicas $min $max) -}}
{{- end -}}
{{- end -}}
{{- /* The queue config meets the flavors here, at render time, rather than at the
manager's start: the chart writes one ResourceFlavor per worker group, so queueConfig
brings none of its own, and every flavor a ClusterQueue lists must be a group's. The
manager's loader checks everything else when it loads the ConfigMap. */ -}}
{{- $provided := keys $flavors | sortAlpha | join ", " -}}
{{- $queues := dict -}}
{{- range $i, $text := regexSplit "(?m)^---([ \t].*)?$" .Values.queueConfig -1 -}}
{{- $doc := fromYaml $text -}}
{{- if has (toString (get $doc "kind")) (list "Queue" "LocalQueue") -}}
{{- $_ := set $queues (toString (dig "metadata" "name" "" $doc)) true -}}
{{- end -}}
{{- if hasKey $doc "Error" -}}
{{- fail (printf "queueConfig: document %d is not a YAML mapping: %s" (add1 $i) (get $doc "Error")) -}}
{{- end -}}
{{- $name := toString (dig "metadata" "name" "" $doc) -}}
{{- if eq (toString (get $doc "kind")) "ResourceFlavor" -}}
{{- fail (printf "queueConfig: ResourceFlavor %q: leave ResourceFlavors out of queueConfig; the chart writes one per worker group (workerGroups[].flavor: %s)" $name $provided) -}}
{{- end -}}
{{- if eq (toString (get $doc "kind")) "ClusterQueue" -}}
{{- range $group := (dig "spec" "resourceGroups" list $doc) -}}
{{- range $f := (default list (get $group "flavors")) -}}
{{- if not (hasKey $flavors (toString (get $f "name"))) -}}
{{- fail (printf "queueConfig: ClusterQueue %q uses flavor %q, which no worker group provides (workerGroups[].flavor: %s); add a worker group with flavor: %s, or use one of those" $name (toString (get $f "name")) $provided (toString (get $f "name"))) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $tenants := dict -}}
{{- range $i, $t := .Values.tokens.tenants -}}
{{- if hasKey $tenants $t.name -}}
{{- fail (printf "tokens.tenants[%d].name: tenant %q is listed twice" $i $t.name) -}}
{{- end -}}
{{- $_ := set $tenants $t.name (default list $t.queues) -}}
{{- end -}}
{{- with .Values.capture -}}
{{- if .enabled -}}
{{- if not (hasKey $queues .queue) -}}
{{- fail (printf "capture.queue: Queue %q is not in queueConfig (its Queues: %s); every captured driver would be refused" .queue (keys $queues | sortAlpha | join ", ")) -}}
{{- end -}}
{{- if not .tenant -}}
{{- fail "capture.tenant: name the tenant of tokens.tenants whose token captured drivers use (the manager refuses drivers without one)" -}}
{{- end -}}
{{- if and (not $.Values.tokens.existingSecret) (not (hasKey $tenants .tenant)) -}}
{{- fail (printf "capture.tenant: tenant %q is not in tokens.tenants" .tenant) -}}
{{- end -}}
{{- if and (hasKey $tenants .tenant) (not (has .queue (get $tenants .tenant))) -}}
{{- fail (printf "capture.queue: tenant %q may not use Queue %q (its queues: %s)" .tenant .queue (get $tenants .tenant | join ", ")) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and .Values.manager.tls.enabled (not .Values.manager.tls.secretName) -}}
{{- fail "manager.tls.secretName: set it to a kubernetes.io/tls Secret when manager.tls.enabled is true" -}}
{{- end -}}
{{- $rayPorts := dict "6379" "the GCS" "8265" "Ray's dashboard" "10001" "the Ray client server" "52365" "the dashboard agent" -}}
{{- $_ := set $rayPorts (toString (default "8080" (index .Values.head.rayStartParams "metrics-export-port"))) "Ray's metrics export" -}}
{{- range $key := list "grpcPort" "metricsPort" -}}
{{- $port := toString (index $.Values.manager $key) -}}
{{- if hasKey $rayPorts $port -}}
{{- fail (printf "manager.%s: port %s is taken by %s on the head pod; choose another" $key $port (index $rayPorts $port)) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.autoscaler.enabled (hasKey $rayPorts (toString .Values.autoscaler.metricsPort)) -}}
{{- fail (printf "autoscaler.metricsPort: port %v is taken by %s on the head pod; choose another" .Values.autoscaler.metricsPort (index $rayPorts (toString .Values.autoscaler.metricsPort))) -}}
{{- end -}}
{{- if eq (int .Values.manager.grpcPort) (int .Values.manager.metricsPort) -}}
{{- fail "manager.metricsPort: must differ from manager.grpcPort" -}}
{{- end -}}
{{- if and .Values.autoscaler.enabled (or (eq (int .Values.autoscaler.metricsPort) (int .Values.manager.metricsPort)) (eq (int .Values.autoscaler.metricsPort) (int .Values.manager.grpcPort))) -}}
{{- fail "autoscaler.metricsPort: must differ from manager.metricsPort and manager.grpcPort (both containers share the head pod's network)" -}}
{{- end -}}
{{- end -}}

{{/* The manager's command line, shell-quoted, for the head container's start script. */}}
{{- define "ray-queue.managerCommand" -}}
{{- $args := concat .Values.manager.command (list
  "--address" "auto"
  "--config-file" "/etc/ray-queue/config/queues.yaml"
  "--watch-config"
  "--metrics-port" (toString .Values.manager.metricsPort)
  "--state-dir" .Values.manager.state.mountPath
  "--log-level" .Values.manager.logLevel) -}}
{{- $args = concat $args .Values.manager.extraArgs -}}
{{- $quoted := list -}}
{{- range $args -}}
{{- $quoted = append $quoted (printf "'%s'" (replace "'" "'\\''" (toString .))) -}}
{{- end -}}
{{- /* Captured drivers' token and variables are not the manager's (it applies the config
as admin, and is never captured). */ -}}
{{- if (default dict .Values.capture).enabled -}}
{{- $quoted = concat (list "env" "-u" "RAY_QUEUE_TOKEN_FILE") $quoted -}}
{{- end -}}
{{- join " " $quoted -}}
{{- end -}}
