{{/*
iam-sidecar as a container of your own pod. Every template takes
  (dict "root" $ "sidecar" .Values.iamSidecar)
where .Values.iamSidecar holds (defaults in brackets):
  image.repository, image.tag (both required), image.pullPolicy [IfNotPresent]
  image.digest [""]   "sha256:…": pulled as repository@digest (the tag is then ignored)
  mode [proxy]        SIDECAR_MODE: proxy (forwards to your service) or decision (answers
                      nginx auth_request / Traefik forwardAuth / Envoy ext_authz; no upstream)
  upstreamPort        (required in proxy mode) the port your service listens on, on 127.0.0.1 only
  upstreamHttp2 [false]  UPSTREAM_HTTP2: h2c with prior knowledge to the upstream (gRPC)
  jwksUrl             (required) e.g. http://iam-jwks.iam.svc:8001/.well-known/jwks.json
  port [8080]         what your Service targets; adminPort [8081] healthcheck and metrics
  profile [prod], environment [production], audience [iam], leeway [30]
  issuer [iam]        JWT_ISSUER: must equal the iam chart's issuer (its tokens.issuer, else
                      its publicUrl), or every token is refused as wrong_issuer
  shutdownDelay [5]   SHUTDOWN_DELAY: seconds the admin /healthcheck answers 503 while the
                      main port keeps proxying; give the pod
                      terminationGracePeriodSeconds: include "iam-sidecar.terminationGracePeriodSeconds"
  jwksRefreshInterval [30], upstreamTimeout [30], workerCount [1]
  revocationRefreshInterval [5]  seconds between polls of the revocation feed
  revocationsUrl      [JWKS_URL's origin + /api/v1/revocations]
  publicPaths [[]]    path prefixes forwarded without a token
  rules [""]          TOML route rules; when set, rendered into a ConfigMap and mounted
  extraEnv [[]], extraEnvFrom [[]], extraVolumeMounts [[]]
  resources [requests 25m/32Mi, limits 128Mi memory]
  probes.{startup,readiness,liveness} [periodSeconds/timeoutSeconds/failureThreshold]
  openshift [false]   leave runAsUser out of the security context (OpenShift assigns it)
  securityContext [{}]  merged over the container's default security context; null drops a field
  podMonitor.enabled [false], podMonitor.interval [30s], podMonitor.labels [{}]
                      a Prometheus Operator PodMonitor for the admin port (iam-sidecar.podMonitor)
*/}}

{{/* Seconds the pod needs after SIGTERM: the sidecar's drain delay, up to 30 s for
in-flight requests (SHUTDOWN_GRACE), and 10 s of room. Use it (or more) as your pod's
terminationGracePeriodSeconds. */}}
{{- define "iam-sidecar.terminationGracePeriodSeconds" -}}
{{- $s := .sidecar | default dict -}}
{{- add (include "iam-sidecar.shutdownDelay" .) 40 -}}
{{- end -}}

{{- define "iam-sidecar.shutdownDelay" -}}
{{- $s := .sidecar | default dict -}}
{{- if kindIs "invalid" $s.shutdownDelay -}}5{{- else -}}{{- int $s.shutdownDelay -}}{{- end -}}
{{- end -}}

{{- define "iam-sidecar.rulesConfigMapName" -}}
{{- printf "%s-iam-sidecar-rules" .root.Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The sidecar container; put it under your pod's `containers:`. */}}
{{- define "iam-sidecar.container" -}}
{{- $s := .sidecar | default dict -}}
{{- $image := $s.image | default dict -}}
{{- $mode := $s.mode | default "proxy" -}}
{{- if not (has $mode (list "proxy" "decision")) -}}
{{- fail (printf "iamSidecar.mode must be proxy or decision, not %q" $mode) -}}
{{- end -}}
{{- $probes := $s.probes | default dict -}}
- name: iam-sidecar
  {{- $repository := required "iamSidecar.image.repository is required (the IAM image)" $image.repository }}
  image: {{ if $image.digest }}{{ printf "%s@%s" $repository $image.digest }}{{ else }}{{ printf "%s:%s" $repository (required "iamSidecar.image.tag is required (the IAM version, e.g. 0.1.0)" $image.tag | toString) }}{{ end }}
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
    - name: SIDECAR_MODE
      value: {{ $mode | quote }}
    {{- if eq $mode "proxy" }}
    # The service is reached on localhost only: nothing outside the pod bypasses the check.
    - name: UPSTREAM_URL
      value: {{ printf "http://127.0.0.1:%v" (required "iamSidecar.upstreamPort is required (your service's port on 127.0.0.1)" $s.upstreamPort) | quote }}
    - name: UPSTREAM_HTTP2
      value: {{ $s.upstreamHttp2 | default false | quote }}
    - name: UPSTREAM_TIMEOUT
      value: {{ $s.upstreamTimeout | default 30 | quote }}
    {{- end }}
    # Seconds of draining after SIGTERM: the admin /healthcheck answers 503, proxying goes on.
    - name: SHUTDOWN_DELAY
      value: {{ include "iam-sidecar.shutdownDelay" . | quote }}
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
  {{- with $s.extraEnvFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- $mounts := list }}
  {{- if $s.rules }}
  {{- $mounts = append $mounts (dict "name" "iam-sidecar-rules" "mountPath" "/etc/iam-sidecar" "readOnly" true) }}
  {{- end }}
  {{- $mounts = concat $mounts ($s.extraVolumeMounts | default list) }}
  {{- with $mounts }}
  volumeMounts:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  # Started once it serves its admin port; ready once the signing keys and the revocation
  # feed have loaded (503 while draining); alive while it serves its admin port.
  startupProbe:
    httpGet:
      path: /metrics
      port: iam-admin
    {{- toYaml (mergeOverwrite (dict "periodSeconds" 2 "timeoutSeconds" 3 "failureThreshold" 30) ($probes.startup | default dict)) | nindent 4 }}
  readinessProbe:
    httpGet:
      path: /healthcheck
      port: iam-admin
    {{- toYaml (mergeOverwrite (dict "periodSeconds" 5 "timeoutSeconds" 3 "failureThreshold" 2) ($probes.readiness | default dict)) | nindent 4 }}
  livenessProbe:
    httpGet:
      path: /metrics
      port: iam-admin
    {{- toYaml (mergeOverwrite (dict "periodSeconds" 10 "timeoutSeconds" 3 "failureThreshold" 3) ($probes.liveness | default dict)) | nindent 4 }}
  resources:
    {{- toYaml ($s.resources | default (dict "requests" (dict "cpu" "25m" "memory" "32Mi") "limits" (dict "memory" "128Mi"))) | nindent 4 }}
  {{- $security := dict "runAsNonRoot" true "runAsUser" 65532 "runAsGroup" 65532 "allowPrivilegeEscalation" false "readOnlyRootFilesystem" true "capabilities" (dict "drop" (list "ALL")) }}
  {{- if $s.openshift }}
  {{- $security = omit $security "runAsUser" "runAsGroup" }}
  {{- end }}
  {{- range $key, $value := ($s.securityContext | default dict) }}
  {{- if kindIs "invalid" $value }}
  {{- $security = omit $security $key }}
  {{- else }}
  {{- $_ := set $security $key $value }}
  {{- end }}
  {{- end }}
  securityContext:
    {{- toYaml $security | nindent 4 }}
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


{{/* A Prometheus Operator PodMonitor scraping the sidecar's admin port (/metrics); renders
nothing unless podMonitor.enabled. Pass (dict "root" $ "sidecar" .Values.iamSidecar
"selector" (dict ...your pod's labels...)). */}}
{{- define "iam-sidecar.podMonitor" -}}
{{- $s := .sidecar | default dict -}}
{{- $monitor := $s.podMonitor | default dict -}}
{{- if $monitor.enabled }}
apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata:
  name: {{ printf "%s-iam-sidecar" .root.Release.Name | trunc 63 | trimSuffix "-" }}
  labels:
    app.kubernetes.io/component: iam-sidecar
    app.kubernetes.io/instance: {{ .root.Release.Name }}
    app.kubernetes.io/managed-by: {{ .root.Release.Service }}
    {{- with $monitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- toYaml (required "iam-sidecar.podMonitor needs the pod's labels as selector" .selector) | nindent 6 }}
  podMetricsEndpoints:
    - port: iam-admin
      path: /metrics
      interval: {{ $monitor.interval | default "30s" }}
{{- end }}
{{- end -}}
