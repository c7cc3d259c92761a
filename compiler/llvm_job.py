"""ember's LLVM pass pipeline and code generation for one module, importing
nothing but llvmlite: compiler/backend.py calls it in this process, and a
helper of a parallel compile (compiler/parallel.py) runs this file by its
path, so it starts in ~0.1 s instead of importing ember first.

As a script it reads a pickled (LLVM IR texts, triple, CPU, features) from
stdin and writes the pickled list of their object codes to stdout."""

from __future__ import annotations

import pickle
import sys

import llvmlite.binding as llvm


def target_machine(
    triple: str, cpu: str, features: str, reloc: str = "default", codemodel: str = "jitdefault"
) -> llvm.TargetMachine:
    """A fresh LLVM target machine, generating code at its highest level."""
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    return llvm.Target.from_triple(triple).create_target_machine(
        cpu=cpu, features=features, opt=3, reloc=reloc, codemodel=codemodel
    )


def object_machine(triple: str, cpu: str, features: str) -> llvm.TargetMachine:
    """The target machine of relocatable, position-independent objects."""
    return target_machine(triple, cpu, features, reloc="pic", codemodel="small")


def optimized_module(llvm_ir: str, machine: llvm.TargetMachine) -> llvm.ModuleRef:
    """`llvm_ir` parsed, verified (a RuntimeError if invalid) and optimized
    for `machine` by LLVM's O1 pipeline without loop unrolling
    (compiler/backend.py says why)."""
    module = llvm.parse_assembly(llvm_ir)
    module.verify()
    module.triple = machine.triple
    module.data_layout = str(machine.target_data)
    tuning = llvm.create_pipeline_tuning_options(speed_level=1)
    # ember unrolls its loops by hand; LLVM's unroller only copied them again
    # (measured, one pinned core: optimization -10..-25%, machine code -35%,
    # objects -24%; the R, S, M and L steps and a LayerNorm/GELU/BatchNorm
    # step unchanged or 3% faster, batch-1 predict on S 3-8% slower)
    tuning.loop_unrolling = False
    # the vectorizers stay on for whatever scalar code remains (they leave
    # hand-vectorized kernels unchanged); set before the pass builder
    # exists, or they are ignored
    tuning.loop_vectorization = True
    tuning.slp_vectorization = True
    passes = llvm.create_pass_builder(machine, tuning)
    passes.getModulePassManager().run(module, passes)
    return module


def object_code(llvm_ir: str, triple: str, cpu: str, features: str) -> bytes:
    """`llvm_ir` optimized and compiled to relocatable, position-independent
    machine code (one parse: the optimized module is compiled as it is)."""
    machine = object_machine(triple, cpu, features)
    return machine.emit_object(optimized_module(llvm_ir, machine))


def main() -> None:
    texts, triple, cpu, features = pickle.load(sys.stdin.buffer)
    pickle.dump([object_code(text, triple, cpu, features) for text in texts], sys.stdout.buffer)
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
