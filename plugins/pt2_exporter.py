"""Export to a ``torch.export`` program (``.pt2``), the successor of TorchScript.

The program is the same masked fixed graph the ONNX and TorchScript exporters write
(``iamnn_studio.engine.export.FixedGraph``: normalisation inside, ``model(x, compact=False)``,
outputs logits, iterations and MACs), with a dynamic batch axis. Metadata travels in the
archive's extra file ``iamnn_studio.json``. Its parameters are saved without grad, so the outputs
need no ``.detach()`` before ``.numpy()``, as TorchScript's. Load it with::

    extra = {"iamnn_studio.json": ""}
    program = torch.export.load("model.pt2", extra_files=extra)
    logits, iterations, macs = program.module()(images_in_0_1)
"""
from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import torch
from torch import Tensor

from iamnn_studio.engine.checkpoint import Checkpoint
from iamnn_studio.engine.export import INPUT_NAME, Exporter, ExportError, FixedGraph, metadata, without_grad

log = logging.getLogger(__name__)

METADATA_FILE = "iamnn_studio.json"


def export_pt2(checkpoint: Checkpoint, path: Path, *, batch_size: int = 1) -> None:
    """``torch.export.export`` + ``torch.export.save``; a fixed batch only if a dynamic one fails."""
    # In inference form while traced and saved: the archive keeps each parameter's requires_grad, so the loaded
    # program's outputs need no grad (``.numpy()`` works); the checkpoint's model gets its flags back after.
    with without_grad(checkpoint.model):
        program, batch = _program(checkpoint, batch_size)
        extra = {METADATA_FILE: json.dumps({**metadata(checkpoint), "batch": batch})}
        # Into memory, then written by Python: the archive writer's C++ aborts the process when the disk
        # fills mid-file (Python raises OSError), and a file object keeps torch from warning that the
        # studio's temporary name does not end in .pt2.
        buffer = io.BytesIO()
        torch.export.save(program, buffer, extra_files=extra)
    path.write_bytes(buffer.getvalue())


def _program(checkpoint: Checkpoint, batch_size: int) -> tuple[torch.export.ExportedProgram, str]:
    """The exported program and its batch ("dynamic", or "fixed:N" where a dynamic batch fails)."""
    # torch.export specialises a batch of 1, so trace at least 2 images for a dynamic axis.
    graph, example = _prepared(checkpoint, max(batch_size, 2))
    try:
        return _export_program(graph, example, dynamic=True), "dynamic"
    except Exception as exc:  # noqa: BLE001 - e.g. a plugin block with batch-dependent shapes
        log.warning("pt2 export with a dynamic batch failed (%s); exported with a fixed batch of %d",
                    _first_line(exc), batch_size)
    graph, example = _prepared(checkpoint, batch_size)
    try:
        return _export_program(graph, example, dynamic=False), f"fixed:{batch_size}"
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"pt2 export failed: {_first_line(exc)}") from None


def _prepared(checkpoint: Checkpoint, batch_size: int) -> tuple[FixedGraph, Tensor]:
    graph = FixedGraph(checkpoint).cpu().eval()
    config = checkpoint.model_config
    example = torch.rand(batch_size, config.in_channels, config.image_size, config.image_size)
    with torch.no_grad():
        graph(example)  # eager warm-up: lazy caches (the baseline's MAC count) fill outside the trace
    return graph, example


def _export_program(graph: FixedGraph, example: Tensor, *, dynamic: bool) -> torch.export.ExportedProgram:
    dynamic_shapes = {INPUT_NAME: {0: torch.export.Dim("batch")}} if dynamic else None
    return torch.export.export(graph, (example,), dynamic_shapes=dynamic_shapes)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_pt2_metadata(path: str | Path) -> dict[str, str]:
    """The metadata stored in a ``.pt2`` export (also a check that the file loads)."""
    extra = {METADATA_FILE: ""}
    with open(path, "rb") as file:
        torch.export.load(file, extra_files=extra)
    return json.loads(extra[METADATA_FILE])


def register(api) -> None:
    api.exporters.register("pt2", Exporter("pt2", "torch.export program (PyTorch 2)", ".pt2", export_pt2))
