"""Reading and writing what flows between stages: TREC runs and qrels, queries and corpora (TSV, JSONL, BEIR, ir_datasets)."""
