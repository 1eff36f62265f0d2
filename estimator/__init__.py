"""vllm-planner's offline estimator: model and GPU specs, the vLLM memory plan, serve flags.

Pure and offline: imports nothing from ``calibrate`` or ``store`` and nothing heavy on the plan path.
"""

from estimator.errors import PlannerError

__all__ = ["PlannerError"]
