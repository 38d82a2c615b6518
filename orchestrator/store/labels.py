"""The user's labels as the store hands them out (the SQL is in db.py, the tables in schema.py, v3).

A label is a verdict on one tag of one photo: yes (the tag is true of it) or no. Photos are keyed by
content (sha256), so a moved or renamed file keeps its labels. A photo is *done* when its truth set is
complete: only done photos are evaluated or exported, since an unlabelled true tag of a half-labelled
photo would count against every model that gave it. Every change is logged (`label_log`); the last
write per tag wins.

    store.set_label(sha, "rust", True, who)     # yes; False: no; again: the last write wins
    store.remove_label(sha, "rust", who)        # undo: no verdict at all
    store.mark_done(sha, who) / mark_undone(sha, who)
    store.labels_of(sha) -> ImageLabels         # one photo's verdicts and done marker
    store.label_rows() -> Iterator[LabelRow]    # every done photo with its yes tags (mltag eval's input)
"""

from __future__ import annotations

import getpass
import re
from dataclasses import dataclass, field

from orchestrator.errors import LabelsError

_SHA256 = re.compile(r"[0-9a-f]{64}")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Verdict:
    """One tag's label: `yes` (true of the photo) or not, recorded by `who` at `time` (epoch seconds)."""

    tag: str
    yes: bool
    who: str
    time: float


@dataclass(frozen=True)
class ImageLabels:
    """One photo's labels: its verdicts by tag (sorted) and whether its truth set is done."""

    sha256: str
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    done: bool = False
    done_by: str | None = None
    done_at: float | None = None

    @property
    def yes_tags(self) -> list[str]:
        """The tags labelled true, sorted: the photo's truth set once it is done."""
        return [tag for tag, verdict in self.verdicts.items() if verdict.yes]


def default_labeller() -> str:
    """Who labels when no name is given: the login name (some containers have none)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def checked_sha256(sha256: str) -> str:
    """A photo's key: 64 hex digits (lower-cased)."""
    key = sha256.strip().lower()
    if not _SHA256.fullmatch(key):
        raise LabelsError(
            f"{sha256!r} is not an image's sha256 (64 hex digits): labels are keyed by the "
            "image's content hash, as the results store lists it"
        )
    return key


def checked_tag(tag: str) -> str:
    """A tag as stored: trimmed, inner whitespace collapsed; never empty, never with a comma (the labels
    CSV separates tags with commas, so such a tag could not be exported)."""
    text = _SPACES.sub(" ", tag).strip()
    if not text:
        raise LabelsError("an empty tag cannot be labelled: give the tag's text")
    if "," in text:
        raise LabelsError(
            f"the tag {text!r} has a comma, which the labels CSV uses between tags: write it without the comma"
        )
    return text


def checked_who(who: str) -> str:
    text = who.strip()
    if not text:
        raise LabelsError("a label needs who recorded it: give a name (default: your login name)")
    return text
