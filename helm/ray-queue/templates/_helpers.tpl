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
{{- $max := int (default 0 $g.maxReplicas) -}}
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
{{- $tenants := dict -}}
{{- range $i, $t := .Values.tokens.tenants -}}
{{- if hasKey $tenants $t.name -}}
{{- fail (printf "tokens.tenants[%d].name: tenant %q is listed twice" $i $t.name) -}}
{{- end -}}
{{- $_ := set $tenants $t.name true -}}
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
{{- join " " $quoted -}}
{{- end -}}
