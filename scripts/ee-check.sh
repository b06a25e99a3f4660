#!/usr/bin/env bash
# Proves execution-environment.yml is a valid ansible-builder definition without building an image (no registry is
# reachable here): builds the collection tarball, writes the build context to build/ee-context with
# `ansible-builder create`, then checks what the image build would do with it:
#   - a Containerfile that installs the pinned ansible-core (the pin of requirements-dev.txt) and the Galaxy
#     requirements, among them this checkout's tarball, which is in the context and holds this checkout;
#   - ansible-builder's own introspection (the script the build runs) over the tarball and the dependency
#     collections of .venv finds the collection's Python and system requirements (meta/execution-environment.yml).
# Exits non-zero, saying what is wrong, on the first failed check. Needs .venv (scripts/setup.sh); a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PWD/.venv/bin:$PATH ANSIBLE_CONFIG=$PWD/ansible.cfg

fail() { echo "ee-check: FAILED: $*" >&2; exit 1; }

command -v ansible-builder >/dev/null || fail "ansible-builder is not in .venv/bin: run scripts/setup.sh"
core_pin=$(sed -n 's/^ansible-core==\([^ #]*\).*/\1/p' requirements-dev.txt)
[ -n "$core_pin" ] || fail "requirements-dev.txt pins no ansible-core (ansible-core==X)"

# Always from this checkout: a tarball left from an older commit would put old roles into the context.
ansible-galaxy collection build --force --output-path build/dist >/dev/null \
  || fail "ansible-galaxy collection build failed"

context=build/ee-context
rm -rf "$context"
ansible-builder create --file execution-environment.yml --context "$context" \
  --output-filename Containerfile >/dev/null || fail "ansible-builder create --file execution-environment.yml rejected the definition (output above)"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

python - "$context" "$core_pin" "$scratch" <<'PY'
import json
import os
import pathlib
import re
import subprocess
import sys
import tarfile

import yaml

context, core_pin, scratch = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])


def fail(msg):
    sys.exit(f"ee-check: FAILED: {msg}")


containerfile = context / "Containerfile"
if not containerfile.is_file():
    fail(f"ansible-builder create wrote no {containerfile}")
text = containerfile.read_text()

refs = re.search(r'^ARG ANSIBLE_INSTALL_REFS="([^"]*)"', text, re.M)
if not refs or f"ansible-core=={core_pin}" not in refs.group(1).split():
    fail(f"{containerfile} does not install ansible-core=={core_pin} (the pin of requirements-dev.txt); "
         f"it installs: {refs.group(1) if refs else 'no ANSIBLE_INSTALL_REFS'}")
if "$PYCMD -m pip install --no-cache-dir $ANSIBLE_INSTALL_REFS" not in text:
    fail(f"{containerfile} never pip-installs ANSIBLE_INSTALL_REFS")
if not re.search(r"^RUN .*ansible-galaxy collection install .*-r requirements\.yml", text, re.M):
    fail(f"{containerfile} installs no Galaxy requirements (dependencies.galaxy of execution-environment.yml)")

requirements = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
files = [c["name"] for c in requirements.get("collections", []) if c.get("type") == "file"]
if len(files) != 1:
    fail(f"the Galaxy requirements must install exactly one collection tarball (this checkout), found {files}")
tarball = context / "_build" / files[0]
if not tarball.is_file():
    fail(f"the Galaxy requirements install {files[0]}, which is not in the context ({tarball}): "
         "execution-environment.yml's additional_build_files must copy build/dist's tarball there")

galaxy = yaml.safe_load(pathlib.Path("galaxy.yml").read_text())
want = f"{galaxy['namespace']}.{galaxy['name']} {galaxy['version']}"
with tarfile.open(tarball) as tar:
    info = json.load(tar.extractfile("MANIFEST.json"))["collection_info"]
    got = f"{info['namespace']}.{info['name']} {info['version']}"
    if got != want:
        fail(f"{tarball} holds {got}, galaxy.yml says {want}: point execution-environment.yml at the tarball "
             f"`ansible-galaxy collection build` makes now (build/dist/{galaxy['namespace']}-{galaxy['name']}-"
             f"{galaxy['version']}.tar.gz)")
    names = set(tar.getnames())
    for member in ("meta/execution-environment.yml", "meta/ee-requirements.txt", "meta/ee-bindep.txt"):
        if member not in names:
            fail(f"{tarball} lacks {member} (galaxy.yml build_ignore?)")
    ours = scratch / "ansible_collections" / info["namespace"] / info["name"]
    ours.mkdir(parents=True)
    tar.extractall(ours, filter="data")

# The dependency collections as the pinned `ansible` package of .venv ships them (the versions the EE pins).
import ansible_collections  # noqa: E402  (found in .venv's site-packages)

shipped = next(pathlib.Path(p) for p in ansible_collections.__path__ if "site-packages" in p)
versions = []
for entry in requirements["collections"]:
    if entry.get("type") == "file":
        continue
    namespace, name = entry["name"].split(".")
    src = shipped / namespace / name
    if not src.is_dir():
        fail(f"{entry['name']} is not in .venv's ansible package ({src}); run scripts/setup.sh")
    (scratch / "ansible_collections" / namespace).mkdir(exist_ok=True)
    os.symlink(src, scratch / "ansible_collections" / namespace / name)
    manifest = json.loads((src / "MANIFEST.json").read_text())["collection_info"]
    versions.append(f"{entry['name']} {manifest['version']} (EE pins {entry.get('version', 'any')})")

cmd = [sys.executable, str(context / "_build" / "scripts" / "introspect.py"), "introspect", str(scratch)]
exclude = context / "_build" / "exclude-requirements.txt"
if exclude.is_file():
    cmd.append(f"--exclude-pip-reqs={exclude}")
out = subprocess.run(cmd, capture_output=True, text=True, check=False)
if out.returncode != 0:
    fail(f"ansible-builder's introspection failed (rc={out.returncode}): {out.stderr.strip()}")
found = yaml.safe_load(out.stdout) or {}
python_reqs, system_reqs = found.get("python") or [], found.get("system") or []
label = f"# from collection {info['namespace']}.{info['name']}"
for kind, listed, home in (("python", python_reqs, "meta/ee-requirements.txt"),
                           ("system", system_reqs, "meta/ee-bindep.txt")):
    declared = [line.split("#")[0].strip() for line in pathlib.Path(home).read_text().splitlines()
                if line.split("#")[0].strip()]
    picked = [line.split("#")[0].strip() for line in listed if line.endswith(label)]
    if sorted(declared) != sorted(picked):
        fail(f"the image build would install {picked} as the collection's {kind} requirements, {home} says "
             f"{declared} (meta/execution-environment.yml must name {home})")

print(f"ee-check: {containerfile}: ansible-core=={core_pin}, {files[0]} ({got})")
print("ee-check: collections: " + "; ".join(versions))


def sources(reqs):
    """'passlib==1.7.4  # from collection pyfleet.server' -> 'passlib==1.7.4 (pyfleet.server)'"""
    return ", ".join(re.sub(r"\s+# from collection (\S+)$", r" (\1)", r) for r in reqs)


print(f"ee-check: Python requirements the build adds: {sources(python_reqs)}")
print(f"ee-check: system packages the build adds (bindep): {sources(system_reqs)}")
PY
echo "ee-check: ok (image not built; build it with: ansible-builder build --file execution-environment.yml" \
  "--context $context --tag <registry>/pyfleet-ee:<tag>)"
