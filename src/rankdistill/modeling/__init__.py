"""The student: backbones, scoring heads (cls, similarity, gated), query/passage budgets, saving and loading."""
