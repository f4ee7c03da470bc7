"""Published benchmarks as commands (`preftune judge --alpaca-eval / --arena-hard /
--mtbench-pairwise`): AlpacaEval 2.0 through the `alpaca-eval` package, Arena-Hard-Auto
written from its paper, and MT-Bench pairwise with FastChat's pair prompts.

Each module is imported on demand (AlpacaEval needs the optional `alpaca-eval` package);
see docs/benchmarks.md for what each costs in judge requests and how its numbers compare
with the published leaderboards.
"""
