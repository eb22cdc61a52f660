"""Data selectors: every class subclasses :class:`selection.selectors.base.Selector`."""

from selection.selectors.base import SelectionResult, Selector, TargetError, fill_budget
from selection.selectors.cluster import ClusterBalancedSelector
from selection.selectors.contrastive import ContrastiveLMSelector
from selection.selectors.coverage import CoverageSelector
from selection.selectors.difficulty import DifficultySelector
from selection.selectors.divergence import DivergenceSelector
from selection.selectors.dsir import DSIRSelector
from selection.selectors.kcenter import KCenterSelector
from selection.selectors.mixed import MixedSelector, ShardableMixedSelector, mix_with_random
from selection.selectors.simple import LongestFirstSelector, RandomSelector

__all__ = [
    "ClusterBalancedSelector", "ContrastiveLMSelector", "CoverageSelector", "DSIRSelector", "DifficultySelector",
    "DivergenceSelector", "KCenterSelector", "LongestFirstSelector", "MixedSelector", "RandomSelector",
    "SelectionResult", "Selector", "ShardableMixedSelector", "TargetError", "fill_budget", "mix_with_random",
]
