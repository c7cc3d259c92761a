"""Differential fuzzing of the native backend against the reference interpreter.

- graphs.py: random valid programs drawn from the op table;
- cases.py: many programs in one graph, in forward, gradient or train form;
- tolerance.py: how far native results may be from the reference's, measured;
- check.py: one case on both backends, compared;
- mlps.py: random MLPs through `ember.compile` on both backends;
- shrink.py: a failing case cut down by hypothesis;
- campaign.py: units checked until time runs out (`python tests/fuzz.py`).
"""
