{{/* Common labels */}}
{{- define "limit.labels" -}}
app.kubernetes.io/part-of: limit
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "limit.s3Secret" -}}
{{ .Values.s3.existingSecret | default (printf "%s-s3" .Values.prefix) }}
{{- end }}

{{- define "limit.judgeSecret" -}}
{{ .Values.judge.existingSecret | default (printf "%s-judge" .Values.prefix) }}
{{- end }}

{{/* S3 endpoint host:port; the in-namespace MinIO when enabled and none is given */}}
{{- define "limit.s3Endpoint" -}}
{{- if .Values.s3.endpoint }}{{ .Values.s3.endpoint }}{{- else if .Values.minio.enabled }}{{ printf "%s-minio:9000" .Values.prefix }}{{- end }}
{{- end }}

{{- define "limit.s3Insecure" -}}
{{- if or .Values.s3.insecure (and .Values.minio.enabled (not .Values.s3.endpoint)) }}true{{ else }}false{{ end }}
{{- end }}

{{/* The project's image, by digest when one is given (a tag can be pushed again) */}}
{{- define "limit.image" -}}
{{- if .Values.image.digest }}{{ printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}{{ printf "%s:%s" .Values.image.repository .Values.image.tag }}{{ end }}
{{- end }}

{{- define "limit.mlflowImage" -}}
{{- with .Values.mlflow.image }}
{{- if or .repository .tag }}{{ printf "%s:%s" (.repository | default $.Values.image.repository) (.tag | default $.Values.image.tag) }}
{{- else }}{{ include "limit.image" $ }}{{ end }}
{{- else }}{{ include "limit.image" . }}{{ end }}
{{- end }}

{{- define "limit.mlflowAuthSecret" -}}
{{ .Values.mlflow.auth.existingSecret | default (printf "%s-mlflow-auth" .Values.prefix) }}
{{- end }}

{{/* Every pod of an Argo workflow carries this label (the workflow's name): how NetworkPolicies name them */}}
{{- define "limit.workflowPods" -}}
podSelector:
  matchExpressions: [{key: workflows.argoproj.io/workflow, operator: Exists}]
{{- end }}

{{/* AWS_* variables from the S3 Secret (and the endpoint), for MLflow and the bucket job */}}
{{- define "limit.s3Env" -}}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef: {name: {{ include "limit.s3Secret" . }}, key: {{ .Values.s3.accessKeyKey }}}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef: {name: {{ include "limit.s3Secret" . }}, key: {{ .Values.s3.secretKeyKey }}}
- name: AWS_DEFAULT_REGION
  value: {{ .Values.s3.region | quote }}
{{- with include "limit.s3Endpoint" . }}
- name: MLFLOW_S3_ENDPOINT_URL
  value: {{ printf "%s://%s" (ternary "http" "https" (eq (include "limit.s3Insecure" $) "true")) . | quote }}
- name: AWS_ENDPOINT_URL
  value: {{ printf "%s://%s" (ternary "http" "https" (eq (include "limit.s3Insecure" $) "true")) . | quote }}
{{- end }}
{{- end }}

{{- define "limit.minioRootSecret" -}}
{{ .Values.minio.root.existingSecret | default (printf "%s-minio-root" .Values.prefix) }}
{{- end }}

{{/* MinIO's root user: only MinIO and its setup Job read this Secret */}}
{{- define "limit.minioRootEnv" -}}
- name: MINIO_ROOT_USER
  valueFrom:
    secretKeyRef: {name: {{ include "limit.minioRootSecret" . }}, key: {{ .Values.minio.root.userKey }}}
- name: MINIO_ROOT_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ include "limit.minioRootSecret" . }}, key: {{ .Values.minio.root.passwordKey }}}
{{- end }}

{{/* The workflow user's MinIO policy: the bucket's objects, nothing else (no admin, no other bucket) */}}
{{- define "limit.minioPolicy" -}}
{{- $bucket := printf "arn:aws:s3:::%s" .Values.s3.bucket }}
{{- $list := dict "Effect" "Allow" "Action" (list "s3:GetBucketLocation" "s3:ListBucket" "s3:ListBucketMultipartUploads") "Resource" (list $bucket) }}
{{- $objects := dict "Effect" "Allow" "Action" (list "s3:GetObject" "s3:PutObject" "s3:DeleteObject" "s3:AbortMultipartUpload" "s3:ListMultipartUploadParts") "Resource" (list (printf "%s/*" $bucket)) }}
{{- dict "Version" "2012-10-17" "Statement" (list $list $objects) | toJson }}
{{- end }}

{{- define "limit.mlflowWorkflowSecret" -}}
{{ .Values.mlflow.auth.workflowUser.existingSecret | default (printf "%s-mlflow-workflow" .Values.prefix) }}
{{- end }}
