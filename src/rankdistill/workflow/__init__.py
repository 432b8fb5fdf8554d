"""Running the stages end to end: the pipeline config, the runner with its manifests, cross-validation."""

from rankdistill.util.moved import former_module

__getattr__ = former_module(__name__, "rankdistill.workflow.runner")  # ``rankdistill.workflow`` was one module
