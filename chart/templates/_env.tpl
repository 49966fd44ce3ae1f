{{/*
The server container's environment: one variable per value under `server`
(values.yaml names each one), then extraEnv. An extraEnv entry may not
redefine one of the chart's own: the container would run with the extraEnv
value while the probes, the HPA's slots and NOTES follow the chart's value.
*/}}
{{- define "inferscale.env" -}}
{{- $own := include "inferscale.serverEnv" . | fromYamlArray }}
{{- range $own }}
{{- $name := .name }}
{{- range $.Values.extraEnv }}
{{- if eq .name $name }}
{{- fail (printf "extraEnv must not set %s: the chart sets it from values.yaml server (see the [%s] comment there)" $name $name) }}
{{- end }}
{{- end }}
{{- end }}
{{- concat $own (.Values.extraEnv | default list) | toYaml }}
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
{{- end }}
