{{/* Names and labels. */}}
{{- define "todo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "todo.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The five services, in a fixed order. */}}
{{- define "todo.serviceNames" -}}api recurring notification sync audit{{- end -}}

{{/* Services with public routes (ingress from the gateway). */}}
{{- define "todo.routedServices" -}}api sync audit notification{{- end -}}

{{- define "todo.commonLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: todo
{{- end -}}

{{/* Selector labels: (dict "root" $ "component" "api") */}}
{{- define "todo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "todo.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{- define "todo.labels" -}}
{{ include "todo.commonLabels" .root }}
{{ include "todo.selectorLabels" . }}
{{- end -}}

{{/* Labels of monitoring objects: the release label kube-prometheus-stack selects on. */}}
{{- define "todo.monitoringLabels" -}}
{{ include "todo.labels" . }}
release: {{ .root.Values.monitoring.release | quote }}
{{- with .root.Values.monitoring.labels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "todo.componentName" -}}
{{- printf "%s-%s" (include "todo.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "todo.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "todo.secretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else -}}
{{- include "todo.fullname" . -}}
{{- end -}}
{{- end -}}

{{- define "todo.configName" -}}{{ include "todo.fullname" . }}-config{{- end -}}

{{/* True ("true") when the Kafka clients use SASL. */}}
{{- define "todo.kafkaSasl" -}}
{{- if and (eq .Values.bus "kafka") (hasPrefix "sasl_" .Values.kafka.securityProtocol) -}}true{{- end -}}
{{- end -}}

{{- define "todo.kafkaBrokers" -}}
{{- if .Values.kafka.brokers -}}
{{- .Values.kafka.brokers -}}
{{- else if .Values.redpanda.enabled -}}
{{- printf "%s-redpanda:9092" (include "todo.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The Secret the Dapr sidecar reads its app token from (key "token"), or "". */}}
{{- define "todo.daprAppTokenSecret" -}}
{{- if .Values.dapr.appTokenSecret -}}
{{- .Values.dapr.appTokenSecret -}}
{{- else if and .Values.secrets.create .Values.secrets.values.appApiToken -}}
{{- include "todo.fullname" . -}}
{{- end -}}
{{- end -}}

{{/* Whether the app gets APP_API_TOKEN and from where: "name key" or "". */}}
{{- define "todo.appApiTokenRef" -}}
{{- if and .Values.dapr.enabled (include "todo.daprAppTokenSecret" .) -}}
{{- printf "%s token" (include "todo.daprAppTokenSecret" .) -}}
{{- else if and .Values.secrets.create .Values.secrets.values.appApiToken -}}
{{- printf "%s app-api-token" (include "todo.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "todo.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "todo.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid | default 65532 }}
runAsGroup: {{ .uid | default 65532 }}
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Replica count of a service as the PDB sees it. */}}
{{- define "todo.effectiveReplicas" -}}
{{- $svc := index .root.Values.services .component -}}
{{- $hpa := index .root.Values.autoscaling .component | default dict -}}
{{- if and $hpa $hpa.enabled (ne (include "todo.hpaActive" .) "") -}}
{{- $hpa.minReplicas -}}
{{- else if and (eq .component "sync") .root.Values.dapr.enabled (eq .root.Values.bus "dapr") -}}
1
{{- else -}}
{{- $svc.replicas -}}
{{- end -}}
{{- end -}}

{{/* "true" when the service's HPA is rendered. Under bus dapr, sync keeps one replica: its
replicas would share one app id (one consumer group) and split the events. */}}
{{- define "todo.hpaActive" -}}
{{- $hpa := index .root.Values.autoscaling .component | default dict -}}
{{- if and $hpa $hpa.enabled -}}
{{- if not (and (eq .component "sync") (eq .root.Values.bus "dapr")) -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{/* NetworkPolicy peers (a YAML list, or "") from a {cidrs, namespaceSelector, podSelector} value. */}}
{{- define "todo.peers" -}}
{{- $out := list -}}
{{- range .cidrs }}{{ $out = append $out (dict "ipBlock" (dict "cidr" .)) }}{{ end -}}
{{- $sel := dict -}}
{{- with .namespaceSelector }}{{ $_ := set $sel "namespaceSelector" . }}{{ end -}}
{{- with .podSelector }}{{ $_ := set $sel "podSelector" . }}{{ end -}}
{{- if $sel }}{{ $out = append $out $sel }}{{ end -}}
{{- if $out }}{{ toYaml $out }}{{ end -}}
{{- end -}}

{{/* One egress rule as a YAML list of one item, or "" when the peer names nobody:
(dict "peer" $peer "protocols" (list "UDP" "TCP")). */}}
{{- define "todo.egressRule" -}}
{{- $peers := include "todo.peers" .peer | fromYamlArray -}}
{{- if $peers -}}
{{- $rule := dict "to" $peers -}}
{{- $ports := list -}}
{{- range $port := .peer.ports | default list -}}
{{- range $proto := $.protocols | default (list "TCP") -}}
{{- $ports = append $ports (dict "protocol" $proto "port" $port) -}}
{{- end -}}
{{- end -}}
{{- if $ports }}{{ $_ := set $rule "ports" $ports }}{{ end -}}
{{- toYaml (list $rule) -}}
{{- end -}}
{{- end -}}

{{/* Egress to the database: the dev PostgreSQL when enabled, and networkPolicy.postgres. */}}
{{- define "todo.postgresEgress" -}}
{{- if .Values.postgresql.enabled }}
- to:
    - podSelector:
        matchLabels:
          {{- include "todo.selectorLabels" (dict "root" . "component" "postgresql") | nindent 10 }}
  ports:
    - protocol: TCP
      port: 5432
{{- end }}
{{- with include "todo.egressRule" (dict "peer" .Values.networkPolicy.postgres) }}
{{ . }}
{{- end }}
{{- end -}}

{{- define "todo.dnsEgress" -}}
{{- include "todo.egressRule" (dict "peer" .Values.networkPolicy.dns "protocols" (list "UDP" "TCP")) }}
{{- end -}}

{{/* A ServiceAccount's annotations: serviceAccount.annotations, then the component's own
(dict "root" $ "own" $ownMap); "" when none. */}}
{{- define "todo.serviceAccountAnnotations" -}}
{{- $all := merge (deepCopy (.own | default dict)) (.root.Values.serviceAccount.annotations | default dict) -}}
{{- if $all }}{{ toYaml $all }}{{ end -}}
{{- end -}}

{{/* The Cloud SQL Auth Proxy as a native sidecar: an initContainers item (restartPolicy
Always), so it is ready before the app starts and stops after the app has exited. */}}
{{- define "todo.cloudSqlProxy" -}}
{{- $p := .Values.cloudSqlProxy -}}
- name: cloud-sql-proxy
  image: {{ printf "%s:%s" $p.image.repository $p.image.tag | quote }}
  imagePullPolicy: IfNotPresent
  restartPolicy: Always
  args:
    - --port={{ $p.port }}
    - --address=127.0.0.1
    {{- if $p.privateIp }}
    - --private-ip
    {{- end }}
    {{- if $p.autoIamAuthn }}
    - --auto-iam-authn
    {{- end }}
    - --structured-logs
    - --exit-zero-on-sigterm
    - --health-check
    - --http-address=0.0.0.0
    - --http-port={{ $p.healthPort }}
    {{- range $p.extraArgs }}
    - {{ . | quote }}
    {{- end }}
    - {{ $p.instanceConnectionName | quote }}
  ports:
    - name: sql-proxy-http
      containerPort: {{ $p.healthPort }}
      protocol: TCP
  startupProbe:
    httpGet:
      path: /startup
      port: sql-proxy-http
    periodSeconds: 1
    timeoutSeconds: 5
    failureThreshold: 60
  livenessProbe:
    httpGet:
      path: /liveness
      port: sql-proxy-http
    periodSeconds: 10
    timeoutSeconds: 5
    failureThreshold: 3
  readinessProbe:
    httpGet:
      path: /readiness
      port: sql-proxy-http
    periodSeconds: 10
    timeoutSeconds: 5
    failureThreshold: 3
  resources:
    {{- toYaml $p.resources | nindent 4 }}
  securityContext:
    {{- include "todo.containerSecurityContext" dict | nindent 4 }}
{{- end -}}

{{/* Egress of a pod running the Cloud SQL Auth Proxy: the instance (3307), the Admin API and
token endpoint (443), GKE's metadata server (Workload Identity). "" when the proxy is off. */}}
{{- define "todo.cloudSqlProxyEgress" -}}
{{- if .Values.cloudSqlProxy.enabled -}}
{{- $np := .Values.networkPolicy -}}
{{- range $peer := list $np.cloudSql $np.googleApis $np.gkeMetadata }}
{{- with include "todo.egressRule" (dict "peer" $peer) }}
{{ . }}
{{- end }}
{{- end }}
{{- end -}}
{{- end -}}
