"""The listwise LLM teacher: prompts, permutation parsing, backends, the resumable sliding-window driver."""
