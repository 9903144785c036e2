{{/* Names and labels. */}}

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

{{- define "mamori.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{/* The image: by digest when one is given, else by tag (default appVersion). */}}
{{- define "mamori.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
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
{{- if .Values.gap.enabled }}
gap:
  state_file: /var/lib/mamori/state.json
  heartbeat: {{ .Values.gap.heartbeat | quote }}
{{- end }}
{{- end }}
