"""The functions a module shares with other programs' modules: each is
emitted once per module and compiled once per machine
(compiler/shared_code.py), which its name alone must make sound."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import llvmlite.ir as ir

from .irutil import VOID, rename


class SharedFunctions:
    """The shared functions of one module, emitted on first use: in full,
    or only declared where `compiled(name)` says the machine has the
    function's object already (compiler/shared_code.py): its code depends
    on its name alone, ember's source and the target. They are the matmul
    library's (GemmLibrary, gemm_task.py), microkernels named by their
    text (`shared`) and scalar math (kernel.py's scalar_function)."""

    def __init__(
        self,
        module: ir.Module,
        compiled: Callable[[str], bool] | None = None,
        printed: dict[str, str] | None = None,
    ) -> None:
        self.module = module
        self._compiled = compiled
        self._functions: dict[str, ir.Function] = {}
        self.declared: list[str] = []
        """The functions only declared."""
        self.printed = {} if printed is None else printed
        """The text of each function `shared` kept, by name: printing it again
        for the module would double the time it takes (module.py)."""

    def shared(self, fn: ir.Function, kind: str) -> ir.Function:
        """`fn` as a shared function named by its text: `ember.KIND.HASH`.
        Kernels whose epilogues compute the same thing on tensors that live
        in different places (the layers of an MLP, or of another MLP of
        other widths) have microkernels of the same text but for their
        names (they take every address and size from their caller). The
        first of a module is renamed and kept, the others leave it (LLVM
        optimizes and compiles one), and one compiled before on the machine
        is only declared (compiler/shared_code.py)."""
        printed = str(fn)
        own = fn.get_reference()
        digest = hashlib.sha256(printed.replace(own, "@_", 1).encode()).hexdigest()[:24]
        name = f"ember.{kind}.{digest}"
        if name in self._functions or self._declared_if_compiled(name, fn.ftype):
            del self.module.globals[fn.name]
            return self._functions[name]
        rename(self.module, fn, name)
        self.printed[name] = printed.replace(own, fn.get_reference(), 1)
        self._functions[name] = fn
        return fn

    def function(self, name: str, args: list[ir.Type], build, result: ir.Type = VOID) -> ir.Function:
        """The shared function `name`(args) -> `result`, its body emitted by
        `build(builder, *args)` (which returns the result, if any) the first
        time it is asked for (or only declared: see the class)."""
        ftype = ir.FunctionType(result, args)
        if name not in self._functions and not self._declared_if_compiled(name, ftype):
            fn = ir.Function(self.module, ftype, name=name)
            fn.linkage = "internal"
            fn.attributes.add("noinline")  # shared by every kernel of the module: compiled once
            for arg in fn.args:
                if isinstance(arg.type, ir.PointerType):
                    arg.add_attribute("noalias")
            b = ir.IRBuilder(fn.append_basic_block("entry"))
            value = build(b, *fn.args)
            b.ret_void() if result is VOID else b.ret(value)
            self._functions[name] = fn
        return self._functions[name]

    def _declared_if_compiled(self, name: str, ftype: ir.FunctionType) -> bool:
        """Whether the machine has the object of `name`; then it is declared here."""
        if self._compiled is None or not self._compiled(name):
            return False
        self._functions[name] = ir.Function(self.module, ftype, name=name)
        self.declared.append(name)
        return True
