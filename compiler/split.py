"""Cutting one program's LLVM module into parts that compile separately, on
several cores, and link back into one object (compiler/parallel.py).

The cut is made on the module's text, by function, and defines every
function once. The units dealt out are each kernel with the functions
only it calls (its task, its own microkernel) and each function several
kernels call (a shared microkernel, the matmul library's packing and edge
routines); largest first, each to the part with the fewest lines so far,
so the parts take about as long to compile. The entry functions stay in
part 0. A function called from another part is defined `hidden` (seen by
the link that joins the parts, not outside it) and declared where it is
called. That costs nothing measurable: the kernels' times in
`prog.profile` on 784-512-512-10 were within noise of the module compiled
whole (0.94-1.07; 0.99-1.02 for the five large matmuls, 97% of the step;
four alternating rounds): the functions LLVM can no longer specialize to
their callers run once per tile or per panel.

`split_shared` cuts the other way: the functions that do not depend on
the program (the matmul library's) each into a module of its own, which
compiler/shared_code.py compiles once per machine.

A module holding anything else than function definitions, function
declarations and external global declarations is not cut."""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = re.compile(r'@"([^"]+)"')
_PARAMETER_NAME = re.compile(r'\s*%"[^"]*"')


@dataclass
class _Function:
    name: str
    text: str
    internal: bool
    calls: set[str]
    lines: int


def split_module(text: str, parts: int) -> list[str]:
    """`text` cut into at most `parts` module texts whose objects, linked
    together, define what the module defines; `[text]` when it cannot be cut."""
    parsed = _parse(text)
    if parsed is None or parts < 2:
        return [text]
    header, declarations, functions = parsed
    entries = [f for f in functions.values() if not f.internal]
    kernels = {name for entry in entries for name in entry.calls if name in functions and functions[name].internal}
    if len(kernels) < 2:
        return [text]
    # units of work: each kernel with the functions only it reaches, and each
    # function several kernels reach (the matmul library), on its own
    closures = {kernel: _closure(kernel, functions) for kernel in kernels}
    reached_by: dict[str, int] = {}
    for closure in closures.values():
        for name in closure:
            reached_by[name] = reached_by.get(name, 0) + 1
    units = [{name for name in closure if reached_by[name] == 1} for closure in closures.values()]
    units += [{name} for name, count in reached_by.items() if count > 1]
    home: dict[str, int] = {}
    weights = [sum(entry.lines for entry in entries)] + [0] * (parts - 1)
    for unit in sorted(units, key=lambda u: (-_weight(u, functions), sorted(u))):
        lightest = min(range(parts), key=lambda p: (weights[p], p))
        weights[lightest] += _weight(unit, functions)
        home.update(dict.fromkeys(unit, lightest))
    for name in functions:  # the entries, and functions no entry reaches
        home.setdefault(name, 0)
    defined = [sorted(name for name, part in home.items() if part == p) for p in range(parts)]
    elsewhere = [
        sorted({callee for name in names for callee in functions[name].calls if home.get(callee, p) != p})
        for p, names in enumerate(defined)
    ]
    crossing = set().union(*elsewhere)  # defined hidden: seen by the other parts, not outside the link
    texts = []
    for names, declared in zip(defined, elsewhere, strict=True):
        body = [header, *declarations, *(_declaration(functions[name]) for name in declared)]
        for name in names:
            function = functions[name]
            body.append(_hidden(function) if function.internal and name in crossing else function.text)
        texts.append("\n".join(body) + "\n")
    return texts


def split_shared(text: str, prefix: str) -> tuple[str, dict[str, str], list[str]] | None:
    """Cut out of `text` the functions named `prefix`...: (the program, which
    declares them `hidden` instead; the module of each internal one it
    defines, by name, defining it `hidden` (seen by the link that joins the
    objects, not outside it) and declaring only what it calls, so that its
    text depends on the function alone, not on the program around it; the
    names of those it only declares, whose objects were compiled before).
    None if there are no such functions or the module cannot be cut."""
    parsed = _parse(text)
    if parsed is None:
        return None
    header, declarations, functions = parsed
    shared = [f for name, f in functions.items() if f.internal and name.startswith(prefix)]
    declared = {match.group(1): line for line in declarations if (match := _NAME.search(line))}
    compiled = [name for name in declared if name.startswith(prefix)]
    if not shared and not compiled:
        return None
    names = {f.name for f in shared}
    if any(name in functions and name not in names for f in shared for name in f.calls):
        return None  # a shared function calling the program's own
    for name in compiled:  # defined in another object of the same link
        declared[name] = declared[name].replace("declare ", "declare hidden ", 1)
    kept = [declared.get(match.group(1), line) if (match := _NAME.search(line)) else line for line in declarations]
    rest = [f for f in functions.values() if f.name not in names]
    program = [header, *kept, *(_declaration(f) for f in shared), *(f.text for f in rest)]
    targets = "\n".join(line for line in header.splitlines() if line.startswith("target "))
    modules = {}
    for function in shared:
        calls = sorted(function.calls)
        body = [targets, *(declared[c] for c in calls if c in declared)]
        body += [_declaration(functions[c]) for c in calls if c in names]
        modules[function.name] = "\n".join([*body, _hidden(function)]) + "\n"
    return "\n".join(program) + "\n", modules, compiled


def _parse(text: str) -> tuple[str, list[str], dict[str, _Function]] | None:
    """(header, declaration lines, functions by name), or None for a module
    holding anything else at the top level."""
    header: list[str] = []
    declarations: list[str] = []
    functions: dict[str, _Function] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("define "):
            end = lines.index("}", i)
            body = "\n".join(lines[i : end + 1])
            name = _NAME.search(line)
            if name is None:
                return None
            calls = set(_NAME.findall(body)) - {name.group(1)}
            functions[name.group(1)] = _Function(name.group(1), body, " internal " in line, calls, end - i)
            i = end + 1
            continue
        if line.startswith("declare ") or (line.startswith("@") and " = external global " in line):
            declarations.append(line)
        elif line.startswith(("; ModuleID", "target ")) or not line.strip():
            if not functions and not declarations:
                header.append(line)
        else:
            return None
        i += 1
    return "\n".join(header), declarations, functions


def _closure(kernel: str, functions: dict[str, _Function]) -> set[str]:
    """`kernel` and the internal functions it reaches."""
    reached, todo = {kernel}, [kernel]
    while todo:
        for name in functions[todo.pop()].calls:
            if name not in reached and name in functions and functions[name].internal:
                reached.add(name)
                todo.append(name)
    return reached


def _weight(names: set[str], functions: dict[str, _Function]) -> int:
    return sum(functions[name].lines for name in names)


def _hidden(function: _Function) -> str:
    first, rest = function.text.split("\n", 1)
    return first.replace("define internal ", "define hidden ", 1) + "\n" + rest


def _declaration(function: _Function) -> str:
    """The declaration of `function` as another part defines it (an
    internal function hidden, see _hidden)."""
    prototype = function.text.split("\n", 1)[0].removeprefix("define ")
    if function.internal:
        prototype = prototype.replace("internal ", "hidden ", 1)
    return "declare " + _PARAMETER_NAME.sub("", prototype)
