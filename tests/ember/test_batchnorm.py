"""nn.BatchNorm1d against PyTorch (parameters and running statistics after
training steps, eval predictions), float64 finite differences, and native
code against the reference interpreter."""

import numpy as np
import pytest
from native_helpers import central_differences

import ember
from ember import nn, optim

STEPS = 5


def bn_mlp(**bn_args) -> nn.Sequential:
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8, **bn_args), nn.ReLU(), nn.Linear(8, 3))


def batches(count: int = STEPS, rows: int = 16, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(rng.normal(2.0, 3.0, size=(rows, 4)), rng.integers(0, 3, rows)) for _ in range(count)]


def torch_twin(torch, prog: ember.Program, **bn_args):
    """The same MLP in PyTorch (float64), starting from `prog`'s parameters."""
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8, **bn_args), torch.nn.ReLU(), torch.nn.Linear(8, 3)
    ).double()
    with torch.no_grad():
        for name, value in {**prog.parameters, **prog.buffers}.items():
            model.state_dict()[name].copy_(torch.from_numpy(value))
    return model


OPTIMIZERS = {
    "adam": (lambda: optim.Adam(lr=0.01), lambda torch, p: torch.optim.Adam(p, lr=0.01)),
    "sgd": (lambda: optim.SGD(lr=0.1, momentum=0.9), lambda torch, p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
}


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize(
    "bn_args", [{}, {"momentum": None}, {"affine": False}, {"track_running_stats": False}], ids=str
)
def test_training_steps_and_eval_predictions_match_pytorch(optimizer, bn_args):
    torch = pytest.importorskip("torch")
    ours, theirs = OPTIMIZERS[optimizer]
    prog = ember.compile(bn_mlp(**bn_args), loss=nn.CrossEntropyLoss(), optimizer=ours(), dtype="float64")
    model = torch_twin(torch, prog, **bn_args)
    torch_optimizer = theirs(torch, model.parameters())
    for x, y in batches():
        loss = prog.train_step(x, y)
        torch_optimizer.zero_grad()
        torch_loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
        torch_loss.backward()
        torch_optimizer.step()
        np.testing.assert_allclose(loss, torch_loss.item(), rtol=1e-10)
    expected = {k: v.numpy() for k, v in model.state_dict().items()}
    ours_now = {**prog.parameters, **prog.buffers}
    assert sorted(ours_now) == sorted(expected)
    for name, value in ours_now.items():
        np.testing.assert_allclose(value, expected[name], rtol=1e-9, atol=1e-12, err_msg=name)
    model.eval()
    x_test = batches(1, rows=7, seed=9)[0][0]
    with torch.no_grad():
        np.testing.assert_allclose(prog.predict(x_test), model(torch.from_numpy(x_test)).numpy(), rtol=1e-9)


def test_three_dimensional_inputs_match_pytorch():
    torch = pytest.importorskip("torch")
    prog = ember.compile(
        nn.Sequential(nn.BatchNorm1d(3)),
        loss=nn.MSELoss(),
        optimizer=optim.SGD(lr=0.5),
        input_shape=(3, 5),
        dtype="float64",
    )
    model = torch.nn.BatchNorm1d(3).double()
    torch_optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    rng = np.random.default_rng(3)
    for _ in range(3):
        x, y = rng.normal(1.0, 2.0, size=(4, 3, 5)), rng.normal(size=(4, 3, 5))
        prog.train_step(x, y)
        torch_optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        torch_optimizer.step()
    for name, value in {**prog.parameters, **prog.buffers}.items():
        np.testing.assert_allclose(value, model.state_dict()[name.removeprefix("0.")].numpy(), rtol=1e-9)
    model.eval()
    with torch.no_grad():
        np.testing.assert_allclose(prog.predict(x), model(torch.from_numpy(x)).numpy(), rtol=1e-9)


def test_float64_gradients_in_training_mode_match_finite_differences():
    """Training-mode gradients flow through the batch statistics; the loss
    is evaluated by the reference interpreter of a model that always uses
    batch statistics."""
    prog = ember.compile(bn_mlp(), loss=nn.CrossEntropyLoss(), optimizer=optim.SGD(), dtype="float64")
    oracle = ember.compile(
        bn_mlp(track_running_stats=False),
        loss=nn.CrossEntropyLoss(),
        optimizer=optim.SGD(),
        dtype="float64",
        backend="reference",
    )
    x, y = batches(1, rows=6)[0]
    params = prog.parameters
    analytic = prog.gradients(x, y)

    def loss_of(values):
        oracle.set_parameters(values)
        return oracle.evaluate(x, y)["loss"]

    numeric = central_differences(loss_of, params)
    for name, value in numeric.items():
        np.testing.assert_allclose(analytic[name], value, rtol=1e-4, atol=1e-7, err_msg=name)
    assert np.abs(analytic["1.weight"]).max() > 1e-4
    np.testing.assert_array_equal(prog.buffers["1.num_batches_tracked"], 0)


def test_native_matches_the_reference():
    # SGD, not Adam: the gradient of the bias before a BatchNorm is zero up to
    # rounding, and Adam would scale that rounding noise up to full steps.
    progs = [
        ember.compile(bn_mlp(momentum=None), loss=nn.CrossEntropyLoss(), optimizer=optim.SGD(lr=0.1), backend=b)
        for b in ("native", "reference")
    ]
    for x, y in batches():
        losses = [p.train_step(x, y) for p in progs]
        np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
    native, reference = progs
    for name, value in {**native.parameters, **native.buffers}.items():
        expected = {**reference.parameters, **reference.buffers}[name]
        np.testing.assert_allclose(value, expected, rtol=1e-4, atol=1e-5, err_msg=name)
    x = batches(1, rows=5, seed=4)[0][0]
    np.testing.assert_allclose(native.predict(x), reference.predict(x), rtol=1e-4, atol=1e-5)


def test_bad_arguments_and_inputs_are_named():
    with pytest.raises(ember.ConfigError, match="num_features must be a positive integer"):
        nn.BatchNorm1d(0)
    with pytest.raises(ember.ConfigError, match="momentum must be a number in"):
        nn.BatchNorm1d(3, momentum=2.0)
    with pytest.raises(
        ember.ShapeError,
        match=r"BatchNorm1d '1' \(\S+test_batchnorm.py:\d+\): expects input \[N, 5\] .* got \['B', 8\]",
    ):
        ember.compile(nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(5)))


def test_state_and_repr_follow_pytorch():
    bn = nn.BatchNorm1d(4)
    assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]
    assert [n for n, _ in bn.named_buffers()] == ["running_mean", "running_var", "num_batches_tracked"]
    assert bn.num_batches_tracked.data.dtype == np.int64
    assert repr(bn) == "BatchNorm1d(4, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)"
    assert list(nn.BatchNorm1d(4, affine=False, track_running_stats=False).named_parameters()) == []


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_sync_batch_norm_alone_is_batch_norm(backend):
    """Outside a distributed step SyncBatchNorm normalizes by the batch's
    own statistics: the same bits as BatchNorm1d (the distributed case is
    in tests/distributed)."""
    programs = [
        ember.compile(
            nn.Sequential(nn.Linear(4, 8), norm(8, momentum=None), nn.ReLU(), nn.Linear(8, 3)),
            loss=nn.CrossEntropyLoss(),
            optimizer=optim.Adam(lr=0.01),
            dtype="float64",
            backend=backend,
        )
        for norm in (nn.BatchNorm1d, nn.SyncBatchNorm)
    ]
    for x, y in batches():
        assert programs[0].train_step(x, y) == programs[1].train_step(x, y)
    for name, value in programs[0].state_dict().items():
        np.testing.assert_array_equal(programs[1].state_dict()[name], value, err_msg=name)


def test_convert_sync_batchnorm_keeps_parameters_buffers_and_mode():
    model = nn.Sequential(nn.Linear(4, 8), nn.Sequential(nn.BatchNorm1d(8, eps=1e-3, affine=False)), nn.BatchNorm1d(8))
    model[2].eval()
    norms = [model[1][0], model[2]]
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert converted is model
    synced = [model[1][0], model[2]]
    assert [type(m) for m in synced] == [nn.SyncBatchNorm, nn.SyncBatchNorm]
    for old, new in zip(norms, synced, strict=True):
        assert (new.eps, new.affine, new.training) == (old.eps, old.affine, old.training)
        assert [(n, id(p)) for n, p in new.named_parameters()] == [(n, id(p)) for n, p in old.named_parameters()]
        assert [(n, id(b)) for n, b in new.named_buffers()] == [(n, id(b)) for n, b in old.named_buffers()]
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    single = nn.SyncBatchNorm.convert_sync_batchnorm(nn.BatchNorm1d(3))
    assert type(single) is nn.SyncBatchNorm
    assert repr(single) == "SyncBatchNorm(3, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)"
    with pytest.raises(ember.ConfigError, match="process_group must be None"):
        nn.SyncBatchNorm(3, process_group="group")
    with pytest.raises(ember.ConfigError, match="process_group must be None"):
        nn.SyncBatchNorm.convert_sync_batchnorm(model, process_group="group")
