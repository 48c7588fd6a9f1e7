{{- define "inference-importer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "inference-importer.fullname" -}}
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

{{- define "inference-importer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "inference-importer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "inference-importer.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "inference-importer.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: inference-importer
{{- end -}}

{{/* Labels of one component: (dict "root" $ "component" "worker") */}}
{{- define "inference-importer.componentLabels" -}}
{{ include "inference-importer.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "inference-importer.componentSelector" -}}
{{ include "inference-importer.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "inference-importer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "inference-importer.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "inference-importer.secretName" -}}
{{- default (include "inference-importer.fullname" .) .Values.secret.existingSecret -}}
{{- end -}}

{{- define "inference-importer.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "inference-importer.redisName" -}}
{{- printf "%s-redis" (include "inference-importer.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The daemon's config: the values' `config` block with the keys the chart owns filled in. */}}
{{- define "inference-importer.config" -}}
{{- $v := .Values -}}
{{- $cfg := deepCopy $v.config -}}
{{- $grace := int $v.terminationGracePeriodSeconds -}}
{{- $margin := int $v.shutdownMarginSeconds -}}
{{- if le $grace $margin -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed shutdownMarginSeconds (%d): the daemon needs time to finish its imports" $grace $margin) -}}
{{- end -}}
{{- $worker := default dict (get $cfg "worker") -}}
{{- if hasKey $worker "shutdownTimeout" -}}
{{- fail "config.worker.shutdownTimeout is set by the chart from terminationGracePeriodSeconds - shutdownMarginSeconds; set those instead" -}}
{{- end -}}
{{- $_ := set $worker "shutdownTimeout" (printf "%ds" (sub $grace $margin)) -}}
{{- $_ := set $worker "tmpDir" "/tmp" -}}
{{- $_ := set $cfg "worker" $worker -}}
{{- $redis := default dict (get $cfg "redis") -}}
{{- $_ := set $redis "url" "${REDIS_URL}" -}}
{{- $_ := set $cfg "redis" $redis -}}
{{- $http := default dict (get $cfg "http") -}}
{{- $_ := set $http "port" (int $v.port) -}}
{{- $_ := set $http "host" "0.0.0.0" -}}
{{- $_ := set $http "token" "${ADMIN_TOKEN}" -}}
{{- $_ := set $cfg "http" $http -}}
{{- if eq $v.shape "single" -}}
{{- $store := merge (dict "kind" "duckdb" "path" "/data/inferences.duckdb") (omit (default dict (get $cfg "store")) "kind" "path") -}}
{{- $_ := set $cfg "store" $store -}}
{{- else -}}
{{- $store := merge (dict "kind" "postgres" "url" "${POSTGRES_URL}") (deepCopy $v.postgres.options) -}}
{{- $_ := set $cfg "store" $store -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* The pod template of one role: (dict "root" $ "component" "worker" "command" "worker" "resources" ...) */}}
{{- define "inference-importer.podTemplate" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
metadata:
  labels:
    {{- include "inference-importer.componentLabels" . | nindent 4 }}
    {{- with $v.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include "inference-importer.config" $root | sha256sum }}
    {{- if not $v.secret.existingSecret }}
    checksum/secret: {{ include (print $root.Template.BasePath "/secret.yaml") $root | sha256sum }}
    {{- end }}
    {{- with $v.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "inference-importer.serviceAccountName" $root }}
  automountServiceAccountToken: {{ $v.serviceAccount.automountServiceAccountToken }}
  terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  containers:
    - name: {{ .component }}
      image: {{ include "inference-importer.image" $root | quote }}
      imagePullPolicy: {{ $v.image.pullPolicy }}
      args: [{{ .command | quote }}, "--config", "/etc/inference-importer/importer.yaml"]
      {{- if eq $v.shape "scaled" }}
      # No data volume in this shape: anything DuckDB writes relative to the working directory
      # (the workers' in-memory database spills to ./.tmp) lands on the writable /tmp.
      workingDir: /tmp
      {{- end }}
      env:
        - name: ADMIN_TOKEN
          valueFrom: { secretKeyRef: { name: {{ include "inference-importer.secretName" $root }}, key: admin-token } }
        - name: REDIS_URL
          {{- if $v.redis.internal.enabled }}
          value: {{ printf "redis://%s:6379" (include "inference-importer.redisName" $root) | quote }}
          {{- else if $v.redis.existingSecret }}
          valueFrom: { secretKeyRef: { name: {{ $v.redis.existingSecret }}, key: {{ $v.redis.existingSecretKey }} } }
          {{- else }}
          valueFrom: { secretKeyRef: { name: {{ include "inference-importer.secretName" $root }}, key: redis-url } }
          {{- end }}
        {{- if eq $v.shape "scaled" }}
        - name: POSTGRES_URL
          {{- if $v.postgres.existingSecret }}
          valueFrom: { secretKeyRef: { name: {{ $v.postgres.existingSecret }}, key: {{ $v.postgres.existingSecretKey }} } }
          {{- else }}
          valueFrom: { secretKeyRef: { name: {{ include "inference-importer.secretName" $root }}, key: postgres-url } }
          {{- end }}
        {{- end }}
        {{- if or $v.secret.awsAccessKeyId $v.secret.existingSecret }}
        - name: AWS_ACCESS_KEY_ID
          valueFrom: { secretKeyRef: { name: {{ include "inference-importer.secretName" $root }}, key: aws-access-key-id, optional: true } }
        - name: AWS_SECRET_ACCESS_KEY
          valueFrom: { secretKeyRef: { name: {{ include "inference-importer.secretName" $root }}, key: aws-secret-access-key, optional: true } }
        {{- end }}
        - name: IMPORTER_HTTP_PORT
          value: {{ $v.port | quote }}
        {{- with $v.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: http
          containerPort: {{ $v.port }}
          protocol: TCP
      startupProbe:
        httpGet: { path: /healthz, port: http }
        {{- toYaml $v.probes.startup | nindent 8 }}
      livenessProbe:
        httpGet: { path: /healthz, port: http }
        {{- toYaml $v.probes.liveness | nindent 8 }}
      readinessProbe:
        httpGet: { path: /readyz, port: http }
        {{- toYaml $v.probes.readiness | nindent 8 }}
      securityContext:
        {{- toYaml $v.securityContext | nindent 8 }}
      resources:
        {{- toYaml .resources | nindent 8 }}
      volumeMounts:
        - { name: config, mountPath: /etc/inference-importer, readOnly: true }
        - { name: tmp, mountPath: /tmp }
        {{- if eq $v.shape "single" }}
        - { name: data, mountPath: /data }
        {{- end }}
        {{- with $v.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: config
      configMap: { name: {{ include "inference-importer.fullname" $root }} }
    - name: tmp
      emptyDir:
        {{- with $v.tmpVolume.medium }}
        medium: {{ . }}
        {{- end }}
        sizeLimit: {{ $v.tmpVolume.sizeLimit }}
    {{- if eq $v.shape "single" }}
    - name: data
      persistentVolumeClaim: { claimName: {{ default (printf "%s-data" (include "inference-importer.fullname" $root)) $v.persistence.existingClaim }} }
    {{- end }}
    {{- with $v.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $v.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
