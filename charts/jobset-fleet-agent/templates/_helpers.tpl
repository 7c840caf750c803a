{{/* Labels every object of the chart carries. */}}
{{- define "jobset-fleet-agent.chartLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{/* The agent's pods: the Deployment and the Services select them by these. */}}
{{- define "jobset-fleet-agent.selectorLabels" -}}
app.kubernetes.io/name: jobset-fleet
app.kubernetes.io/component: agent
{{- end }}

{{- define "jobset-fleet-agent.labels" -}}
{{ include "jobset-fleet-agent.selectorLabels" . }}
{{ include "jobset-fleet-agent.chartLabels" . }}
{{- end }}

{{/*
The webhook configurations, the RBAC markers of the code and the agents'
join (the Secret hub-kubeconfig) all name jobset-fleet-system: another
namespace would install an agent that never finds its hub credentials.
*/}}
{{- define "jobset-fleet-agent.checkNamespace" -}}
{{- if ne .Release.Namespace "jobset-fleet-system" }}
{{- fail (printf "install into the namespace jobset-fleet-system (helm install -n jobset-fleet-system --create-namespace), not %q: the webhook configurations and the generated RBAC name it" .Release.Namespace) }}
{{- end }}
{{- end }}
