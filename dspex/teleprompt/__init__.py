"""Optimizers: compile a program from data and a metric, as a journaled, budgeted, resumable job.

Each is a :class:`Teleprompter` (``base.py``: DSPy's interface and the compile skeleton) in a file of its
own; what they share is beside them: the job (``job.py``), the checks (``validate.py``), the demo sets
(``demo_sets.py``), the score board (``candidates.py``), the Pareto front (``pareto.py``), the proposers
(``proposer.py``).
"""

from .base import Teleprompter
from .fewshot import BootstrapFewShot, LabeledFewShot, NoTracePassed
from .knn import KNN, KNNFewShot, KNNProgram
from . import bootstrap, copro_optimizer, knn_fewshot, signature_opt, teleprompt, vanilla  # DSPy's module paths
from .job import CandidateScore, CompileJob, CompileProgress, CompileReport, CompileStopped, EvaluationFailed
from .ensemble import Ensemble, EnsembledProgram
from .copro import COPRO
from . import signature_opt  # DSPy's module path of COPRO
from .gepa import GEPA
from .out_of_scope import AvatarOptimizer, BetterTogether, BootstrapFinetune
from .mipro import MIPROv2
from .proposer import ProposalRejected
from .random_search import BootstrapFewShotWithRandomSearch
from .simba import SIMBA
from .bootstrap_trace import bootstrap_trace_data
from .infer_rules import InferRules
from .optuna_fewshot import BootstrapFewShotWithOptuna
from . import teleprompt_optuna  # DSPy's module path of BootstrapFewShotWithOptuna

__all__ = ["Teleprompter", "LabeledFewShot", "BootstrapFewShot", "BootstrapFewShotWithRandomSearch", "KNNFewShot",
           "KNN", "KNNProgram", "CompileReport", "CandidateScore", "CompileProgress", "CompileJob", "CompileStopped",
           "NoTracePassed", "EvaluationFailed", "MIPROv2", "GEPA", "COPRO", "SIMBA", "ProposalRejected",
           "Ensemble", "EnsembledProgram", "bootstrap_trace_data",
           "InferRules", "BootstrapFewShotWithOptuna",
           "BootstrapFinetune", "BetterTogether", "AvatarOptimizer"]
