"""`lci image build`: build the sandbox image the docker backend runs.

With a container registry in reach it runs `docker build -f sandbox_images/Dockerfile`; without one
(or without that Dockerfile) it runs `sandbox_images/build_offline.sh`, which needs only a Debian
mirror. Both print their progress as they go. The agent is built into the image at /opt/lci-agent, and the
image is labelled with the agent protocol version this engine speaks (which the docker backend
checks before using it) and the agent's digest (an image whose agent matches needs no agent volume).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import engine
from engine.agent.protocol import PROTOCOL_VERSION
from engine.cli.common import load_settings
from engine.core.agent_files import agent_digest

IMAGES_DIR = Path(engine.__file__).resolve().parent.parent / "sandbox_images"
REGISTRY_PROBE = "https://registry-1.docker.io/v2/"


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("image", help="manage the docker backend's sandbox image")
    actions = parser.add_subparsers(dest="image_command", required=True)
    build = actions.add_parser(
        "build",
        help="build the sandbox image (online with docker build, or offline from a Debian mirror)",
    )
    build.add_argument("--force", action="store_true", help="rebuild even if the image exists")
    build.add_argument("--image", default=None, help="image name (default: LCI_DOCKER_IMAGE)")
    build.add_argument(
        "--offline", action="store_true", help="use the offline build even if a registry answers"
    )


def registry_reachable(url: str = REGISTRY_PROBE, timeout: float = 5.0) -> bool:
    """True when the registry answers HTTP at all (an 'unauthorized' reply counts)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def image_exists(image: str) -> bool:
    probe = subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False)
    return probe.returncode == 0


def build_command(image: str, force: bool, offline: bool) -> list[str]:
    """The command that builds `image`: `docker build` when it can reach a registry (the source
    checkout is its context, for the agent), else the offline script."""
    dockerfile = IMAGES_DIR / "Dockerfile"
    if not offline and dockerfile.is_file() and registry_reachable():
        command = ["docker", "build", "-f", str(dockerfile), "-t", image]
        # Both Dockerfiles set the lci.* labels from these build arguments.
        command += ["--build-arg", f"LCI_AGENT_PROTOCOL={PROTOCOL_VERSION}"]
        command += ["--build-arg", f"LCI_AGENT_DIGEST={agent_digest()}"]
        return [*command, *(["--no-cache"] if force else []), str(IMAGES_DIR.parent)]
    return ["bash", str(IMAGES_DIR / "build_offline.sh"), *(["--force"] if force else []), image]


def run(args: argparse.Namespace) -> int:
    image = args.image or load_settings().docker_image
    if shutil.which("docker") is None:
        print("error: the docker command is not installed")
        return 1
    if not IMAGES_DIR.is_dir():
        print(f"error: {IMAGES_DIR} not found; build images from a source checkout of lci")
        return 1
    if not args.force and image_exists(image):
        print(f"{image} already exists (use --force to rebuild it)")
        return 0
    # The offline script reads the label value, and where the agent is, from the environment.
    env = {
        **os.environ,
        "LCI_AGENT_PROTOCOL": str(PROTOCOL_VERSION),
        "LCI_AGENT_SOURCE": str(Path(engine.__file__).resolve().parent / "agent"),
    }
    command = build_command(image, args.force, args.offline)
    print(f"building {image}: {' '.join(command)}", flush=True)
    result = subprocess.run(command, check=False, env=env)
    if result.returncode == 0:
        print(f"built {image}")
    else:
        print(f"error: building {image} failed (exit status {result.returncode})")
    return result.returncode
