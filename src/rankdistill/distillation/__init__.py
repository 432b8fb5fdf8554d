"""The distillation set: teacher rankings + first-stage run + qrels, sampled into the parquet the trainer reads."""
