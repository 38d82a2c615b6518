"""`mltag export`: one model's (or the consensus', or the best-ranked model's) stored tags written as XMP
keywords that digiKam, darktable, Lightroom, Immich and exiftool read (orchestrator/report/xmp.py).

Where: sidecars in a separate folder that mirrors the archive (the default: the archive is never
touched), sidecars beside the photos (--beside), or the XMP inside JPEG / TIFF / DNG photos (--embed,
the one command that changes photos: atomically, pixel data untouched). Photos are streamed from the
store one at a time; no model runs.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator.archives import find_member
from orchestrator.cli import options as o
from orchestrator.cli.choices import check_threshold
from orchestrator.cli.console import err
from orchestrator.cli.stores import Stored, load_stored
from orchestrator.document import ImageEntry
from orchestrator.errors import ExportError, OutputError, UsageError
from orchestrator.images import display_path

if TYPE_CHECKING:
    from orchestrator.compare import Normaliser
    from orchestrator.report.xmp import PhotoKeywords

THRESHOLD_ROUNDING = 5e-7  # half the last decimal of the best threshold as compare/evaluate.py rounds it
CAPTION_KINDS = frozenset({"captioner", "judge"})
# A photo's RAW or JPEG twin: with --sidecar-name stem both would share one photo.xmp.
TWIN_SUFFIXES = (
    ".jpg",
    ".jpeg",
    ".png",
    ".webp",
    ".tif",
    ".tiff",
    ".heic",
    ".dng",
    ".cr2",
    ".cr3",
    ".nef",
    ".arw",
    ".orf",
    ".rw2",
    ".raf",
    ".pef",
    ".srw",
    ".raw",
)

Under = Annotated[
    list[Path], typer.Argument(help="Export the stored photos under these files or folders.", show_default=False)
]
Which = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="MODEL (a stored model's tags), consensus (the tags most "
        "models agree on, normalised), or best (the top model "
        "of `mltag eval` at its best threshold, against your "
        "labels).",
    ),
]
ExportThreshold = Annotated[
    float | None,
    typer.Option(
        "--threshold",
        help="Keep tags scored at least this, within 0 and 1 (default: every tag the model reported; "
        "for best: its best threshold).",
    ),
]
OutDir = Annotated[
    Path | None,
    typer.Option(
        "--out",
        "-o",
        help="Write sidecars into this folder, mirroring the archive's tree (the archive is not touched).",
    ),
]
Beside = Annotated[bool, typer.Option("--beside", help="Write sidecars next to the photos.")]
Embed = Annotated[
    bool,
    typer.Option(
        "--embed",
        help="Write the XMP INTO JPEG / TIFF / DNG photos (changes the photo files; pixel data untouched; atomic).",
    ),
]
SidecarName = Annotated[
    str,
    typer.Option(
        "--sidecar-name",
        help="extension: photo.jpg.xmp (digiKam, darktable, Immich) | stem: photo.xmp (Lightroom, for RAW files).",
    ),
]
Hierarchy = Annotated[
    str,
    typer.Option(
        "--hierarchy",
        help="mltag: also mltag|MODEL|tag (lr:hierarchicalSubject) "
        "and mltag/MODEL/tag (digiKam:TagsList) | none: flat "
        "keywords only.",
    ),
]
Normalise = Annotated[
    bool,
    typer.Option(
        "--normalise",
        help="Keywords under their normalised names (broken_windows -> broken window), as the comparison names them.",
    ),
]
Caption = Annotated[
    bool,
    typer.Option("--caption", help="Also the model's caption as dc:description (a description you wrote is kept)."),
]
CaptionFrom = Annotated[
    str | None,
    typer.Option("--caption-from", metavar="MODEL", help="The caption from this captioner (implies --caption)."),
]
LabelsCsv = Annotated[
    Path | None,
    typer.Option(
        "--labels",
        help="For --model best: your labels as a CSV (the format "
        "of `mltag eval --labels`). Default: the labels in "
        "the results store (`mltag serve`).",
    ),
]
DryRun = Annotated[bool, typer.Option("--dry-run", help="List what would be written; write nothing.")]


@dataclass
class Counts:
    photos: int = 0
    keywords: int = 0
    written: int = 0
    merged: int = 0
    unchanged: int = 0
    without_tags: int = 0
    missing: int = 0
    skipped: int = 0
    failed: int = 0
    first_failed: str = ""
    kept_descriptions: int = 0

    def fail(self, photo: str, why: str) -> None:
        self.failed += 1
        self.first_failed = self.first_failed or photo
        err.print(f"failed: {photo}: {why}", highlight=False, soft_wrap=True, markup=False)


@dataclass(frozen=True)
class Choice:
    """What is exported: the source's name, its threshold, and how one image's keywords are read."""

    source: str
    threshold: float | None
    keywords: Callable[[ImageEntry], list[str]]


def export(
    paths: Under,
    model: Which,
    threshold: ExportThreshold = None,
    out: OutDir = None,
    beside: Beside = False,
    embed: Embed = False,
    sidecar_name: SidecarName = "extension",
    hierarchy: Hierarchy = "mltag",
    normalise: Normalise = False,
    synonyms: o.Synonyms = None,
    caption: Caption = False,
    caption_from: CaptionFrom = None,
    labels: LabelsCsv = None,
    store: o.StoredFrom = None,
    dry_run: DryRun = False,
    compare_top: o.CompareTop = 10,
    consensus_min: o.ConsensusMin = None,
) -> None:
    """Write a model's stored tags as XMP keywords (sidecars, or inside the photos) for digiKam, darktable,
    Lightroom and exiftool."""
    from orchestrator.compare import Normaliser, load_synonyms

    check_threshold(threshold)
    if sum((out is not None, beside, embed)) != 1:
        raise UsageError(
            "say where the keywords go: --out DIR (sidecars in a separate folder, the archive untouched), "
            "--beside (sidecars next to the photos) or --embed (inside JPEG/TIFF/DNG photos); one of them"
        )
    if sidecar_name not in ("extension", "stem"):
        raise UsageError(
            f"unknown --sidecar-name {sidecar_name!r} (choose extension: photo.jpg.xmp, or stem: photo.xmp)"
        )
    if hierarchy not in ("mltag", "none"):
        raise UsageError(f"unknown --hierarchy {hierarchy!r} (choose mltag or none)")
    if labels is not None and model != "best":
        raise UsageError("--labels is for --model best (it ranks the models)")
    normaliser = Normaliser(load_synonyms(synonyms) if synonyms else None)
    choice, stored = _choose(
        model,
        paths,
        store,
        threshold,
        normaliser,
        normalise,
        labels,
        compare_top,
        consensus_min,
        caption or caption_from is not None,
    )
    try:
        captions = _caption_model(stored, choice, caption, caption_from)
    except UsageError:
        stored.db.close()
        raise
    roots = [os.path.abspath(p) for p in paths]
    root = os.path.commonpath([r if os.path.isdir(r) else os.path.dirname(r) for r in roots])
    if embed and not dry_run:
        err.print(
            "--embed: writing the XMP keywords INTO the photo files (each replaced atomically; pixel data and "
            "other metadata untouched)",
            highlight=False,
            soft_wrap=True,
        )
    from orchestrator.report.xmp import PhotoKeywords

    counts = Counts()
    destination = _Destination(out, root, beside, embed, sidecar_name)
    try:
        for image, photo in _photos(stored):
            counts.photos += 1
            if not os.path.exists(photo) and find_member(photo) is not None:
                counts.skipped += 1
                err.print(
                    f"skipped: {display_path(photo)} is inside an archive or dataset (read, never written: no "
                    "sidecar or embedded keywords)",
                    highlight=False,
                    soft_wrap=True,
                    markup=False,
                )
                continue
            if not os.path.exists(photo):
                counts.missing += 1
                err.print(
                    f"missing: {display_path(photo)} (stored, no longer there): skipped",
                    highlight=False,
                    soft_wrap=True,
                    markup=False,
                )
                continue
            cell_caption = _caption(image, captions)
            new = PhotoKeywords(
                choice.keywords(image), choice.source, choice.threshold, cell_caption, hierarchy == "mltag"
            )
            _export_one(photo, new, destination, counts, dry_run)
    finally:
        stored.db.close()
    _summary(choice, counts, destination, dry_run)
    if counts.failed:
        raise ExportError(
            f"{counts.failed} photo(s) could not be exported (first: {counts.first_failed}); the others were",
            fix="each is named above with the reason; its file was left as it was",
        )


# -- what is exported -------------------------------------------------------------------------------
def _choose(
    model: str,
    paths: list[Path],
    store: Path | None,
    threshold: float | None,
    normaliser: Normaliser,
    normalise: bool,
    labels: Path | None,
    compare_top: int,
    consensus_min: int | None,
    with_caption: bool,
) -> tuple[Choice, Stored]:
    from orchestrator.compare.cells import cell_tags

    if model == "consensus":
        stored = load_stored(store, paths, "all")
        return _consensus(stored, threshold, normaliser, compare_top, consensus_min), stored
    cut = threshold
    if model == "best":
        name, best_threshold = _best(paths, store, labels, normaliser)
        if threshold is None and best_threshold is not None:
            # eval reports the threshold rounded to 6 decimals: the tag scored exactly at it (maybe a hair
            # below the rounded figure) must stay in, as it was when the threshold was chosen
            threshold, cut = best_threshold, best_threshold - THRESHOLD_ROUNDING
    else:
        name = model
    stored = load_stored(store, paths, "all" if with_caption else name)
    if name not in stored.models:
        stored.db.close()
        raise UsageError(f"no results for model {name} in the store (stored: {', '.join(stored.models)})")
    kind = next((m.get("kind") for m in stored.results.models if m["name"] == name), None)
    if kind == "zero-shot" and cut is None:
        stored.db.close()
        raise UsageError(
            f"{name} is zero-shot: it scores every term of its vocabulary, so every term would become "
            "a keyword of every photo",
            fix=f"give --threshold (`mltag eval` shows {name}'s best), or --model best",
        )
    rename = normaliser if normalise else _raw_names(normaliser)

    def keywords(image: ImageEntry) -> list[str]:
        tags = cell_tags(image.get("results", {}).get(name), rename, cut)
        return [t for t, _ in sorted(tags.items(), key=lambda item: (-item[1][0], item[0]))]

    return Choice(name, threshold, keywords), stored


def _raw_names(normaliser: Normaliser) -> Callable[[str], str]:
    """Tags as the model gave them (trimmed), except those the synonym map renames."""
    from orchestrator.compare.normalise import clean

    def raw(tag: str) -> str:
        return normaliser.synonyms.get(clean(tag), tag.strip()) if normaliser.synonyms else tag.strip()

    return raw


def _consensus(
    stored: Stored, threshold: float | None, normaliser: Normaliser, compare_top: int, consensus_min: int | None
) -> Choice:
    from orchestrator.compare.comparison import Comparison

    comparison = Comparison(stored.results.models, compare_top, threshold, normaliser, consensus_min)

    def keywords(image: ImageEntry) -> list[str]:
        # every copy of a duplicate gets its keywords: the comparison counts a duplicate_of entry once
        first = image.copy()
        first.pop("duplicate_of", None)
        entry = comparison.add(first)
        return list(entry["summary"]["common_tags"]) if entry else []

    return Choice("consensus", threshold, keywords)


def _best(
    paths: list[Path], store: Path | None, labels: Path | None, normaliser: Normaliser
) -> tuple[str, float | None]:
    """The top model of `mltag eval`'s ranking (compare/evaluate.py) and its best threshold, against
    --labels CSV or else the labels in the store (the photos marked done in `mltag serve`)."""
    from orchestrator.compare.evaluate import evaluate, read_labels
    from orchestrator.store.documents import evaluate_store

    rows = read_labels(labels) if labels is not None else []
    stored = load_stored(store, paths, "all")
    try:
        if labels is None:
            if not stored.db.done_sha256s():
                raise UsageError(
                    f"--model best ranks the models against your own labels, and the results store "
                    f"{stored.db.path} holds none yet",
                    fix="label some photos in `mltag serve` (mark each done), or `mltag labels import "
                    "labels.csv`, or pass --labels labels.csv",
                )
            # as `mltag eval` and `mltag serve` rank them (the labelled photos' cells only); no intervals needed
            evaluation = evaluate_store(stored.db, normaliser, stored.under, resamples=0)
        else:
            keys = {row.key for row in rows}
            # only the labelled photos are held: memory follows the labels, not the archive
            labelled = [
                image
                for image in stored.results.images()
                if image["sha256"] in keys or str(Path(image["path"]).resolve()) in keys
            ]
            evaluation = evaluate({"models": stored.results.models, "images": labelled}, rows, normaliser, resamples=0)
    finally:
        stored.db.close()
    ranked = [m for m in evaluation["models"] if m["best"] is not None]
    if not evaluation["labelled"] or not ranked:
        source = labels if labels is not None else "the results store"
        raise UsageError(
            f"none of the labelled photos in {source} has stored results under "
            f"{', '.join(map(str, paths))}: `mltag eval` shows what matched"
        )
    top = ranked[0]
    best = top["best"]
    at = "every tag it reported" if best["threshold"] is None else f"threshold {best['threshold']:g}"
    err.print(
        f"best: {top['model']} (F1 {best['f1']:.3f} at {at}, over {evaluation['labelled']} labelled "
        f"photo(s); `mltag eval` shows the ranking and whether the lead is beyond noise)",
        highlight=False,
        soft_wrap=True,
    )
    return str(top["model"]), best["threshold"]


def _caption_model(stored: Stored, choice: Choice, caption: bool, caption_from: str | None) -> str | None:
    if caption_from is None and not caption:
        return None
    if caption_from is None and choice.source == "consensus":
        raise UsageError(
            "--caption with --model consensus: name the captioner whose captions go to dc:description "
            "with --caption-from MODEL"
        )
    name = caption_from or choice.source
    kinds = {m["name"]: m.get("kind") for m in stored.results.models}
    if name not in kinds:
        raise UsageError(f"--caption-from {name}: no stored results of that model (stored: {', '.join(kinds)})")
    if kinds[name] not in CAPTION_KINDS:
        raise UsageError(f"{name} gives tags, not captions: --caption-from MODEL names a captioner for dc:description")
    return name


def _caption(image: ImageEntry, model: str | None) -> str | None:
    if model is None:
        return None
    cell = image.get("results", {}).get(model)
    text = cell.get("caption") if cell and cell.get("status") == "ok" else None
    return text.strip() if isinstance(text, str) and text.strip() else None


def _photos(stored: Stored) -> Iterator[tuple[ImageEntry, str]]:
    """Each stored photo (every path of a duplicate too) and its path on disk: the exact bytes of a name
    that is not UTF-8."""
    for image in stored.results.images():
        raw = image.get("path_bytes")
        yield image, os.fsdecode(base64.b64decode(raw)) if raw else image["path"]


# -- where it goes ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Destination:
    out: Path | None
    root: str
    beside: bool
    embed: bool
    naming: str

    def target(self, photo: str) -> str:
        """The file the XMP goes to: the photo itself, or its sidecar (beside it, or mirrored under --out)."""
        if self.embed:
            return photo
        sidecar = photo + ".xmp" if self.naming == "extension" else os.path.splitext(photo)[0] + ".xmp"
        if self.beside:
            return sidecar
        assert self.out is not None
        return os.path.join(os.path.abspath(self.out), os.path.relpath(sidecar, self.root))

    def beside_sidecar(self, photo: str) -> str | None:
        """With --out: the sidecar already next to the photo (digiKam's, darktable's), which the new one
        starts from, so the mirrored sidecar holds the user's keywords too."""
        if self.out is None:
            return None
        sidecar = photo + ".xmp" if self.naming == "extension" else os.path.splitext(photo)[0] + ".xmp"
        return sidecar if os.path.isfile(sidecar) else None

    def twin(self, photo: str) -> str | None:
        """With --sidecar-name stem: another photo of the same name beside this one (photo.CR2 and
        photo.jpg), whose photo.xmp this would be too."""
        if self.embed or self.naming != "stem":
            return None
        stem, own = os.path.splitext(photo)
        for suffix in TWIN_SUFFIXES:
            for variant in (suffix, suffix.upper()):
                if variant.lower() != own.lower() and os.path.exists(stem + variant):
                    return stem + variant
        return None


def _export_one(photo: str, new: PhotoKeywords, destination: _Destination, counts: Counts, dry_run: bool) -> None:
    from orchestrator.report.xmp import EMBEDDABLE, merge

    shown = display_path(photo)
    if destination.embed and os.path.splitext(photo)[1].lower() not in EMBEDDABLE:
        counts.skipped += 1
        err.print(
            f"skipped: {shown}: XMP goes inside JPEG, TIFF and DNG files only (use sidecars for this one)",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
        return
    twin = destination.twin(photo)
    if twin is not None:
        counts.skipped += 1
        err.print(
            f"skipped: {shown}: its photo.xmp would also be the sidecar of {display_path(twin)}; "
            "--sidecar-name extension gives each its own",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
        return
    target = destination.target(photo)
    existing_path = target if os.path.isfile(target) else destination.beside_sidecar(photo)
    existing = _read(existing_path) if existing_path is not None else None
    if existing is None and not new.keywords and new.caption is None:
        counts.without_tags += 1
        return
    counts.keywords += len(new.keywords)
    counts.without_tags += not new.keywords
    if dry_run:
        how = "into the photo" if destination.embed else "merged" if existing is not None else "new"
        typer.echo(f"{display_path(target)} ({how}): {', '.join(new.keywords) or '(no keywords)'}")
        counts.written += 1
        return
    if destination.embed and not os.stat(photo).st_mode & 0o222:
        counts.fail(shown, "the photo file is read-only (its permissions say so): left as it was")
        return
    try:
        merged = merge(existing, new, embed=destination.embed)
    except ExportError as exc:
        counts.fail(shown, exc.message)
        return
    counts.kept_descriptions += merged.kept_description
    if not merged.changed and (existing_path == target or not new.keywords):
        counts.unchanged += existing_path == target  # nothing new: the file is left as it is
        return
    # --embed through a symbolic link replaces the file it points to, not the link
    written = os.path.realpath(target) if destination.embed else target
    _write(Path(written), merged.data, like=Path(written))
    counts.written += 1
    counts.merged += existing is not None


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as stream:
            return stream.read()
    except OSError as exc:
        raise OutputError(f"cannot read {display_path(path)}: {exc.strerror or exc}") from exc


def _write(target: Path, data: bytes, like: Path) -> None:
    from orchestrator.report.xmp import write_atomic

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, data, like=like)
    except OSError as exc:
        raise OutputError(
            f"cannot write {display_path(target)}: {exc.strerror or exc}",
            fix="--out DIR writes the sidecars into a folder of your choice, leaving the photos' folders untouched",
        ) from exc


def _summary(choice: Choice, counts: Counts, destination: _Destination, dry_run: bool) -> None:
    where = (
        "into the photos"
        if destination.embed
        else "beside the photos"
        if destination.beside
        else f"under {display_path(os.path.abspath(destination.out or '.'))}"
    )
    at = "" if choice.threshold is None else f" (threshold {choice.threshold:g})"
    parts = [
        f"{counts.photos} photo(s)",
        f"{counts.keywords} keyword(s)",
        f"{counts.written} file(s) {'to write' if dry_run else 'written'} {where}",
    ]
    if counts.merged:
        parts.append(f"{counts.merged} merged with existing XMP")
    for number, what in (
        (counts.unchanged, "unchanged"),
        (counts.without_tags, "without tags"),
        (counts.missing, "missing"),
        (counts.skipped, "skipped"),
        (counts.failed, "failed"),
        (counts.kept_descriptions, "kept their own description"),
    ):
        if number:
            parts.append(f"{number} {what}")
    head = "dry run, nothing written: " if dry_run else ""
    err.print(f"{head}{choice.source}'s tags{at}: {', '.join(parts)}", highlight=False, soft_wrap=True, markup=False)
