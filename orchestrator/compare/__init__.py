"""The comparison of models' outputs (normalised tags, agreement, consensus, timing); raw stays raw."""

from orchestrator.compare.comparison import Comparison, compare, unique_images
from orchestrator.compare.normalise import Normaliser, SynonymError, load_synonyms

__all__ = ["Comparison", "Normaliser", "SynonymError", "compare", "load_synonyms", "unique_images"]
