"""Optimizers: compile a program from data and a metric, as a journaled, budgeted, resumable job."""

from .fewshot import BootstrapFewShot, LabeledFewShot, NoTracePassed
from .knn import KNNFewShot, KNNProgram
from .job import CandidateScore, CompileJob, CompileProgress, CompileReport, CompileStopped, EvaluationFailed
from .gepa import GEPA
from .mipro import MIPROv2
from .proposer import ProposalRejected
from .random_search import BootstrapFewShotWithRandomSearch

__all__ = ["LabeledFewShot", "BootstrapFewShot", "BootstrapFewShotWithRandomSearch", "KNNFewShot", "KNNProgram",
           "CompileReport",
           "CandidateScore", "CompileProgress", "CompileJob", "CompileStopped", "NoTracePassed", "EvaluationFailed",
           "MIPROv2", "GEPA", "ProposalRejected"]
