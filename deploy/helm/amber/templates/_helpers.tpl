{{- define "amber.labels" -}}
app.kubernetes.io/name: amber
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: amber
{{- end }}

{{- define "amber.selectorLabels" -}}
app.kubernetes.io/name: amber
app.kubernetes.io/component: operator
{{- end }}
