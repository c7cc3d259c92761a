"""Ahead-of-time export to C (runtime/export.py, compiler/aot.py): an
exported object linked by the system's C compiler reproduces predict and
train_step exactly, needs nothing beyond libc and libm, and its functions
reject bad arguments with their documented codes."""

import ctypes
import ctypes.util
import shutil
import subprocess
import textwrap

import numpy as np
import pytest

import ember
import ember.nn as nn
from ember.ir import ConfigError

CC = shutil.which("cc") or shutil.which("gcc")
needs_cc = pytest.mark.skipif(CC is None, reason="needs a C compiler (cc) to link the exported object")


def classifier(optimizer=None, dropout=False, norm=nn.BatchNorm1d) -> ember.Program:
    layers = [nn.Linear(6, 16), norm(16), nn.ReLU()]
    layers += [nn.Dropout(0.25)] if dropout else []
    model = nn.Sequential(*layers, nn.Linear(16, 4))
    return ember.compile(
        model, loss=nn.CrossEntropyLoss(), optimizer=optimizer or ember.optim.Adam(lr=1e-2), batch_size=8, seed=3
    )


def data(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((rows, 6)).astype(np.float32), rng.integers(0, 4, rows).astype(np.int64)


def build(tmp_path, source: str, name: str = "model") -> list[str]:
    """Compile `source` (C) against the export in `tmp_path`; the command that runs it."""
    (tmp_path / "main.c").write_text(textwrap.dedent(source))
    program = tmp_path / "main"
    subprocess.run([CC, "-O1", "-o", str(program), "main.c", f"{name}.o", "-lm"], cwd=tmp_path, check=True)
    return [str(program)]


PREDICT_C = """
    #include <stdio.h>
    #include "model.h"
    int main(int argc, char **argv) {
        static float x[1000 * MODEL_INPUT_SIZE], y[1000 * MODEL_OUTPUT_SIZE];
        FILE *f = fopen(argv[1], "rb");
        if (fread(x, sizeof x, 1, f) != 1) return 10;
        fclose(f);
        int status = model_predict(x, y, 1000);
        f = fopen(argv[2], "wb");
        fwrite(y, sizeof y, 1, f);
        fclose(f);
        return status;
    }
"""


@needs_cc
def test_an_exported_predict_reproduces_the_program(tmp_path):
    prog = classifier()
    x, y = data(64)
    for _ in range(5):  # trained weights, and running statistics in the buffers
        prog.train_step(x, y)
    files = prog.export(tmp_path)
    assert sorted(p.name for p in files) == ["model.h", "model.o"]
    inputs, _ = data(1000, seed=1)
    inputs.tofile(tmp_path / "x.bin")
    subprocess.run([*build(tmp_path, PREDICT_C), "x.bin", "y.bin"], cwd=tmp_path, check=True)
    got = np.fromfile(tmp_path / "y.bin", np.float32).reshape(1000, 4)
    np.testing.assert_allclose(got, prog.predict(inputs), rtol=2e-6, atol=1e-6)


@needs_cc
def test_the_object_needs_only_libc_and_libm(tmp_path):
    classifier().export(tmp_path, train=True)
    listed = subprocess.run(["nm", "-u", str(tmp_path / "model.o")], capture_output=True, text=True, check=True)
    undefined = [line.split()[-1] for line in listed.stdout.splitlines() if line.strip()]
    libraries = [ctypes.CDLL(ctypes.util.find_library(lib)) for lib in ("c", "m")]
    assert undefined, "the object uses at least memcpy"
    for symbol in undefined:
        assert "alloc" not in symbol
        assert any(hasattr(lib, symbol) for lib in libraries), symbol
    defined = subprocess.run(["nm", "-g", "--defined-only", str(tmp_path / "model.o")], capture_output=True, text=True)
    exported = {line.split()[-1] for line in defined.stdout.splitlines()}
    assert exported == {
        f"model_{f}"
        for f in (
            "predict",
            "context_size",
            "init",
            "train_step",
            "context_predict",
            "read_parameters",
            "write_parameters",
        )
    }


TRAIN_C = """
    #include <stdio.h>
    #include "model.h"
    #define ROWS 64
    #define BATCH 8
    int main(int argc, char **argv) {
        static _Alignas(64) unsigned char ctx[MODEL_CONTEXT_SIZE];
        static float x[ROWS * MODEL_INPUT_SIZE], params[MODEL_PARAMETERS_SIZE], losses[100];
        static int64_t y[ROWS];
        FILE *f = fopen(argv[1], "rb");
        if (fread(x, sizeof x, 1, f) != 1 || fread(y, sizeof y, 1, f) != 1) return 10;
        fclose(f);
        if (model_context_size() != sizeof ctx || model_init(ctx) != MODEL_OK) return 11;
        for (int step = 0; step < 100; step++) {
            int first = (step * BATCH) % ROWS;
            float lr = step < 50 ? 0.01f : 0.005f;
            int status = model_train_step(ctx, x + first * MODEL_INPUT_SIZE, y + first, BATCH, lr, &losses[step]);
            if (status != MODEL_OK) return 20 + status;
        }
        if (model_read_parameters(ctx, params) != MODEL_OK) return 12;
        f = fopen(argv[2], "wb");
        fwrite(params, sizeof params, 1, f);
        fwrite(losses, sizeof losses, 1, f);
        fclose(f);
        return 0;
    }
"""


@needs_cc
@pytest.mark.parametrize(
    ("optimizer", "dropout", "norm"),
    [
        (ember.optim.Adam(lr=1e-2), True, nn.BatchNorm1d),
        (ember.optim.SGD(lr=0.1, momentum=0.9, weight_decay=1e-3), False, nn.BatchNorm1d),
        (ember.optim.SGD(lr=0.1), False, nn.SyncBatchNorm),  # a job of one: the batch's own statistics
    ],
    ids=["adam-dropout", "sgd-momentum", "sgd-syncbatchnorm"],
)
def test_a_c_training_loop_matches_train_step_exactly(tmp_path, optimizer, dropout, norm):
    prog = classifier(optimizer, dropout, norm)
    x, y = data(64)
    prog.train_step(x[:8], y[:8])  # exported mid-training: state and step counts carry over
    prog.export(tmp_path, train=True)
    with open(tmp_path / "data.bin", "wb") as f:
        f.write(x.tobytes() + y.tobytes())
    subprocess.run([*build(tmp_path, TRAIN_C), "data.bin", "out.bin"], cwd=tmp_path, check=True)
    losses = []
    for step in range(100):
        prog.lr = 0.01 if step < 50 else 0.005
        first = (step * 8) % 64
        losses.append(prog.train_step(x[first : first + 8], y[first : first + 8]))
    out = np.fromfile(tmp_path / "out.bin", np.float32)
    expected = np.concatenate([v.ravel() for v in (prog.parameters | prog.buffers).values()])
    np.testing.assert_array_equal(out[: expected.size], expected)
    np.testing.assert_array_equal(out[expected.size :], np.float32(losses))


THREADS_C = """
    #include <stdio.h>
    #include "wide.h"
    int main(int argc, char **argv) {
        static _Alignas(64) unsigned char ctx[WIDE_CONTEXT_SIZE];
        static float x[64 * WIDE_INPUT_SIZE], y[64 * WIDE_OUTPUT_SIZE], params[WIDE_PARAMETERS_SIZE];
        static int64_t labels[64];
        FILE *f = fopen(argv[1], "rb");
        if (fread(x, sizeof x, 1, f) != 1 || fread(labels, sizeof labels, 1, f) != 1) return 10;
        fclose(f);
        if (wide_set_threads(0) != WIDE_ERROR_THREADS || wide_set_threads(WIDE_MAX_THREADS) != WIDE_OK) return 11;
        wide_init(ctx);
        for (int step = 0; step < 20; step++)
            if (wide_train_step(ctx, x, labels, 64, 0.01f, NULL) != WIDE_OK) return 12;
        wide_read_parameters(ctx, params);
        wide_context_predict(ctx, x, y, 64);
        wide_stop_threads();
        f = fopen(argv[2], "wb");
        fwrite(params, sizeof params, 1, f);
        fwrite(y, sizeof y, 1, f);
        fclose(f);
        return 0;
    }
"""


@needs_cc
def test_threads_run_the_same_steps(tmp_path):
    """Kernels large enough to split over the pool's two threads give the
    same bits as Python's steps (the JIT's results do not depend on threads)."""
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
    prog = ember.compile(model, loss=nn.CrossEntropyLoss(), optimizer=ember.optim.Adam(lr=1e-2), seed=1)
    files = prog.export(tmp_path, "wide", train=True, threads=2)
    assert "#define WIDE_MAX_THREADS 2" in files[0].read_text()
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 64)).astype(np.float32), rng.integers(0, 10, 64)
    (tmp_path / "data.bin").write_bytes(x.tobytes() + y.astype(np.int64).tobytes())
    (tmp_path / "main.c").write_text(textwrap.dedent(THREADS_C))
    command = [CC, "-O1", "-o", "main", "main.c", "wide.o", "-lm", "-lpthread"]
    subprocess.run(command, cwd=tmp_path, check=True)
    subprocess.run(["./main", "data.bin", "out.bin"], cwd=tmp_path, check=True, timeout=60)
    for _ in range(20):
        prog.train_step(x, y)
    out = np.fromfile(tmp_path / "out.bin", np.float32)
    expected = np.concatenate([v.ravel() for v in prog.parameters.values()])
    np.testing.assert_array_equal(out[: expected.size], expected)
    np.testing.assert_array_equal(out[expected.size :].reshape(64, 10), prog.predict(x))


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """The training export of a small classifier, linked as a shared library."""
    if CC is None:
        pytest.skip("needs a C compiler (cc) to link the exported object")
    directory = tmp_path_factory.mktemp("shared")
    prog = classifier()
    files = prog.export(directory, "net", train=True, max_batch=16, shared=True)
    assert sorted(p.name for p in files) == ["libnet.so", "net.h", "net.o"]
    lib = ctypes.CDLL(str(directory / "libnet.so"))
    pointer, size = ctypes.c_void_p, ctypes.c_size_t
    signatures = {
        "predict": [pointer, pointer, size],
        "context_predict": [pointer, pointer, pointer, size],
        "train_step": [pointer, pointer, pointer, size, ctypes.c_float, pointer],
        "init": [pointer],
        "read_parameters": [pointer, pointer],
        "write_parameters": [pointer, pointer],
    }
    for name, arguments in signatures.items():
        getattr(lib, f"net_{name}").argtypes = arguments  # else ctypes passes addresses as 32-bit ints
    lib.net_context_size.restype = size
    return lib, prog, (directory / "net.h").read_text()


def context(lib, name: str = "net") -> tuple[np.ndarray, int]:
    """An initialized, aligned context of export `name` and its address."""
    size = getattr(lib, f"{name}_context_size")()
    memory = np.zeros(size + 64, np.uint8)
    start = -memory.ctypes.data % 64
    ctx = memory[start : start + size]
    assert getattr(lib, f"{name}_init")(ctx.ctypes.data) == 0
    return ctx, ctx.ctypes.data


def test_the_header_declares_what_the_library_defines(library):
    lib, _prog, header = library
    for declaration in (
        "int net_predict(const float *x, float *y, size_t n);",
        "int net_train_step(void *ctx, const float *x, const int64_t *targets, size_t n, float lr, float *loss);",
        "#define NET_MAX_BATCH 16",
        "#define NET_CLASSES 4",
        f"#define NET_CONTEXT_SIZE {lib.net_context_size()}",
    ):
        assert declaration in header
    assert "0.weight" in header
    assert "1.running_mean" in header


def test_bad_arguments_get_their_codes_and_change_nothing(library):
    lib, _prog, _header = library
    x, y = data(32)
    ctx, address = context(lib)
    before = ctx.copy()
    loss = ctypes.c_float()
    step = lib.net_train_step
    assert step(None, x.ctypes.data, y.ctypes.data, 8, 0.1, None) == 3  # no context
    assert step(address + 4, x.ctypes.data, y.ctypes.data, 8, 0.1, None) == 3  # misaligned
    assert step(address, None, y.ctypes.data, 8, 0.1, None) == 1
    assert step(address, x.ctypes.data, y.ctypes.data, 0, 0.1, None) == 2
    assert step(address, x.ctypes.data, y.ctypes.data, 17, 0.1, None) == 2  # more than NET_MAX_BATCH
    bad = y.copy()
    bad[5] = 4
    assert step(address, x.ctypes.data, bad.ctypes.data, 8, 0.1, None) == 4
    bad[5] = -1
    assert step(address, x.ctypes.data, bad.ctypes.data, 8, 0.1, None) == 4
    assert step(address, x.ctypes.data, y.ctypes.data, 8, float("nan"), None) == 5
    assert step(address, x.ctypes.data, y.ctypes.data, 8, -0.1, None) == 5
    np.testing.assert_array_equal(ctx, before)
    uninitialized = np.zeros(lib.net_context_size() + 64, np.uint8)
    aligned = uninitialized.ctypes.data + (-uninitialized.ctypes.data % 64)
    assert step(aligned, x.ctypes.data, y.ctypes.data, 8, 0.1, None) == 3
    assert lib.net_predict(None, None, 0) == 0  # no rows: nothing to read
    assert lib.net_predict(x.ctypes.data, None, 3) == 1
    assert step(address, x.ctypes.data, y.ctypes.data, 8, 0.1, ctypes.byref(loss)) == 0
    assert np.isfinite(loss.value)


@needs_cc
def test_embedding_indices_are_checked(tmp_path):
    model = nn.Sequential(nn.Embedding(20, 4), nn.Flatten(), nn.Linear(12, 3))
    prog = ember.compile(model, example_inputs=[((1, 3), "int64")])
    prog.export(tmp_path, "emb", shared=True)
    header = (tmp_path / "emb.h").read_text()
    assert "int emb_predict(const int64_t *x, float *y, size_t n);" in header
    assert "[0, 20) of the embedding table" in header
    lib = ctypes.CDLL(str(tmp_path / "libemb.so"))
    lib.emb_predict.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    indices = np.random.default_rng(0).integers(0, 20, (7, 3))
    y = np.empty((7, 3), np.float32)
    assert lib.emb_predict(indices.ctypes.data, y.ctypes.data, 7) == 0
    np.testing.assert_allclose(y, prog.predict(indices), rtol=2e-6, atol=1e-6)
    indices[6, 2] = 20
    assert lib.emb_predict(indices.ctypes.data, y.ctypes.data, 7) == 7


@needs_cc
def test_a_float64_regression_trains_in_c_as_in_python(tmp_path):
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 1))
    prog = ember.compile(model, loss=nn.MSELoss(), optimizer=ember.optim.SGD(lr=0.05), dtype="float64")
    prog.export(tmp_path, "reg", train=True, shared=True)
    header = (tmp_path / "reg.h").read_text()
    assert (
        "int reg_train_step(void *ctx, const double *x, const double *targets, size_t n, double lr, double *loss);"
        in header
    )
    lib = ctypes.CDLL(str(tmp_path / "libreg.so"))
    pointer = ctypes.c_void_p
    lib.reg_train_step.argtypes = [pointer] * 3 + [ctypes.c_size_t, ctypes.c_double, pointer]
    lib.reg_init.argtypes = [pointer]
    lib.reg_read_parameters.argtypes = [pointer, pointer]
    lib.reg_context_size.restype = ctypes.c_size_t
    memory, address = context(lib, "reg")  # kept: the address points into it
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((16, 5)), rng.standard_normal((16, 1))
    loss = ctypes.c_double()
    for _ in range(10):
        assert lib.reg_train_step(address, x.ctypes.data, y.ctypes.data, 16, 0.05, ctypes.byref(loss)) == 0
        assert loss.value == prog.train_step(x, y)
    values = np.empty(sum(v.size for v in prog.parameters.values()))
    assert lib.reg_read_parameters(address, values.ctypes.data) == 0
    np.testing.assert_array_equal(values, np.concatenate([v.ravel() for v in prog.parameters.values()]))
    assert memory.any()


def test_ignored_labels_pass_the_check(tmp_path):
    model = nn.Sequential(nn.Linear(6, 4))
    prog = ember.compile(model, loss=nn.CrossEntropyLoss(ignore_index=-1), optimizer=ember.optim.SGD(lr=0.1))
    prog.export(tmp_path, train=True)
    assert "#define MODEL_IGNORE_INDEX -1" in (tmp_path / "model.h").read_text()


def test_context_predict_follows_training_and_chunks_rows(library):
    lib, prog, _ = library
    x, y = data(50)
    _ctx, address = context(lib)
    baked = np.empty((50, 4), np.float32)
    assert lib.net_predict(x.ctypes.data, baked.ctypes.data, 50) == 0  # 16 rows a call, 4 calls
    np.testing.assert_allclose(baked, prog.predict(x), rtol=2e-6, atol=1e-6)
    for first in (0, 16, 32):
        assert lib.net_train_step(address, x[first:].ctypes.data, y[first:].ctypes.data, 16, 0.05, None) == 0
    trained = np.empty((50, 4), np.float32)
    assert lib.net_context_predict(address, x.ctypes.data, trained.ctypes.data, 50) == 0
    assert not np.allclose(trained, baked)
    values = np.empty(sum(v.size for v in (prog.parameters | prog.buffers).values()), np.float32)
    assert lib.net_read_parameters(address, values.ctypes.data) == 0
    assert lib.net_init(address) == 0  # back to the exported weights
    assert lib.net_write_parameters(address, values.ctypes.data) == 0  # and to the trained ones
    again = np.empty((50, 4), np.float32)
    assert lib.net_context_predict(address, x.ctypes.data, again.ctypes.data, 50) == 0
    np.testing.assert_array_equal(again, trained)


@needs_cc
def test_external_weights_are_read_from_the_callers_memory(tmp_path):
    prog = classifier()
    files = prog.export(tmp_path, "ext", weights="external", shared=True)
    assert {p.name for p in files} == {"ext.h", "ext.o", "ext.weights", "libext.so"}
    assert (
        "int ext_predict(const float *weights, const float *x, float *y, size_t n);" in (tmp_path / "ext.h").read_text()
    )
    lib = ctypes.CDLL(str(tmp_path / "libext.so"))
    lib.ext_predict.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_size_t]
    weights = np.fromfile(tmp_path / "ext.weights", np.float32)
    x, _ = data(20)
    y = np.empty((20, 4), np.float32)
    assert lib.ext_predict(weights.ctypes.data, x.ctypes.data, y.ctypes.data, 20) == 0
    np.testing.assert_allclose(y, prog.predict(x), rtol=2e-6, atol=1e-6)
    assert lib.ext_predict(None, x.ctypes.data, y.ctypes.data, 20) == 1


@needs_cc
def test_an_export_for_another_cpu_is_built_for_it(tmp_path):
    """x86-64-v2 (SSE4.2, 128-bit vectors) code runs on any x86-64 host of
    the last decade: it is built for those vectors and computes the same."""
    prog = classifier()
    prog.export(tmp_path, cpu="x86-64-v2", shared=True)
    assert "CPU x86-64-v2 (128-bit vectors)" in (tmp_path / "model.h").read_text()
    lib = ctypes.CDLL(str(tmp_path / "libmodel.so"))
    lib.model_predict.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    x, _ = data(37)
    y = np.empty((37, 4), np.float32)
    assert lib.model_predict(x.ctypes.data, y.ctypes.data, 37) == 0
    np.testing.assert_allclose(y, prog.predict(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="does not know the CPU 'pentium-9000'"):
        prog.export(tmp_path, "other", cpu="pentium-9000")
    assert not (tmp_path / "other.h").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"name": "9lives"}, "C identifier"),
        ({"name": "int"}, "C identifier"),
        ({"max_batch": 0}, "max_batch must be a positive integer"),
        ({"weights": "inline"}, "weights must be one of baked, external"),
        ({"threads": 0}, "threads must be a positive integer"),
        ({"max_batch": 10**8}, "GiB of workspace"),
        ({"weights": "external", "train": True}, "keeps its parameters in the context"),
    ],
)
def test_bad_options_are_refused_before_anything_is_written(tmp_path, options, message):
    with pytest.raises(ConfigError, match=message):
        classifier().export(tmp_path / "out", **options)
    assert not (tmp_path / "out").exists()


def test_models_of_several_inputs_are_refused_clearly(tmp_path):
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 2), nn.Linear(4, 2)

        def forward(self, x0, x1):
            return self.a(x0) + self.b(x1)

    prog = ember.compile(Two(), example_inputs=[((1, 3), "float32"), ((1, 4), "float32")])
    with pytest.raises(ConfigError, match="one input; this one has 2"):
        prog.export(tmp_path)


def test_an_inference_program_cannot_export_a_training_step(tmp_path):
    prog = ember.compile(nn.Sequential(nn.Linear(3, 2)))
    with pytest.raises(ConfigError):
        prog.export(tmp_path, train=True)
