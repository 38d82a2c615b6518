"""The comparison of models' outputs (normalised tags, agreement, consensus, timing); raw stays raw.

comparison.py  the folder and per-image comparison, fed one image at a time (`Comparison`)
cells.py       what one cell contributes: its normalised content tags
normalise.py   tag normalisation (case, separators, plurals, synonyms)
captags.py     captions -> estimated tags
timing.py      load / warm-up / inference figures
evaluate.py    precision, recall, F1 against the user's labels (`mltag eval`)
intervals.py   95% bootstrap intervals over photos, and whether the leader is ahead beyond noise
nextlabel.py   what to label next: the photos that best tell the leading models apart, over folders
"""

from orchestrator.compare.cells import unique_images
from orchestrator.compare.comparison import Comparison, compare
from orchestrator.compare.normalise import Normaliser, load_synonyms
from orchestrator.errors import SynonymError

__all__ = ["Comparison", "Normaliser", "SynonymError", "compare", "load_synonyms", "unique_images"]
