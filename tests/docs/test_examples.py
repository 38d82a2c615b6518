"""The docs' code examples are files (docs/examples/*.sh, shown in the pages by `--8<--` snippets), as typer's
docs_src are: every `mltag` line of them, of the README and of the pages' ```bash blocks is parsed by the real
CLI here, and the examples that need no more than a tagger run for real, start to end, on the tiny WD14 model
(tests/tiny/wd14.py) laid out as a Hugging Face cache holds a download, in a sandbox home with ~/photos."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from orchestrator.models.registry import load_registry
from orchestrator.paths import PROJECT_ROOT
from tests.docs.commands import EXAMPLES, commands_of, documented_files, mltag_commands, parse, shell_lines
from tests.support import SCHEMA

# Examples run end to end here (their models have a tiny build that loads by hub id from a cache).
RUN = ["quickstart.sh", "store.sh", "comparison.sh", "html_report.sh", "eval.sh", "export.sh"]
# The others, parsed only, and why they cannot run here.
PARSE_ONLY = {
    "install.sh": "make targets and env builds (make setup is what the suite itself runs)",
    "serve.sh": "a server that runs until stopped (tests/integration/test_serve_browser.py drives it)",
    "captioners.sh": "VLMs whose tiny builds load only through --weights (tests/integration/test_cli.py)",
    "served.sh": "a vLLM / OpenAI / Ollama server (tests/openai_server.py stands in for one)",
    "judge.sh": "captioners and the judge (tests/integration/test_cli.py runs --judge on tiny models)",
    "offline.sh": "weights folders at paths of the reader's machine",
    "formats.sh": "archives and datasets of the reader's (tests/integration/test_archives_cli.py)",
    "cluster.sh": "a Ray cluster (tests/integration/test_cluster.py)",
}
SAMPLES = PROJECT_ROOT / "samples"


def test_every_example_file_is_run_or_says_why_not() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.sh")) == sorted([*RUN, *PARSE_ONLY])


@pytest.mark.parametrize("path", documented_files(), ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_every_documented_command_line_parses(path: Path) -> None:
    commands = commands_of(path)
    if path.suffix == ".sh":
        assert commands, f"{path.name} shows no mltag command"
    for args in commands:
        parse(args)  # raises the CLI's usage error, naming the flag


def test_a_renamed_flag_or_command_fails_the_parse() -> None:
    """What the check above catches: the same line with one word changed. (Values are checked where the
    commands run, by the examples run below and the CLI's own tests: choices are validated after parsing.)"""
    parse(["analyze", "~/photos", "--models", "wd14", "--show-matrix"])
    for bad in (
        ["analyze", "~/photos", "--model", "wd14"],  # analyze's flag is --models
        ["analyse", "~/photos"],
        ["store", "compact"],
        ["labels", "export", "--output", "x.csv"],
    ):
        with pytest.raises(Exception, match="No such") as caught:
            parse(bad)
        assert type(caught.value).__name__ in ("NoSuchOption", "UsageError"), bad


def test_shell_lines_join_continuations_and_skip_here_documents() -> None:
    text = "mltag analyze a \\\n    --models wd14 > out.json\ncat > f <<'EOF'\nmltag not-a-command\nEOF\nmltag models"
    assert list(shell_lines(text))[0] == "mltag analyze a      --models wd14 > out.json"
    assert mltag_commands(text) == [["analyze", "a", "--models", "wd14"], ["models"]]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hugging Face cache holding wd14 and wd14-eva02 at their pinned revisions: the tiny WD14 build, laid
    out as a download leaves it (models--ORG--NAME/refs/main + snapshots/COMMIT/), so the examples need no
    --weights."""
    from tests.tiny_models import build

    tiny = build("wd14")
    root = tmp_path_factory.mktemp("hub")
    for name in ("wd14", "wd14-eva02"):
        spec = load_registry()[name]
        repo = root / ("models--" + spec.hub_id.replace("/", "--"))
        shutil.copytree(tiny, repo / "snapshots" / spec.revision)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(spec.revision)
    return root


def _sandbox(tmp_path: Path, hub: Path) -> tuple[Path, dict[str, str]]:
    """A home with ~/photos (the samples), the `mltag` of this checkout on PATH, the tiny cache as the Hub's."""
    home = tmp_path / "home"
    shutil.copytree(SAMPLES, home / "photos", ignore=shutil.ignore_patterns("*.md"))
    env = {
        **os.environ,
        "HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HF_HUB_CACHE": str(hub),
        "HF_HUB_OFFLINE": "1",
    }
    return home, env


def _bash(script: str, home: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=home, env=env, capture_output=True, text=True, timeout=900
    )


def section_titles(text: str) -> set[str]:
    """The upper-case section titles of a terminal table (`SUMMARY: ...`, `TAG AGREEMENT MATRIX`), read from
    a page's ```text blocks, or from a whole output."""
    blocks = re.findall(r"^```text\n(.*?)^```", text, re.M | re.S) or [text]
    return {m.group(1) for block in blocks for m in re.finditer(r"^([A-Z][A-Z ]{4,}[A-Z])\b", block, re.M)}


def _check(name: str, home: Path, out: str) -> None:
    """What each example says it makes, there and sound."""
    if name == "quickstart.sh":
        doc = json.loads((home / "results.json").read_text())
        jsonschema.validate(doc, SCHEMA)
        assert {i["results"]["wd14"]["status"] for i in doc["images"]} == {"ok"}
        assert next(csv.reader((home / "results.csv").open()))[:3] == ["image", "sha256", "model"]
        assert len((home / "results.jsonl").read_text().splitlines()) == 1 + len(doc["images"])
        assert "wd14" in out and "wd14-eva02" in out
    elif name == "store.sh":
        doc = json.loads((home / "results.json").read_text())
        assert len(doc["images"]) == 4 and {m["name"] for m in doc["models"]} == {"wd14", "wd14-eva02"}
    elif name == "comparison.sh":
        # the example output the page and the README show (from other models) has the sections a run has
        for page in (PROJECT_ROOT / "docs" / "guides" / "comparison.md", PROJECT_ROOT / "README.md"):
            shown = section_titles(page.read_text())
            assert {"SUMMARY", "CONSENSUS", "MODEL AGREEMENT"} <= shown, page
            assert shown <= section_titles(out), f"{page.name} shows sections a run no longer prints"
        assert "comparison" in json.loads((home / "results.json").read_text())
    elif name == "html_report.sh":
        assert (home / "report.html").read_text().lstrip().lower().startswith("<!doctype html")
    elif name == "eval.sh":
        assert "wd14" in out
        rows = list(csv.reader((home / "labels-done.csv").open()))
        assert len(rows) == 3, rows  # the header and the two photos marked done
    elif name == "export.sh":
        assert sorted(p.name for p in (home / "photos-xmp").rglob("*.xmp"))
        assert sorted(p.name for p in (home / "photos").glob("*.xmp"))


@pytest.mark.adapter
@pytest.mark.parametrize("name", RUN)
def test_example_runs(name: str, hub: Path, tmp_path: Path) -> None:
    home, env = _sandbox(tmp_path, hub)
    # what the page says comes first: results in the store, the labels and synonyms files it names
    (home / "labels.csv").write_text('image,tags\nphotos/rocket.jpg,"ruins, outdoors"\nphotos/coffee.png,cup\n')
    if name in ("export.sh", "eval.sh"):
        first = _bash("mltag analyze ~/photos --models wd14,wd14-eva02 --format json > /dev/null", home, env)
        assert first.returncode == 0, first.stderr
    proc = _bash((EXAMPLES / name).read_text(), home, env)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stderr[-4000:]}"
    _check(name, home, proc.stdout + proc.stderr)


@pytest.mark.parametrize("name", ["README.md", "CONTRIBUTING.md", "CHANGELOG.md"])
def test_links_outside_the_site_resolve(name: str) -> None:
    """mkdocs --strict checks the pages' links; these files are read on GitHub and in the checkout."""
    text = (PROJECT_ROOT / name).read_text()
    targets = {t for t in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text) if "://" not in t}
    assert targets or name == "CHANGELOG.md", f"no link read from {name}"
    missing = sorted(t for t in targets if not (PROJECT_ROOT / t).exists())
    assert missing == [], f"{name} links to files that are not there: {missing}"
