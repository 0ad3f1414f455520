"""Sweeps of ``hdqnn train`` runs (algorithms x environments x seeds x options) on Ray or local processes.

``hdqnn sweep CONFIG.yaml`` runs every trial in its own run folder, retries trials whose worker died
(each retry resumes from the trial's checkpoint), skips finished trials when run again and ends with
the ``hdqnn compare`` table. Ray (``pip install hdqnn[ray]``) is imported only when used.
"""
from .cli import add_sweep_subparser, run_sweep_from_args
from .config import SweepConfig, SweepConfigError, load_yaml, parse_config
from .runner import SweepReport, TrialOutcome, run_sweep
from .train_cli import TrainCommand
from .trials import Trial, expand

__all__ = ["add_sweep_subparser", "run_sweep_from_args", "run_sweep", "SweepConfig", "SweepConfigError",
           "parse_config", "load_yaml", "TrainCommand", "Trial", "expand", "SweepReport", "TrialOutcome"]
