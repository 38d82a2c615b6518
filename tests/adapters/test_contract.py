"""The contract every registered checkpoint with a tiny build keeps, run over the registry (timm's way).

The parameters are tests/registry_coverage.py's `contract_checkpoints()`: every registry model that a
tests/tiny/<builder>.py names in `COVERS`, on that build (the folder COVERS gives), through the real
runner host, loaded once per model (a module-scoped fixture) as `mltag analyze` loads it. Registering
a model and naming it in a builder's COVERS adds it here with no other edit; the builder's `BAD_OPTION`
says which infer option its adapter must refuse. What each family does beyond this contract is in its
own test_<family>.py.

For each checkpoint:
- every cell validates against schemas/result.schema.json's cell, describes its own input (order kept)
  and succeeds on the sample photos;
- a batch gives the one-by-one results where the adapter batches (a generative adapter that runs one
  image per generate() call says so in raw.batch_size, and the comparison is skipped);
- RGBA, greyscale and 16-bit greyscale photos are accepted;
- a bad infer option is an error cell with a message, and the runner answers the next request;
- a tagger's and a zero-shot model's scores are probabilities, in [0, 1] (a VLM's estimated scores
  and CLIP-Interrogator's similarities are not, and are not checked here).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from PIL import Image

from orchestrator.models.registry import ModelSpec, load_registry
from orchestrator.run.processes import RunnerProcess
from schemas.status import SUCCESS
from tests.adapters.vlm_cells import rgba_image
from tests.registry_coverage import TINY_DIR, contract_checkpoints, module_constant
from tests.support import JUDGE_CONTEXT, SAMPLES, SCHEMA, request_images

pytestmark = pytest.mark.adapter

CELL = jsonschema.Draft202012Validator({"$ref": "#/$defs/cell", "$defs": SCHEMA["$defs"]})
# Photos of two sizes and formats: a cell that answers for another photo shows it in `image`.
PHOTOS = [SAMPLES / name for name in ("chelsea.png", "rocket.jpg")]
# The judge reads what other models said, not a photo.
CONTEXTS = [JUDGE_CONTEXT, {"outputs": []}]
SHORT_GENERATION = 4  # new tokens: the contract is the same at 4 tokens as at 512, and 2 cores are slow
# What differs between two runs of the same input: timings, and the batch size a cell was computed in.
VOLATILE = {"seconds", "tokens_per_s", "inference_s", "batch_size"}


@dataclass
class Checkpoint:
    name: str
    spec: ModelSpec
    runner: RunnerProcess
    load: dict[str, Any]
    bad_option: dict[str, Any] | None
    options: dict[str, Any]  # the builder's CONTRACT_OPTIONS

    @property
    def text_only(self) -> bool:
        return self.spec.kind == "judge"

    def inputs(self) -> list[Path | dict[str, Any]]:
        return list(CONTEXTS if self.text_only else PHOTOS)

    def infer(self, items: Sequence[Path | dict[str, Any]], **options: Any) -> list[dict[str, Any]]:
        """The cells of `items` (photo files, or the judge's contexts), with generation kept short."""
        short = {k: min(v, SHORT_GENERATION) for k, v in self.spec.infer.items() if k.endswith("max_new_tokens")}
        if self.spec.kind in ("captioner", "judge"):
            short.setdefault("max_new_tokens", SHORT_GENERATION)
        options = {**self.spec.infer, **short, **self.options, **options}
        out = self.runner.call("infer", timeout=300, images=request_images(items), options=options)
        cells: list[dict[str, Any]] = out["results"]
        return cells


@pytest.fixture(scope="module", params=contract_checkpoints(), ids=lambda checkpoint: checkpoint[0])
def checkpoint(
    request: pytest.FixtureRequest, runner_pool: Any, tiny_model: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Checkpoint]:
    """The model started and loaded on its tiny build, for all of its contract tests (pytest runs a
    module-scoped parameter's tests together). A build holding a hub/ folder is an offline Hugging
    Face cache: the runner gets it as HF_HUB_CACHE, as a user's runner gets theirs."""
    name, builder, folder = request.param
    build = tiny_model(builder)
    with pytest.MonkeyPatch.context() as env:
        if (build / "hub").is_dir():
            env.setenv("HF_HUB_CACHE", str(build / "hub"))
        env.setenv("HF_MODULES_CACHE", str(tmp_path_factory.mktemp("hf-modules")))
        runner, load, _ = runner_pool.start(name, build / folder, False, None, tmp_path_factory.mktemp(name), False)
    try:
        declared = TINY_DIR / f"{builder}.py"
        try:
            options = module_constant(declared, "CONTRACT_OPTIONS")
        except KeyError:
            options = {}
        yield Checkpoint(name, load_registry()[name], runner, load, module_constant(declared, "BAD_OPTION"), options)
    finally:
        runner.stop()


def _comparable(value: Any) -> Any:
    """A cell without what differs between two runs of one input (timings, batch size), its tags keyed
    by name and category: tags are in score order, and two scores within float noise of each other
    (a batch sums in another order) may come in either order."""
    if isinstance(value, dict):
        out = {k: _comparable(v) for k, v in value.items() if k not in VOLATILE}
        if isinstance(out.get("tags"), list):
            keyed = {f"{t['name']} ({t.get('category')})": t for t in out["tags"]}
            assert len(keyed) == len(out["tags"]), "one tag twice in a cell"
            out["tags"] = keyed
        return out
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


def _differences(a: Any, b: Any, where: str = "cell") -> list[str]:
    """Where two cells differ, floats within 1e-4 (a batch may sum in another order) counted equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where}: keys {sorted(a.keys() ^ b.keys())}"]
        return [d for k in a for d in _differences(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} vs {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _differences(x, y, f"{where}[{i}]")]
    if isinstance(a, float) and isinstance(b, float | int) and not isinstance(b, bool):
        return [] if math.isclose(a, b, abs_tol=1e-4) else [f"{where}: {a} vs {b}"]
    return [] if a == b else [f"{where}: {a!r} vs {b!r}"]


def _check_cells(checkpoint: Checkpoint, cells: list[dict[str, Any]], items: list[Any]) -> None:
    """Valid cells, one per input in order, each a success describing its own input."""
    assert [c["id"] for c in cells] == [f"img{i}" for i in range(len(items))]
    for cell, item in zip(cells, items, strict=True):
        CELL.validate(cell)
        assert cell["status"] in SUCCESS, cell.get("message")
        if cell["status"] == "no_tags":
            assert cell.get("message"), "a cell without tags says why"
        if isinstance(item, Path):
            with Image.open(item) as img:
                assert (cell["image"]["width"], cell["image"]["height"], cell["image"]["mode"]) == (*img.size, img.mode)
        if checkpoint.spec.kind in ("tagger", "zero-shot"):  # probabilities
            assert all(0.0 <= tag["score"] <= 1.0 for tag in cell["tags"])
            assert not any(tag.get("estimated") for tag in cell["tags"])


def test_cells_validate_keep_order_and_batch_equals_one_by_one(checkpoint: Checkpoint) -> None:
    items = checkpoint.inputs()
    batch = checkpoint.infer(items)
    _check_cells(checkpoint, batch, items)
    batch_sizes = {cell["raw"].get("batch_size") for cell in batch}
    if batch_sizes == {1}:
        pytest.skip(f"{checkpoint.name}'s adapter runs one image per call (raw.batch_size 1): nothing to compare")
    assert batch_sizes <= {None, len(items)}  # a tensor batch (no batch_size in raw) or one padded batch
    for cell, item in zip(batch, items, strict=True):
        [single] = checkpoint.infer([item])
        assert single["id"] == "img0"
        assert _differences(_comparable({**cell, "id": None}), _comparable({**single, "id": None})) == [], item


def _odd_photos(folder: Path) -> list[Path]:
    """An RGBA photo with transparency, a greyscale one and a 16-bit greyscale one."""
    grey = Image.open(SAMPLES / "coffee.png").convert("L").resize((160, 120))
    grey.save(folder / "grey.png")
    deep = Image.linear_gradient("L").resize((90, 140)).point(lambda v: v * 257).convert("I;16")
    deep.save(folder / "deep.png")
    assert Image.open(folder / "deep.png").mode == "I;16"
    return [rgba_image(folder), folder / "grey.png", folder / "deep.png"]


def test_rgba_grey_and_16_bit_photos_are_accepted(checkpoint: Checkpoint, tmp_path: Path) -> None:
    if checkpoint.text_only:
        pytest.skip(f"{checkpoint.name} reads other models' outputs, not photos")
    photos = _odd_photos(tmp_path)
    _check_cells(checkpoint, checkpoint.infer(photos), photos)


def test_a_bad_option_is_an_error_cell_and_the_runner_goes_on(checkpoint: Checkpoint) -> None:
    if checkpoint.bad_option is None:
        pytest.skip(f"{checkpoint.name}'s infer takes no option to get wrong (its builder's BAD_OPTION is None)")
    items = checkpoint.inputs()[:2]
    bad = checkpoint.bad_option
    cells = checkpoint.infer(items, **bad)
    assert [c["id"] for c in cells] == ["img0", "img1"]
    for cell in cells:
        CELL.validate(cell)
        assert cell["status"] == "error" and cell["error"]["type"]
        # the message names what was wrong: the option, or the value given
        assert any(key in cell["message"] or str(value) in cell["message"] for key, value in bad.items()), cell
    _check_cells(checkpoint, checkpoint.infer(items[:1]), items[:1])  # no crash: the next request is answered
