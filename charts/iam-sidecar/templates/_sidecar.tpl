{{/*
iam-sidecar as a container of your own pod. Every template takes
  (dict "root" $ "sidecar" .Values.iamSidecar)
where .Values.iamSidecar holds (defaults in brackets):
  image.repository, image.tag (both required), image.pullPolicy [IfNotPresent]
  upstreamPort        (required) the port your service listens on, on 127.0.0.1 only
  jwksUrl             (required) e.g. http://iam-jwks.iam.svc:8001/.well-known/jwks.json
  port [8080]         what your Service targets; adminPort [8081] healthcheck and metrics
  profile [prod], environment [production], issuer [iam], audience [iam], leeway [30]
  jwksRefreshInterval [30], upstreamTimeout [30], workerCount [1]
  revocationRefreshInterval [5]  seconds between polls of the revocation feed
  revocationsUrl      [JWKS_URL's origin + /api/v1/revocations]
  publicPaths [[]]    path prefixes forwarded without a token
  rules [""]          TOML route rules; when set, rendered into a ConfigMap and mounted
  extraEnv [[]], resources [requests 25m/32Mi, limits 128Mi memory]
*/}}

{{- define "iam-sidecar.rulesConfigMapName" -}}
{{- printf "%s-iam-sidecar-rules" .root.Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The sidecar container; put it under your pod's `containers:`. */}}
{{- define "iam-sidecar.container" -}}
{{- $s := .sidecar | default dict -}}
{{- $image := $s.image | default dict -}}
- name: iam-sidecar
  image: {{ printf "%s:%s" (required "iamSidecar.image.repository is required (the IAM image)" $image.repository) (required "iamSidecar.image.tag is required (the IAM version, e.g. 0.1.0)" $image.tag | toString) }}
  imagePullPolicy: {{ $image.pullPolicy | default "IfNotPresent" }}
  command: ["iam-sidecar", "--config={{ $s.profile | default "prod" }}"]
  ports:
    - name: iam-http
      containerPort: {{ $s.port | default 8080 }}
      protocol: TCP
    - name: iam-admin
      containerPort: {{ $s.adminPort | default 8081 }}
      protocol: TCP
  env:
    - name: HOST
      value: "0.0.0.0"
    - name: PORT
      value: {{ $s.port | default 8080 | quote }}
    - name: ADMIN_PORT
      value: {{ $s.adminPort | default 8081 | quote }}
    # The service is reached on localhost only: nothing outside the pod bypasses the check.
    - name: UPSTREAM_URL
      value: {{ printf "http://127.0.0.1:%v" (required "iamSidecar.upstreamPort is required (your service's port on 127.0.0.1)" $s.upstreamPort) | quote }}
    - name: JWKS_URL
      value: {{ required "iamSidecar.jwksUrl is required (the iam-jwks Service's /.well-known/jwks.json)" $s.jwksUrl | quote }}
    - name: JWKS_REFRESH_INTERVAL
      value: {{ $s.jwksRefreshInterval | default 30 | quote }}
    - name: REVOCATION_REFRESH_INTERVAL
      value: {{ $s.revocationRefreshInterval | default 5 | quote }}
    {{- with $s.revocationsUrl }}
    - name: REVOCATIONS_URL
      value: {{ . | quote }}
    {{- end }}
    - name: JWT_ISSUER
      value: {{ $s.issuer | default "iam" | quote }}
    - name: JWT_AUDIENCE
      value: {{ $s.audience | default "iam" | quote }}
    - name: JWT_LEEWAY
      value: {{ $s.leeway | default 30 | quote }}
    - name: UPSTREAM_TIMEOUT
      value: {{ $s.upstreamTimeout | default 30 | quote }}
    - name: WORKER_COUNT
      value: {{ $s.workerCount | default 1 | quote }}
    - name: ENV
      value: {{ $s.environment | default "production" | quote }}
    - name: LOG_FORMAT
      value: json
    {{- with $s.publicPaths }}
    - name: PUBLIC_PATHS
      value: {{ join "," . | quote }}
    {{- end }}
    {{- if $s.rules }}
    - name: SIDECAR_RULES_FILE
      value: /etc/iam-sidecar/rules.toml
    {{- end }}
    {{- with $s.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- if $s.rules }}
  volumeMounts:
    - name: iam-sidecar-rules
      mountPath: /etc/iam-sidecar
      readOnly: true
  {{- end }}
  # Ready once the signing keys and the revocation feed have loaded; alive while it serves
  # its admin port.
  readinessProbe:
    httpGet:
      path: /healthcheck
      port: iam-admin
    periodSeconds: 5
    timeoutSeconds: 3
  livenessProbe:
    httpGet:
      path: /metrics
      port: iam-admin
    initialDelaySeconds: 10
    periodSeconds: 10
    timeoutSeconds: 3
  resources:
    {{- toYaml ($s.resources | default (dict "requests" (dict "cpu" "25m" "memory" "32Mi") "limits" (dict "memory" "128Mi"))) | nindent 4 }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: ["ALL"]
{{- end -}}

{{/* The rules volume; put it under your pod's `volumes:` (renders nothing without rules). */}}
{{- define "iam-sidecar.volumes" -}}
{{- if (.sidecar | default dict).rules }}
- name: iam-sidecar-rules
  configMap:
    name: {{ include "iam-sidecar.rulesConfigMapName" . }}
{{- end }}
{{- end -}}

{{/* The rules ConfigMap as a whole object (renders nothing without rules). */}}
{{- define "iam-sidecar.rulesConfigMap" -}}
{{- if (.sidecar | default dict).rules }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "iam-sidecar.rulesConfigMapName" . }}
  labels:
    app.kubernetes.io/component: iam-sidecar
    app.kubernetes.io/instance: {{ .root.Release.Name }}
    app.kubernetes.io/managed-by: {{ .root.Release.Service }}
data:
  rules.toml: |
    {{- .sidecar.rules | nindent 4 }}
{{- end }}
{{- end -}}

{{/* A Service port for your Service's `ports:`, targeting the sidecar, never your container. */}}
{{- define "iam-sidecar.servicePort" -}}
- name: http
  port: {{ (.sidecar | default dict).servicePort | default 80 }}
  targetPort: iam-http
  protocol: TCP
{{- end -}}
