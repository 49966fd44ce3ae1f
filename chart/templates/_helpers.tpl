{{/*
Naming and labels only. Every object in this chart uses these.
*/}}

{{/* The chart name, or nameOverride. DNS labels stop at 63 characters. */}}
{{- define "inferscale.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of this release's objects: fullnameOverride, else
<release>-<name>, or just <release> when the release name already contains
the chart name (so `helm install inferscale ./chart` gives "inferscale", not
"inferscale-inferscale"). Truncated to 63 characters: names end up in DNS
labels (Service) and label values. A Service name is an RFC 1035 label, which
a Helm release name need not be ("web.v2", "1web"): refused here by name,
where the API server would refuse only the Service, after the rest applied.
*/}}
{{- define "inferscale.fullname" -}}
{{- $full := "" }}
{{- if .Values.fullnameOverride }}
{{- $full = .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- $full = .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $full = printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $full) }}
{{- fail (printf "the objects' name %q (from the release name, nameOverride or fullnameOverride) must be an RFC 1035 label, as a Service name is: lower-case letters, digits and '-', starting with a letter; pass fullnameOverride to choose another" $full) }}
{{- end }}
{{- $full }}
{{- end }}

{{/*
The Service that carries the admin port (/metrics, /health, /ready). A
ClusterIP Service carries it beside `http`; a NodePort or LoadBalancer Service
would publish it outside the cluster with the app, so there it has a ClusterIP
Service of its own, <fullname>-admin.
*/}}
{{- define "inferscale.adminServiceName" -}}
{{- if eq .Values.service.type "ClusterIP" }}
{{- include "inferscale.fullname" . }}
{{- else }}
{{- printf "%s-admin" (include "inferscale.fullname" . | trunc 57 | trimSuffix "-") }}
{{- end }}
{{- end }}

{{/* name-version for the helm.sh/chart label ("+" is not allowed in label values). */}}
{{- define "inferscale.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "inferscale.labels" -}}
helm.sh/chart: {{ include "inferscale.chart" . }}
{{ include "inferscale.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: inferscale
{{- end }}

{{/*
The labels on every object with a user's `extra` labels laid over them, each
key once (of two equal keys YAML keeps one, and which is the parser's choice).
Called with (dict "context" $ "extra" <map> "value" "<its values key>"). A
selector label in `extra` is refused: on the pods it would leave them outside
their own Deployment's selector and Service.
*/}}
{{- define "inferscale.labelsWith" -}}
{{- $extra := .extra | default dict -}}
{{- range $key, $_ := include "inferscale.selectorLabels" .context | fromYaml -}}
{{- if hasKey $extra $key -}}
{{- fail (printf "%s must not set %s: the chart sets it, and the Deployment and Service select the pods by it" $.value $key) -}}
{{- end -}}
{{- end -}}
{{- $labels := include "inferscale.labels" .context | fromYaml -}}
{{- /* set, not merge: merge keeps the chart's value where the user's is "". */ -}}
{{- range $key, $value := $extra -}}
{{- $_ := set $labels $key $value -}}
{{- end -}}
{{- toYaml $labels -}}
{{- end }}

{{/*
A regex for the names of this Deployment's pods and no other Deployment's:
<fullname>-<template hash>-<5 random>. The hash is at most 10 characters and
it and the suffix are drawn from apimachinery's rand alphabet; Kubernetes cuts
what precedes the suffix to 58, so that a generated name fits in 63: a long
fullname loses the hash's tail, its dash, or more. Names that share their first
58 characters cannot be told apart.
*/}}
{{- define "inferscale.podNamePattern" -}}
{{- $full := include "inferscale.fullname" . -}}
{{- $char := "[bcdfghjklmnpqrstvwxz2456789]" -}}
{{- $suffix := printf "%s{5}" $char -}}
{{- $room := sub 57 (len $full) -}}
{{- if lt $room 0 -}}
{{- printf "%s%s" (trunc 58 $full) $suffix -}}
{{- else if le $room 10 -}}
{{- printf "%s-(%s{1,10}-|%s{%d})%s" $full $char $char $room $suffix -}}
{{- else -}}
{{- printf "%s-%s{1,10}-%s" $full $char $suffix -}}
{{- end -}}
{{- end }}

{{/*
The offset the chart's HPA reads the duration through: autoscaling.durationOffsetSeconds
as a number while the chart's HPA reads the Pods metric, else 0 (no HPA of the
chart's, KEDA's queries and the External metric read the duration itself). Above
0 the HPA reads the duration less it (metric.offsetName), against the target less it.
*/}}
{{- define "inferscale.durationOffset" -}}
{{- $a := .Values.autoscaling -}}
{{- if and $a.enabled (eq $a.metric.type "Pods") -}}
{{- $a.durationOffsetSeconds | default 0 | float64 -}}
{{- else -}}
0
{{- end -}}
{{- end }}

{{/*
The HPA's target for that metric: with an offset, the target less it,
rounded to milli-units, the HPA's own.
*/}}
{{- define "inferscale.durationTarget" -}}
{{- $a := .Values.autoscaling -}}
{{- $offset := include "inferscale.durationOffset" . | float64 -}}
{{- if gt $offset 0.0 -}}
{{- round (subf $a.targetAverageDurationSeconds $offset) 3 -}}
{{- else -}}
{{- $a.targetAverageDurationSeconds -}}
{{- end -}}
{{- end }}

{{/*
autoscaling.behavior as the cluster's HPA API takes it: before Kubernetes 1.33
the API has no tolerance field (HPAConfigurableTolerance), and an API server or
client that validates fields strictly refuses an unknown one, so the chart
leaves it out there (NOTES say so). From 1.33 the field is known, and dropped
by the API server while the feature gate is off.
*/}}
{{- define "inferscale.hpaBehavior" -}}
{{- $behavior := deepCopy .behavior -}}
{{- if semverCompare "<1.33-0" .context.Capabilities.KubeVersion.Version -}}
{{- range $direction := list "scaleUp" "scaleDown" -}}
{{- $rules := get $behavior $direction -}}
{{- if kindIs "map" $rules -}}
{{- $_ := unset $rules "tolerance" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml $behavior -}}
{{- end }}

{{/* The Pods metric the HPA reads for the duration: with an offset, the offset rule's. */}}
{{- define "inferscale.durationMetric" -}}
{{- $a := .Values.autoscaling -}}
{{- ternary $a.metric.offsetName $a.metric.name (gt (include "inferscale.durationOffset" . | float64) 0.0) -}}
{{- end }}

{{/* A PromQL matcher for this release's series: its namespace and its Service. */}}
{{- define "inferscale.seriesSelector" -}}
{{- printf "namespace=%q,service=%q" .Release.Namespace (include "inferscale.fullname" .) -}}
{{- end }}

{{/*
The average request duration in seconds over autoscaling.rateWindow, as
PromQL: the histogram's sum over its count, grouped by .by (empty: one value
for the Service). Only pods whose latest scrape succeeded count, because no
data is not idle; the count is clamped to 1e-9 so an idle pod reads 0, not
NaN. The recording rules, KEDA's trigger and NOTES' raw query all call this;
adapter-values.yaml writes the same query in the adapter's own template syntax.
*/}}
{{- define "inferscale.avgDurationQuery" -}}
{{- $ctx := .context -}}
{{- $sel := include "inferscale.seriesSelector" $ctx -}}
{{- $w := $ctx.Values.autoscaling.rateWindow -}}
{{- $sum := ternary "sum" (printf "sum by (%s)" .by) (empty .by) -}}
{{- $scraped := printf "and on (namespace, pod) (up{%s} == 1)" $sel -}}
{{- printf "%s (rate(inference_request_duration_seconds_sum{%s}[%s]) %s)" $sum $sel $w $scraped }}
/
{{ printf "clamp_min(%s (rate(inference_request_duration_seconds_count{%s}[%s]) %s), 1e-9)" $sum $sel $w $scraped -}}
{{- end }}

{{/* The immutable subset used by the Deployment selector, the Service and the PDB. */}}
{{- define "inferscale.selectorLabels" -}}
app.kubernetes.io/name: {{ include "inferscale.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Milliseconds in a Prometheus duration (values.schema.json's promDuration: 1m30s, 10s, 500ms).
*/}}
{{- define "inferscale.durationMs" -}}
{{- $units := dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000 "d" 86400000 "w" 604800000 "y" 31536000000 -}}
{{- $total := 0 -}}
{{- range regexFindAll "[0-9]+(ms|s|m|h|d|w|y)" . -1 -}}
{{- $unit := regexFind "(ms|s|m|h|d|w|y)$" . -}}
{{- $total = add $total (mul (trimSuffix $unit . | atoi) (get $units $unit)) -}}
{{- end -}}
{{- $total -}}
{{- end }}

{{/*
PromQL for "the counter .counter (a selector) rose within
prometheusRule.restartWindow", valued by how much. increase() needs two
samples, so it misses a rise before a pod's first scrape: a model that
crashes as it loads reads 1 from that first scrape, and increase() reads 0.
A pod younger than the window (kube-state-metrics' start time, a wall clock
that a Prometheus restart does not reset) is counted whole instead, and its
counter is exact there. Without kube-state-metrics that branch is empty.
*/}}
{{- define "inferscale.counterRose" -}}
{{- $ctx := .context -}}
{{- $window := $ctx.Values.prometheusRule.restartWindow -}}
{{- $seconds := divf (include "inferscale.durationMs" $window | atoi) 1000 -}}
{{- printf "(%s > 0 and on (namespace, pod) (time() - kube_pod_start_time{namespace=%q} < %v))" .counter $ctx.Release.Namespace $seconds }}
  or
increase({{ .counter }}[{{ $window }}]) > 0
{{- end }}

{{/* The ServiceAccount the pods run as. */}}
{{- define "inferscale.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "inferscale.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}
