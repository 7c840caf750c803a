{{/* Labels every object of the chart carries. */}}
{{- define "jobset-fleet-hub.chartLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{/* The hub's pods: the Deployment and the Services select them by these. */}}
{{- define "jobset-fleet-hub.selectorLabels" -}}
app.kubernetes.io/name: jobset-fleet
app.kubernetes.io/component: hub
{{- end }}

{{- define "jobset-fleet-hub.labels" -}}
{{ include "jobset-fleet-hub.selectorLabels" . }}
{{ include "jobset-fleet-hub.chartLabels" . }}
{{- end }}

{{/*
The webhook configurations, the RBAC markers of the code and the agents'
join all name jobset-fleet-system: another namespace would install a hub the
apiserver cannot call.
*/}}
{{- define "jobset-fleet-hub.checkNamespace" -}}
{{- if ne .Release.Namespace "jobset-fleet-system" }}
{{- fail (printf "install into the namespace jobset-fleet-system (helm install -n jobset-fleet-system --create-namespace), not %q: the webhook configurations and the generated RBAC name it" .Release.Namespace) }}
{{- end }}
{{- end }}
