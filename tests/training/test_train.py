"""Training: loss falls, saved model round-trips, resume continues, two stages chain, truncation, config errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helpers.tiny import tiny_encoder_dir  # noqa: E402

pytest.importorskip("sentence_transformers")
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from rankdistill.errors import RankdistillError  # noqa: E402
from helpers.data import WORDS, write_set  # noqa: E402
from rankdistill.training.options import load_config, parse_options  # noqa: E402
from rankdistill.training.trainer import load_listwise, train, train_from_options  # noqa: E402

class Recorder(TrainerCallback):
    """Keeps the steps each train() call begins at and the live model at the end of each call."""

    def __init__(self, fail_after: int | None = None):
        self.begin_steps: list[int] = []
        self.first_step: list[int] = []
        self.models: list = []
        self.begin_weights: list[torch.Tensor] = []
        self.end_weights: list[torch.Tensor] = []
        self.fail_after = fail_after

    def on_train_begin(self, args, state, control, model=None, **kw):
        self.begin_steps.append(state.global_step)
        self.begin_weights.append(next(model.parameters()).detach().clone())
        self.first_step.append(-1)

    def on_step_begin(self, args, state, control, **kw):
        if self.first_step[-1] < 0:
            self.first_step[-1] = state.global_step

    def on_step_end(self, args, state, control, **kw):
        if self.fail_after is not None and state.global_step > self.fail_after:
            raise KeyboardInterrupt("simulated crash")

    def on_train_end(self, args, state, control, model=None, **kw):
        self.models.append(model)
        self.end_weights.append(next(model.parameters()).detach().clone())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    return {"root": root, "encoder": tiny_encoder_dir(root / "enc"), "data": write_set(root / "train.parquet")}


@pytest.fixture(scope="module")
def trained(tiny):
    rec = Recorder()
    out = train(
        tiny["data"], model=str(tiny["encoder"]), output=tiny["root"] / "model", max_steps=30, learning_rate=3e-3,
        warmup_ratio=0.0, logging_steps=1, save_steps=1000, seed=0, callbacks=[rec],
        metrics={"nDCG@10 (toy)": 0.5},
    )
    return out, rec


def test_loss_falls(trained):
    out, _ = trained
    log = json.loads((out / "training_log.json").read_text())
    losses = [e["loss"] for e in log["stages"][0]["log_history"] if "loss" in e]
    assert len(losses) == 30
    # RankNet (natural log) starts at ln 2 for a model that cannot tell passages apart
    assert abs(losses[0] - np.log(2)) < 0.05
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.05


def test_saved_model_round_trips(trained, tiny):
    from sentence_transformers import CrossEncoder
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from rankdistill.modeling.truncation import read_truncation, truncate_pairs

    out, rec = trained
    live = rec.models[-1]
    live.eval()
    saved = CrossEncoder(str(out), device="cpu")
    assert isinstance(saved.activation_fn, torch.nn.Identity)
    assert read_truncation(out) == (32, 256)
    assert saved.max_seq_length == 32 + 256 + 3
    queries = ["what is the water", "what is the city " * 20]
    passages = ["good water river city", "bad " + "law data " * 200]
    qs, ps = truncate_pairs(saved.tokenizer, queries, passages)
    pairs = list(zip(qs, ps))
    with torch.inference_mode():
        feats = live.preprocess(pairs)
        live_scores = live(feats)["scores"].view(-1).numpy()
    saved_scores = saved.predict(pairs)
    np.testing.assert_allclose(saved_scores, live_scores, rtol=0, atol=1e-6)
    # raw scores, not sigmoid: a trained model separates good from bad by more than a probability could
    good_bad = saved.predict([("what is the water", "good water river city"), ("what is the water", "bad water river city")])
    assert good_bad[0] > good_bad[1]
    # plain transformers gives the same logit
    hf = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    with torch.inference_mode():
        logits = hf(**tok(qs, ps, padding=True, return_tensors="pt")).logits.view(-1).numpy()
    np.testing.assert_allclose(logits, saved_scores, rtol=0, atol=1e-5)
    card = (out / "README.md").read_text()
    for text in ("ranknet", "learning_rate", "0.003", "nDCG@10 (toy)", str(tiny["encoder"]), "max_query_length"):
        assert text in card
    assert not (out.parent / "model.checkpoints").exists()  # removed after success


def test_resume_continues_from_checkpoint(tiny, tmp_path):
    kw = dict(model=str(tiny["encoder"]), max_steps=6, learning_rate=3e-3, save_steps=2, logging_steps=1, seed=1)
    crash = Recorder(fail_after=3)  # checkpoint-2 is written, then step 4 ends in a crash
    with pytest.raises(KeyboardInterrupt):
        train(tiny["data"], output=tmp_path / "m", callbacks=[crash], **kw)
    assert not (tmp_path / "m").exists()
    assert (tmp_path / "m.checkpoints" / "stage-1" / "checkpoint-2").is_dir()
    with pytest.raises(RankdistillError, match=r"set resume=True to continue"):
        train(tiny["data"], output=tmp_path / "m", **kw)
    again = Recorder()
    out = train(tiny["data"], output=tmp_path / "m", resume=True, callbacks=[again], **kw)
    assert again.begin_steps == [2]  # the step count continues, it does not restart at 0
    log = json.loads((out / "training_log.json").read_text())["stages"][0]
    assert log["steps"] == 6 and log["resumed_from"].endswith("checkpoint-2")
    # the resumed run ends where an uninterrupted run with the same seed ends
    whole = Recorder()
    train(tiny["data"], output=tmp_path / "whole", callbacks=[whole], **kw)
    torch.testing.assert_close(again.end_weights[0], whole.end_weights[0])


def test_resume_skips_half_written_checkpoints_and_a_stage_caught_mid_move(tiny, tmp_path):
    """A SIGKILL while the Trainer writes a checkpoint leaves it half-written in place; resuming must not read it."""
    kw = dict(model=str(tiny["encoder"]), max_steps=6, learning_rate=3e-3, save_steps=2, logging_steps=1, seed=1)
    with pytest.raises(KeyboardInterrupt):
        train(tiny["data"], output=tmp_path / "m", callbacks=[Recorder(fail_after=4)], **kw)
    stage = tmp_path / "m.checkpoints" / "stage-1"
    assert {p.name for p in stage.glob("checkpoint-*")} == {"checkpoint-2", "checkpoint-4"}
    state = stage / "checkpoint-4" / "trainer_state.json"  # killed while writing the state file (written last)
    state.write_text(state.read_text()[:40])
    (stage / "checkpoint-6").mkdir()  # killed while writing the weights
    (stage / "checkpoint-6" / "model.safetensors").write_bytes(b"\0" * 100)
    (stage / "model").mkdir()  # killed while the finished stage was moved to the output (stage.json already gone)
    (stage / "model" / "README.md").write_text("half")
    again = Recorder()
    out = train(tiny["data"], output=tmp_path / "m", resume=True, callbacks=[again], **kw)
    assert again.begin_steps == [2]
    assert json.loads((out / "training_log.json").read_text())["stages"][0]["resumed_from"].endswith("checkpoint-2")
    whole = Recorder()
    train(tiny["data"], output=tmp_path / "whole", callbacks=[whole], **kw)
    torch.testing.assert_close(again.end_weights[0], whole.end_weights[0])


def test_two_stage_config_chains_weights(tiny, tmp_path):
    write_set(tmp_path / "labels.parquet", relevance=True)
    cfg = tmp_path / "recipe.yaml"
    cfg.write_text(
        f"model: {tiny['encoder']}\n"
        "output: out/model\n"
        "learning_rate: 0.003\n"
        "logging_steps: 1\n"
        "stages:\n"
        "  - {data: labels.parquet, loss: lce, max_steps: 3}\n"
        f"  - {{data: {tiny['data']}, loss: ranknet, max_steps: 4, learning_rate: 0.001}}\n"
    )
    rec = Recorder()
    out = train_from_options(parse_options(load_config(cfg)), callbacks=[rec])
    assert out == tmp_path / "out" / "model"
    log = json.loads((out / "training_log.json").read_text())["stages"]
    assert [s["loss"] for s in log] == ["lce", "ranknet"] and [s["steps"] for s in log] == [3, 4]
    assert log[1]["start_model"].endswith("stage-1/model")
    # stage 2 starts from the weights stage 1 ended with (not from the backbone)
    torch.testing.assert_close(rec.begin_weights[1], rec.end_weights[0])
    assert not torch.equal(rec.begin_weights[0], rec.end_weights[0])
    card = (out / "README.md").read_text()
    assert "Stage 1" in card and "Stage 2" in card and "lce" in card


def test_separate_truncation(tiny):
    from sentence_transformers import CrossEncoder

    from rankdistill.modeling.truncation import set_max_length, truncate_pairs

    ce = CrossEncoder(str(tiny["encoder"]), device="cpu")
    set_max_length(ce, 32, 256)
    tok = ce.tokenizer
    long_query = " ".join(WORDS * 4)  # 56 words, one token each
    long_passage = " ".join(WORDS * 30)  # 420 tokens
    (q,), (p,) = truncate_pairs(tok, [long_query], [long_passage], 32, 256)
    q_ids = tok(q, add_special_tokens=False)["input_ids"]
    p_ids = tok(p, add_special_tokens=False)["input_ids"]
    assert len(q_ids) == 32 and q_ids == tok(long_query, add_special_tokens=False)["input_ids"][:32]
    assert len(p_ids) == 256 and p_ids == tok(long_passage, add_special_tokens=False)["input_ids"][:256]
    assert long_query.startswith(q) and long_passage.startswith(p)  # cut text, not decoded ids
    # the CrossEncoder keeps the whole cut pair: 32 + 256 + [CLS] [SEP] [SEP]
    feats = ce.preprocess([(q, p)])
    assert feats["input_ids"].shape[1] == 291
    # a short query leaves its budget unused: the passage still gets only 256 (joint truncation would give it more)
    (q2,), (p2,) = truncate_pairs(tok, ["water"], [long_passage], 32, 256)
    assert q2 == "water" and len(tok(p2, add_special_tokens=False)["input_ids"]) == 256
    joint = ce.preprocess([("water", long_passage)])["input_ids"].shape[1]
    assert joint == 291 and joint > len(ce.preprocess([(q2, p2)])["input_ids"][0])
    # training data goes through the same cut
    ds, stats = load_listwise([tiny["data"]], tok, 2, 3)
    assert stats == {"queries": 6, "lists": 6, "pairs": 48, "max_list": 8, "teacher_pairs": "all"}  # no windows in the set
    assert ds[0]["query"] == "what is" and ds[0]["docs"][0] == "good water river"
    assert ds[0]["labels"] == [8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]


def test_config_errors(tiny, tmp_path):
    with pytest.raises(RankdistillError, match=r"loss: got 'rank-net'; allowed: 'ranknet', 'lce'"):
        parse_options({"loss": "rank-net"})
    with pytest.raises(RankdistillError, match=r"stages\.1\.loss: got 'foo'"):
        parse_options({"stages": [{"loss": "lce"}, {"loss": "foo"}]})
    with pytest.raises(RankdistillError, match=r"learnig_rate: unknown key .*allowed: .*learning_rate"):
        parse_options({"learnig_rate": 1e-5})
    with pytest.raises(RankdistillError, match=r"stages\.0\.data: no training data"):
        train_from_options(parse_options({"output": str(tmp_path / "x"), "stages": [{"loss": "lce"}]}))
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"qid": ["1"], "query": ["q"], "passage": ["p"]}), bad)
    with pytest.raises(RankdistillError, match=r"bad\.parquet: missing column\(s\) target, position"):
        train(bad, model=str(tiny["encoder"]), output=tmp_path / "m", max_steps=1)
    (tmp_path / "exists").mkdir()
    with pytest.raises(RankdistillError, match=r"set overwrite=True to replace it"):
        train(tiny["data"], model=str(tiny["encoder"]), output=tmp_path / "exists", max_steps=1)
    with pytest.raises(RankdistillError, match="no such folder"):
        train(tiny["data"], model="./no/such/model", output=tmp_path / "m2", max_steps=1)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("loss: [unclosed\n")
    with pytest.raises(RankdistillError, match=r"c\.yaml:\d+: invalid YAML"):
        load_config(cfg)


def test_cli_config_flags_win_and_errors(tiny, tmp_path, capsys):
    from rankdistill.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: {tiny['data']}\nmodel: {tiny['encoder']}\nmax_steps: 50\nloss: lce\noutput: from-config\n")
    main(["train", "--config", str(cfg), "--max-steps", "2", "--loss", "ranknet", "-o", str(tmp_path / "cli-model"), "--lr", "1e-3"])
    log = json.loads((tmp_path / "cli-model" / "training_log.json").read_text())["stages"][0]
    assert log["steps"] == 2 and log["loss"] == "ranknet"  # flags win over the file
    assert not (tmp_path / "from-config").exists()
    cfg.write_text("loss: foo\n")
    with pytest.raises(SystemExit) as exc:
        main(["train", "--config", str(cfg)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "loss: got 'foo'" in err and "'ranknet'" in err and "Traceback" not in err


def test_cli_help_documents_every_knob():
    from typer.testing import CliRunner

    from rankdistill.cli import app
    from rankdistill.training.options import TrainOptions

    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200", "TERM": "dumb", "NO_COLOR": "1"})
    assert result.exit_code == 0
    flat = result.output.replace("\n", " ")
    for key in TrainOptions.model_fields:
        if key in ("stages", "metrics", "data"):
            assert key in flat
            continue
        assert "--" + key.replace("_", "-") in flat, key


def test_backbone_names(monkeypatch):
    import huggingface_hub.constants

    from rankdistill.modeling.backbones import resolve_backbone

    folder = Path(resolve_backbone("minilm-l6"))
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(RankdistillError, match="nobody-xyz/not-a-model.*could not be loaded"):
        resolve_backbone("nobody-xyz/not-a-model")


def test_electra_backbone_trains_and_loads(tmp_path):
    from sentence_transformers import CrossEncoder

    enc = tiny_encoder_dir(tmp_path / "electra", kind="electra")
    data = write_set(tmp_path / "d.parquet", queries=2, docs=4)
    out = train(data, model=str(enc), output=tmp_path / "m", max_steps=2, learning_rate=1e-3)
    ce = CrossEncoder(str(out), device="cpu")
    assert ce.model.config.model_type == "electra" and isinstance(ce.activation_fn, torch.nn.Identity)
    assert ce.predict([("what is the water", "good water"), ("what is the water", "bad")]).shape == (2,)
