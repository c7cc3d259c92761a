"""`import ember` stays light: LLVM and the progress bar load when first used."""

import subprocess
import sys


def test_import_ember_loads_neither_llvmlite_nor_tqdm():
    code = "import sys, ember; print(sorted({m.split('.')[0] for m in sys.modules} & {'llvmlite', 'tqdm'}))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_llvmlite_loads_with_the_first_compile():
    code = (
        "import sys, ember; from ember import nn; "
        "ember.compile(nn.Sequential(nn.Linear(2, 1))).predict([[1.0, 2.0]]); "
        "print('llvmlite' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "True"
