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

{{/* repository@digest when image.digest is set, else repository:tag (tag: appVersion). */}}
{{- define "iam.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
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
{{- with .Values.database.readExistingSecret }}
# A read replica for iam-api's listings and for iam-jwks (never for sign-in or tokens).
- name: POSTGRES_READ_CONNECTION_STRING
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.root.Values.database.readExistingSecretKey }}
{{- end }}
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
{{- with .Values.database.sslmode }}
# libpq's sslmode for every connection (an sslmode in the connection string wins).
- name: PGSSLMODE
  value: {{ . | quote }}
{{- end }}
{{- if .Values.database.clientCertSecret }}
# A client certificate for PostgreSQL's cert authentication.
- name: PGSSLCERT
  value: /etc/iam/postgres-client/{{ .Values.database.clientCertKey }}
- name: PGSSLKEY
  value: /etc/iam/postgres-client/{{ .Values.database.clientKeyKey }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Volume mounts of a container: the PostgreSQL CA and client certificate when given
(read-only), then the component's extraVolumeMounts. Pass (dict "root" $ "extra" list). */}}
{{- define "iam.volumeMounts" -}}
{{- $mounts := list -}}
{{- if .root.Values.database.caSecret -}}
{{- $mounts = append $mounts (dict "name" "postgres-ca" "mountPath" "/etc/iam/postgres-ca" "readOnly" true) -}}
{{- end -}}
{{- if .root.Values.database.clientCertSecret -}}
{{- $mounts = append $mounts (dict "name" "postgres-client" "mountPath" "/etc/iam/postgres-client" "readOnly" true) -}}
{{- end -}}
{{- $mounts = concat $mounts (.extra | default list) -}}
{{- with $mounts }}
volumeMounts:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Volumes of a pod, matching iam.volumeMounts. Pass (dict "root" $ "extra" list). */}}
{{- define "iam.volumes" -}}
{{- $volumes := list -}}
{{- with .root.Values.database.caSecret -}}
{{- $volumes = append $volumes (dict "name" "postgres-ca" "secret" (dict "secretName" .)) -}}
{{- end -}}
{{- with .root.Values.database.clientCertSecret -}}
{{- /* libpq refuses a key readable by others: 0400. */ -}}
{{- $volumes = append $volumes (dict "name" "postgres-client" "secret" (dict "secretName" . "defaultMode" 256)) -}}
{{- end -}}
{{- $volumes = concat $volumes (.extra | default list) -}}
{{- with $volumes }}
volumes:
  {{- toYaml . | nindent 2 }}
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
# Seconds of draining after SIGTERM: readiness answers 503 while requests are still served.
- name: SHUTDOWN_DELAY
  value: {{ .Values.shutdownDelay | quote }}
- name: JWT_ISSUER
  value: {{ include "iam.issuer" . | quote }}
- name: JWKS_REFRESH_INTERVAL
  value: {{ .Values.jwks.refreshInterval | quote }}
- name: JWKS_MAX_AGE
  value: {{ .Values.jwks.maxAge | quote }}
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
# A rotated key is published this long before it signs: longer than any verifier's JWKS cache.
- name: KEY_ROTATION_GRACE
  value: {{ include "iam.keyRotationGrace" . | quote }}
{{- with .Values.api.passwordHash }}
{{- with .memoryKib }}
- name: PASSWORD_HASH_MEMORY_KIB
  value: {{ . | quote }}
{{- end }}
{{- with .iterations }}
- name: PASSWORD_HASH_ITERATIONS
  value: {{ . | quote }}
{{- end }}
{{- with .parallelism }}
- name: PASSWORD_HASH_PARALLELISM
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* KEY_ROTATION_GRACE, refused when shorter than one JWKS cache lifetime plus a reload. */}}
{{- define "iam.keyRotationGrace" -}}
{{- $grace := int .Values.jwks.keyRotationGrace -}}
{{- $least := add .Values.jwks.maxAge .Values.jwks.refreshInterval -}}
{{- if lt $grace (int $least) -}}
{{- fail (printf "jwks.keyRotationGrace (%d) must be at least jwks.maxAge + jwks.refreshInterval (%d): verifiers would meet tokens signed by a key they have not fetched yet" $grace (int $least)) -}}
{{- end -}}
{{- $grace -}}
{{- end -}}

{{/* Pod security: non-root, RuntimeDefault seccomp; without fixed ids in OpenShift mode. */}}
{{- define "iam.podSecurityContext" -}}
{{- $context := deepCopy (.Values.podSecurityContext | default dict) -}}
{{- if .Values.openshift -}}
{{- $context = omit $context "runAsUser" "runAsGroup" "fsGroup" -}}
{{- end -}}
{{- toYaml $context -}}
{{- end -}}

{{/* Container security: read-only root filesystem, no capabilities, no privilege gain. */}}
{{- define "iam.containerSecurityContext" -}}
{{- $context := deepCopy (.Values.containerSecurityContext | default dict) -}}
{{- if .Values.openshift -}}
{{- $context = omit $context "runAsUser" "runAsGroup" -}}
{{- end -}}
{{- toYaml $context -}}
{{- end -}}

{{/* Seconds Kubernetes waits after SIGTERM: the drain delay, up to 30 s for in-flight
requests (SHUTDOWN_GRACE in iam-core), and room for the last flush. */}}
{{- define "iam.terminationGracePeriodSeconds" -}}
{{- $least := add .Values.shutdownDelay 30 -}}
{{- $grace := .Values.terminationGracePeriodSeconds | default (add $least 10) -}}
{{- if le (int $grace) (int $least) -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed shutdownDelay + 30 s of draining (%d), or Kubernetes kills requests in flight" (int $grace) (int $least)) -}}
{{- end -}}
{{- $grace -}}
{{- end -}}

{{/* Topology spread of one component over nodes and zones, or the component's own list. */}}
{{- define "iam.topologySpread" -}}
{{- if .settings.topologySpreadConstraints -}}
topologySpreadConstraints:
  {{- toYaml .settings.topologySpreadConstraints | nindent 2 }}
{{- else if .root.Values.topologySpread.enabled -}}
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

{{/* Pod-level settings shared by iam-api and iam-jwks, placed under the pod's `spec:`.
Pass (dict "root" $ "component" "api" "settings" .Values.api). */}}
{{- define "iam.podSpec" -}}
{{- $settings := .settings -}}
{{- with .root -}}
serviceAccountName: {{ include "iam.serviceAccountName" . }}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- include "iam.podSecurityContext" . | nindent 2 }}
terminationGracePeriodSeconds: {{ include "iam.terminationGracePeriodSeconds" . }}
{{- with $settings.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- with $settings.initContainers }}
initContainers:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- include "iam.volumes" (dict "root" . "extra" $settings.extraVolumes) }}
{{- end }}
{{ include "iam.topologySpread" . }}
{{- with $settings.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $settings.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $settings.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Pod template metadata of one component. Pass as for iam.podSpec. */}}
{{- define "iam.podMetadata" -}}
labels:
  {{- include "iam.selectorLabels" (dict "root" .root "component" .component) | nindent 2 }}
  {{- with .settings.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with .settings.podAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Probes of a server container: startup and liveness on /metrics (the process serves
HTTP), readiness on the healthcheck (503 while draining). Pass (dict "probes" settings.probes). */}}
{{- define "iam.probes" -}}
startupProbe:
  httpGet:
    path: /metrics
    port: http
  {{- toYaml .probes.startup | nindent 2 }}
readinessProbe:
  httpGet:
    path: /api/v1/healthcheck
    port: http
  {{- toYaml .probes.readiness | nindent 2 }}
livenessProbe:
  httpGet:
    path: /metrics
    port: http
  {{- toYaml .probes.liveness | nindent 2 }}
{{- end -}}

{{/* The URL clients reach the service at: publicUrl, else the Ingress host, else nothing. */}}
{{- define "iam.publicUrl" -}}
{{- if .Values.publicUrl -}}
{{- .Values.publicUrl | trimSuffix "/" -}}
{{- else if .Values.ingress.enabled -}}
{{- printf "%s://%s" (ternary "https" "http" (gt (len .Values.ingress.tls) 0)) .Values.ingress.host -}}
{{- end -}}
{{- end -}}

{{/* JWT_ISSUER: tokens.issuer, else the public URL (OpenID: the issuer is the URL discovery
is served under), else "iam". */}}
{{- define "iam.issuer" -}}
{{- .Values.tokens.issuer | default (include "iam.publicUrl" .) | default "iam" -}}
{{- end -}}

{{/* Base URL of one component in discovery: the public URL, else its in-cluster Service.
Pass (dict "root" $ "component" "api"|"jwks"). */}}
{{- define "iam.advertisedUrl" -}}
{{- $public := include "iam.publicUrl" .root -}}
{{- $port := ternary .root.Values.api.service.port .root.Values.jwksServer.service.port (eq .component "api") -}}
{{- $url := $public | default (printf "http://%s-%s.%s.svc:%v" (include "iam.fullname" .root) .component .root.Release.Namespace $port) -}}
{{- $variable := ternary "API_PUBLIC_URL" "JWKS_PUBLIC_URL" (eq .component "api") -}}
{{- range .root.Values.extraEnv -}}
{{- if and (eq .name $variable) .value -}}
{{- $url = .value -}}
{{- end -}}
{{- end -}}
{{- $host := (urlParse $url).host | default "" | lower -}}
{{- $hostname := regexReplaceAll ":[0-9]+$" $host "" | trimPrefix "[" | trimSuffix "]" -}}
{{- if or (eq $hostname "localhost" "0.0.0.0" "::" "::1" "") (hasPrefix "127." $hostname) (hasSuffix ".localhost" $hostname) -}}
{{- fail (printf "%s would be %q: discovery must not advertise a loopback or 0.0.0.0 address; set publicUrl (or ingress.host) to the URL clients use" $variable $url) -}}
{{- end -}}
{{- $url -}}
{{- end -}}
