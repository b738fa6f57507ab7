"""Packaging for a device, checked as far as this machine allows (no Docker daemon, no Triton server, no ARM board).

- The Triton repository: config.pbtxt parsed against a transcription of Triton's ModelConfig schema (field numbers
  and enum values of model_config.proto, tritonclient 2.73), its names, data types and dims checked against the
  ONNX file itself, and the README's Triton client run against Triton's request rules emulated over ONNX Runtime.
- The Dockerfiles and .dockerignore read with a small parser: base image, the torch-free [serve] install, the
  non-root user, EXPOSE / HEALTHCHECK, the server's command line as the server's own parser reads it; the
  HEALTHCHECK command run against a real server.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
ONNX_TO_TRITON = {"FLOAT": "TYPE_FP32", "INT64": "TYPE_INT64", "BOOL": "TYPE_BOOL"}  # the denoiser's three
TRITON_TO_NUMPY = {"TYPE_FP32": np.float32, "TYPE_INT64": np.int64, "TYPE_BOOL": np.bool_}


# --- Triton's ModelConfig, the subset a repository of ours may use -------------------------------------------
def model_config_class():
    """A message class for `inference.ModelConfig` built from a minimal descriptor (numbers as model_config.proto)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    proto = descriptor_pb2.FileDescriptorProto(name="kpop_test_model_config.proto", package="inference",
                                               syntax="proto3")
    dtype = proto.enum_type.add(name="DataType")
    for number, name in enumerate(["INVALID", "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16",
                                   "INT32", "INT64", "FP16", "FP32", "FP64", "STRING", "BF16"]):
        dtype.value.add(name=f"TYPE_{name}", number=number)

    def message(name, fields, parent=proto):
        msg = (parent.message_type if parent is proto else parent.nested_type).add(name=name)
        for field_name, number, ftype, label, type_name in fields:
            msg.field.add(name=field_name, number=number, type=ftype, label=label,
                          **({"type_name": type_name} if type_name else {}))
        return msg

    message("ModelTensorReshape", [("shape", 1, F.TYPE_INT64, rep, None)])
    tensor = [("name", 1, F.TYPE_STRING, opt, None), ("data_type", 2, F.TYPE_ENUM, opt, ".inference.DataType"),
              ("reshape", 5, F.TYPE_MESSAGE, opt, ".inference.ModelTensorReshape")]
    message("ModelInput", tensor + [("dims", 4, F.TYPE_INT64, rep, None), ("allow_ragged_batch", 7, F.TYPE_BOOL,
                                                                            opt, None)])
    message("ModelOutput", tensor + [("dims", 3, F.TYPE_INT64, rep, None)])
    message("ModelDynamicBatching", [("preferred_batch_size", 1, F.TYPE_INT32, rep, None),
                                     ("max_queue_delay_microseconds", 2, F.TYPE_UINT64, opt, None)])
    group = message("ModelInstanceGroup", [("name", 1, F.TYPE_STRING, opt, None), ("count", 2, F.TYPE_INT32, opt,
                                                                                     None),
                                           ("kind", 4, F.TYPE_ENUM, opt, ".inference.ModelInstanceGroup.Kind")])
    kind = group.enum_type.add(name="Kind")
    for number, name in enumerate(["KIND_AUTO", "KIND_GPU", "KIND_CPU", "KIND_MODEL"]):
        kind.value.add(name=name, number=number)
    message("ModelParameter", [("string_value", 1, F.TYPE_STRING, opt, None)])
    config = message("ModelConfig", [
        ("name", 1, F.TYPE_STRING, opt, None), ("platform", 2, F.TYPE_STRING, opt, None),
        ("backend", 17, F.TYPE_STRING, opt, None), ("max_batch_size", 4, F.TYPE_INT32, opt, None),
        ("input", 5, F.TYPE_MESSAGE, rep, ".inference.ModelInput"),
        ("output", 6, F.TYPE_MESSAGE, rep, ".inference.ModelOutput"),
        ("instance_group", 7, F.TYPE_MESSAGE, rep, ".inference.ModelInstanceGroup"),
        ("default_model_filename", 8, F.TYPE_STRING, opt, None),
        ("dynamic_batching", 11, F.TYPE_MESSAGE, opt, ".inference.ModelDynamicBatching"),
        ("parameters", 14, F.TYPE_MESSAGE, rep, ".inference.ModelConfig.ParametersEntry")])
    entry = message("ParametersEntry", [("key", 1, F.TYPE_STRING, opt, None),
                                        ("value", 2, F.TYPE_MESSAGE, opt, ".inference.ModelParameter")], config)
    entry.options.map_entry = True
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("inference.ModelConfig"))


def read_config(path: Path):
    """config.pbtxt parsed strictly: an unknown field or enum value raises ParseError."""
    from google.protobuf import text_format

    return text_format.Parse(path.read_text(encoding="utf-8"), model_config_class()())


def onnx_tensors(path: Path) -> dict[str, tuple[str, list[int]]]:
    """name -> (ONNX element type name, shape with -1 for symbolic dims), inputs then outputs."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {v.name: (onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type),
                     [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim])
            for v in [*model.graph.input, *model.graph.output]}


@pytest.fixture(scope="module")
def triton_repo(tiny_export, tmp_path_factory):
    from kpop_helpers.export.triton import write_triton_repository

    out = tmp_path_factory.mktemp("triton")
    return write_triton_repository(tiny_export[1], out, variant="int8", max_batch_size=16, threads=1), tiny_export[1]


def test_config_matches_the_onnx_file_and_triton_schema(triton_repo):
    from kpop_helpers.edge.manifest import INPUT_NAMES, OUTPUT_NAMES

    model_dir, export = triton_repo
    config = read_config(model_dir / "config.pbtxt")
    source = export / json.loads((export / "manifest.json").read_text())["variants"]["int8"]["file"]
    served = model_dir / "1" / "model.onnx"
    assert hashlib.sha256(served.read_bytes()).digest() == hashlib.sha256(source.read_bytes()).digest()
    assert (config.name, config.platform, config.max_batch_size) == (model_dir.name, "onnxruntime_onnx", 16)
    assert config.dynamic_batching.max_queue_delay_microseconds > 0
    assert [(g.kind, g.count) for g in config.instance_group] == [(2, 1)]  # KIND_CPU
    assert config.parameters["intra_op_thread_count"].string_value == "1"
    assert [t.name for t in config.input] == list(INPUT_NAMES) and [t.name for t in config.output] == list(OUTPUT_NAMES)
    graph = onnx_tensors(served)
    for tensor in [*config.input, *config.output]:
        onnx_type, shape = graph[tensor.name]
        assert config.DESCRIPTOR.file.enum_types_by_name["DataType"].values_by_number[tensor.data_type].name == \
            ONNX_TO_TRITON[onnx_type]
        assert shape[0] == -1, f"{tensor.name}: batching needs a dynamic first dim"
        if len(shape) == 1:  # [batch] in the graph: [batch, 1] on the API, reshaped to [batch]
            assert list(tensor.dims) == [1] and tensor.HasField("reshape") and list(tensor.reshape.shape) == []
        else:
            assert list(tensor.dims) == shape[1:] and not tensor.HasField("reshape")
    assert list(config.input[0].dims) == [263, 1, -1] and list(config.input[2].dims) == [384]
    readme = (model_dir / "README.txt").read_text()
    assert "one request per denoising step" in readme and "2B rows" in readme


def test_no_batching_config_and_cli(triton_repo, tmp_path, capsys):
    from kpop_helpers.export.__main__ import main

    export = triton_repo[1]
    assert main(["--format", "triton", "--export-dir", str(export), "--output-dir", str(tmp_path / "r"),
                 "--variant", "fp32", "--max-batch-size", "0", "--instance", "auto"]) == 0
    assert json.loads(capsys.readouterr().out)["model"] == "kpop_denoiser"
    config = read_config(tmp_path / "r" / "kpop_denoiser" / "config.pbtxt")
    graph = onnx_tensors(tmp_path / "r" / "kpop_denoiser" / "1" / "model.onnx")
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching") and not config.instance_group
    assert all(list(t.dims) == graph[t.name][1] and not t.HasField("reshape") for t in [*config.input, *config.output])
    assert main(["--format", "triton", "--export-dir", str(export), "--output-dir", str(tmp_path / "r"),
                 "--variant", "fp16"]) == 2
    assert "no ONNX Runtime variant 'fp16'" in capsys.readouterr().err
    for bad in (["--format", "triton", "--output-dir", "r"],  # no --export-dir
                ["--format", "triton", "--export-dir", str(export), "--model-path", "m.pt", "--output-dir", "r"],
                ["--output-dir", "r"]):  # the other formats still need --model-path
        with pytest.raises(SystemExit) as exit_info:
            main(bad)
        assert exit_info.value.code == 2


def test_weights_kept_as_external_data_travel_with_the_model(triton_repo, tmp_path):
    import onnx
    import onnxruntime as ort

    from kpop_helpers.export.triton import write_triton_repository

    export = triton_repo[1]
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "manifest.json").write_bytes((export / "manifest.json").read_bytes())
    onnx.save_model(onnx.load(str(export / "model_int8.onnx")), str(folder / "model_int8.onnx"),
                    save_as_external_data=True, location="weights.bin", size_threshold=1024)
    model_dir = write_triton_repository(folder, tmp_path / "repo", variant="int8")
    assert (model_dir / "1" / "weights.bin").read_bytes() == (folder / "weights.bin").read_bytes()
    (folder / "weights.bin").unlink()  # the repository's copy must not lean on the export's
    feed = {"x": np.zeros((2, 263, 1, 8), np.float32), "timesteps": np.array([3, 3]),
            "text_emb": np.ones((2, 384), np.float32), "uncond": np.array([False, True])}
    served = ort.InferenceSession(str(model_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    original = ort.InferenceSession(str(export / "model_int8.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(served.run(None, feed)[0], original.run(None, feed)[0])


def _fake_tritonclient(config, session, calls: list[int]) -> types.ModuleType:
    """tritonclient.http over ONNX Runtime, applying Triton's request rules as config.pbtxt states them:
    each input's shape is [batch] + dims (-1: any), batch <= max_batch_size, datatype as data_type, reshape."""
    names = config.DESCRIPTOR.file.enum_types_by_name["DataType"].values_by_number

    class InferInput:
        def __init__(self, name, shape, datatype):
            self.name, self.shape, self.datatype = name, list(shape), datatype

        def set_data_from_numpy(self, array):
            assert list(array.shape) == self.shape
            self.array = array

    class Result:
        def __init__(self, outputs):
            self.outputs = outputs

        def as_numpy(self, name):
            return self.outputs[name]

    class InferenceServerClient:
        def __init__(self, url):
            self.url = url

        def infer(self, model_name, inputs):
            assert model_name == config.name
            given, feed = {i.name: i for i in inputs}, {}
            batch = {i.shape[0] for i in inputs}
            assert len(batch) == 1 and 1 <= batch.pop() <= config.max_batch_size
            for spec in config.input:
                item = given.pop(spec.name)
                triton_type = names[spec.data_type].name
                assert "TYPE_" + item.datatype == triton_type and item.array.dtype == TRITON_TO_NUMPY[triton_type]
                assert len(item.shape) == 1 + len(spec.dims)
                pairs = zip(spec.dims, item.shape[1:], strict=True)
                assert all(d == -1 or d == s for d, s in pairs), (spec.name, item.shape)
                shape = list(spec.reshape.shape) if spec.HasField("reshape") else list(spec.dims)
                feed[spec.name] = item.array.reshape([item.shape[0], *shape])
            assert not given, f"inputs the model does not take: {sorted(given)}"
            calls.append(int(feed["x"].shape[0]))
            return Result(dict(zip([o.name for o in config.output], session.run(None, feed), strict=True)))

    module = types.ModuleType("tritonclient.http")
    module.InferInput, module.InferenceServerClient = InferInput, InferenceServerClient
    return module


def test_readme_client_runs_the_loop_through_the_triton_rules(triton_repo, monkeypatch):
    """The README's Triton-backed Denoiser, run against the config's request rules, gives EdgeGenerator's dance."""
    import onnxruntime as ort

    from kpop_helpers.edge import EdgeGenerator

    model_dir, export = triton_repo
    config = read_config(model_dir / "config.pbtxt")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model_dir / "1" / "model.onnx"), options, providers=["CPUExecutionProvider"])
    calls: list[int] = []
    package = types.ModuleType("tritonclient")
    package.http = _fake_tritonclient(config, session, calls)
    monkeypatch.setitem(sys.modules, "tritonclient", package)
    monkeypatch.setitem(sys.modules, "tritonclient.http", package.http)
    readme = (model_dir / "README.txt").read_text()
    block = readme.split("A Triton-backed Denoiser", 1)[1].split("\n", 1)[1]
    code = textwrap.dedent("\n".join(line for line in block.splitlines() if line.startswith("    ") or not line))
    code = code.replace('"<export folder>"', repr(str(export)))
    code = code.replace('variant="int8")', 'variant="int8", threads=1)')
    scope: dict = {}
    exec(compile(code, "README.txt", "exec"), scope)  # noqa: S102 - the README's own example, against the emulation
    direct = EdgeGenerator(export, variant="int8", threads=1).generate("a powerful hip-hop dance", seconds=10, seed=0)
    np.testing.assert_allclose(scope["joints"], direct, atol=1e-5)
    steps = scope["edge"].last.steps
    assert len(calls) >= steps and all(rows % 2 == 0 for rows in calls)  # one guided request (2B rows) per step


# --- Dockerfiles ---------------------------------------------------------------------------------------------
def dockerfile(path: Path) -> list[tuple[int, str, str]]:
    """(stage index, INSTRUCTION, arguments) per instruction: comments dropped, continuation lines joined."""
    out, stage, pending = [], -1, ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if pending and line.lstrip().startswith("#"):  # a comment inside a continued instruction
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        instruction, _, args = text.partition(" ")
        instruction = instruction.upper()
        stage += instruction == "FROM"
        out.append((stage, instruction, args.strip()))
    assert not pending, f"{path}: a continuation line at the end"
    return out


def exec_form(args: str) -> list[str]:
    """A JSON (exec form) argument list; the shell form is refused (signals would go to /bin/sh, not Python)."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def _final_stage(path: Path) -> tuple[list[tuple[int, str, str]], dict[str, str]]:
    steps = dockerfile(path)
    args = dict(a.split("=", 1) for s, i, a in steps if i == "ARG" and s == -1 and "=" in a)
    bases = [re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], a.split()[0]) for s, i, a in steps if i == "FROM"]
    assert bases and all(base == "python:3.12-slim" for base in bases), bases  # published for amd64 and arm64
    last = max(s for s, _, _ in steps)
    return [step for step in steps if step[0] == last], args


def _installs(path: Path) -> list[str]:
    """Every target of every `pip install` in the file's RUN instructions."""
    targets = []
    for _, instruction, args in dockerfile(path):
        for command in args.split("&&") if instruction == "RUN" else []:
            words = shlex.split(command)
            if "pip" in " ".join(words[:2]) and "install" in words:
                targets += [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
    return targets


def _requirements(extra: str | None, project: dict) -> list[str]:
    """The requirement strings an install of the core (+ extra) pulls in, self-references expanded."""
    name = project["name"]
    found, todo, seen = list(project["dependencies"]), [extra] if extra else [], set()
    while todo:
        current = todo.pop()
        seen.add(current)
        for requirement in project["optional-dependencies"][current]:
            match = re.fullmatch(rf"{name}\[([\w,]+)\]", requirement)
            if match:
                todo += [e for e in match.group(1).split(",") if e not in seen]
            else:
                found.append(requirement)
    return found


@pytest.mark.parametrize("name", ["serve", "load"])
def test_dockerfile_installs_serve_only_as_non_root(name):
    path = DOCKER / f"{name}.Dockerfile"
    final, _ = _final_stage(path)
    assert _installs(path) == [".[serve]"], "the image installs the torch-free device extra and nothing else"
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    packages = [re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in _requirements("serve", project)]
    assert "torch" not in packages and "onnxruntime" in packages and "fastapi" in packages
    users = [a for _, i, a in final if i == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the final stage runs as a non-root user"
    assert re.fullmatch(r"\d+(:\d+)?", users[-1]), "numeric uid:gid, so runAsNonRoot can check it"


def test_serve_image_runs_the_server_with_its_port_and_healthcheck():
    from kpop_helpers.serve.__main__ import parser

    final, _ = _final_stage(DOCKER / "serve.Dockerfile")
    last = {i: a for _, i, a in final}  # the last of each instruction counts
    command = exec_form(last["ENTRYPOINT"]) + exec_form(last["CMD"])
    assert command[:3] == ["python", "-m", "kpop_helpers.serve"]
    args = parser().parse_args(command[3:])
    ports = [int(p.split("/")[0]) for p in last["EXPOSE"].split()]
    assert args.port in ports and args.host == "0.0.0.0" and args.export_dir == "/models/export"
    assert args.variant == "int8"
    health = last["HEALTHCHECK"]
    assert "--interval=" in health and "--timeout=" in health
    check = exec_form(health.split("CMD", 1)[1].strip())
    assert f"http://127.0.0.1:{args.port}/healthz" in check[-1]


def test_load_image_command_is_accepted_by_the_load_tool(tmp_path):
    from kpop_helpers.serve.load import check_url, main
    from kpop_helpers.serve.process import free_port

    final, _ = _final_stage(DOCKER / "load.Dockerfile")
    last = {i: a for _, i, a in final}
    command = exec_form(last["ENTRYPOINT"]) + exec_form(last["CMD"])
    assert command[:3] == ["python", "-m", "kpop_helpers.serve.load"]
    check_url(command[command.index("--url") + 1])
    # Every argument parses (argparse would exit); nothing listens on this port, so the run stops with 2.
    nobody = ["--url", f"http://127.0.0.1:{free_port()}", "--out", str(tmp_path)]
    assert main(command[3:] + nobody) == 2


def test_healthcheck_command_against_a_real_server(tiny_export, tmp_path):
    """The image's HEALTHCHECK command, port aside, passes against the real server and fails with none; serving
    leaves the export folder as it was (the image mounts it read-only)."""
    from kpop_helpers.serve.client import DanceClient
    from kpop_helpers.serve.process import free_port, running_server

    final, _ = _final_stage(DOCKER / "serve.Dockerfile")
    check = exec_form([a for _, i, a in final if i == "HEALTHCHECK"][-1].split("CMD", 1)[1].strip())
    export = tiny_export[1]
    before = {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in export.iterdir()}
    with running_server(export, variant="int8", args=["--threads", "1"], log_path=tmp_path / "s.log") as server:
        port = server.url.rsplit(":", 1)[1]
        probe = [sys.executable, *check[1:-1], check[-1].replace("127.0.0.1:8000", f"127.0.0.1:{port}")]
        assert subprocess.run(probe, capture_output=True, timeout=30).returncode == 0
        DanceClient(server.url).dance("a cute aegyo dance with small bounces", seconds=2, seed=1, steps=3)
    after = {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in export.iterdir()}
    assert after == before
    nobody = [sys.executable, *check[1:-1], check[-1].replace("127.0.0.1:8000", f"127.0.0.1:{free_port()}")]
    assert subprocess.run(nobody, capture_output=True, timeout=30).returncode != 0


# --- .dockerignore -------------------------------------------------------------------------------------------
def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: patterns from the context root, `*` within one segment, `**` across, the last match wins,
    and a pattern that matches a parent folder matches everything in it."""
    ignored = False
    parts = path.split("/")
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.strip("/")
        regex = "".join(".*" if tok == "**" else "[^/]*" if tok == "*" else "[^/]" if tok == "?" else re.escape(tok)
                        for tok in re.split(r"(\*\*|\*|\?)", body))
        regex = regex.replace(".*/", "(.*/)?")
        if any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_models_data_and_environments_out():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    for name in (".venv", "checkpoints", "data", "outputs"):
        assert f"{name}/" in patterns or name in patterns, f"{name} is named in .dockerignore"
    for path in (".venv/bin/python", "checkpoints/run/model_ema.safetensors", "data/sample/train.npz",
                 "outputs/report.md", "build/lib/kpop_helpers/__init__.py", ".git/config", "exports/run/model.onnx",
                 "kpop_helpers.egg-info/PKG-INFO", "kpop_helpers/serve/__pycache__/app.cpython-312.pyc", ".env",
                 "tests/conftest.py", "notebooks/01.ipynb"):
        assert dockerignored(path, patterns), f"{path} would be sent to the builder"
    copied = [source for name in ("serve", "load") for _, i, a in dockerfile(DOCKER / f"{name}.Dockerfile")
              if i == "COPY" and not a.startswith("--from") for source in a.split()[:-1]]  # the last word: dest
    assert set(copied) == {"pyproject.toml", "README.md", "kpop_helpers"}
    for path in (*copied, "kpop_helpers/serve/app.py", "kpop_helpers/data/io.py", "kpop_helpers/edge/runtime.py"):
        assert not dockerignored(path, patterns), f"{path} is needed by the build"
