{{/* Names. */}}
{{- define "lomas.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "lomas.fullname" -}}
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

{{- define "lomas.mongodb.fullname" -}}
{{- printf "%s-mongodb" (include "lomas.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels. */}}
{{- define "lomas.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: lomas
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
{{- end -}}

{{- define "lomas.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lomas.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end -}}

{{- define "lomas.mongodb.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lomas.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: mongodb
{{- end -}}

{{/* The port the server listens on: the image's command (deploy/Containerfile) says 8080. */}}
{{- define "lomas.containerPort" -}}8080{{- end -}}

{{/* Where the ConfigMap's jupyter_lomas_server_config.json is mounted (JUPYTER_CONFIG_PATH). */}}
{{- define "lomas.configDir" -}}/etc/lomas{{- end -}}

{{/* The server's base URL: /services/<name>/ under the Hub, else ServerApp.base_url or /. */}}
{{- define "lomas.baseUrl" -}}
{{- if eq .Values.identity "hub" -}}
{{- printf "/services/%s/" .Values.hub.serviceName -}}
{{- else -}}
{{- $base := default "/" (get .Values.serverAppConfig "base_url") -}}
{{- printf "%s/" (trimSuffix "/" $base) -}}
{{- end -}}
{{- end -}}

{{- define "lomas.healthPath" -}}
{{- printf "%slomas/api/v1/health" (include "lomas.baseUrl" .) -}}
{{- end -}}

{{/* The Secret the chart makes for its own secret values. */}}
{{- define "lomas.secretName" -}}
{{- include "lomas.fullname" . -}}
{{- end -}}

{{- define "lomas.mongodb.secretName" -}}
{{- default (include "lomas.mongodb.fullname" .) .Values.mongodb.auth.existingSecret -}}
{{- end -}}

{{- define "lomas.datasetSecretName" -}}
{{- default (printf "%s-datasets" (include "lomas.fullname" .)) .Values.datasetCredentials.existingSecret -}}
{{- end -}}

{{- define "lomas.hubTokenSecret" -}}
{{- if .Values.hub.apiToken.value -}}
{{- include "lomas.secretName" . -}}
{{- else -}}
{{- required "identity hub needs hub.apiToken.value or hub.apiToken.existingSecret" .Values.hub.apiToken.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "lomas.hubTokenKey" -}}
{{- if .Values.hub.apiToken.value -}}
hub-api-token
{{- else -}}
{{- default (printf "hub.services.%s.apiToken" .Values.hub.serviceName) .Values.hub.apiToken.existingSecretKey -}}
{{- end -}}
{{- end -}}

{{/* The bundled MongoDB's password: the given one, else the one already in the cluster's
Secret (so upgrades keep it), else a new random one. */}}
{{- define "lomas.mongodb.rootPassword" -}}
{{- if .Values.mongodb.auth.rootPassword -}}
{{- .Values.mongodb.auth.rootPassword -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "lomas.mongodb.fullname" .) -}}
{{- if and $existing $existing.data (hasKey $existing.data "mongodb-root-password") -}}
{{- index $existing.data "mongodb-root-password" | b64dec -}}
{{- else -}}
{{- randAlphaNum 32 -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The server's configuration file: settings only, never a secret. */}}
{{- define "lomas.configFile" -}}
{{- if hasKey .Values.config "store_url" -}}
{{- fail "config.store_url: the store URL may hold a password; use store.* (it reaches the server from a Secret as LOMAS_STORE_URL)" -}}
{{- end -}}
{{- $lomas := merge (dict "identity" .Values.identity) (deepCopy .Values.config) -}}
{{- $server := deepCopy .Values.serverAppConfig -}}
{{- if eq .Values.identity "hub" -}}
{{- $_ := set $server "base_url" (include "lomas.baseUrl" .) -}}
{{- end -}}
{{- $file := dict "LomasServerApp" $lomas -}}
{{- if $server -}}
{{- $_ := set $file "ServerApp" $server -}}
{{- end -}}
{{- if eq .Values.identity "hub" -}}
{{- $_ := set $file "HubIdentityProvider" (dict "analyst_groups" .Values.hub.analystGroups "analyst_roles" .Values.hub.analystRoles "admin_groups" .Values.hub.adminGroups "admin_roles" .Values.hub.adminRoles "cache_seconds" .Values.hub.cacheSeconds) -}}
{{- end -}}
{{- toPrettyJson $file -}}
{{- end -}}
