{{/*
Names and labels. Kept to a small subset of Go templates and sprig functions
(if/else/with/define, include, default, trunc, trimSuffix, toYaml, nindent,
indent, quote, sha256sum, not, eq) so that sensor/tests/helm_chart.rs can
render the chart without helm.
*/}}

{{- define "mamori.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mamori.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- default .Release.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "mamori.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mamori.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mamori.labels" -}}
{{ include "mamori.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end }}

{{- define "mamori.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mamori.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* mamori.yaml: the outputs chosen by the values (secrets only by reference). */}}
{{- define "mamori.config" -}}
outputs:
  stdout:
    enabled: true
{{- if .Values.slack.existingSecret }}
  slack:
    webhook_url: {env: SLACK_WEBHOOK_URL}
    minimum_priority: {{ .Values.slack.minimumPriority }}
{{- with .Values.slack.channel }}
    channel: {{ . | quote }}
{{- end }}
{{- end }}
{{- if .Values.syslog.address }}
  syslog:
    address: {{ .Values.syslog.address | quote }}
    format: {{ .Values.syslog.format }}
    facility: {{ .Values.syslog.facility }}
    minimum_priority: {{ .Values.syslog.minimumPriority }}
{{- end }}
{{- with .Values.extraOutputs }}
{{ toYaml . | indent 2 }}
{{- end }}
{{- end }}
