"""The model card (README.md) of a trained student, through sentence-transformers' own card data.

:class:`StudentCardData` is sentence-transformers' ``CrossEncoderModelCardData`` plus what only rankdistill knows:
the head, the query/passage budgets, the stages and their settings, the metrics given for the card. The header
(library, pipeline tag, tags, base model) and the framework versions come from the library; the body is
rankdistill's template, because the library's usage snippet would be wrong for our students (it cuts the joined
pair, and the similarity/gated heads need ``trust_remote_code``). The card is written without the Hub
(``local_files_only``) and without running the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sentence_transformers.cross_encoder.model_card import CrossEncoderModelCardData

from rankdistill.modeling.truncation import DEFAULT_MAX_PASSAGE_LENGTH, DEFAULT_MAX_QUERY_LENGTH

TITLE = "Cross-encoder re-ranker (rankdistill)"

TEMPLATE = """---
{{ card_data }}
---

# {{ model_name }}

{% if head == "gated" -%}
Trained with `rankdistill train` from **{{ base_model }}**: `[CLS] query [SEP] [CLS] passage [SEP]` through the
encoder with cross-attention behind learnt gates (shut at the start, so the untrained model is the backbone's
bi-encoder), score = a learnt scale times the cosine of the mean query token and the mean passage token
(rankdistill's gated similarity head). Outputs are raw scores, higher = more relevant.
{%- elif head == "similarity" -%}
Trained with `rankdistill train` from **{{ base_model }}**: `[CLS] query [SEP] passage [SEP]` through the
encoder, score = a learnt scale times the cosine of the mean query token and the mean passage token
(rankdistill's similarity head). Outputs are raw scores, higher = more relevant.
{%- else -%}
Trained with `rankdistill train` from **{{ base_model }}**: one score from the first token of
`[CLS] query [SEP] passage [SEP]` (monoELECTRA style, through the architecture's sequence-classification
head with one label). Outputs are raw scores (identity activation), higher = more relevant.
{%- endif %}

## Training
{% for rows in stage_rows %}
### {{ ("Stage " ~ loop.index) if stage_rows | length > 1 else "Data and loss" }}

| setting | value |
|---|---|
{% for key, value in rows -%}
| {{ key }} | {{ value }} |
{% endfor -%}
{% endfor %}
### Model settings

| setting | value |
|---|---|
{% for key, value in setting_rows -%}
| {{ key }} | {{ value }} |
{% endfor -%}
{% if metric_rows %}
## Metrics

| metric | value |
|---|---|
{% for key, value in metric_rows -%}
| {{ key }} | {{ value }} |
{% endfor -%}
{% endif %}
## Usage

{% if head == "gated" -%}
The model cuts queries to {{ max_query_length }} and passages to {{ max_passage_length }} tokens *separately* itself. Its encoder and head are
rankdistill's own modules (`rankdistill.modeling.gated.GatedTransformer`, `rankdistill.modeling.heads.SegmentSimilarity`):
install rankdistill, then

```python
from sentence_transformers import CrossEncoder

model = CrossEncoder("PATH", trust_remote_code=True)  # or rankdistill.modeling.cross_encoder.load_cross_encoder("PATH")
scores = model.predict([(query, passage) for passage in passages])
```
{%- else -%}
Queries were cut to {{ max_query_length }} and passages to {{ max_passage_length }} tokens *separately*. `CrossEncoder` truncates the
joined pair instead, so cut the texts first to score exactly as in training (`rankdistill rerank`
does this):

```python
{% if head == "similarity" -%}
from rankdistill.modeling.cross_encoder import load_cross_encoder
from rankdistill.modeling.truncation import read_truncation, truncate_pairs

model = load_cross_encoder("PATH")  # a CrossEncoder; or CrossEncoder("PATH", trust_remote_code=True)
{%- else -%}
from sentence_transformers import CrossEncoder
from rankdistill.modeling.truncation import read_truncation, truncate_pairs

model = CrossEncoder("PATH")
{%- endif %}
mq, mp = read_truncation("PATH")
qs, ps = truncate_pairs(model.tokenizer, queries, passages, mq, mp)
scores = model.predict(list(zip(qs, ps)))
```

{% if head == "similarity" -%}
The similarity head is rankdistill's own module (`rankdistill.modeling.heads.SegmentSimilarity`): install rankdistill to load the model.
{%- else -%}
It also loads with `transformers.AutoModelForSequenceClassification` (one logit = the score).
{%- endif %}
{%- endif %}

## Framework versions

{% for name, number in version.items() -%}
- {{ name }}: {{ number }}
{% endfor %}"""


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items()) or "–"
    return "–" if value is None else str(value)


def _rows(values: dict[str, Any] | None) -> list[tuple[str, str]]:
    return [(str(key), _fmt(value)) for key, value in (values or {}).items()]


@dataclass
class StudentCardData(CrossEncoderModelCardData):
    """sentence-transformers' cross-encoder card data plus rankdistill's fields.

    Args:
        head: ``cls``, ``similarity`` or ``gated`` (:data:`rankdistill.modeling.HEADS`).
        max_query_length: the query budget in tokens.
        max_passage_length: the passage budget in tokens.
        stages: one ``setting -> value`` mapping per training stage, in order.
        settings: ``setting -> value`` of the model as a whole (base model, head, budgets, bf16, time).
        results: ``metric -> value`` figures to show (e.g. nDCG@10 on a held-out set); None for none.
    """

    head: str = "cls"
    max_query_length: int = DEFAULT_MAX_QUERY_LENGTH
    max_passage_length: int = DEFAULT_MAX_PASSAGE_LENGTH
    stages: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] | None = None
    model_name: str | None = TITLE
    tags: list[str] = field(default_factory=lambda: ["sentence-transformers", "cross-encoder", "reranker", "rankdistill"])
    local_files_only: bool = True  # a card is written offline: no Hub look-ups of the base model
    generate_widget_examples: bool = False  # and without running the model on examples

    def __post_init__(self) -> None:
        super().__post_init__()
        self.pipeline_tag = "text-ranking"  # register_model sets it for a live model; the card is written from a folder

    def get_model_specific_metadata(self) -> dict[str, Any]:
        """The library's reads the live model; a card written from a saved folder has none."""
        return super().get_model_specific_metadata() if self.model is not None else {}

    def to_dict(self) -> dict[str, Any]:
        values = super().to_dict()
        values.update(
            stage_rows=[_rows(stage) for stage in self.stages],
            setting_rows=_rows(self.settings),
            metric_rows=_rows(self.results),
        )
        return values


def render_model_card(data: StudentCardData) -> str:
    """The card's Markdown, header included."""
    from huggingface_hub import ModelCard

    return str(ModelCard.from_template(data, template_str=TEMPLATE))


def write_model_card(
    folder: Path,
    *,
    base_model: str,
    stages: list[dict[str, Any]],
    settings: dict[str, Any],
    metrics: dict[str, Any] | None = None,
) -> None:
    """Write README.md: base model, data, loss and hyper-parameters per stage, metrics when given, usage.

    Args:
        folder: the saved model folder.
        base_model: where the backbone came from (a hub id or a folder).
        stages: one ``setting -> value`` mapping per stage, as the card's tables show them.
        settings: the model's settings; ``head``, ``max_query_length`` and ``max_passage_length`` also pick the
            card's description and usage snippet.
        metrics: figures to show, or None.
    """
    data = StudentCardData(
        head=settings.get("head", "cls"),
        max_query_length=settings.get("max_query_length", DEFAULT_MAX_QUERY_LENGTH),
        max_passage_length=settings.get("max_passage_length", DEFAULT_MAX_PASSAGE_LENGTH),
        stages=stages,
        settings=settings,
        results=metrics,
    )
    data.base_model = base_model
    (Path(folder) / "README.md").write_text(render_model_card(data), encoding="utf-8")
