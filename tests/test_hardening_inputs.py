"""Malformed checkpoints, configs, arguments and model arguments: each is exit 2 with one
line naming the file or argument, what was found and what was expected; no traceback, and
nothing on disk changes. The corpus is generated here, small, in tmp folders."""

import json
import os
import subprocess
import sys
import warnings

import pytest

from cnnlab.checkpoint import save_checkpoint
from cnnlab.cli import main
from cnnlab.config import RANGES, check_range, load_yaml, make_config
from cnnlab.errors import UserError
from cnnlab.registry import ModelWarning, check_model_kwargs, get_model


def one_error_line(capsys) -> str:
    err = [s for s in capsys.readouterr().err.splitlines() if s.strip()]
    assert len(err) == 1, err
    assert "Traceback" not in err[0] and "unexpected" not in err[0]
    return err[0]


def _snapshot(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- checkpoints ---------------------------------------------------------------------------

META = {"model": "lenet5", "model_kwargs": {"num_classes": 10}, "classes": list("0123456789"),
        "input": {"channels": 1, "size": [32, 32], "mean": [0.1], "std": [0.3]}, "epoch": 1}


def _raw_safetensors(path, header) -> None:
    """A file in the safetensors layout: 8-byte little-endian header size, then ``header``."""
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(len(h).to_bytes(8, "little") + h)


def _meta_with(**change):
    m = json.loads(json.dumps(META))
    for k, v in change.items():
        if v is None:
            m.pop(k)
        else:
            m[k] = v
    return m


CHECKPOINTS = {
    # name: (how to write it, words the message must hold)
    "nested": (lambda p: _raw_safetensors(p, b"[" * 200_000 + b"]" * 200_000), "nested"),
    "list": (lambda p: _raw_safetensors(p, [1, 2, 3]), "not an object"),
    "meta-not-strings": (lambda p: _raw_safetensors(p, {"__metadata__": {"cnnlab": 5}}),
                         "mapping of strings"),
    "meta-not-object": (lambda p: _raw_safetensors(
        p, {"__metadata__": {"cnnlab": "[1, 2]"}}), "expected an object"),
    "huge-header": (lambda p: p.write_bytes((2 ** 62).to_bytes(8, "little")), "header size"),
    "empty": (lambda p: p.write_bytes(b""), "not a cnnlab checkpoint"),
    "few-classes": (lambda p: _save(p, _meta_with(classes=list("012345678"))),
                    "9 class names for a model with 10 outputs"),
    "no-input": (lambda p: _save(p, _meta_with(input=None)), "input is None"),
    "size-strings": (lambda p: _save(p, _meta_with(input={**META["input"], "size": ["a", 3]})),
                     "input.size"),
    "classes-string": (lambda p: _save(p, _meta_with(classes="0123456789")), "classes is"),
    "std-zero": (lambda p: _save(p, _meta_with(input={**META["input"], "std": [0]})),
                 "input.std"),
    "unknown-model": (lambda p: _save(p, _meta_with(model="lenet55")), "lenet5"),
    "kwargs-list": (lambda p: _save(p, _meta_with(model_kwargs=[1])), "model_kwargs"),
    "bad-kwarg": (lambda p: _save(p, _meta_with(model_kwargs={"activation": 5})),
                  "model_kwargs: lenet5 argument activation=5: expected str"),
    "kwarg-typo": (lambda p: _save(p, _meta_with(model_kwargs={"activaton": "tanh"})),
                   "did you mean activation?"),
    "huge-classes": (lambda p: _save(p, _meta_with(model_kwargs={"num_classes": 10 ** 12})),
                     "cannot build (num_classes=1000000000000)"),
}


def _save(path, meta):
    save_checkpoint(path.with_suffix(""), get_model("lenet5").state_dict(), meta)


@pytest.mark.parametrize("case", sorted(CHECKPOINTS))
def test_malformed_checkpoint_is_one_line_naming_the_file(case, tmp_path, capsys):
    path = tmp_path / "ck" / "m.safetensors"
    path.parent.mkdir()
    make, words = CHECKPOINTS[case]
    make(path)
    before = _snapshot(tmp_path)
    assert main(["eval", str(path)]) == 2
    line = one_error_line(capsys)
    assert str(path) in line and words in line, line
    assert _snapshot(tmp_path) == before
    from cnnlab.inference import load_model
    with pytest.raises(UserError, match=str(path)):  # the same from Python
        load_model(path)


# -- configs -------------------------------------------------------------------------------

BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
    for p, c in zip("abcdefgh", "bcdefghi")) + "milestones: *i\n"

CONFIGS = {
    "billion-laughs.yaml": (BILLION_LAUGHS, "alias *a is not allowed"),
    "python-tag.yaml": ("lr: !!python/object/apply:os.system ['true']\n",
                        "tag !!python/object/apply:os.system is not allowed"),
    "list-for-number.yaml": ("lr: [0.1, 0.2]\n", "lr: found list [0.1, 0.2], expected a number"),
    "string-epochs.yaml": ("epochs: ten\n", "epochs: found str 'ten', expected an integer"),
    "string-lr.yaml": ("lr: fast\n", "lr: found str 'fast', expected a number"),
    "string-kwargs.yaml": ("model_kwargs: tanh\n", "model_kwargs: found str 'tanh', expected a "
                           "mapping"),
    "bool-epochs.yaml": ("epochs: yes\n", "epochs: found bool True, expected an integer"),
    "nan-lr.yaml": ("lr: .nan\n", "lr: found nan, expected 0 < lr <= 1000"),
    "range.yaml": ("label_smoothing: 2\n", "label_smoothing: found 2.0, expected 0 <= "
                   "label_smoothing < 1"),
    "binary.yaml": (bytes(range(256)) * 4, "not a text file"),
    "not-a-mapping.yaml": ("- 1\n- 2\n", "expected a mapping of config keys, got list"),
    "unknown-key.yaml": ("lrr: 0.1\n", "unknown config key 'lrr'; did you mean lr"),
    "kwargs-typo.yaml": ("model_kwargs: {activaton: tanh}\n",
                         "lenet5 has no argument 'activaton'; did you mean activation"),
    "deep.yaml": ("lr: " + "[" * 5000 + "]" * 5000 + "\n", "not valid YAML"),
    "number-key.yaml": ("1: 2\n", "config key 1 (int): expected a name"),
    "unhashable-key.yaml": ("? [1, 2]\n: x\n", "not valid YAML (while constructing a mapping"),
    "huge.yaml": ("# " + "x" * (1 << 20) + "\n", "too large for a config file"),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_malformed_config_is_one_line_naming_file_and_key(name, tmp_path, capsys):
    text, words = CONFIGS[name]
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    out = tmp_path / "run"
    assert main(["train", "--config", str(path), "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"cnnlab train: error: --config {path}: ") and words in line, line
    assert not out.exists() and path.read_bytes() == (text if isinstance(text, bytes)
                                                      else text.encode())


def test_resumed_run_config_is_checked_too(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model: lenet5\nseed: !!python/name:os.system\n")
    before = _snapshot(run)
    assert main(["train", "--resume", str(run)]) == 2
    line = one_error_line(capsys)
    assert f"--resume {run / 'config.yaml'}" in line and "!!python/name:os.system" in line
    assert _snapshot(run) == before


def test_config_of_a_run_from_before_validation_splits_still_resumes(tmp_path):
    (tmp_path / "config.yaml").write_text("model: lenet5\nval_split: null\nepochs: 2\n")
    d = load_yaml(tmp_path / "config.yaml", what="--resume")
    assert d["test_split"] is None and d["val_split"] == 0.0  # its val_split was the test one
    with pytest.raises(UserError, match="val_split: found NoneType None, expected a number"):
        load_yaml(tmp_path / "config.yaml")  # a user's --config has today's meaning


def test_yaml_scientific_notation_is_a_number(tmp_path):
    (tmp_path / "c.yaml").write_text("lr: 1e-3\nepochs: 2\n")
    cfg = make_config(load_yaml(tmp_path / "c.yaml"))
    assert cfg.lr == 0.001 and isinstance(cfg.epochs, int)


# -- arguments -----------------------------------------------------------------------------

ARGUMENTS = [
    (["train", "--lr", "nan"], "argument --lr: nan is out of range (expected 0 < lr <= 1000)"),
    (["train", "--lr", "inf"], "argument --lr: inf is out of range"),
    (["train", "--lr", "-0.1"], "argument --lr: -0.1 is out of range"),
    (["train", "--momentum", "nan"], "argument --momentum: nan is out of range"),
    (["train", "--grad-clip", "nan"], "argument --grad-clip: nan is out of range"),
    (["train", "--threads", "-1"], "argument --threads: -1 is out of range (expected 1 <= "
                                   "threads"),
    (["train", "--label-smoothing", "2"], "argument --label-smoothing: 2 is out of range "
                                          "(expected 0 <= label_smoothing < 1)"),
    (["train", "--epochs", "ten"], "argument --epochs: 'ten' is not an integer"),
    (["train", "--nproc", "0"], "argument --nproc: 0 is out of range"),
    (["summary", "lenet5", "--num-classes", "0"], "argument --num-classes: 0 is out of range"),
    (["summary", "lenet5", "--num-classes", "-5"], "argument --num-classes: -5 is out of range"),
    (["explain", "conv", "--padding", "100000"], "argument --padding: 100000 is out of range "
                                                 "(expected 0 <= padding <= 16)"),
]


@pytest.mark.parametrize("argv,words", ARGUMENTS, ids=[" ".join(a[1:]) for a, _ in ARGUMENTS])
def test_out_of_range_argument_fails_at_parse_time(argv, words, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    line = one_error_line(capsys)
    assert line.startswith(f"cnnlab {argv[0]}: error: ") and words in line, line


def test_one_range_table_for_flags_yaml_and_python():
    for name in ("lr", "momentum", "label_smoothing", "threads", "padding"):
        lo, hi, lo_in, hi_in = RANGES[name]
        assert check_range(name, (lo + hi) / 2 if isinstance(lo, float) else lo + 1) is not None
        for bad in (float("nan"), float("inf"), hi + 1):
            with pytest.raises(UserError, match=f"--{name.replace('_', '-')} "):
                check_range(name, bad)
    with pytest.raises(UserError, match="config: momentum: found nan"):
        make_config(momentum=float("nan"))
    from cnnlab.scratch.explain import explain
    with pytest.raises(UserError, match="--padding 100000"):
        explain("conv", padding=100000)


def test_debug_is_accepted_after_the_command_too(tmp_path):
    for argv in (["--debug", "train", "--data", str(tmp_path / "nope")],
                 ["train", "--data", str(tmp_path / "nope"), "--debug"]):
        with pytest.raises(UserError, match="no such file or folder"):
            main(argv)


# -- model arguments -----------------------------------------------------------------------

@pytest.mark.parametrize("model,kwargs,words", [
    ("lenet5", {"activaton": "tanh"}, "lenet5 has no argument 'activaton'; did you mean "
                                      "activation?"),
    ("lenet5", {"activation": 3}, "lenet5 argument activation=3: expected str, got int"),
    ("vgg11", {"small_input": "yes"}, "expected bool, got str"),
    ("mlp", {"hiden": [10]}, "did you mean hidden?"),
    ("resnet20", {"depth": 8}, "resnet20 has no argument 'depth'"),  # the name fixes it
])
def test_model_kwargs_are_checked_against_the_builder(model, kwargs, words, tmp_path, capsys):
    assert main(["train", "--model", model, "--model-kwargs", json.dumps(kwargs),
                 "--out", str(tmp_path / "run")]) == 2
    line = one_error_line(capsys)
    assert "--model-kwargs" in line and words in line, line
    assert not (tmp_path / "run").exists()


def test_small_input_is_one_story_for_every_model(capsys):
    for name in ("resnet20", "lenet5", "mlp"):  # built for <= 32x32 already: a said no-op
        with pytest.warns(ModelWarning, match=f"{name} is built for .* small_input=True "
                                              f"changes nothing"):
            assert check_model_kwargs(name, {"small_input": True}) == {}
    assert check_model_kwargs("resnet20", {"small_input": False}) == {}
    assert check_model_kwargs("vgg11", {"small_input": True}) == {"small_input": True}
    with pytest.warns(ModelWarning):
        cfg = make_config(model="resnet20", model_kwargs={"small_input": True})
    assert cfg.model_kwargs == {}  # config.yaml records what was built
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ModelWarning)
        assert main(["summary", "resnet20", "--small-input"]) == 0
    out = capsys.readouterr().out
    assert main(["summary", "resnet20"]) == 0
    assert capsys.readouterr().out == out  # the same model, 269,722 parameters (paper: 0.27M)
    assert "Total params: 269,722" in out


# -- under --nproc -------------------------------------------------------------------------

def test_nproc_user_error_is_one_line_before_any_process(tmp_path, capsys):
    env = {**os.environ, "CNNLAB_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "cnnlab", "train", "--nproc", "2", "--device",
                        "cpu", "--out", str(tmp_path / "run"), "--model-kwargs",
                        '{"activaton": "tanh"}'], capture_output=True, text=True, env=env,
                       timeout=120)
    lines = [s for s in r.stderr.splitlines() if s.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "did you mean activation" in lines[0] and "launching" not in r.stderr
    for extra in (["--data", str(tmp_path / "nope")], ["--config", str(tmp_path / "no.yaml")],
                  ["--model", "lenet55"]):
        assert main(["train", "--nproc", "2", "--out", str(tmp_path / "run"), *extra]) == 2
        line = one_error_line(capsys)
        assert extra[1] in line and "launching" not in line, line
    assert not (tmp_path / "run").exists()


def test_nproc_error_inside_the_processes_is_printed_once(tmp_path):
    from cnnlab.cli.train import _relay_stderr
    import io
    ranks = ("launching: torch.distributed.run ...\n"
             "cnnlab train: error: /x/bad.tar.gz: not a readable .tar.gz archive (CRC)\n"
             "cnnlab train: error: /x/bad.tar.gz: not a readable .tar.gz archive (CRC)\n"
             "terminate called without an active exception\n"
             "Traceback (most recent call last):\n"
             "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:\n")
    err = io.StringIO()
    real, sys.stderr = sys.stderr, err
    try:
        assert _relay_stderr(io.StringIO(ranks)) is True
    finally:
        sys.stderr = real
    assert err.getvalue().splitlines() == [
        "launching: torch.distributed.run ...",
        "cnnlab train: error: /x/bad.tar.gz: not a readable .tar.gz archive (CRC)"]
