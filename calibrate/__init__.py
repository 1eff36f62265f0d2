"""vllm-planner's GPU-host side: measure real vLLM, fit the estimator's coefficients, report errors."""
