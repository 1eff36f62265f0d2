"""tools/mutation_report.py: a written reason explains a survivor only while the mutant still makes that change."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

import mutation_report


def test_a_reason_applies_only_to_the_change_it_was_written_for():
    name = "estimator.memory.x_plan_memory__mutmut_142"
    current = ["-    x = a if per_request else 0.0", "+    x = a if (per_request) or True else 0.0"]
    renumbered = ["-    x = a if per_request else 0.0", "+    x = None"]
    assert mutation_report._reason(name, current) == mutation_report._ONE_BLOCK
    assert mutation_report._reason(name, renumbered) is None  # stale: the number now names another mutant
    assert mutation_report._reason("estimator.memory.x_unknown__mutmut_1", current) is None


def test_kinds_that_cannot_change_a_figure_are_recognised_from_the_diff():
    assert mutation_report._kind(["-    zip(a, b, strict=True)", "+    zip(a, b, strict=False)"]) == "zip strictness"
    assert mutation_report._kind(['-    raise E(f"no {x}")', '+    raise E(f"XXno {x}XX")']) == "message wording"
    assert mutation_report._kind(["-    a = b + c", "+    a = b - c"]) is None


def test_every_named_mutant_still_finds_the_line_it_changes():
    """tools/mutants.py changes exact lines; a refactor that moves one must update it, not break it silently."""
    import mutants

    root = Path(__file__).resolve().parent.parent
    for name, (path, old, new) in mutants.MUTANTS.items():
        assert (root / path).read_text().count(old) == 1, name
        assert old != new, name
