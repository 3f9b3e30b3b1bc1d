"""cnnlab.optim against torch.optim as the oracle, step by step."""

import subprocess
import sys

import pytest
import torch

from cnnlab import optim

CASES = [
    ("sgd", dict(lr=0.1), dict(lr=0.1)),
    ("sgd", dict(lr=0.1, momentum=0.9), dict(lr=0.1, momentum=0.9)),
    ("sgd", dict(lr=0.05, momentum=0.9, nesterov=True), dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("adam", dict(lr=1e-2), dict(lr=1e-2)),
    ("adam", dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6), dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6)),
    ("adamw", dict(lr=1e-2), dict(lr=1e-2)),
]
OURS = {"sgd": optim.SGD, "adam": optim.Adam, "adamw": optim.AdamW}
THEIRS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(6, 1, 5, 5, generator=g, dtype=torch.float64, requires_grad=True),
            torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True),
            torch.randn(10, 84, generator=g, dtype=torch.float64, requires_grad=True)]


def _groups(params, wd):
    # the trainer's layout: decayed weights, undecayed biases
    return [{"params": [params[0], params[2]], "weight_decay": wd},
            {"params": [params[1]], "weight_decay": 0.0}]


def _run(opt, params, steps, seed=1, lr_scale=None):
    g = torch.Generator().manual_seed(seed)
    for t in range(steps):
        if lr_scale is not None:  # the trainer sets each group's lr every step
            for grp in opt.param_groups:
                grp["lr"] = lr_scale(t)
        for p in params:
            p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype)
        if t == 3:  # a parameter without a gradient this step is left alone
            params[1].grad = None
        opt.step()
        opt.zero_grad()


@pytest.mark.parametrize("name,ours_kw,theirs_kw", CASES)
@pytest.mark.parametrize("wd", [0.0, 5e-2])
def test_matches_torch_optim(name, ours_kw, theirs_kw, wd):
    a, b = _params(), _params()
    ours = OURS[name](_groups(a, wd), **ours_kw)
    theirs = THEIRS[name](_groups(b, wd), **theirs_kw)
    sched = lambda t: ours_kw["lr"] * (1 + t) / 8  # noqa: E731  (a changing lr, as one-cycle)
    _run(ours, a, 8, lr_scale=sched)
    _run(theirs, b, 8, lr_scale=sched)
    for p, q in zip(a, b):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name,kw", [("sgd", dict(lr=0.1, momentum=0.9, nesterov=True)),
                                     ("adamw", dict(lr=1e-2, weight_decay=0.1))])
def test_state_dict_round_trip_resumes_exactly(name, kw):
    full = _params()
    opt = OURS[name](full, **kw)
    _run(opt, full, 10)

    half = _params()
    opt1 = OURS[name](half, **kw)
    _run(opt1, half, 5)
    saved = opt1.state_dict()
    resumed = [p.detach().clone().requires_grad_() for p in half]
    opt2 = OURS[name](resumed, **kw)
    opt2.load_state_dict(saved)
    g = torch.Generator().manual_seed(1)  # the same gradient stream, steps 5..9
    for t in range(10):
        grads = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in resumed]
        if t < 5:
            continue
        for p, gr in zip(resumed, grads):
            p.grad = gr
        if t == 3:
            resumed[1].grad = None
        opt2.step()
        opt2.zero_grad()
    for p, q in zip(full, resumed):
        assert torch.equal(p, q)


def test_state_dict_layout_matches_torch():
    a, b = _params(), _params()
    ours = optim.SGD(_groups(a, 1e-4), lr=0.1, momentum=0.9)
    theirs = torch.optim.SGD(_groups(b, 1e-4), lr=0.1, momentum=0.9)
    _run(ours, a, 2)
    _run(theirs, b, 2)
    sa, sb = ours.state_dict(), theirs.state_dict()
    assert sorted(sa["state"]) == sorted(sb["state"])
    for i in sa["state"]:
        torch.testing.assert_close(sa["state"][i]["momentum_buffer"],
                                   sb["state"][i]["momentum_buffer"])
    assert [g["params"] for g in sa["param_groups"]] == [g["params"] for g in sb["param_groups"]]
    # and torch's own state loads into ours
    c = [p.detach().clone().requires_grad_() for p in b]
    mine = optim.SGD(_groups(c, 1e-4), lr=0.1, momentum=0.9)
    mine.load_state_dict(sb)
    assert torch.equal(mine.state[c[0]]["momentum_buffer"], sb["state"][0]["momentum_buffer"])


def test_bad_arguments_are_named():
    p = _params()
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam(p, betas=(0.9, 1.5))
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="more than one"):
        optim.SGD([{"params": p}, {"params": p[:1]}], lr=0.1)
    with pytest.raises(ValueError, match="parameter groups"):
        optim.SGD(p, lr=0.1).load_state_dict(optim.SGD(_groups(_params(), 0.0), lr=0.1).state_dict())


def test_training_does_not_import_dynamo():
    # the reason cnnlab.optim exists: torch.optim imports torch._dynamo (~1.3 s) on first use
    code = ("import sys, torch; from cnnlab import optim; p = torch.zeros(3, requires_grad=True);"
            "o = optim.AdamW([p], lr=0.1); p.grad = torch.ones(3); o.step(); o.zero_grad();"
            "o = optim.SGD([p], lr=0.1, momentum=0.9); p.grad = torch.ones(3); o.step();"
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
