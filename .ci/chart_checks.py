"""Lints and renders the Helm charts under charts/ and asserts on what they produce.

Run by .ci/check-charts, which provides the `helm` binary in $HELM. Works on a copy of
charts/ in a temporary directory, so `helm dependency build` leaves the tree untouched.
"""

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import yaml

HELM = os.environ["HELM"]
SOURCE = pathlib.Path(__file__).resolve().parent.parent / "charts"
failures: list[str] = []


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
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(objects: list[dict], kind: str, name: str) -> dict:
    for obj in objects:
        if obj.get("kind") == kind and obj["metadata"]["name"] == name:
            return obj
    check(False, f"{kind} {name} is rendered")
    return {}


def container(workload: dict, name: str) -> dict:
    containers = workload.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
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
    check(kinds == ["Deployment", "HorizontalPodAutoscaler", "Ingress", "Job",
                    "PodDisruptionBudget", "Service", "ServiceAccount", "ServiceMonitor"],
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
    check(kinds == ["Deployment", "Job", "PodDisruptionBudget", "Service", "ServiceAccount"],
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


with tempfile.TemporaryDirectory() as scratch:
    charts = pathlib.Path(scratch) / "charts"
    shutil.copytree(SOURCE, charts)
    lint_every_chart(charts)
    the_checks_can_fail(charts)
    iam_chart(charts)
    sidecar_example(charts)

if failures:
    sys.exit(f"{len(failures)} chart check(s) failed")
print("every chart check passed")
