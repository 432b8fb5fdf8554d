"""Measuring runs: ir-measures metrics, paired significance tests, the report and its plots."""

from rankdistill.util.moved import former_module

__getattr__ = former_module(__name__, "rankdistill.evaluation.metrics")  # ``rankdistill.evaluation`` was one module
