"""`calibrate`: the measuring side. Its commands (run, import, fit, report, db, runs) arrive with the store,
runner and fitting work; until then the group only answers --help and --version."""

import click


@click.group()
@click.version_option(package_name="vllm-planner")
def main() -> None:
    """Measure vLLM on this host, store the results, fit and report (commands: see the project README)."""
