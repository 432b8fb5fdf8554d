"""Studies: a base pipeline and named variants on the same folds, with a paper-style table (``rankdistill study``)."""

from rankdistill.studies.config import Study, StudyConfig, load_study
from rankdistill.studies.runner import StudyResult, study

__all__ = ["Study", "StudyConfig", "StudyResult", "load_study", "study"]
