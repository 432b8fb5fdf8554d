"""The demo's recipe (gated head, RankNet with DCG-change weights on the pairs the teacher compared, every
other learning knob at its default) trains to recorded numbers, bit for bit (atol 0).

Why: refactoring the options, losses and trainer must not change what a config trains. The numbers were
recorded on a CPU in float32 (``bf16`` unset, so off without a GPU); a GPU or another CPU kernel may round
differently, so the test runs where there is no GPU.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from helpers.data import write_set  # noqa: E402
from helpers.tiny import tiny_scoring_dir  # noqa: E402

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="numbers recorded on a CPU")

PAIRS = [
    ("what is the water price", "the river water price is good in the city"),
    ("what is the water price", "a car is fast"),
    ("who is the best student", "the best student of the year is in the court"),
]

# recorded with the code before the training refactor
EXPECTED = {
    "gates": [0.01063572708517313, -0.017284950241446495, 0.015387015417218208, 0.01798342727124691],
    "scale": [19.999954223632812],
    "weights": [-0.3036595284938812, 0.2730998396873474, -0.3376699388027191, 0.6978446245193481, 0.33360767364501953, -0.20980919897556305, 2.6891120796790347e-05, -3.617882612161338e-05, -2.9540758987423033e-05],
    "scores": [17.32756996154785, 17.609182357788086, 19.579891204833984],
    "losses": [1.1114236116409302, 1.71183180809021, 1.6558043956756592, 1.087904930114746],
}


def _compared_set(path):
    """The toy set with the sliding-window columns of ``build --pairs compared`` (window 4, stride 2, depth 8)."""
    table = pq.read_table(write_set(path))
    position = table.column("position").to_pylist()
    first = [max(0, (p - 2) // 2) if p >= 2 else 0 for p in position]
    last = [min(2, p // 2) for p in position]
    table = table.append_column("window_first", pa.array(first, pa.int64()))
    table = table.append_column("window_last", pa.array(last, pa.int64()))
    pq.write_table(table, path)
    return path


def test_gated_recipe_trains_to_the_recorded_numbers(tmp_path):
    from rankdistill.modeling.cross_encoder import load_cross_encoder
    from rankdistill.modeling.gated import read_gates
    from rankdistill.training.trainer import train

    encoder = tiny_scoring_dir(tmp_path / "enc")
    data = _compared_set(tmp_path / "train.parquet")
    out = train(data, model=str(encoder), output=tmp_path / "model", head="gated", loss_kwargs={"weighting": "discount"},
                max_steps=4, max_query_length=8, max_passage_length=16, logging_steps=1)
    model = load_cross_encoder(out, device="cpu")
    encoder_module, head = model[0], model[1]
    layer = encoder_module.auto_model.base_model.encoder.layer[0]
    got = {
        "gates": read_gates(out).flatten().tolist(),
        "scale": [float(head.scale.detach())],
        "weights": [float(w) for w in layer.attention.self.query.weight.detach().flatten()[:6]]
        + [float(w) for w in layer.output.dense.bias.detach()[:3]],
        "scores": [float(s) for s in model.predict(PAIRS)],
        "losses": [e["loss"] for e in json.loads((out / "training_log.json").read_text())["stages"][0]["log_history"]
                   if "loss" in e],
    }
    assert got == EXPECTED


# recorded with the code before the training refactor
EXPECTED_TWO_STAGES = {
    "scores": [-0.49938011169433594, -0.8235612511634827, -0.7799603343009949],
    "losses": [[1.4131243228912354, 2.2887115478515625], [0.5804815292358398, 1.2034838199615479, 1.1151306629180908]],
    "steps": [2, 3],
}


def test_two_stage_config_with_inherited_values_trains_to_the_recorded_numbers(tmp_path):
    """``train --config``: a stage inherits the file's top-level value, a flag wins over both."""
    from sentence_transformers import CrossEncoder

    from rankdistill.cli import main

    encoder = tiny_scoring_dir(tmp_path / "enc")
    write_set(tmp_path / "labels.parquet", relevance=True)
    write_set(tmp_path / "teacher.parquet")
    (tmp_path / "recipe.yaml").write_text(
        f"model: {encoder}\n"
        "loss: ranknet\n"
        "learning_rate: 0.002\n"
        "warmup_ratio: 0.0\n"
        "max_steps: 2\n"
        "max_query_length: 8\n"
        "max_passage_length: 16\n"
        "logging_steps: 1\n"
        "stages:\n"
        "  - {data: labels.parquet, loss: lce, weight_decay: 0.0}\n"
        "  - {data: teacher.parquet, loss_kwargs: {sigma: 2.0}, learning_rate: 0.001, max_steps: 3}\n"
    )
    main(["train", "--config", str(tmp_path / "recipe.yaml"), "-o", str(tmp_path / "model"), "--seed", "3",
          "--grad-accum", "2"])
    out = tmp_path / "model"
    log = json.loads((out / "training_log.json").read_text())["stages"]
    got = {
        "scores": [float(s) for s in CrossEncoder(str(out), device="cpu").predict(PAIRS)],
        "losses": [[e["loss"] for e in stage["log_history"] if "loss" in e] for stage in log],
        "steps": [stage["steps"] for stage in log],
    }
    assert got == EXPECTED_TWO_STAGES
