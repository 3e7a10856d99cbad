{{/* The chart's name. */}}
{{- define "allmende.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name, at most 63 characters (the p2p Service appends "-p2p"). */}}
{{- define "allmende.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 56 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 56 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 56 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "allmende.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "allmende.selectorLabels" -}}
app.kubernetes.io/name: {{ include "allmende.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "allmende.labels" -}}
helm.sh/chart: {{ include "allmende.chart" . }}
{{ include "allmende.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: node
{{- end }}

{{- define "allmende.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "allmende.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "allmende.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* The libp2p listen addresses. */}}
{{- define "allmende.p2pListen" -}}
{{- if .Values.p2p.listen }}
{{- toJson .Values.p2p.listen }}
{{- else }}
{{- $p := int .Values.p2p.port }}
{{- toJson (list (printf "/ip4/0.0.0.0/udp/%d/quic-v1" $p) (printf "/ip4/0.0.0.0/tcp/%d" $p)) }}
{{- end }}
{{- end }}

{{/* Checks of values that would otherwise fail only when the node starts. */}}
{{- define "allmende.validate" -}}
{{- if not .Values.node.name }}
{{- fail "node.name is required, e.g. --set node.name=\"Stadt Münster\"" }}
{{- end }}
{{- if not (regexMatch "^[0-9]{5}$" (toString .Values.node.districtKey)) }}
{{- fail "node.districtKey must be a quoted 5-digit district key (AGS), e.g. --set-string node.districtKey=05515" }}
{{- end }}
{{- if and .Values.auth.oidc.issuer (not .Values.auth.oidc.audience) }}
{{- fail "auth.oidc.audience is required with auth.oidc.issuer" }}
{{- end }}
{{- if and .Values.auth.production (not .Values.auth.oidc.issuer) (not .Values.auth.allowLocalTokenInProduction) }}
{{- fail "auth.production needs auth.oidc.issuer (or auth.allowLocalTokenInProduction)" }}
{{- end }}
{{- end }}
