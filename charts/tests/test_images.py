"""docker/Dockerfile agrees with the chart and the release workflow: every image the chart
pulls is a target the workflow builds, every file a stage copies is in the build context."""

from __future__ import annotations

import fnmatch
import re

import yaml

from conftest import WORKSPACE, merged

DOCKERFILE = (WORKSPACE / "docker" / "Dockerfile").read_text()
IGNORE = (WORKSPACE / "docker" / "Dockerfile.dockerignore").read_text()
WORKFLOW = yaml.safe_load((WORKSPACE / ".github" / "workflows" / "release.yml").read_text())


def stages() -> dict[str, str]:
    """Stage name -> its instructions."""
    parts = re.split(r"^FROM\s+", DOCKERFILE, flags=re.M)[1:]
    out = {}
    for part in parts:
        header = part.splitlines()[0]
        m = re.search(r"\bAS\s+(\S+)", header, flags=re.I)
        assert m, f"unnamed stage: FROM {header}"
        out[m.group(1)] = part
    return out


def in_context(path: str) -> bool:
    """Whether the .dockerignore (deny all, then allow) lets `path` into the context."""
    allowed = False
    for line in IGNORE.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        hit = fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/") or fnmatch.fnmatch(path, pattern.replace("**/", "*/"))
        if hit:
            allowed = negate
    return allowed


def test_every_image_the_chart_uses_is_built_and_released():
    targets = set(WORKFLOW["jobs"]["images"]["strategy"]["matrix"]["target"])
    assert targets <= set(stages())
    v = merged(None)
    repos = [v["agent"]["image"], v["scorer"]["image"], v["shim"]["image"], v["agent"]["pcm"]["image"], v["bench"]["image"]]
    built = {f"ghcr.io/fitsched/fitsched-{t}" for t in targets}
    for image in repos:
        assert image["repository"] in built, image
        assert image["tag"] == "", "fitsched images follow the chart's appVersion"


def test_copied_files_exist_and_are_in_the_build_context():
    for name, body in stages().items():
        for m in re.finditer(r"^COPY\s+(?!--from)(?:--\S+\s+)*(.+)$", body, flags=re.M):
            *sources, _dest = m.group(1).split()
            for src in sources:
                assert (WORKSPACE / src).exists(), f"stage {name} copies {src}, which does not exist"
                assert in_context(src.rstrip("/")), f"stage {name} copies {src}, which the .dockerignore leaves out"


def test_the_build_stage_copies_every_workspace_member():
    # cargo refuses a workspace whose members are missing, so a member the stage leaves
    # out breaks every image at once.
    members = re.search(r"^members\s*=\s*\[(.*?)\]", (WORKSPACE / "Cargo.toml").read_text(), flags=re.M | re.S)
    assert members
    copied = {m.group(1) for m in re.finditer(r"^COPY\s+(\S+)\s", stages()["build"], flags=re.M)}
    for member in re.findall(r'"([^"]+)"', members.group(1)):
        assert member in copied, f"the build stage does not copy the workspace member {member}"


def test_runtime_images_are_labelled_and_unprivileged_where_possible():
    for name in ("agent", "scorer", "shim", "pcm", "bench"):
        body = stages()[name]
        for label in ("title", "source", "version", "revision", "licenses"):
            assert f"org.opencontainers.image.{label}=" in body, f"{name}: label {label}"
        users = re.findall(r"^USER\s+(\S+)", body, flags=re.M)
        if name == "pcm":
            assert not users, "pcm runs as root (privileged MSR access), said so explicitly in the chart"
        else:
            assert users and users[-1].split(":")[0] not in ("0", "root"), f"{name} runs as {users}"


def test_scorer_image_finds_onnx_runtime():
    body = stages()["scorer"]
    lib = re.search(r"COPY --from=onnxruntime \S+ (\S+)", body).group(1)
    assert f"ORT_DYLIB_PATH={lib}" in body
    assert "pip install --no-cache-dir --no-deps" in stages()["onnxruntime"], "only the wheel's library, from PyPI"
    assert not re.search(r"\b(curl|wget|ADD\s+https?://)", DOCKERFILE), "binaries come from package registries only"
