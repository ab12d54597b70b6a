"""A real Triton Inference Server on 127.0.0.1, from the PyPI wheel ``nvidia-pytriton`` (a ``tritonserver`` binary with
the Python backend only, which starts on CPU), and Triton's own client ``tritonclient``, for tests and benchmarks that
hold ``lepton serve`` and ``lepton export triton`` against the real thing.

Two tool folders, each installed once with network access by ``python -m tests.support.triton`` (``make test`` and
``make bench`` run it; it does nothing when the pinned versions are already there):

- ``build/triton/`` (or ``$LEPTON_TRITON_HOME``): ``pytriton/`` is the unpacked wheel, ``env/`` the Python environment
  its Python backend runs models in (Triton's Python backend needs numpy < 2; the tokenizer step needs ``tokenizers``;
  the ONNX stand-in, :mod:`tests.support.triton_onnx_model`, needs onnxruntime, each pinned to the project's version).
- ``build/tritonclient/`` (or ``$LEPTON_TRITONCLIENT_HOME``): a virtualenv with ``tritonclient[http,grpc]``. It cannot
  live in ``.venv``: it needs protobuf < 7, which clashes with the project's protobuf 7 and checkov. Tests run
  :mod:`tests.support.tritonclient_driver` with its python and read the JSON it prints.

Tests never download: they skip when a folder is absent (and fail under ``CI``, where ``make test`` installed it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from tests.support.emulators import Server, free_port, start_server

REPO = Path(__file__).resolve().parents[2]
HOME = Path(os.environ.get("LEPTON_TRITON_HOME", REPO / "build" / "triton"))
CLIENT_HOME = Path(os.environ.get("LEPTON_TRITONCLIENT_HOME", REPO / "build" / "tritonclient"))
PYTRITON = "nvidia-pytriton==0.7.0"
TRITONCLIENT = "tritonclient[http,grpc]==2.73.0"
# Triton 2.51's Python backend stub is built against numpy 1.x: with numpy 2 it misreads BYTES tensors
BACKEND_PACKAGES = ["numpy==1.26.4", f"tokenizers=={metadata.version('tokenizers')}", f"onnxruntime=={metadata.version('onnxruntime')}"]
ONNX_STAND_IN = Path(__file__).with_name("triton_onnx_model.py")
CLIENT_DRIVER = Path(__file__).with_name("tritonclient_driver.py")
# what an install wrote, so a second run (every `make test`) is a no-op until a pin changes
_INSTALLED = ".lepton-installed.json"


@dataclass(frozen=True)
class TritonTool:
    """Where the unpacked ``tritonserver`` and its Python-backend environment are."""

    home: Path

    @property
    def server(self) -> Path:
        """The ``tritonserver`` executable."""
        return self.home / "pytriton" / "pytriton" / "tritonserver" / "bin" / "tritonserver"

    @property
    def backends(self) -> Path:
        """The backend directory (``python`` only)."""
        return self.home / "pytriton" / "pytriton" / "tritonserver" / "backends"

    @property
    def env(self) -> Path:
        """The Python environment the Python backend runs models in."""
        return self.home / "env"

    def ready(self) -> bool:
        """True when everything a test needs is installed."""
        return self.server.exists() and (self.backends / "python" / "triton_python_backend_stub").exists() and (self.env / "bin" / "python").exists()


@dataclass(frozen=True)
class TritonClientTool:
    """The virtualenv holding ``tritonclient`` (HTTP and gRPC)."""

    home: Path

    @property
    def python(self) -> Path:
        """Its interpreter: run :data:`CLIENT_DRIVER` with it."""
        return self.home / "bin" / "python"

    def ready(self) -> bool:
        """True when ``tritonclient`` with both protocols imports."""
        if not self.python.exists():
            return False
        probe = subprocess.run([str(self.python), "-c", "import tritonclient.http, tritonclient.grpc"], capture_output=True)
        return probe.returncode == 0


@dataclass
class TritonServer(Server):
    """A running ``tritonserver``: ``url`` is its HTTP endpoint, ``grpc_address`` its gRPC one (``127.0.0.1:PORT``)."""

    grpc_address: str = ""


def find_triton() -> TritonTool | None:
    """The installed tool, or None."""
    tool = TritonTool(HOME)
    return tool if tool.ready() else None


def find_tritonclient() -> TritonClientTool | None:
    """The installed ``tritonclient`` virtualenv, or None."""
    tool = TritonClientTool(CLIENT_HOME)
    return tool if tool.ready() else None


def _already(home: Path, pins: dict, python: Path, packages: list[str]) -> bool:
    """True when ``home`` records ``pins``, or (a folder installed before the record existed) ``python`` has ``packages``."""
    try:
        return json.loads((home / _INSTALLED).read_text()) == pins
    except (OSError, ValueError):
        pass
    wanted = {p.split("[")[0].split("==")[0]: p.split("==")[1] for p in packages}
    probe = subprocess.run([str(python), "-c", "import json, sys; from importlib.metadata import version; "
                            "print(json.dumps({n: version(n) for n in sys.argv[1:]}))", *wanted], capture_output=True, text=True)
    if probe.returncode != 0 or json.loads(probe.stdout) != wanted:
        return False
    (home / _INSTALLED).write_text(json.dumps(pins) + "\n")
    return True


def install_triton(home: Path = HOME) -> TritonTool:
    """Download the wheel (no dependencies), unpack it, put the stub for this Python in place, and build ``env/``.

    A no-op when ``home`` already holds this install (same pins, same Python).
    """
    tool = TritonTool(home)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    pins = {"wheel": PYTRITON, "env": BACKEND_PACKAGES, "python": version}
    if tool.ready() and _already(home, pins, tool.env / "bin" / "python", BACKEND_PACKAGES):
        return tool
    wheels = home / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(wheels), PYTRITON], check=True)
    wheel = next(wheels.glob("nvidia_pytriton-*.whl"))
    shutil.rmtree(home / "pytriton", ignore_errors=True)
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(home / "pytriton")
    for path in (home / "pytriton").rglob("*"):
        if path.is_file() and (path.parent.name == "bin" or path.name.startswith("triton_python_backend_stub") or ".so" in path.name):
            path.chmod(0o755)  # zipfile drops the executable bits
    stub = home / "pytriton" / "pytriton" / "tritonserver" / "python_backend_stubs" / version / "triton_python_backend_stub"
    (tool.backends / "python" / "triton_python_backend_stub").write_bytes(stub.read_bytes())
    (tool.backends / "python" / "triton_python_backend_stub").chmod(0o755)
    venv.EnvBuilder(with_pip=True, clear=True).create(tool.env)
    subprocess.run([str(tool.env / "bin" / "python"), "-m", "pip", "install", "-q", *BACKEND_PACKAGES], check=True)
    (home / _INSTALLED).write_text(json.dumps(pins) + "\n")
    return tool


def install_tritonclient(home: Path = CLIENT_HOME) -> TritonClientTool:
    """A virtualenv at ``home`` with :data:`TRITONCLIENT`; a no-op when it is already there."""
    tool = TritonClientTool(home)
    pins = {"packages": [TRITONCLIENT], "python": f"{sys.version_info.major}.{sys.version_info.minor}"}
    if tool.ready() and _already(home, pins, tool.python, [TRITONCLIENT]):
        return tool
    venv.EnvBuilder(with_pip=True, clear=True).create(home)
    subprocess.run([str(tool.python), "-m", "pip", "install", "-q", "--disable-pip-version-check", TRITONCLIENT], check=True)
    (home / _INSTALLED).write_text(json.dumps(pins) + "\n")
    return tool


def python_backend_repository(exported: Path, out: Path) -> Path:
    """A copy of the repository ``lepton export triton`` wrote, each ONNX Runtime model switched to Triton's Python backend
    running the same ``model.onnx`` on onnxruntime (:data:`ONNX_STAND_IN`): the wheel has no ONNX Runtime backend.

    Names, inputs, outputs, batching and parameters stay exactly as exported; only the ``backend`` line changes.
    """
    shutil.copytree(exported, out)
    for config in sorted(out.glob("*/config.pbtxt")):
        text = config.read_text()
        if 'backend: "onnxruntime"' in text:
            config.write_text(text.replace('backend: "onnxruntime"', 'backend: "python"'))
            for version in (p for p in config.parent.iterdir() if p.is_dir() and (p / "model.onnx").exists()):
                shutil.copyfile(ONNX_STAND_IN, version / "model.py")
    return out


def triton_command(tool: TritonTool, repository: Path, http: int, grpc: int, metrics: int, *extra: str) -> tuple[list[str], dict[str, str]]:
    """The ``tritonserver`` argv (loopback only) and the environment variables it needs."""
    libs = tool.home / "pytriton" / "nvidia_pytriton.libs"
    env = {"LD_LIBRARY_PATH": f"{libs}:{os.environ.get('LD_LIBRARY_PATH', '')}",
           # the Python backend's stub finds its interpreter's packages through the python on PATH
           "PATH": f"{tool.env / 'bin'}:{os.environ['PATH']}"}
    argv = [str(tool.server), "--model-repository", str(repository), "--backend-directory", str(tool.backends),
            "--http-address", "127.0.0.1", "--http-port", str(http), "--grpc-address", "127.0.0.1", "--grpc-port", str(grpc),
            "--metrics-address", "127.0.0.1", "--metrics-port", str(metrics), "--exit-timeout-secs", "5", *extra]
    return argv, env


def start_triton(tool: TritonTool, repository: Path, log: Path, *extra: str, timeout_s: float = 90.0) -> TritonServer:
    """``tritonserver`` serving ``repository`` on 127.0.0.1 (free ports), once it is live.

    Default: strict readiness, and a model that fails to load stops the server (``--exit-on-error``); pass
    ``"--exit-on-error", "false"`` in ``extra`` to keep it up and read why from ``POST /v2/repository/index``.
    """
    http, grpc, metrics = free_port(), free_port(), free_port()
    argv, env = triton_command(tool, repository, http, grpc, metrics, "--strict-readiness", "true", *extra)
    server = start_server(argv, url=f"http://127.0.0.1:{http}", ready_path="/v2/health/live", log=log, env=env,
                          timeout_s=timeout_s, server_class=TritonServer)
    server.grpc_address = f"127.0.0.1:{grpc}"
    return server


def run_client_driver(client: TritonClientTool, *args: str, timeout_s: float = 120.0) -> dict:
    """Run :data:`CLIENT_DRIVER` with ``args`` in the ``tritonclient`` virtualenv; returns the JSON it printed.

    Raises ``RuntimeError`` with the driver's stderr when it fails.
    """
    done = subprocess.run([str(client.python), str(CLIENT_DRIVER), *args], capture_output=True, text=True, timeout=timeout_s,
                          env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")})
    if done.returncode != 0:
        raise RuntimeError(f"tritonclient driver {' '.join(args[:1])} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout)


_PARSE_CONFIG = """
import json, sys
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2
config = text_format.Parse(sys.stdin.read(), model_config_pb2.ModelConfig())
doc = json_format.MessageToDict(config, preserving_proto_field_name=True)
doc["_set_fields"] = [field.name for field, _ in config.ListFields()]  # an empty message set (dynamic_batching {}) is absent above
print(json.dumps(doc))
"""


def parse_model_config(client: TritonClientTool, text: str) -> dict:
    """``text`` (a ``config.pbtxt``) parsed by Triton's own ``ModelConfig`` message, as a dict (proto field names; 64-bit
    integers as strings, as protobuf's JSON mapping writes them; ``_set_fields`` lists every top-level field set).

    Raises ``RuntimeError`` naming the field protobuf refused when Triton could not read the file.
    """
    done = subprocess.run([str(client.python), "-c", _PARSE_CONFIG], input=text, capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")})
    if done.returncode != 0:
        raise RuntimeError(f"Triton's ModelConfig refused the configuration: {done.stderr.strip()[-1000:]}")
    return json.loads(done.stdout)


def main(argv: list[str]) -> int:
    """``python -m tests.support.triton [triton] [tritonclient]``: install the named tool folders (default both)."""
    names = argv or ["triton", "tritonclient"]
    unknown = sorted(set(names) - {"triton", "tritonclient"})
    if unknown:
        print(f"error: unknown tool {', '.join(unknown)}; choose from triton, tritonclient", file=sys.stderr)
        return 2
    if "triton" in names:
        print(f"Triton ({PYTRITON}) ready in {install_triton().home}")
    if "tritonclient" in names:
        print(f"{TRITONCLIENT} ready in {install_tritonclient().home}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
