"""The README's reference section is what `ember.reference` generates from
the code, and every entry in it says what it computes."""

from __future__ import annotations

from inspect import isabstract
from pathlib import Path

from ember.reference import END, START, reference_markdown, replace_section

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_holds_the_generated_reference() -> None:
    text = README.read_text()
    assert START in text
    assert END in text
    assert replace_section(text, reference_markdown()) == text, "run: python -m ember.reference --write README.md"


def test_every_entry_says_what_it_computes() -> None:
    rows = [line for line in reference_markdown().splitlines() if line.startswith("| `")]
    assert len(rows) > 100
    empty = [row.split(" | ")[0] for row in rows if row.endswith(" |  |")]
    assert not empty


def test_every_layer_loss_and_optimizer_is_listed() -> None:
    from ember import nn, optim

    text = reference_markdown()
    for module in (nn, optim):
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, type) and issubclass(obj, nn.Module | nn.Loss | optim.Optimizer) and not isabstract(obj):
                assert f"`{name}(" in text, name
