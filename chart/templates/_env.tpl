{{/*
The server container's environment: one variable per value under `server`
(values.yaml names each one), with extraEnv laid over it. An extraEnv entry of
a chart variable replaces the chart's (HOST from the pod's IP, LOG_LEVEL from a
ConfigMap), except for the variables other templates read too: the container
would run with the extraEnv value while the probes, the drain, the HPA's slots
or NOTES follow the chart's. tests/test_chart.py keeps this list complete.
*/}}
{{- define "inferscale.env" -}}
{{- $sharedWithTemplates := list "PORT" "ADMIN_PORT" "MODEL_CONCURRENCY" "MAX_QUEUE" "INFERENCE_DURATION_SECONDS" "INFERENCE_JITTER_SECONDS" "INFERENCE_TIMEOUT_SECONDS" "MODEL_LOAD_SECONDS" "GRACEFUL_SHUTDOWN_SECONDS" "MAX_BATCH_SIZE" "MAX_FEATURES" "PROMETHEUS_MULTIPROC_DIR" }}
{{- $extra := dict }}
{{- range .Values.extraEnv }}
{{- /* The server reads its environment in any case (Settings: case_sensitive=False). */}}
{{- if has (upper .name) $sharedWithTemplates }}
{{- fail (printf "extraEnv must not set %s: other parts of the chart read it too; set it in values.yaml server (the [%s] comment there)" .name (upper .name)) }}
{{- end }}
{{- $_ := set $extra .name . }}
{{- end }}
{{- $env := list }}
{{- range include "inferscale.serverEnv" . | fromYamlArray }}
{{- $env = append $env (get $extra .name | default .) }}
{{- $_ := unset $extra .name }}
{{- end }}
{{- range .Values.extraEnv }}
{{- if hasKey $extra .name }}
{{- $env = append $env . }}
{{- end }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{- define "inferscale.serverEnv" -}}
{{- $s := .Values.server }}
- name: HOST
  value: {{ $s.host | quote }}
- name: PORT
  value: {{ $s.port | int | quote }}
- name: ADMIN_PORT
  value: {{ $s.adminPort | int | quote }}
- name: WORKERS
  value: {{ $s.workers | int | quote }}
- name: WORKER_CONNECTIONS
  value: {{ $s.workerConnections | int | quote }}
- name: REQUEST_TIMEOUT_SECONDS
  value: {{ $s.requestTimeoutSeconds | toString | quote }}
- name: MODEL_NAME
  value: {{ $s.modelName | quote }}
- name: MODEL_VERSION
  value: {{ $s.modelVersion | quote }}
- name: MODEL_LOAD_SECONDS
  value: {{ $s.modelLoadSeconds | toString | quote }}
- name: MODEL_MEMORY_MB
  value: {{ $s.modelMemoryMb | int | quote }}
- name: MAX_FEATURES
  value: {{ $s.maxFeatures | int | quote }}
- name: MAX_BATCH_SIZE
  value: {{ $s.maxBatchSize | int | quote }}
- name: INFERENCE_DURATION_SECONDS
  value: {{ $s.inferenceDurationSeconds | toString | quote }}
- name: INFERENCE_MODE
  value: {{ $s.inferenceMode | quote }}
- name: INFERENCE_JITTER_SECONDS
  value: {{ $s.inferenceJitterSeconds | toString | quote }}
- name: MODEL_CONCURRENCY
  value: {{ $s.modelConcurrency | int | quote }}
- name: MAX_QUEUE
  value: {{ $s.maxQueue | int | quote }}
- name: RETRY_AFTER_SECONDS
  value: {{ $s.retryAfterSeconds | int | quote }}
- name: MAX_BODY_BYTES
  value: {{ $s.maxBodyBytes | int64 | quote }}
- name: GRACEFUL_SHUTDOWN_SECONDS
  value: {{ $s.gracefulShutdownSeconds | toString | quote }}
- name: MODEL_WATCHDOG_SECONDS
  value: {{ $s.modelWatchdogSeconds | toString | quote }}
- name: INFERENCE_TIMEOUT_SECONDS
  value: {{ $s.inferenceTimeoutSeconds | toString | quote }}
- name: WORKER_TIMEOUT_SECONDS
  value: {{ $s.workerTimeoutSeconds | int | quote }}
- name: KEEPALIVE_SECONDS
  value: {{ $s.keepaliveSeconds | int | quote }}
- name: MAX_CONNECTION_AGE_SECONDS
  value: {{ $s.maxConnectionAgeSeconds | toString | quote }}
- name: MAX_REQUESTS
  value: {{ $s.maxRequests | int | quote }}
- name: MAX_REQUESTS_JITTER
  value: {{ $s.maxRequestsJitter | int | quote }}
- name: PROMETHEUS_MULTIPROC_DIR
  value: {{ $s.prometheusMultiprocDir | quote }}
- name: LOG_LEVEL
  value: {{ $s.logLevel | quote }}
- name: ACCESS_LOG
  value: {{ $s.accessLog | toString | quote }}
{{- end }}
