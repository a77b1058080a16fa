"""Lints and renders the Helm charts under charts/ and asserts on what they produce.

Run by .ci/check-charts, which provides the `helm` binary in $HELM. Works on a copy of
charts/ in a temporary directory, so `helm dependency build` leaves the tree untouched.
"""

import ipaddress
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse

import kubernetes_validate
import yaml

HELM = os.environ["HELM"]
REPO = pathlib.Path(__file__).resolve().parent.parent
SOURCE = REPO / "charts"
failures: list[str] = []
# Every set of rendered objects, by what was rendered: each is validated against the
# Kubernetes API schemas at the end.
rendered: dict[str, list[dict]] = {}
# Custom resources of the Prometheus Operator: kubernetes-validate knows only the built-in
# kinds, so these are skipped by name (their fields are asserted on below instead).
NOT_VALIDATED_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
# Kubernetes versions every object must validate against: the oldest the chart is meant
# for here and the newest kubernetes-validate bundles.
KUBERNETES_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
# The drain in the code: in-flight requests get this long after SHUTDOWN_DELAY
# (SHUTDOWN_GRACE in iam-core/src/server/serve.rs).
SHUTDOWN_GRACE_SECONDS = 30


def helm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([HELM, *args], capture_output=True, text=True)


def check(condition: bool, what: str, detail: str = "") -> None:
    print(("ok      " if condition else "FAILED  ") + what)
    if not condition:
        if detail:
            print("        " + detail.replace("\n", "\n        "))
        failures.append(what)


def lint(chart: pathlib.Path, values_file: pathlib.Path | None = None) -> subprocess.CompletedProcess:
    args = ["lint", "--strict", str(chart)]
    if values_file:
        args += ["-f", str(values_file)]
    return helm(*args)


def render(chart: pathlib.Path, *args: str) -> list[dict]:
    result = helm("template", "iam", str(chart), "--namespace", "iam", *args)
    if result.returncode != 0:
        check(False, f"helm template {chart.name} {' '.join(args)}", result.stderr)
        return []
    objects = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    label = " ".join([chart.name, *(pathlib.Path(a).name if a.endswith(".yaml") else a for a in args)])
    rendered[label] = objects
    return objects


def refused(chart: pathlib.Path, message: str, *args: str) -> bool:
    """True when `helm template` with args fails and says `message`."""
    result = helm("template", "iam", str(chart), "--namespace", "iam", *args)
    return result.returncode != 0 and message in result.stderr


def pod_spec(workload: dict) -> dict:
    spec = workload.get("spec", {})
    return spec if workload.get("kind") == "Pod" else spec.get("template", {}).get("spec", {})


def workloads(objects: list[dict]) -> list[dict]:
    return [obj for obj in objects if obj.get("kind") in ("Deployment", "Job", "Pod")]


def find(objects: list[dict], kind: str, name: str) -> dict:
    for obj in objects:
        if obj.get("kind") == kind and obj["metadata"]["name"] == name:
            return obj
    check(False, f"{kind} {name} is rendered")
    return {}


def container(workload: dict, name: str) -> dict:
    containers = pod_spec(workload).get("containers", [])
    return next((c for c in containers if c["name"] == name), {})


def env(container_spec: dict) -> dict:
    return {item["name"]: item for item in container_spec.get("env", [])}


def lint_every_chart(charts: pathlib.Path) -> None:
    for chart in sorted({p.parent for p in charts.glob("*/Chart.yaml")} |
                        {p.parent for p in charts.glob("examples/*/Chart.yaml")}):
        if (chart / "Chart.yaml").read_text().find("dependencies:") >= 0:
            built = helm("dependency", "build", str(chart))
            check(built.returncode == 0, f"helm dependency build {chart.name}", built.stderr)
        result = lint(chart)
        check(result.returncode == 0, f"helm lint --strict {chart.name}", result.stdout + result.stderr)
        for values_file in sorted((chart / "ci").glob("*-values.yaml")):
            result = lint(chart, values_file)
            check(result.returncode == 0, f"helm lint --strict {chart.name} -f {values_file.name}",
                  result.stdout + result.stderr)
            # Rendered too, so that kubernetes-validate sees what each values file produces.
            render(chart, "-f", str(values_file))


def the_checks_can_fail(charts: pathlib.Path) -> None:
    iam = charts / "iam"
    broken = iam / "templates" / "zz-broken.yaml"
    broken.write_text("{{ .Values.no.such.value }}\n")
    check(lint(iam).returncode != 0, "lint refuses a broken template")
    broken.unlink()
    bad = helm("lint", "--strict", str(iam), "--set", "api.replicaCount=0")
    check(bad.returncode != 0 and "replicaCount" in bad.stdout,
          "lint refuses a value outside values.schema.json")
    typo = helm("lint", "--strict", str(iam), "--set", "api.replicas=3")
    check(typo.returncode != 0, "lint refuses an unknown key (a typo) in values")


def iam_chart(charts: pathlib.Path) -> None:
    iam = charts / "iam"
    # Installing without the secrets fails at once, naming the value to set.
    missing = helm("template", "iam", str(iam))
    check(missing.returncode != 0 and "database.existingSecret is required" in missing.stderr,
          "without database.existingSecret the install fails naming it")

    objects = render(iam, "-f", str(iam / "ci" / "full-values.yaml"))
    kinds = sorted({obj["kind"] for obj in objects})
    check(kinds == ["Deployment", "HorizontalPodAutoscaler", "Ingress", "Job", "NetworkPolicy",
                    "Pod", "PodDisruptionBudget", "PrometheusRule", "Service", "ServiceAccount",
                    "ServiceMonitor"],
          f"every optional part renders: {kinds}")
    check(not any(obj["kind"] in ("Secret", "ConfigMap") for obj in objects),
          "no Secret or ConfigMap is rendered: secrets are referenced only")

    job = find(objects, "Job", "iam-migrate-1")
    hooks = job.get("metadata", {}).get("annotations", {}).get("helm.sh/hook", "")
    check(hooks == "pre-install,pre-upgrade", "the migration job is a pre-install,pre-upgrade hook")
    check(container(job, "migrate").get("command") == ["iam-api", "--config=prod", "migrate"],
          "the migration job runs `iam-api --config=prod migrate`")

    api = find(objects, "Deployment", "iam-api")
    api_container = container(api, "iam-api")
    check(api_container.get("command") == ["iam-api", "--config=prod"],
          "api replicas never migrate")
    check("replicas" not in api.get("spec", {}), "with the HPA on, the Deployment leaves replicas to it")
    api_env = env(api_container)
    for name, secret in (("POSTGRES_CONNECTION_STRING", "iam-database"),
                         ("IAM_KEY_ENCRYPTION_KEY", "iam-key-encryption"),
                         ("BOOTSTRAP_ADMIN_PASSWORD", "iam-bootstrap-admin")):
        reference = api_env.get(name, {}).get("valueFrom", {}).get("secretKeyRef", {})
        check(reference.get("name") == secret and "value" not in api_env.get(name, {}),
              f"{name} comes from Secret {secret}")
    check(api_env.get("HOST", {}).get("value") == "0.0.0.0", "the api listens on every interface")
    check(api_env.get("OTEL_EXPORTER_OTLP_PROTOCOL", {}).get("value") == "grpc", "otel.protocol reaches the env")
    check(api_container.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/api/v1/healthcheck",
          "api readiness is the healthcheck")
    check(api_container.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/metrics",
          "api liveness does not depend on the database")
    security = api_container.get("securityContext", {})
    check(security.get("readOnlyRootFilesystem") is True and security.get("runAsNonRoot") is True
          and security.get("allowPrivilegeEscalation") is False
          and security.get("capabilities", {}).get("drop") == ["ALL"],
          "api container: non-root, read-only, no privilege escalation, no capabilities")

    jwks = find(objects, "Deployment", "iam-jwks")
    jwks_env = env(container(jwks, "iam-jwks"))
    check("IAM_KEY_ENCRYPTION_KEY" not in jwks_env, "iam-jwks never sees the key-encryption key")
    check(jwks_env.get("JWKS_PUBLIC_URL", {}).get("value") == "https://iam.example.com",
          "publicUrl reaches the discovery document")

    ingress = find(objects, "Ingress", "iam")
    paths = {path["path"]: path["backend"]["service"]["name"]
             for rule in ingress.get("spec", {}).get("rules", []) for path in rule["http"]["paths"]}
    check(paths.get("/.well-known") == "iam-jwks" and paths.get("/api") == "iam-api",
          f"the Ingress sends /.well-known to iam-jwks and /api to iam-api: {paths}")

    defaults = render(iam, "--set", "database.existingSecret=db", "--set", "keyEncryption.existingSecret=kek")
    kinds = sorted({obj["kind"] for obj in defaults})
    check(kinds == ["Deployment", "Job", "NetworkPolicy", "Pod", "PodDisruptionBudget", "Service",
                    "ServiceAccount"],
          f"defaults plus the two secrets give a plain install: {kinds}")
    check(find(defaults, "Deployment", "iam-api").get("spec", {}).get("replicas") == 2,
          "two api replicas by default")
    default_api_env = env(container(find(defaults, "Deployment", "iam-api"), "iam-api"))
    check(default_api_env.get("ACCESS_TOKEN_TTL", {}).get("value") == "900",
          "access tokens live 15 minutes by default in the chart")
    check("PGSSLROOTCERT" not in default_api_env, "no CA is mounted unless one is given")
    check(default_api_env.get("RATE_LIMIT_PER_MINUTE", {}).get("value") == "300"
          and "10.0.0.0/8" in default_api_env.get("TRUSTED_PROXIES", {}).get("value", ""),
          "the per-address limit is on, with the proxies whose X-Forwarded-For is believed")
    check(default_api_env.get("REGISTRATION", {}).get("value") == "open"
          and default_api_env.get("AUDIT_RETENTION_DAYS", {}).get("value") == "365",
          "registration is open and audit events are kept a year by default, as in the binary")
    check(default_api_env.get("JWT_DEFAULT_CLIENT_ID", {}).get("value") == "iam",
          "password-grant tokens name the client iam by default, as in the binary")
    closed = render(iam, "--set", "database.existingSecret=db", "--set",
                    "keyEncryption.existingSecret=kek", "--set", "api.registration=closed")
    check(env(container(find(closed, "Deployment", "iam-api"), "iam-api"))
          .get("REGISTRATION", {}).get("value") == "closed",
          "api.registration=closed reaches iam-api")
    default_jwks_env = env(container(find(defaults, "Deployment", "iam-jwks"), "iam-jwks"))
    check(default_api_env.get("POSTGRES_POOL_SIZE", {}).get("value") == "8"
          and "POSTGRES_POOL_SIZE" not in default_jwks_env,
          "iam-api gets 8 connections (api.poolSize), iam-jwks the binary's default")
    check(env(api_container).get("POSTGRES_POOL_SIZE", {}).get("value") == "8"
          and jwks_env.get("POSTGRES_POOL_SIZE", {}).get("value") == "6",
          "database.poolSize sizes iam-jwks; api.poolSize wins for iam-api")
    shared_pool = render(iam, "-f", str(iam / "ci" / "full-values.yaml"), "--set", "api.poolSize=null")
    check(env(container(find(shared_pool, "Deployment", "iam-api"), "iam-api"))
          .get("POSTGRES_POOL_SIZE", {}).get("value") == "6",
          "with api.poolSize empty, iam-api takes database.poolSize")

    # A PostgreSQL CA reaches every process that connects, as libpq's PGSSLROOTCERT.
    with_ca = render(iam, "--set", "database.existingSecret=db", "--set", "keyEncryption.existingSecret=kek",
                     "--set", "database.caSecret=postgres-ca")
    for kind, name, container_name in (("Deployment", "iam-api", "iam-api"),
                                       ("Deployment", "iam-jwks", "iam-jwks"),
                                       ("Job", "iam-migrate-1", "migrate")):
        workload = find(with_ca, kind, name)
        spec = container(workload, container_name)
        mounts = {mount["name"]: mount for mount in spec.get("volumeMounts", [])}
        volumes = {volume["name"]: volume
                   for volume in workload["spec"]["template"]["spec"].get("volumes", [])}
        check(env(spec).get("PGSSLROOTCERT", {}).get("value") == "/etc/iam/postgres-ca/ca.crt"
              and mounts.get("postgres-ca", {}).get("mountPath") == "/etc/iam/postgres-ca"
              and mounts["postgres-ca"].get("readOnly") is True
              and volumes.get("postgres-ca", {}).get("secret", {}).get("secretName") == "postgres-ca",
              f"{name}: database.caSecret is mounted read-only and named by PGSSLROOTCERT")


def sidecar_example(charts: pathlib.Path) -> None:
    example = charts / "examples" / "orders-with-sidecar"
    objects = render(example)
    deployment = find(objects, "Deployment", "iam-orders")
    sidecar = container(deployment, "iam-sidecar")
    sidecar_env = env(sidecar)
    check(sidecar_env.get("UPSTREAM_URL", {}).get("value") == "http://127.0.0.1:9000",
          "the sidecar forwards to the service on localhost")
    check(sidecar_env.get("SIDECAR_RULES_FILE", {}).get("value") == "/etc/iam-sidecar/rules.toml",
          "the rules file is configured")
    check(sidecar_env.get("REVOCATION_REFRESH_INTERVAL", {}).get("value") == "5"
          and "REVOCATIONS_URL" not in sidecar_env,
          "the sidecar polls the revocation feed every 5 s, on the JWKS origin by default")
    check(sidecar.get("readinessProbe", {}).get("httpGet", {}) == {"path": "/healthcheck", "port": "iam-admin"},
          "sidecar readiness is /healthcheck on the admin port")
    mounts = {m["name"]: m["mountPath"] for m in sidecar.get("volumeMounts", [])}
    volumes = {v["name"]: v.get("configMap", {}).get("name")
               for v in deployment.get("spec", {}).get("template", {}).get("spec", {}).get("volumes", [])}
    rules = find(objects, "ConfigMap", "iam-iam-sidecar-rules")
    check(mounts.get("iam-sidecar-rules") == "/etc/iam-sidecar"
          and volumes.get("iam-sidecar-rules") == "iam-iam-sidecar-rules"
          and 'permissions = ["orders:write"]' in rules.get("data", {}).get("rules.toml", ""),
          "the rules ConfigMap is mounted where SIDECAR_RULES_FILE points")
    service = find(objects, "Service", "iam-orders")
    check([p["targetPort"] for p in service.get("spec", {}).get("ports", [])] == ["iam-http"],
          "the Service targets the sidecar, never the service's own port")
    missing = helm("template", "iam", str(example), "--set", "iamSidecar.jwksUrl=")
    check(missing.returncode != 0 and "iamSidecar.jwksUrl is required" in missing.stderr,
          "without a JWKS URL the sidecar template fails naming it")

SECRETS = ("--set", "database.existingSecret=db", "--set", "keyEncryption.existingSecret=kek")


def loopback(url: str) -> bool:
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    if host in ("", "localhost") or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def issuer_and_discovery(charts: pathlib.Path) -> None:
    iam = charts / "iam"
    ci = iam / "ci"
    cases = {
        "defaults": (render(iam, *SECRETS), "iam"),
        "full-values.yaml (publicUrl)": (render(iam, "-f", str(ci / "full-values.yaml")), "https://iam.example.com"),
        "public-url-values.yaml": (render(iam, "-f", str(ci / "public-url-values.yaml")), "https://login.example.org"),
        "an explicit tokens.issuer": (render(iam, *SECRETS, "--set", "publicUrl=https://id.example.net",
                                             "--set", "tokens.issuer=urn:example:iam"), "urn:example:iam"),
        "the Ingress host alone": (render(iam, *SECRETS, "--set", "ingress.enabled=true",
                                          "--set", "ingress.host=sso.example.com"), "http://sso.example.com"),
    }
    for what, (objects, issuer) in cases.items():
        api_env = env(container(find(objects, "Deployment", "iam-api"), "iam-api"))
        jwks_env = env(container(find(objects, "Deployment", "iam-jwks"), "iam-jwks"))
        check(api_env.get("JWT_ISSUER", {}).get("value") == issuer
              and jwks_env.get("JWT_ISSUER", {}).get("value") == issuer,
              f"{what}: iam-api and iam-jwks both get JWT_ISSUER={issuer}")
        advertised = [jwks_env.get(name, {}).get("value", "") for name in ("JWKS_PUBLIC_URL", "API_PUBLIC_URL")]
        check(all(url and not loopback(url) for url in advertised),
              f"{what}: discovery advertises no loopback or 0.0.0.0 URL: {advertised}")
        if issuer.startswith("http"):
            check(advertised == [issuer, issuer],
                  f"{what}: the issuer is the URL discovery is served under: {advertised}")
        test = find(objects, "Pod", "iam-test")
        script = " ".join(container(test, "check").get("command", []))
        check(f'"issuer":"{issuer}"' in script, f"{what}: helm test checks the discovery issuer")
    defaults = cases["defaults"][0]
    jwks_env = env(container(find(defaults, "Deployment", "iam-jwks"), "iam-jwks"))
    check(jwks_env.get("JWKS_PUBLIC_URL", {}).get("value") == "http://iam-jwks.iam.svc:8001"
          and jwks_env.get("API_PUBLIC_URL", {}).get("value") == "http://iam-api.iam.svc:8000",
          "without a public URL, discovery names the in-cluster Services")
    for what, args in (
            ("publicUrl on 127.0.0.1", ("--set", "publicUrl=http://127.0.0.1:8000")),
            ("publicUrl on localhost", ("--set", "publicUrl=http://localhost")),
            ("publicUrl on [::1]", ("--set", "publicUrl=http://[::1]:8000")),
            ("an Ingress host of 0.0.0.0", ("--set", "ingress.enabled=true", "--set", "ingress.host=0.0.0.0")),
            ("JWKS_PUBLIC_URL=http://0.0.0.0:8001 in extraEnv",
             ("--set", "extraEnv[0].name=JWKS_PUBLIC_URL", "--set", "extraEnv[0].value=http://0.0.0.0:8001"))):
        check(refused(iam, "must not advertise a loopback or 0.0.0.0 address", *SECRETS, *args),
              f"rendering is refused with {what}")


def key_rotation(charts: pathlib.Path) -> None:
    iam = charts / "iam"
    objects = render(iam, *SECRETS)
    grace = int(env(container(find(objects, "Deployment", "iam-api"), "iam-api"))
                .get("KEY_ROTATION_GRACE", {}).get("value", "0"))
    # Envoy remote_jwks caches 600 s and does not refetch on an unknown kid; Istio 20 min.
    check(grace == 1800 and grace >= 600 and grace >= 20 * 60,
          f"KEY_ROTATION_GRACE defaults to 1800 s, beyond Envoy's 600 s and Istio's 20 min cache: {grace}")
    job_env = env(container(find(objects, "Job", "iam-migrate-1"), "migrate"))
    check(job_env.get("KEY_ROTATION_GRACE", {}).get("value") == "1800",
          "the migration job (iam-api) has the same grace, as `keys rotate` run there would")
    check(refused(iam, "jwks.keyRotationGrace (60) must be at least", *SECRETS, "--set", "jwks.keyRotationGrace=60"),
          "a grace shorter than JWKS max-age + refresh interval is refused")


def security_and_escape_hatches(charts: pathlib.Path) -> None:
    iam = charts / "iam"
    defaults = render(iam, *SECRETS)
    for workload in workloads(defaults):
        name = workload["metadata"]["name"]
        pod_security = pod_spec(workload).get("securityContext", {})
        check(pod_security.get("runAsUser") == 65532 and pod_security.get("fsGroup") == 65532
              and pod_security.get("seccompProfile", {}).get("type") == "RuntimeDefault",
              f"{name}: pod runs as 65532 with RuntimeDefault seccomp by default")
    for name in ("iam-api", "iam-jwks"):
        spec = container(find(defaults, "Deployment", name), name)
        check(all(probe in spec for probe in ("startupProbe", "readinessProbe", "livenessProbe"))
              and spec["startupProbe"]["httpGet"]["path"] == "/metrics"
              and spec["startupProbe"]["periodSeconds"] * spec["startupProbe"]["failureThreshold"] >= 120,
              f"{name}: a startup probe gives the first database load time before liveness counts")

    objects = render(iam, "-f", str(iam / "ci" / "openshift-values.yaml"))
    for workload in workloads(objects):
        name = workload["metadata"]["name"]
        contexts = [pod_spec(workload).get("securityContext", {})] + \
            [c.get("securityContext", {}) for c in pod_spec(workload).get("containers", [])]
        check(all(not ({"runAsUser", "runAsGroup", "fsGroup"} & context.keys()) for context in contexts)
              and all(context.get("runAsNonRoot") is True for context in contexts),
              f"openshift: {name} leaves runAsUser/runAsGroup/fsGroup to the platform, still non-root")
    check(not any(obj["kind"] == "NetworkPolicy" for obj in objects), "networkPolicy.enabled=false renders none")
    api = find(objects, "Deployment", "iam-api")
    api_pod = pod_spec(api)
    api_container = container(api, "iam-api")
    check(api_container.get("image") == "registry.example.com/iam@sha256:" + "0123456789abcdef" * 4,
          "image.digest pulls repository@sha256:…")
    check(container(find(objects, "Pod", "iam-test"), "check").get("image", "").startswith("registry.example.com/curl@sha256:"),
          "tests.image.digest pins the helm test image")
    template_labels = api["spec"]["template"]["metadata"]["labels"]
    check(template_labels.get("team") == "identity" and "team" not in api["spec"]["selector"]["matchLabels"]
          and api["spec"]["template"]["metadata"].get("annotations", {}).get("example.com/owner") == "identity",
          "podLabels and podAnnotations reach the pods, never the selector")
    check(api_container.get("envFrom") == [{"secretRef": {"name": "iam-api-extra"}}]
          and container(find(objects, "Deployment", "iam-jwks"), "iam-jwks").get("envFrom")
          == [{"configMapRef": {"name": "iam-jwks-extra"}}],
          "extraEnvFrom reaches both containers")
    check({"name": "scratch", "mountPath": "/scratch"} in api_container.get("volumeMounts", [])
          and any(v["name"] == "scratch" for v in api_pod.get("volumes", [])),
          "extraVolumes and extraVolumeMounts are added")
    check([c["name"] for c in api_pod.get("initContainers", [])] == ["wait-for-database"]
          and api_pod.get("priorityClassName") == "high-priority"
          and "nodeAffinity" in api_pod.get("affinity", {}),
          "initContainers, priorityClassName and affinity reach the api pod")
    check([t["whenUnsatisfiable"] for t in api_pod.get("topologySpreadConstraints", [])] == ["DoNotSchedule"],
          "topologySpreadConstraints replace the generated spread")
    check(api_container.get("readinessProbe", {}).get("periodSeconds") == 10
          and api_container.get("livenessProbe", {}).get("failureThreshold") == 5
          and api_container.get("startupProbe", {}).get("failureThreshold") == 60,
          "probe timing comes from values")
    api_env = env(api_container)
    check(api_env.get("REGISTRATION", {}).get("value") == "closed"
          and api_env.get("PASSWORD_HASH_MEMORY_KIB", {}).get("value") == "65536"
          and api_env.get("PASSWORD_HASH_ITERATIONS", {}).get("value") == "3",
          "registration and the argon2id cost reach iam-api")

    # PostgreSQL TLS: sslmode and a client certificate, in every process that connects.
    full = render(iam, "-f", str(iam / "ci" / "full-values.yaml"))
    for kind, name, container_name in (("Deployment", "iam-api", "iam-api"),
                                       ("Deployment", "iam-jwks", "iam-jwks"),
                                       ("Job", "iam-migrate-1", "migrate")):
        workload = find(full, kind, name)
        spec = container(workload, container_name)
        values = {k: v.get("value") for k, v in env(spec).items()}
        volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
        check(values.get("PGSSLMODE") == "verify-full"
              and values.get("PGSSLCERT") == "/etc/iam/postgres-client/tls.crt"
              and values.get("PGSSLKEY") == "/etc/iam/postgres-client/tls.key"
              and volumes.get("postgres-client", {}).get("secret", {}).get("defaultMode") == 0o400,
              f"{name}: database.sslmode and the client certificate reach it (key mode 0400)")


def draining(charts: pathlib.Path) -> None:
    iam = charts / "iam"
    example = charts / "examples" / "orders-with-sidecar"
    servers = {"iam-api", "iam-jwks", "iam-sidecar"}
    seen = set()
    for label, objects in list(rendered.items()):
        for workload in workloads(objects):
            if workload["kind"] != "Deployment":
                continue
            grace = pod_spec(workload).get("terminationGracePeriodSeconds", 30)
            for spec in pod_spec(workload).get("containers", []):
                if spec["name"] not in servers:
                    continue
                seen.add(spec["name"])
                delay = env(spec).get("SHUTDOWN_DELAY", {}).get("value")
                check(delay is not None and grace > int(delay) + SHUTDOWN_GRACE_SECONDS,
                      f"{label}: {workload['metadata']['name']}/{spec['name']} has SHUTDOWN_DELAY={delay} "
                      f"and terminationGracePeriodSeconds {grace} > delay + {SHUTDOWN_GRACE_SECONDS}")
    check(seen == servers, f"SHUTDOWN_DELAY was checked on every server container: {sorted(seen)}")
    defaults = render(iam, *SECRETS)
    check(env(container(find(defaults, "Deployment", "iam-api"), "iam-api")).get("SHUTDOWN_DELAY", {}).get("value") == "5",
          "SHUTDOWN_DELAY is 5 by default, as in stage/prod")
    check(refused(iam, "terminationGracePeriodSeconds (35) must exceed", *SECRETS,
                  "--set", "terminationGracePeriodSeconds=35"),
          "a grace period that does not cover delay + drain is refused")
    check(helm("lint", "--strict", str(iam), *SECRETS, "--set", "shutdownDelay=301").returncode != 0,
          "SHUTDOWN_DELAY above the binary's 300 s is refused by the schema")


def network_policy(charts: pathlib.Path) -> None:
    iam = charts / "iam"
    defaults = render(iam, *SECRETS)
    policies = {obj["metadata"]["name"]: obj["spec"] for obj in defaults if obj["kind"] == "NetworkPolicy"}
    check(sorted(policies) == ["iam-api", "iam-jwks", "iam-migrate"], f"a NetworkPolicy per component by default: {sorted(policies)}")
    for name, spec in policies.items():
        egress = spec.get("egress", [])
        ports = [(p["protocol"], p["port"]) for rule in egress for p in rule.get("ports", [])]
        check(spec.get("policyTypes") == ["Ingress", "Egress"]
              and ("UDP", 53) in ports and ("TCP", 53) in ports and ("TCP", 5432) in ports
              and all(rule.get("ports") for rule in egress),
              f"{name}: egress only to DNS and PostgreSQL's port: {ports}")
        if name == "iam-migrate":
            check(spec.get("ingress") == [], "the migration job accepts no connections")
        else:
            check([p for rule in spec.get("ingress", []) for p in rule.get("ports", [])]
                  == [{"protocol": "TCP", "port": "http"}],
                  f"{name}: ingress only to the service port (which serves /metrics too)")
    full = render(iam, "-f", str(iam / "ci" / "full-values.yaml"))
    api = next(o["spec"] for o in full if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "iam-api")
    sources = api["ingress"][0].get("from", [])
    check(any(peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") == "test"
              for peer in sources) and len(sources) == 3,
          "with ingressFrom set, those peers and the helm test pod may connect")
    egress = {p["port"]: rule.get("to") for rule in api["egress"] for p in rule["ports"]}
    check(egress.get(5432) == [{"ipBlock": {"cidr": "10.20.0.0/24"}}], "database.cidrs narrows the PostgreSQL egress")
    check(egress.get(4317) == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}}],
          "the OTLP endpoint's port is allowed, to otlpTo")
    public = render(iam, "-f", str(iam / "ci" / "public-url-values.yaml"))
    api = next(o["spec"] for o in public if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "iam-api")
    check(any(p["port"] == 443 for rule in api["egress"] for p in rule["ports"]),
          "an https OTLP endpoint without a port is allowed on 443")
    check(not any(p["port"] in (4317, 4318, 443) for rule in policies["iam-api"].get("egress", []) for p in rule["ports"]),
          "without otel.endpoint no OTLP egress is opened")


def metric_names() -> set[str]:
    """Every series name the processes export, as Prometheus sees it."""
    names = set()
    for source in ("iam-api/src/metrics.rs", "iam-jwks/src/metrics.rs", "iam-core/src/metrics.rs"):
        text = (REPO / source).read_text()
        for name in re.findall(r'"((?:iam|http)_[a-z_]+)"', text):
            names |= {name, name + "_total", name + "_bucket", name + "_sum", name + "_count"}
    names |= set(re.findall(r"(iam_sidecar_[a-z_]+)", (REPO / "iam-sidecar/src/metrics.rs").read_text()))
    return names


def alerts(charts: pathlib.Path) -> None:
    iam = charts / "iam"
    objects = render(iam, "-f", str(iam / "ci" / "full-values.yaml"))
    rule = find(objects, "PrometheusRule", "iam")
    rules = {r["alert"]: r["expr"] for group in rule.get("spec", {}).get("groups", []) for r in group["rules"]}
    check(set(rules) == {"IamHighErrorRatio", "IamLoginFailureSpike", "IamJwksReloadFailing",
                         "IamRevocationFeedBuildFailing", "IamSidecarRevocationFeedStale",
                         "IamPasswordHashQueueSaturated"}, f"the alerts: {sorted(rules)}")
    exported = metric_names()
    used = {name for expr in rules.values() for name in re.findall(r"\b((?:iam|http)_[a-z_]+)\b", expr)}
    check(used and used <= exported, f"every alert uses a series the processes export: unknown {sorted(used - exported)}")
    check('status=~"5.."' in rules.get("IamHighErrorRatio", "")
          and 'outcome="failed"' in rules.get("IamJwksReloadFailing", ""),
          "5xx ratio and failed JWKS reloads are what they say")
    check(not any(o["kind"] == "PrometheusRule" for o in render(iam, *SECRETS)), "no PrometheusRule by default")
    example = charts / "examples" / "orders-with-sidecar"
    check(not any(o["kind"] == "PodMonitor" for o in render(example)), "the sidecar's PodMonitor is off by default")
    monitored = render(example, "-f", str(example / "ci" / "grpc-values.yaml"))
    monitor = find(monitored, "PodMonitor", "iam-iam-sidecar")
    deployment = find(monitored, "Deployment", "iam-orders")
    endpoints = monitor.get("spec", {}).get("podMetricsEndpoints", [])
    selector = monitor.get("spec", {}).get("selector", {}).get("matchLabels", {})
    check(endpoints == [{"port": "iam-admin", "path": "/metrics", "interval": "30s"}]
          and selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items(),
          "the PodMonitor scrapes the sidecar's admin port of the service's pods")


def sidecar_settings(charts: pathlib.Path) -> None:
    example = charts / "examples" / "orders-with-sidecar"
    objects = render(example, "-f", str(example / "ci" / "grpc-values.yaml"))
    deployment = find(objects, "Deployment", "iam-orders")
    sidecar = container(deployment, "iam-sidecar")
    values = {k: v.get("value") for k, v in env(sidecar).items()}
    check(values.get("SIDECAR_MODE") == "proxy" and values.get("UPSTREAM_HTTP2") == "true"
          and values.get("SHUTDOWN_DELAY") == "15" and values.get("JWT_ISSUER") == "https://iam.example.com",
          "the sidecar gets SIDECAR_MODE, UPSTREAM_HTTP2, SHUTDOWN_DELAY and the issuer from values")
    check(pod_spec(deployment).get("terminationGracePeriodSeconds") == 55,
          "the example's grace period follows the sidecar's SHUTDOWN_DELAY (15 + 30 + 10)")
    check(sidecar.get("image", "").startswith("ghcr.io/iam/iam@sha256:")
          and not {"runAsUser", "runAsGroup"} & sidecar.get("securityContext", {}).keys()
          and sidecar.get("securityContext", {}).get("runAsNonRoot") is True
          and sidecar.get("readinessProbe", {}).get("periodSeconds") == 3
          and "startupProbe" in sidecar,
          "sidecar: image digest, OpenShift mode and probe timing from values")
    decision = render(example, "--set", "iamSidecar.mode=decision", "--set", "iamSidecar.upstreamPort=null")
    decision_env = env(container(find(decision, "Deployment", "iam-orders"), "iam-sidecar"))
    check(decision_env.get("SIDECAR_MODE", {}).get("value") == "decision"
          and not {"UPSTREAM_URL", "UPSTREAM_HTTP2", "UPSTREAM_TIMEOUT"} & decision_env.keys(),
          "decision mode sets no upstream (the binary refuses UPSTREAM_URL there)")
    check(refused(example, "iamSidecar.mode must be proxy or decision", "--set", "iamSidecar.mode=deny"),
          "an unknown sidecar mode is refused")


def helm_test(charts: pathlib.Path) -> None:
    iam = charts / "iam"
    objects = render(iam, *SECRETS)
    test = find(objects, "Pod", "iam-test")
    check(test.get("metadata", {}).get("annotations", {}).get("helm.sh/hook") == "test",
          "the test pod is a helm test hook")
    script = " ".join(container(test, "check").get("command", []))
    check("http://iam-api.iam.svc:8000/api/v1/healthcheck" in script
          and "http://iam-jwks.iam.svc:8001/.well-known/jwks.json" in script,
          "helm test fetches the api healthcheck and the JWKS through the Services")


def environment_names(charts: pathlib.Path) -> None:
    """The chart sets only variables the processes read (or their libraries: sqlx's PG*,
    OpenTelemetry's OTEL_*, tracing's RUST_LOG)."""
    sources = "\n".join(path.read_text() for crate in ("iam-core", "iam-api", "iam-jwks", "iam-sidecar")
                        for path in (REPO / crate / "src").rglob("*.rs"))
    library = {"PGSSLMODE", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY", "RUST_LOG",
               "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL"}
    names = {item["name"] for objects in rendered.values() for workload in workloads(objects)
             for spec in pod_spec(workload).get("containers", []) if spec["name"] != "check"
             and spec["name"] in ("iam-api", "iam-jwks", "iam-sidecar", "migrate")
             for item in spec.get("env", [])}
    unread = sorted(name for name in names - library
                    if f'"{name}"' not in sources and re.search(rf"\b{name.lower()}:", sources) is None)
    check(bool(names) and not unread, f"every environment variable the charts set is read by a process: unread {unread}")


def kubernetes_schemas() -> None:
    for version in KUBERNETES_VERSIONS:
        problems, skipped, count = [], set(), 0
        for label, objects in rendered.items():
            for obj in objects:
                if obj.get("kind") in NOT_VALIDATED_KINDS:
                    skipped.add(obj["kind"])
                    continue
                count += 1
                try:
                    kubernetes_validate.validate(obj, version, strict=True)
                except kubernetes_validate.ValidationError as error:
                    path = ".".join(str(p) for p in error.path)
                    problems.append(f"{label}: {obj['kind']}/{obj['metadata']['name']}: {path}: {error.message}")
                except kubernetes_validate.SchemaNotFoundError as error:
                    problems.append(f"{label}: {obj['kind']}/{obj['metadata']['name']}: {error}")
        check(count > 0 and not problems,
              f"kubernetes-validate --strict {version}: {count} rendered objects from {len(rendered)} renders"
              f" (custom resources not validated: {', '.join(sorted(skipped))})", "\n".join(problems))



with tempfile.TemporaryDirectory() as scratch:
    charts = pathlib.Path(scratch) / "charts"
    shutil.copytree(SOURCE, charts)
    lint_every_chart(charts)
    the_checks_can_fail(charts)
    iam_chart(charts)
    sidecar_example(charts)
    issuer_and_discovery(charts)
    key_rotation(charts)
    security_and_escape_hatches(charts)
    network_policy(charts)
    alerts(charts)
    sidecar_settings(charts)
    helm_test(charts)
    # Last: these look at every render above.
    draining(charts)
    environment_names(charts)
    kubernetes_schemas()

if failures:
    sys.exit(f"{len(failures)} chart check(s) failed")
print("every chart check passed")
