"""The one error type the planner raises for bad input: its message names the problem and the fix."""


class PlannerError(Exception):
    """Raised for input the planner cannot use. The CLI prints ``str(err)`` as one line and exits 2."""
