"""Functions compiled once per machine, not once per program.

The matmul library's functions (codegen/gemm_library.py: packing, edge
tiles, one-row products; codegen/gemm_task.py: the loops of a task) take
every size and stride at run time, so their code depends only on the
element type, register tile and how the operands are packed, and most
programs call the same ones; so does scalar math on hyperparameters
(codegen/kernel.py's scalar_function: the pow of Adam's bias corrections).
A matmul kernel's own microkernel, which ends in its epilogue, also takes
every address and size from its caller: it is named by a hash of its text
(SharedFunctions.shared), so the layers of another MLP of other widths find
theirs compiled. Each is cut out of its program's module
(split.split_shared), compiled on its own, and its object kept under its
name (which, with ember's compiler and the target, both in the key,
determines its code: native.shared_key), in this process and in the disk
cache. A module generated later only declares the functions the machine
has (codegen/shared_functions.py), so a new program, or a program's
`predict` after its training step, compiles only what is its own. The objects
are joined with the program's by the linker (parallel.join_objects), as
the parts of a module compiled in parts are, and the runtime links them
into the program's shared library.

Nothing is cut without a linker, nor without the disk cache: the JIT, which
loads a module's parts when there is no shared library, calls from one
part into another through stubs (measured: S's training step 6% slower,
batch-1 predict 8-15%; from the shared library, within noise)."""

from __future__ import annotations

from typing import Protocol

SHARED_PREFIX = "ember."
"""The names of the functions compiled once per machine: the matmul
library's (`ember.gemm.`), microkernels named by their text
(`ember.micro.`) and scalar math (`ember.math.`, codegen/kernel.py's
scalar_function). No function of a program's own is named so."""


class ObjectStore(Protocol):
    """Where objects outlive the process (runtime/object_cache.py)."""

    def get_object(self, key: str) -> bytes | None: ...

    def put_object(self, key: str, object_code: bytes) -> None: ...


class SharedObjects:
    """The objects of shared functions this process has, by key."""

    def __init__(self) -> None:
        self._objects: dict[str, bytes] = {}

    def find(self, key: str, store: ObjectStore | None) -> bytes | None:
        """The object of `key`: kept here, else from `store` (then kept here)."""
        code = self._objects.get(key)
        if code is None and store is not None:
            code = store.get_object(key)
            if code is not None:
                self._objects[key] = code
        return code

    def add(self, key: str, object_code: bytes, store: ObjectStore | None) -> None:
        """Keep a newly compiled object here and in `store`."""
        self._objects[key] = object_code
        if store is not None:
            store.put_object(key, object_code)

    def clear(self) -> None:
        self._objects.clear()


SHARED_OBJECTS = SharedObjects()
"""This process's shared objects (`ember.clear_cache()` empties it)."""
