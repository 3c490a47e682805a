{{/* A service's Deployment: (dict "root" $ "component" "api"). */}}
{{- define "todo.workload" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $name := .component -}}
{{- $svc := index $v.services $name -}}
{{- $ctx := dict "root" $root "component" $name -}}
{{- $secret := include "todo.secretName" $root -}}
{{- $daprSync := and (eq $name "sync") (eq $v.bus "dapr") -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "todo.componentName" $ctx }}
  labels:
    {{- include "todo.labels" $ctx | nindent 4 }}
spec:
  {{- if not (include "todo.hpaActive" $ctx) }}
  replicas: {{ ternary 1 $svc.replicas $daprSync }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "todo.selectorLabels" $ctx | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      {{- if $daprSync }}
      # One sync pod per Dapr app id: a surge pod would share its consumer group.
      maxSurge: 0
      maxUnavailable: 1
      {{- else }}
      maxSurge: 1
      maxUnavailable: 0
      {{- end }}
  template:
    metadata:
      labels:
        {{- include "todo.selectorLabels" $ctx | nindent 8 }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
        checksum/secret: {{ ternary (include (print $root.Template.BasePath "/secret.yaml") $root) $secret $v.secrets.create | sha256sum }}
        {{- if $v.dapr.enabled }}
        dapr.io/enabled: "true"
        dapr.io/app-id: {{ printf "todo-%s" $name | quote }}
        dapr.io/app-port: {{ $v.dapr.appPort | quote }}
        dapr.io/enable-metrics: {{ $v.dapr.enableMetrics | quote }}
        dapr.io/metrics-port: {{ $v.dapr.metricsPort | quote }}
        dapr.io/log-level: {{ $v.dapr.logLevel | quote }}
        dapr.io/log-as-json: "true"
        dapr.io/sidecar-cpu-request: {{ $v.dapr.sidecar.cpuRequest | quote }}
        dapr.io/sidecar-memory-request: {{ $v.dapr.sidecar.memoryRequest | quote }}
        dapr.io/sidecar-cpu-limit: {{ $v.dapr.sidecar.cpuLimit | quote }}
        dapr.io/sidecar-memory-limit: {{ $v.dapr.sidecar.memoryLimit | quote }}
        dapr.io/sidecar-seccomp-profile-type: RuntimeDefault
        {{- with $v.dapr.config }}
        dapr.io/config: {{ . | quote }}
        {{- end }}
        {{- with include "todo.daprAppTokenSecret" $root }}
        dapr.io/app-token-secret: {{ . | quote }}
        {{- end }}
        {{- end }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "todo.componentName" $ctx }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      {{- with $v.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- include "todo.podSecurityContext" $root | nindent 8 }}
      {{- if $v.topologySpread.enabled }}
      topologySpreadConstraints:
        {{- range $key := list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
        - maxSkew: {{ $v.topologySpread.maxSkew }}
          topologyKey: {{ $key }}
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "todo.selectorLabels" $ctx | nindent 14 }}
        {{- end }}
      {{- end }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if $v.cloudSqlProxy.enabled }}
      initContainers:
        {{- include "todo.cloudSqlProxy" $root | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ $name }}
          image: {{ include "todo.image" $root | quote }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          args: ["serve"]
          ports:
            - name: http
              containerPort: 8080
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ include "todo.configName" $root }}
          env:
            - name: TODO_SERVICES
              value: {{ $name | quote }}
            - name: OTEL_SERVICE_NAME
              value: {{ printf "todo-%s" $name | quote }}
            - name: POD_NAME
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
            - name: POD_NAMESPACE
              valueFrom:
                fieldRef:
                  fieldPath: metadata.namespace
            - name: OTEL_RESOURCE_ATTRIBUTES
              value: {{ printf "k8s.namespace.name=$(POD_NAMESPACE),k8s.pod.name=$(POD_NAME)%s" (ternary (printf ",%s" $v.otel.resourceAttributes) "" (ne $v.otel.resourceAttributes "")) | quote }}
            - name: DATABASE_URL
              valueFrom:
                secretKeyRef:
                  name: {{ $secret }}
                  key: database-url
            - name: TODO_JWT_SECRET
              valueFrom:
                secretKeyRef:
                  name: {{ $secret }}
                  key: jwt-secret
                  {{- if $v.config.jwtJwksUrl }}
                  optional: true
                  {{- end }}
            {{- if and (eq $name "notification") $v.config.webhookUrl }}
            - name: TODO_NOTIFY_WEBHOOK_URL
              value: {{ $v.config.webhookUrl | quote }}
            - name: TODO_NOTIFY_WEBHOOK_SECRET
              valueFrom:
                secretKeyRef:
                  name: {{ $secret }}
                  key: webhook-secret
            {{- end }}
            {{- if eq $v.bus "dapr" }}
            - name: TODO_DAPR_PUBSUB
              value: {{ ternary $v.dapr.syncPubsubName $v.dapr.pubsubName (eq $name "sync") | quote }}
            {{- end }}
            {{- with include "todo.appApiTokenRef" $root }}
            {{- $ref := splitList " " . }}
            - name: APP_API_TOKEN
              valueFrom:
                secretKeyRef:
                  name: {{ index $ref 0 }}
                  key: {{ index $ref 1 }}
            {{- end }}
            {{- range $k, $val := $svc.env }}
            - name: {{ $k }}
              value: {{ $val | quote }}
            {{- end }}
          startupProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: {{ $v.probes.startup.periodSeconds }}
            timeoutSeconds: {{ $v.probes.startup.timeoutSeconds }}
            failureThreshold: {{ $v.probes.startup.failureThreshold }}
          readinessProbe:
            httpGet:
              path: /readyz
              port: http
            periodSeconds: {{ $v.probes.readiness.periodSeconds }}
            timeoutSeconds: {{ $v.probes.readiness.timeoutSeconds }}
            failureThreshold: {{ $v.probes.readiness.failureThreshold }}
          livenessProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: {{ $v.probes.liveness.periodSeconds }}
            timeoutSeconds: {{ $v.probes.liveness.timeoutSeconds }}
            failureThreshold: {{ $v.probes.liveness.failureThreshold }}
          resources:
            {{- toYaml $svc.resources | nindent 12 }}
          securityContext:
            {{- include "todo.containerSecurityContext" dict | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if include "todo.kafkaSasl" $root }}
            - name: kafka-sasl
              mountPath: /var/run/secrets/todo/kafka
              readOnly: true
            {{- end }}
            {{- if and (eq $v.bus "kafka") $v.kafka.caConfigMap }}
            - name: kafka-ca
              mountPath: /etc/todo/kafka-ca
              readOnly: true
            {{- end }}
            {{- if $v.config.databaseCaConfigMap }}
            - name: database-ca
              mountPath: /etc/todo/database-ca
              readOnly: true
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
        {{- if include "todo.kafkaSasl" $root }}
        - name: kafka-sasl
          secret:
            secretName: {{ $secret }}
            defaultMode: 0440
            items:
              - key: kafka-sasl-password
                path: password
        {{- end }}
        {{- if and (eq $v.bus "kafka") $v.kafka.caConfigMap }}
        - name: kafka-ca
          configMap:
            name: {{ $v.kafka.caConfigMap }}
        {{- end }}
        {{- if $v.config.databaseCaConfigMap }}
        - name: database-ca
          configMap:
            name: {{ $v.config.databaseCaConfigMap }}
        {{- end }}
{{- end -}}

{{/* The service's ClusterIP Service (traffic and metrics; recurring's is for metrics only). */}}
{{- define "todo.service" -}}
{{- $ctx := dict "root" .root "component" .component -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "todo.componentName" $ctx }}
  labels:
    {{- include "todo.labels" $ctx | nindent 4 }}
    # The ServiceMonitor's jobLabel: the scrape job is todo-<service> whatever the release
    # is called, as observability/prometheus/rules.yml selects (job=~"todo|todo-.+").
    todo.platform/job: {{ printf "todo-%s" .component }}
spec:
  type: ClusterIP
  selector:
    {{- include "todo.selectorLabels" $ctx | nindent 4 }}
  ports:
    - name: http
      port: 8080
      targetPort: http
      protocol: TCP
{{- end -}}

{{- define "todo.serviceaccount" -}}
{{- $ctx := dict "root" .root "component" .component -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "todo.componentName" $ctx }}
  labels:
    {{- include "todo.labels" $ctx | nindent 4 }}
  {{- with include "todo.serviceAccountAnnotations" (dict "root" .root "own" (index .root.Values.services .component).serviceAccountAnnotations) }}
  annotations:
    {{- . | nindent 4 }}
  {{- end }}
automountServiceAccountToken: false
{{- end -}}

{{/* PDB: minAvailable 1 above one replica, maxUnavailable 1 at one (a drain never blocks). */}}
{{- define "todo.pdb" -}}
{{- $ctx := dict "root" .root "component" .component -}}
{{- $replicas := int (include "todo.effectiveReplicas" $ctx) -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "todo.componentName" $ctx }}
  labels:
    {{- include "todo.labels" $ctx | nindent 4 }}
spec:
  {{- if gt $replicas 1 }}
  minAvailable: 1
  {{- else }}
  maxUnavailable: 1
  {{- end }}
  selector:
    matchLabels:
      {{- include "todo.selectorLabels" $ctx | nindent 6 }}
{{- end -}}

{{- define "todo.hpa" -}}
{{- $ctx := dict "root" .root "component" .component -}}
{{- $hpa := index .root.Values.autoscaling .component -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "todo.componentName" $ctx }}
  labels:
    {{- include "todo.labels" $ctx | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "todo.componentName" $ctx }}
  minReplicas: {{ $hpa.minReplicas }}
  maxReplicas: {{ $hpa.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $hpa.targetCPUUtilizationPercentage }}
    {{- if $hpa.customMetric.enabled }}
    # Served by prometheus-adapter (custom.metrics.k8s.io) from the scraped series.
    - type: Pods
      pods:
        metric:
          name: {{ $hpa.customMetric.name }}
        target:
          type: AverageValue
          averageValue: {{ $hpa.customMetric.averageValue | quote }}
    {{- end }}
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 300
{{- end -}}
