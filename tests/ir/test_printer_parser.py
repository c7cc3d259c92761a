"""The IR text format: what the printer writes, what the parser reads back,
and print(parse(print(g))) == print(g) for random valid graphs."""

from __future__ import annotations

import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ember.ir import (
    OPS,
    ROLES,
    Builder,
    DType,
    EmberError,
    Graph,
    ParseError,
    TensorType,
    Value,
    parse,
    parse_file,
    print_graph,
    verify,
)

f32 = DType.float32

EXAMPLE = """\
graph predict {
  input %x: f32[B,4]
  param %0.weight: f32[3,4]
  param %0.bias: f32[3]
  state %step: f32[]
  %0: f32[B,3] = matmul %x, %0.weight {transpose_b=true}
  %1: f32[B,3] = add %0, %0.bias
  %2: f32[] = constant {value=1.0, dtype=f32}
  %3: f32[] = add %step, %2
  output out = %1
  update %step = %3
}
"""


def example_graph() -> Graph:
    graph = Graph("predict")
    x = graph.add_argument("x", TensorType(f32, ("B", 4)))
    w = graph.add_argument("0.weight", TensorType(f32, (3, 4)), "param")
    b = graph.add_argument("0.bias", TensorType(f32, (3,)), "param")
    step = graph.add_argument("step", TensorType(f32, ()), "state")
    build = Builder(graph)
    graph.outputs["out"] = build.add(build.matmul(x, w, transpose_b=True), b)
    graph.updates["step"] = build.add(step, 1.0)
    return graph


# -- printer ---------------------------------------------------------------
def test_printer_writes_the_documented_format():
    assert print_graph(example_graph()) == EXAMPLE
    assert str(example_graph()) == EXAMPLE


def test_printer_leaves_out_default_attributes():
    graph = Graph("g")
    x = graph.add_argument("x", TensorType(f32, (2, 2)))
    build = Builder(graph)
    graph.outputs["a"] = build.matmul(x, x, transpose_a=False, transpose_b=False)
    graph.outputs["b"] = build.leaky_relu(x, alpha=0.01)
    graph.outputs["c"] = build.leaky_relu(x, alpha=0.2)
    lines = print_graph(graph).splitlines()
    assert lines[2:5] == [
        "  %0: f32[2,2] = matmul %x, %x",
        "  %1: f32[2,2] = leaky_relu %x",
        "  %2: f32[2,2] = leaky_relu %x {alpha=0.2}",
    ]


# -- parser ------------------------------------------------------------------
def test_parse_reads_the_documented_format():
    graph = parse(EXAMPLE)
    assert [a.name for a in graph.arguments] == ["x", "0.weight", "0.bias", "step"]
    assert [a.role for a in graph.arguments] == ["input", "param", "param", "state"]
    assert [n.op.name for n in graph.nodes] == ["matmul", "add", "constant", "add"]
    assert graph.nodes[0].attrs == {"transpose_a": False, "transpose_b": True}
    assert graph.nodes[0].inputs == (graph.argument("x"), graph.argument("0.weight"))
    assert graph.outputs == {"out": graph.nodes[1].output}
    assert graph.updates == {"step": graph.nodes[3].output}
    verify(graph)


@pytest.mark.parametrize(
    "value",
    [1e-08, 0.1, -0.0, 0.0, 1.0, math.inf, -math.inf, math.nan, 0.09999999999999998, 1e300, 5e-324, -2.5e-07, 1e16],
    ids=repr,
)
def test_float_attribute_values_round_trip_exactly(value):
    text = EXAMPLE.replace("{value=1.0, dtype=f32}", f"{{value={value!r}, dtype=f32}}")
    assert print_graph(parse(text)) == text
    parsed = parse(text).nodes[2].attrs["value"]
    assert type(parsed) is float
    if math.isnan(value):
        assert math.isnan(parsed)
    else:
        assert parsed == value
        assert math.copysign(1, parsed) == math.copysign(1, value)


@pytest.mark.parametrize(("written", "value"), [("1", 1), ("-3", -3), ("1.0", 1.0), ("true", True), ("false", False)])
def test_scalar_attributes_keep_their_python_type(written, value):
    text = EXAMPLE.replace("value=1.0", f"value={written}")
    parsed = parse(text).nodes[2].attrs["value"]
    assert parsed == value
    assert type(parsed) is type(value)
    assert print_graph(parse(text)) == text


@pytest.mark.parametrize(
    ("written", "value"),
    [("1e5", 1e5), ("+.5", 0.5), ("2.", 2.0), ("-1E-3", -1e-3), ("inf", math.inf), ("+inf", math.inf)],
)
def test_hand_written_number_forms(written, value):
    graph = parse(f"graph g {{\n  input %x: f32[2]\n  %0: f32[2] = leaky_relu %x {{alpha={written}}}\n}}\n")
    assert graph.nodes[0].attrs["alpha"] == value


def test_names_with_dots_and_leading_digits():
    text = """\
graph model {
  input %x: f32[2]
  param %0.weight: f32[2]
  param %layer.1.w_2: f32[2]
  %0: f32[2] = mul %x, %0.weight
  %1: f32[2] = add %0, %layer.1.w_2
  output 0.weight.grad = %0
  output layer.1.out = %1
  output inf = %1
}
"""
    graph = parse(text)
    assert [a.name for a in graph.params] == ["0.weight", "layer.1.w_2"]
    assert list(graph.outputs) == ["0.weight.grad", "layer.1.out", "inf"]
    assert print_graph(graph) == text


def test_symbolic_dims_and_scalars():
    text = """\
graph g {
  input %x: f32[B,N,3]
  input %s: f64[]
  %0: f32[B,N] = sum %x {axes=[2]}
  %1: f32[N,B] = reshape %0 {shape=[N,B]}
  %2: f32[1,N,B] = broadcast_to %1 {shape=[1,N,B]}
  output out = %2
  output s = %s
}
"""
    graph = parse(text)
    assert graph.argument("x").type == TensorType(f32, ("B", "N", 3))
    assert graph.argument("s").type == TensorType(DType.float64, ())
    assert graph.nodes[1].attrs["shape"] == ("N", "B")
    assert print_graph(graph) == text


def test_comments_blank_lines_and_spacing_are_ignored():
    noisy = """
# a comment before the graph

graph predict {   # trailing comment
  input %x : f32[ B , 4 ]
  param %0.weight: f32[3,4]
      # an indented comment
  param %0.bias: f32[3]

  state %step: f32[]
  %0: f32[B,3] = matmul %x,%0.weight {transpose_b = true}  # comment after attributes
  %1: f32[B,3] = add %0, %0.bias
  %2: f32[] = constant {value=1.0,dtype=f32}
  %3: f32[] = add %step, %2
  output out = %1

  update %step = %3
}
# a comment after the graph
"""
    assert print_graph(parse(noisy)) == EXAMPLE


def test_node_results_may_have_any_name_and_print_numbered():
    text = "graph g {\n  input %x: f32[2]\n  %h: f32[2] = relu %x\n  %y: f32[2] = neg %h\n  output out = %y\n}\n"
    assert print_graph(parse(text)) == text.replace("%h", "%0").replace("%y", "%1")


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n   \n"])
def test_empty_text_is_an_error(text):
    with pytest.raises(ParseError, match=r"^1:1: expected 'graph NAME \{', got an empty text"):
        parse(text)


def test_parse_file_names_the_file(tmp_path):
    path = tmp_path / "bad.ir"
    path.write_text("graph g {\n  input %x: f16[4]\n}\n")
    with pytest.raises(ParseError) as info:
        parse_file(path)
    assert str(info.value).startswith(f"{path}:2:13: unknown dtype 'f16'")
    assert (info.value.line, info.value.column) == (2, 13)
    path.write_text(EXAMPLE)
    assert print_graph(parse_file(path)) == EXAMPLE


def test_parse_file_reports_bytes_that_are_not_utf8(tmp_path):
    path = tmp_path / "latin1.ir"
    path.write_bytes("graph g {\n  input %x: f32[4] # caf\u00e9 \u00e9t\u00e9\n}\n".encode("latin-1"))
    with pytest.raises(ParseError) as info:
        parse_file(path)
    assert str(info.value) == f"{path}:2:25: not UTF-8 text: byte 0xe9"


def test_parse_file_reports_a_missing_file(tmp_path):
    with pytest.raises(ParseError, match="cannot read"):
        parse_file(tmp_path / "missing.ir")


# -- pathological text ------------------------------------------------------------
def graph_text(*lines: str, arguments: str = "  input %x: f32[B,4]") -> str:
    return "\n".join(["graph g {", arguments, *lines, "}"]) + "\n"


def parse_error(text: str) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse(text)
    return info.value


def test_deeply_nested_attribute_list():
    # It once recursed once per bracket and ran out of stack.
    line = "  %0: f32[B] = sum %x {axes=" + "[" * 1500 + "1" + "]" * 1500 + "}"
    error = parse_error(graph_text(line, "  output out = %0"))
    assert (error.line, error.column) == (3, line.index("[[") + 2)
    assert "attribute lists hold numbers and words, not lists" in str(error)


@pytest.mark.parametrize(
    "line",
    [
        "  %0: f32[B] = sum %x {axes=[" + "9" * 5000 + "]}",
        "  %0: f32[] = constant {value=" + "9" * 5000 + ", dtype=f32}",
        "  %0: f32[" + "9" * 5000 + "] = relu %x",
    ],
    ids=["axis", "constant", "dimension"],
)
def test_integers_too_long_for_int(line):
    # Python's int() raises ValueError beyond 4300 digits; none beyond 309 digits (2**1024) can be used.
    error = parse_error(graph_text(line))
    assert error.line == 3
    assert "integer with more than 309 digits" in str(error)


def test_a_long_run_of_digits_is_rejected_in_linear_time():
    # The number pattern once matched digits in two ways: 20 000 digits then a letter took 20 s.
    text = graph_text("  %0: f32[B] = sum %x {axes=" + "1" * 20_000 + "x}")
    start = time.perf_counter()
    error = parse_error(text)
    assert time.perf_counter() - start < 1.0
    assert "attribute axes must be a list of integers, got '1111" in str(error)


@pytest.mark.parametrize(
    ("line", "character"),
    [
        ("  %0: f32[\u0663] = relu %x", "\u0663"),  # ARABIC-INDIC DIGIT THREE
        ("  %0: f32[B] = sum %x {axes=[\uff11]}", "\uff11"),  # FULLWIDTH DIGIT ONE
        ("  %0: f32[B,4] =\u00a0relu %x", "\xa0"),  # NO-BREAK SPACE
        ("  %0: f32[B,4] = relu\u2028%x", "\u2028"),  # LINE SEPARATOR
        ("  %0: f32[B,4] = relu %x\x85", "\x85"),  # NEXT LINE
    ],
    ids=["digit", "fullwidth-digit", "no-break-space", "line-separator", "next-line"],
)
def test_characters_outside_ascii(line, character):
    error = parse_error(graph_text(line, "  output out = %0"))
    assert (error.line, error.column) == (3, line.index(character) + 1)
    assert f"unexpected character {character!r}" in str(error)


def test_lines_end_only_at_newlines():
    # Form feeds and vertical tabs are spaces; "\r\n" ends a line like "\n".
    text = graph_text("  %0: f32[B,4] =\frelu\v%x", "  %1: f32[B,4] = nope %0").replace("\n", "\r\n")
    error = parse_error(text)
    assert (error.line, error.column) == (4, 18)
    assert str(error).splitlines()[1:] == ["      %1: f32[B,4] = nope %0", "                     ^"]


def test_a_long_line_is_shown_around_the_error():
    line = "  %0: f32[B,4] = relu %x" + " " * 10_000 + "%x" + " " * 10_000
    error = parse_error(graph_text(line))
    first, shown, caret = str(error).splitlines()
    assert first == f"3:{line.rindex('%x') + 1}: unexpected '%x' at end of line"
    assert len(shown) < 120
    assert shown[caret.index("^") : caret.index("^") + 2] == "%x"


def test_an_attribute_value_of_the_wrong_kind_is_shown_short():
    error = parse_error(graph_text("  %0: f32[B,4] = leaky_relu %x {alpha=[" + "1," * 10_000 + "1]}"))
    assert len(str(error).splitlines()[0]) < 200
    assert "attribute alpha must be a number, got (1, 1, 1, 1, 1, 1, ...)" in str(error)


def test_an_argument_named_like_a_node_result():
    error = parse_error(graph_text(arguments="  input %12: f32[4]"))
    assert (error.line, error.column) == (2, 9)
    assert "invalid name '12'" in str(error)


def test_parse_errors_are_ember_errors():
    with pytest.raises(EmberError):
        parse("graph g {")
    assert issubclass(ParseError, ValueError)


# -- round trip of random graphs -------------------------------------------------
DIMS = (1, 2, 3, "B", "N")
ARGUMENT_NAMES = ("x", "y", "lr", "0.weight", "0.bias", "layer_2.w", "h.0.exp_avg")
OUTPUT_NAMES = ("out", "loss", "0.weight.grad", "a.b", "_tmp")
FLOATS = st.floats(allow_nan=True, allow_infinity=True)

tensor_types = st.builds(
    TensorType, st.sampled_from(list(DType)), st.lists(st.sampled_from(DIMS), max_size=3).map(tuple)
)


def fits(domain: str, value: Value) -> bool:
    """Whether `value` may be an operand from the input domain `domain`."""
    dtype = value.type.dtype
    if domain == "bool":
        return dtype is DType.bool
    if domain == "label":
        return dtype.is_int
    if domain == "seed":
        return dtype is DType.int64
    return domain == "any" or dtype is not DType.bool


def draw_attr(data: st.DataObject, kind: str, shape: tuple) -> object:
    """A value of attribute `kind`, often valid for an operand of `shape`."""
    if kind == "ints":  # a permutation of the axes, or a prefix of one
        perm = data.draw(st.permutations(range(len(shape))))
        return tuple(perm[: data.draw(st.integers(0, len(shape)))])
    if kind == "shape":  # reshape to permuted dims, or broadcast to more leading dims
        permuted = st.permutations(shape).map(tuple)
        return data.draw(st.one_of(permuted, st.lists(st.sampled_from(DIMS), max_size=2).map(lambda p: (*p, *shape))))
    strategies = {
        "int": st.integers(-3, 3),
        "float": FLOATS,
        "bool": st.booleans(),
        "scalar": st.one_of(st.booleans(), st.integers(-(2**40), 2**40), FLOATS),
        "dtype": st.sampled_from(list(DType)),
    }
    return data.draw(strategies[kind])


def random_graph(data: st.DataObject) -> Graph:
    """Random arguments, then nodes of random ops on earlier values (invalid
    combinations, which the builder rejects, are skipped), outputs and updates."""
    graph = Graph(data.draw(st.sampled_from(["g", "model", "train"])))
    names = data.draw(st.lists(st.sampled_from(ARGUMENT_NAMES), min_size=1, max_size=4, unique=True))
    for name in names:
        graph.add_argument(name, data.draw(tensor_types), data.draw(st.sampled_from(ROLES)))
    build = Builder(graph)
    for _ in range(data.draw(st.integers(0, 12))):
        op = OPS[data.draw(st.sampled_from(sorted(OPS)))]
        values = list(graph.values())
        operands = []
        for domain in op.domains[: op.arity]:
            candidates = [v for v in values if fits(domain, v)]
            if not candidates:
                break
            operands.append(data.draw(st.sampled_from(candidates)))
        if len(operands) != op.arity:
            continue
        shape = operands[0].type.shape if operands else ()
        attrs = {a.name: draw_attr(data, a.kind, shape) for a in op.attrs}
        try:
            build.emit(op, *operands, **attrs)
        except EmberError:
            continue
    values = list(graph.values())
    for name in data.draw(st.lists(st.sampled_from(OUTPUT_NAMES), max_size=3, unique=True)):
        graph.outputs[name] = data.draw(st.sampled_from(values))
    for target in [*graph.params, *graph.buffers, *graph.state]:
        same_type = [v for v in values if v.type == target.type]
        if data.draw(st.booleans()):
            graph.updates[target.name] = data.draw(st.sampled_from(same_type))
    return graph


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_random_graphs_round_trip(data):
    graph = verify(random_graph(data))
    text = print_graph(graph)
    parsed = parse(text)
    assert print_graph(parsed) == text
    assert [n.op for n in parsed.nodes] == [n.op for n in graph.nodes]
