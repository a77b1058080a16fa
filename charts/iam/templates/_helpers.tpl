{{/* Chart name, truncated to the 63 characters Kubernetes allows in names. */}}
{{- define "iam.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-qualified name; the release name alone when it already contains the chart's. */}}
{{- define "iam.fullname" -}}
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

{{- define "iam.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels shared by every object. */}}
{{- define "iam.labels" -}}
helm.sh/chart: {{ include "iam.chart" . }}
app.kubernetes.io/name: {{ include "iam.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: iam
{{- end -}}

{{/* Selector labels of one component ("api" or "jwks"); pass (dict "root" $ "component" "api"). */}}
{{- define "iam.selectorLabels" -}}
app.kubernetes.io/name: {{ include "iam.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "iam.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "iam.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "iam.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The database secret is required: fail at render time with the fix in the message.
Called with (dict "root" . "poolSize" N): N, when set, becomes POSTGRES_POOL_SIZE. */}}
{{- define "iam.databaseEnv" -}}
{{- $poolSize := .poolSize }}
{{- with .root }}
- name: POSTGRES_CONNECTION_STRING
  valueFrom:
    secretKeyRef:
      name: {{ required "database.existingSecret is required: a Secret holding the PostgreSQL connection string (see the chart's NOTES and the README)" .Values.database.existingSecret }}
      key: {{ .Values.database.existingSecretKey }}
{{- with $poolSize }}
- name: POSTGRES_POOL_SIZE
  value: {{ . | quote }}
{{- end }}
{{- if .Values.database.caSecret }}
# The CA that signed the PostgreSQL server's certificate (libpq's PGSSLROOTCERT); pair it
# with sslmode=verify-full in the connection string.
- name: PGSSLROOTCERT
  value: /etc/iam/postgres-ca/{{ .Values.database.caSecretKey }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The PostgreSQL CA, mounted read-only when database.caSecret names a Secret. */}}
{{- define "iam.databaseCaMount" -}}
{{- if .Values.database.caSecret }}
volumeMounts:
  - name: postgres-ca
    mountPath: /etc/iam/postgres-ca
    readOnly: true
{{- end }}
{{- end -}}

{{- define "iam.databaseCaVolume" -}}
{{- with .Values.database.caSecret }}
volumes:
  - name: postgres-ca
    secret:
      secretName: {{ . }}
{{- end }}
{{- end -}}

{{- define "iam.keyEncryptionEnv" -}}
- name: IAM_KEY_ENCRYPTION_KEY
  valueFrom:
    secretKeyRef:
      name: {{ required "keyEncryption.existingSecret is required: a Secret holding IAM_KEY_ENCRYPTION_KEY, base64 of 32 random bytes (see the README)" .Values.keyEncryption.existingSecret }}
      key: {{ .Values.keyEncryption.existingSecretKey }}
{{- end -}}

{{/* Environment both processes share. */}}
{{- define "iam.commonEnv" -}}
- name: ENV
  value: {{ .Values.environment | quote }}
- name: HOST
  value: "0.0.0.0"
- name: LOG_FORMAT
  value: json
- name: JWKS_REFRESH_INTERVAL
  value: {{ .Values.jwks.refreshInterval | quote }}
{{- if .Values.otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .Values.otel.endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ .Values.otel.protocol | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Environment of iam-api (the server and the migration job). */}}
{{- define "iam.apiEnv" -}}
{{ include "iam.commonEnv" . }}
{{ include "iam.databaseEnv" (dict "root" . "poolSize" (.Values.api.poolSize | default .Values.database.poolSize)) }}
{{ include "iam.keyEncryptionEnv" . }}
- name: JWT_ISSUER
  value: {{ .Values.tokens.issuer | quote }}
- name: JWT_AUDIENCE
  value: {{ .Values.tokens.audience | quote }}
- name: ACCESS_TOKEN_TTL
  value: {{ .Values.tokens.accessTokenTtl | quote }}
- name: REFRESH_TOKEN_TTL
  value: {{ .Values.tokens.refreshTokenTtl | quote }}
- name: JWT_LEEWAY
  value: {{ .Values.tokens.leeway | quote }}
- name: JWT_DEFAULT_CLIENT_ID
  value: {{ .Values.tokens.defaultClientId | default "iam" | quote }}
- name: JWKS_MAX_AGE
  value: {{ .Values.jwks.maxAge | quote }}
{{- end -}}

{{/* Pod security: non-root, read-only root filesystem, no capabilities, no privilege gain. */}}
{{- define "iam.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "iam.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* Topology spread of one component over nodes and zones. */}}
{{- define "iam.topologySpread" -}}
{{- if .root.Values.topologySpread.enabled -}}
topologySpreadConstraints:
  {{- range list "kubernetes.io/hostname" "topology.kubernetes.io/zone" }}
  - maxSkew: {{ $.root.Values.topologySpread.maxSkew }}
    topologyKey: {{ . }}
    whenUnsatisfiable: {{ $.root.Values.topologySpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "iam.selectorLabels" (dict "root" $.root "component" $.component) | nindent 8 }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* The URL clients reach the service at: publicUrl, else the Ingress host, else nothing. */}}
{{- define "iam.publicUrl" -}}
{{- if .Values.publicUrl -}}
{{- .Values.publicUrl | trimSuffix "/" -}}
{{- else if .Values.ingress.enabled -}}
{{- printf "%s://%s" (ternary "https" "http" (gt (len .Values.ingress.tls) 0)) .Values.ingress.host -}}
{{- end -}}
{{- end -}}
