{{/* The chart's name, for app.kubernetes.io/name. */}}
{{- define "qwen-operator.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name of the release's objects: the release name when it already holds the chart's. */}}
{{- define "qwen-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object: those of the kustomize base plus Helm's. */}}
{{- define "qwen-operator.labels" -}}
app.kubernetes.io/name: {{ include "qwen-operator.name" . }}
app.kubernetes.io/part-of: qwen-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The operator pod's selector. */}}
{{- define "qwen-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "qwen-operator.name" . }}
app.kubernetes.io/component: operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "qwen-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "qwen-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "qwen-operator.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* `qwen-operator run` arguments: every namespace, or the ones listed. */}}
{{- define "qwen-operator.args" -}}
{{- if .Values.watchNamespaces -}}
{{- $args := list "run" -}}
{{- range .Values.watchNamespaces -}}
{{- $args = append $args "--namespace" -}}
{{- $args = append $args . -}}
{{- end -}}
{{- toJson $args -}}
{{- else -}}
["run","--all-namespaces"]
{{- end -}}
{{- end -}}
