{{/*
Names, labels and shared pieces. Every generated name stays within 63 characters: the prefix is
truncated so that the component suffix is always kept whole (truncating the whole string could
make `-proxy-admin` and `-proxy` collide).
*/}}

{{/* Chart name. */}}
{{- define "portico.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: `<release>-<chart>`, or the release name alone when it already contains the chart name. */}}
{{- define "portico.fullname" -}}
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

{{/*
`<prefix>-<suffix>` within 63 characters, keeping the suffix whole.
Usage: include "portico.join63" (list $prefix "suffix")
*/}}
{{- define "portico.join63" -}}
{{- $prefix := index . 0 }}
{{- $suffix := index . 1 }}
{{- $max := int (sub 62 (len $suffix)) }}
{{- printf "%s-%s" ($prefix | trunc $max | trimSuffix "-") $suffix }}
{{- end }}

{{/* `<fullname>-<suffix>`. Usage: include "portico.componentName" (list $ "proxy-admin") */}}
{{- define "portico.componentName" -}}
{{- include "portico.join63" (list (include "portico.fullname" (index . 0)) (index . 1)) }}
{{- end }}

{{/*
Name of a cluster-scoped object (ClusterRole, ClusterRoleBinding): carries the release namespace
so that two releases of the same name in different namespaces do not collide.
*/}}
{{- define "portico.clusterName" -}}
{{- $root := index . 0 }}
{{- include "portico.join63" (list (printf "%s-%s" $root.Release.Namespace (include "portico.fullname" $root)) (index . 1)) }}
{{- end }}

{{/* Chart label value. */}}
{{- define "portico.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels common to every object. */}}
{{- define "portico.labels" -}}
helm.sh/chart: {{ include "portico.chart" . }}
{{ include "portico.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: portico
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels (release-wide; components add `app.kubernetes.io/component`). */}}
{{- define "portico.selectorLabels" -}}
app.kubernetes.io/name: {{ include "portico.name" . }}
app.kubernetes.io/instance: {{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of one component. Usage: include "portico.componentLabels" (list $ "proxy") */}}
{{- define "portico.componentLabels" -}}
{{ include "portico.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* Selector labels of one component. Usage: include "portico.componentSelectorLabels" (list $ "proxy") */}}
{{- define "portico.componentSelectorLabels" -}}
{{ include "portico.selectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* The GatewayConfig ConfigMap name: one value used by operator args, proxy args and both RBAC rules. */}}
{{- define "portico.configMapName" -}}
{{- if .Values.gatewayConfig.configMapName }}
{{- .Values.gatewayConfig.configMapName | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- include "portico.componentName" (list . "gateway-config") }}
{{- end }}
{{- end }}

{{/* The credentials Secret the operator publishes next to the ConfigMap (the secret values the
config references, e.g. WebSocket @connections credentials): "<ConfigMap name>-credentials", as
the operator and the proxy derive it; named by both RBAC rules. */}}
{{- define "portico.credentialsSecretName" -}}
{{- printf "%s-credentials" (include "portico.configMapName" .) }}
{{- end }}

{{/* The leader-election Lease name: used by the operator args and its RBAC rule. */}}
{{- define "portico.leaseName" -}}
{{- if .Values.operator.leaderElection.leaseName }}
{{- .Values.operator.leaderElection.leaseName | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- include "portico.componentName" (list . "operator-leader") }}
{{- end }}
{{- end }}

{{/* ServiceAccount names. */}}
{{- define "portico.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "portico.componentName" (list . "operator")) .Values.operator.serviceAccount.name }}
{{- else }}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "portico.proxy.serviceAccountName" -}}
{{- if .Values.proxy.serviceAccount.create }}
{{- default (include "portico.componentName" (list . "proxy")) .Values.proxy.serviceAccount.name }}
{{- else }}
{{- required "proxy.serviceAccount.name is required when proxy.serviceAccount.create is false" .Values.proxy.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image of a component. Usage: include "portico.image" (list $ .Values.proxy.image) */}}
{{- define "portico.image" -}}
{{- $root := index . 0 }}
{{- $override := index . 1 | default dict }}
{{- $repo := default $root.Values.image.repository $override.repository }}
{{- $tag := default $root.Values.image.tag $override.tag | default $root.Chart.AppVersion }}
{{- printf "%s:%s" $repo (toString $tag) }}
{{- end }}

{{/*
Pod anti-affinity preset by hostname, unless a full affinity is given.
Usage: include "portico.affinity" (list $ .Values.proxy "proxy")
*/}}
{{- define "portico.affinity" -}}
{{- $root := index . 0 }}
{{- $cfg := index . 1 }}
{{- $component := index . 2 }}
{{- if $cfg.affinity }}
{{- toYaml $cfg.affinity }}
{{- else if eq $cfg.podAntiAffinity "soft" }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "portico.componentSelectorLabels" (list $root $component) | nindent 12 }}
{{- else if eq $cfg.podAntiAffinity "hard" }}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: kubernetes.io/hostname
      labelSelector:
        matchLabels:
          {{- include "portico.componentSelectorLabels" (list $root $component) | nindent 10 }}
{{- else if ne $cfg.podAntiAffinity "none" }}
{{- fail (printf "%s.podAntiAffinity must be soft, hard or none (got %q)" $component $cfg.podAntiAffinity) }}
{{- end }}
{{- end }}

{{/*
Rules the operator needs in every namespace it watches: its custom resources (read), their
/status (write), the Secrets and Services they reference (read; Secrets also create, for generated
API keys), and Events (create, patch). Nothing else, no wildcards.
*/}}
{{- define "portico.operator.watchRules" -}}
- apiGroups: ["portico.dev"]
  resources: ["restapis", "stages", "usageplans", "apikeys", "authorizers"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["portico.dev"]
  resources: ["restapis/status", "stages/status", "usageplans/status", "apikeys/status", "authorizers/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
Redis for the proxies' rate-limit and quota counters: "bundled", "secret", "url" or "" (none).
Fails when the bundled Redis is combined with an external one.
*/}}
{{- define "portico.redisMode" -}}
{{- $r := .Values.redis }}
{{- if $r.bundled.enabled }}
{{- if or $r.url $r.existingSecret.name }}
{{- fail "redis.bundled.enabled cannot be combined with redis.url or redis.existingSecret.name: choose one Redis" }}
{{- end }}
{{- print "bundled" }}
{{- else if $r.existingSecret.name }}
{{- print "secret" }}
{{- else if $r.url }}
{{- print "url" }}
{{- end }}
{{- end }}

{{/* The `--redis-url` value: the bundled Service's URL, the given URL, or the env reference for a Secret. */}}
{{- define "portico.redisUrl" -}}
{{- $mode := include "portico.redisMode" . }}
{{- if eq $mode "bundled" }}
{{- printf "redis://%s.%s.svc:%d" (include "portico.componentName" (list . "redis")) .Release.Namespace (int .Values.redis.bundled.port) }}
{{- else if eq $mode "secret" }}
{{- print "$(PORTICO_REDIS_URL)" }}
{{- else if eq $mode "url" }}
{{- .Values.redis.url }}
{{- end }}
{{- end }}

{{/* The most proxy replicas that may run at once: the HPA's maximum, or the fixed count. */}}
{{- define "portico.proxyMaxReplicas" -}}
{{- if .Values.proxy.autoscaling.enabled }}
{{- int .Values.proxy.autoscaling.maxReplicas }}
{{- else }}
{{- int .Values.proxy.replicas }}
{{- end }}
{{- end }}
